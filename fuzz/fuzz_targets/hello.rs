//! A message to the node's agent over a session: a hello, a leave, a member list.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    foundation_cluster::fuzzing::agent(data);
});
