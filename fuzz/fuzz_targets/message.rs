//! A user message as a node decodes it for the process it is sent to (the derive's
//! generated decoder, as a cast or a call), and a call's reply as the caller decodes it.
#![no_main]

use foundation_actors::remote::{RemoteMessage, Replier, decode_reply};
use foundation_fuzz::{Event, Msg, Reply};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => drop(std::hint::black_box(Msg::from_bytes(rest))),
        1 => drop(std::hint::black_box(Msg::from_bytes_with_reply(
            rest,
            Replier::new(|_| {}),
        ))),
        2 => drop(std::hint::black_box(Event::from_bytes(rest))),
        _ => drop(std::hint::black_box(decode_reply::<Reply>("Reply", rest))),
    }
});
