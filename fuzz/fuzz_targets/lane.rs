//! An inbound lane from its first byte: the preamble, the hello frame, then frames of items.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    foundation_cluster::fuzzing::lane(data);
});
