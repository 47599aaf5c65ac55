//! The consistent registry's lease machine: commands from the log, snapshots, replies.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    foundation_registry::fuzzing::leases(data);
});
