//! A message's context as it crosses nodes (inside a cast or a call item). One that is
//! accepted must come out of another round trip equal.
#![no_main]

use foundation_actors::Context;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(ctx) = postcard::from_bytes::<Context>(data) {
        let again = postcard::to_stdvec(&ctx).expect("an accepted context encodes");
        let back: Context = postcard::from_bytes(&again).expect("a re-encoded context decodes");
        assert_eq!(back, ctx);
    }
});
