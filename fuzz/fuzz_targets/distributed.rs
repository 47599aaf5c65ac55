//! The distributed supervisor's messages (hellos, records, byes, rebalances), handled in
//! order with a plan after each.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    foundation_registry::fuzzing::distributed(data);
});
