//! The cluster registry's replication messages, applied to a replica in order.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    foundation_registry::fuzzing::registry(data);
});
