//! Raft's messages between the nodes of a group: the RPC envelope and its JSON, requests
//! and answers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    foundation_cluster::fuzzing::raft(data);
});
