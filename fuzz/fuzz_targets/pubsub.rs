//! One message to a pubsub's process: a peer's interest (its topics and patterns, built
//! into a table and queried) or a broadcast (fanned out to local subscribers of several
//! payload types, and routed).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    foundation_pubsub::fuzzing::wire(data);
});
