//! What the placement layers on the distributed supervisor take from a peer: a `Sharded`'s
//! casts, calls, replies, barriers, handoffs and leaves, or a cluster-wide ecosystem's
//! jobs, results, refusals, reports, tables and byes, handled in order. The first byte
//! picks which.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    foundation_registry::fuzzing::sharded(data);
});
