//! One lane frame's body: hellos, casts and calls (with their contexts), replies,
//! heartbeats, leaves.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    foundation_cluster::fuzzing::items(data);
});
