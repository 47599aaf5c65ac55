//! What a cache's node takes from a peer: requests to a partitioned cache's shard (applied
//! to a shard in order) and the replies to its own calls, or the messages of a shared
//! state (`Shared<S>`: deltas, full states, digests, wants) and of a replicated cache,
//! merged in order with a local update after each. The first byte picks which.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    foundation_cache::fuzzing::wire(data);
});
