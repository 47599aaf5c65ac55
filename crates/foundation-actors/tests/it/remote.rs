//! `#[derive(RemoteMessage)]`: round trips, tags that survive renames, and bad bytes.

use foundation_actors::remote::{RemoteMessage, WireError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Item {
    sku: String,
    qty: u32,
}

#[derive(Debug, Clone, PartialEq, RemoteMessage)]
#[remote(name = "shop.Command")]
pub(crate) enum Command {
    #[remote(tag = 1)]
    Put { key: String, items: Vec<Item> },
    #[remote(tag = 2)]
    Get(String),
    #[remote(tag = 300)]
    Ping,
    #[remote(tag = 4)]
    Pair(u64, Option<i32>),
}

/// The same protocol as a peer with other variant names and order sees it.
#[derive(Debug, Clone, PartialEq, RemoteMessage)]
#[remote(name = "shop.Command")]
pub(crate) enum RenamedCommand {
    #[remote(tag = 300)]
    Heartbeat,
    #[remote(tag = 2)]
    Fetch(String),
    #[remote(tag = 1)]
    Store { name: String, lines: Vec<Item> },
}

#[derive(Debug, Clone, PartialEq, RemoteMessage)]
pub(crate) struct Reading {
    sensor: String,
    value: f64,
}

fn samples() -> Vec<Command> {
    vec![
        Command::Put {
            key: "cart".into(),
            items: vec![
                Item {
                    sku: "a-1".into(),
                    qty: 2,
                },
                Item {
                    sku: "b".into(),
                    qty: 0,
                },
            ],
        },
        Command::Get("cart".into()),
        Command::Ping,
        Command::Pair(u64::MAX, Some(-3)),
    ]
}

#[test]
fn every_variant_and_a_struct_round_trip() {
    for c in samples() {
        let bytes = c.to_bytes().unwrap();
        assert_eq!(Command::from_bytes(&bytes).unwrap(), c);
        assert_eq!(
            c.tag(),
            Some(postcard::take_from_bytes::<u32>(&bytes).unwrap().0)
        );
    }
    let r = Reading {
        sensor: "t1".into(),
        value: 21.5,
    };
    let bytes = r.to_bytes().unwrap();
    assert_eq!(Reading::from_bytes(&bytes).unwrap(), r);
    assert_eq!(r.tag(), None);
    assert_eq!(Command::TAGS, &[1, 2, 300, 4]);
    assert_eq!(Command::TYPE_NAME, "shop.Command");
    assert_eq!(Reading::TYPE_NAME, "Reading");
}

#[test]
fn renamed_and_reordered_variants_read_the_same_bytes() {
    let put = Command::Put {
        key: "k".into(),
        items: vec![Item {
            sku: "s".into(),
            qty: 1,
        }],
    };
    assert_eq!(
        RenamedCommand::from_bytes(&put.to_bytes().unwrap()).unwrap(),
        RenamedCommand::Store {
            name: "k".into(),
            lines: vec![Item {
                sku: "s".into(),
                qty: 1
            }]
        }
    );
    assert_eq!(
        RenamedCommand::from_bytes(&Command::Ping.to_bytes().unwrap()).unwrap(),
        RenamedCommand::Heartbeat
    );
    let fetch = RenamedCommand::Fetch("x".into()).to_bytes().unwrap();
    assert_eq!(
        Command::from_bytes(&fetch).unwrap(),
        Command::Get("x".into())
    );
}

#[test]
fn an_unknown_tag_is_a_clear_error() {
    let pair = Command::Pair(1, None).to_bytes().unwrap();
    let err = RenamedCommand::from_bytes(&pair).unwrap_err();
    match &err {
        WireError::UnknownTag {
            type_name,
            tag,
            known,
        } => {
            assert_eq!(*type_name, "shop.Command");
            assert_eq!(*tag, 4);
            assert_eq!(*known, &[300, 2, 1]);
        }
        other => panic!("expected an unknown tag, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("unknown wire tag 4") && text.contains("shop.Command"),
        "{text}"
    );
}

#[test]
fn truncated_trailing_and_empty_input_are_errors() {
    let bytes = samples()[0].to_bytes().unwrap();
    for cut in 0..bytes.len() {
        let err = Command::from_bytes(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, WireError::Malformed { .. }),
            "cut at {cut}: {err:?}"
        );
    }
    let mut long = bytes.clone();
    long.extend_from_slice(&[0, 0]);
    assert!(matches!(
        Command::from_bytes(&long),
        Err(WireError::TrailingBytes {
            extra: 2,
            tag: Some(1),
            ..
        })
    ));
    let err = Command::from_bytes(&[]).unwrap_err();
    assert!(
        err.to_string().contains("malformed `shop.Command`"),
        "{err}"
    );
}

#[test]
fn a_huge_length_prefix_is_refused_without_allocating_it() {
    // Tag 2 (`Get(String)`), then a string length of u32::MAX, then 3 bytes.
    let mut bytes = vec![2];
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    bytes.extend_from_slice(b"abc");
    assert!(matches!(
        Command::from_bytes(&bytes),
        Err(WireError::Malformed { tag: Some(2), .. })
    ));
    // Tag 1 (`Put`): a key, then a vector that claims 2^32 - 1 items.
    let mut bytes = vec![1, 1, b'k'];
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(Command::from_bytes(&bytes).is_err());
}

#[test]
fn garbage_never_panics() {
    let mut rng = fastrand::Rng::with_seed(7);
    let valid: Vec<Vec<u8>> = samples().iter().map(|c| c.to_bytes().unwrap()).collect();
    let mut decoded = 0;
    for i in 0..20_000 {
        let bytes: Vec<u8> = if i % 2 == 0 {
            (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect()
        } else {
            // Valid messages with a few bytes flipped: deeper into the decoder.
            let mut b = valid[i % valid.len()].clone();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..b.len());
                b[at] = rng.u8(..);
            }
            b
        };
        if Command::from_bytes(&bytes).is_ok() {
            decoded += 1;
        }
        let _ = Reading::from_bytes(&bytes);
    }
    assert!(decoded > 0, "some flipped messages still decode");
}

/// A field whose `Serialize` fails on demand.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Flaky(bool);

impl Serialize for Flaky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 {
            s.serialize_bool(true)
        } else {
            Err(serde::ser::Error::custom("refused"))
        }
    }
}

#[derive(Debug, Clone, PartialEq, RemoteMessage)]
pub(crate) enum Batched {
    #[remote(tag = 1)]
    First(Flaky),
    /// A failure after the tag and a field were written.
    #[remote(tag = 200)]
    Last(String, Flaky),
    #[remote(tag = 3)]
    Plain(u8),
}

#[derive(Debug, Clone, PartialEq, RemoteMessage)]
pub(crate) struct FlakyRecord {
    name: String,
    flaky: Flaky,
}

#[test]
fn a_failed_encode_leaves_the_buffer_as_it_was() {
    let mut out = Vec::new();
    Batched::Plain(7).encode(&mut out).unwrap();
    Batched::First(Flaky(true)).encode(&mut out).unwrap();
    Batched::Last("ok".into(), Flaky(true))
        .encode(&mut out)
        .unwrap();
    let before = out.clone();
    for failing in [
        Batched::First(Flaky(false)),
        Batched::Last("written, then dropped".into(), Flaky(false)),
    ] {
        let err = failing.encode(&mut out).unwrap_err();
        assert!(
            matches!(err, WireError::Encode { tag: Some(t), .. } if Some(t) == failing.tag()),
            "{err:?}"
        );
        assert_eq!(out, before, "after a failed {failing:?}");
    }
    let record = FlakyRecord {
        name: "written, then dropped".into(),
        flaky: Flaky(false),
    };
    assert!(matches!(
        record.encode(&mut out),
        Err(WireError::Encode { tag: None, .. })
    ));
    assert_eq!(out, before);

    // The buffer still holds the batch, and goes on taking messages.
    Batched::Plain(9).encode(&mut out).unwrap();
    let mut rest = &out[..];
    for want in [
        Batched::Plain(7),
        Batched::First(Flaky(true)),
        Batched::Last("ok".into(), Flaky(true)),
        Batched::Plain(9),
    ] {
        let len = want.to_bytes().unwrap().len();
        assert_eq!(Batched::from_bytes(&rest[..len]).unwrap(), want);
        rest = &rest[len..];
    }
    assert!(rest.is_empty());
}

/// Fields named like the generated code's locals and helpers.
#[derive(Debug, Clone, PartialEq, RemoteMessage)]
pub(crate) enum Shadowing {
    #[remote(tag = 1)]
    Named {
        out: String,
        this: u8,
        bytes: Vec<u8>,
        rest: Option<String>,
        tag: u32,
        other: i64,
        f0: u8,
        value: bool,
        type_name: String,
    },
    #[remote(tag = 2)]
    Tuple(String, u8, Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, RemoteMessage)]
pub(crate) struct Route {
    this: u8,
    out: u16,
    bytes: String,
}

#[derive(Debug, Clone, PartialEq, RemoteMessage)]
pub(crate) struct Pair(String, u8);

#[test]
fn fields_may_be_named_like_the_codecs_locals() {
    for m in [
        Shadowing::Named {
            out: "o".into(),
            this: 1,
            bytes: vec![2, 3],
            rest: Some("r".into()),
            tag: 4,
            other: -5,
            f0: 6,
            value: true,
            type_name: "t".into(),
        },
        Shadowing::Tuple("a".into(), 7, vec![8]),
    ] {
        assert_eq!(Shadowing::from_bytes(&m.to_bytes().unwrap()).unwrap(), m);
    }
    let r = Route {
        this: 1,
        out: 300,
        bytes: "b".into(),
    };
    assert_eq!(Route::from_bytes(&r.to_bytes().unwrap()).unwrap(), r);
    let p = Pair("p".into(), 9);
    assert_eq!(Pair::from_bytes(&p.to_bytes().unwrap()).unwrap(), p);
}

#[test]
fn error_texts_speak_of_the_message() {
    let ping = Command::Ping.to_bytes().unwrap();
    let one = Command::from_bytes(&[&ping[..], &[0]].concat()).unwrap_err();
    assert_eq!(
        one.to_string(),
        "1 byte left over after a `shop.Command` (tag 300)"
    );
    let two = Command::from_bytes(&[&ping[..], &[0, 0]].concat()).unwrap_err();
    assert_eq!(
        two.to_string(),
        "2 bytes left over after a `shop.Command` (tag 300)"
    );

    // A varint that does not end within 5 bytes, and one past `u32::MAX`.
    for bad in [&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01][..], &[0xff; 5]] {
        let err = Command::from_bytes(bad).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::Malformed {
                    tag: None,
                    in_tag: true,
                    ..
                }
            ),
            "{bad:?}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            "malformed `shop.Command`: the wire tag is not a valid u32 varint"
        );
    }
    for short in [&[][..], &[0x80]] {
        assert_eq!(
            Command::from_bytes(short).unwrap_err().to_string(),
            "malformed `shop.Command`: the input ends before the wire tag does"
        );
    }

    // A bad varint in a field is not the tag's fault.
    let mut bad_field = vec![4];
    bad_field.extend_from_slice(&[0xff; 11]);
    let err = Command::from_bytes(&bad_field).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::Malformed {
                tag: Some(4),
                in_tag: false,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("malformed `shop.Command` (tag 4): a varint") && !text.contains("usize"),
        "{text}"
    );
    let err = Reading::from_bytes(&[
        0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
    ])
    .unwrap_err();
    assert!(
        matches!(err, WireError::Malformed { in_tag: false, .. }),
        "a struct has no tag: {err:?}"
    );
}

mod v1 {
    use super::*;

    #[derive(Debug, PartialEq, RemoteMessage)]
    #[remote(name = "kv.Command")]
    pub(crate) enum Command {
        #[remote(tag = 1)]
        Put { key: String, value: String },
    }
}

mod v2 {
    use super::*;

    /// `v1::Command` with the fields of `Put` swapped.
    #[derive(Debug, PartialEq, RemoteMessage)]
    #[remote(name = "kv.Command")]
    pub(crate) enum Command {
        #[remote(tag = 1)]
        Put { value: String, key: String },
    }
}

/// The module docs warn about this: fields go by position, not by name.
#[test]
fn swapped_fields_of_one_type_decode_swapped() {
    let bytes = v1::Command::Put {
        key: "user".into(),
        value: "alice".into(),
    }
    .to_bytes()
    .unwrap();
    assert_eq!(
        v2::Command::from_bytes(&bytes).unwrap(),
        v2::Command::Put {
            value: "user".into(),
            key: "alice".into()
        }
    );
}

// Calls: a variant whose last field is a reply port.

mod calls {
    use std::collections::HashMap;
    use std::sync::mpsc;

    use foundation_actors::prelude::*;
    use foundation_actors::remote::{
        RemoteMessage, Replier, WireError, decode_reply, encode_reply,
    };
    use ractor::RpcReplyPort;

    use super::Flaky;

    #[derive(Debug, RemoteMessage)]
    #[remote(name = "kv.Store")]
    pub(crate) enum Store {
        #[remote(tag = 1)]
        Put { key: String, value: u64 },
        #[remote(tag = 2)]
        Get {
            key: String,
            reply: ReplyPort<Option<u64>>,
        },
        #[remote(tag = 3)]
        Len(ReplyPort<usize>),
        /// ractor's name for the same port type.
        #[remote(tag = 4)]
        Swap(String, u64, RpcReplyPort<Result<u64, String>>),
        #[remote(tag = 5)]
        Odd(ReplyPort<Flaky>),
        /// Not on the wire: its field needs no serde.
        #[remote(skip)]
        Local(mpsc::Sender<()>),
    }

    #[derive(Debug, RemoteMessage)]
    pub(crate) struct Ask {
        question: String,
        reply: ReplyPort<String>,
    }

    /// Fields named like the decoder's replier and port locals.
    #[derive(Debug, RemoteMessage)]
    pub(crate) enum Named {
        #[remote(tag = 1)]
        Call {
            reply: String,
            port: u16,
            answer: ReplyPort<String>,
        },
        #[remote(tag = 2)]
        Cast { reply: String, port: u16 },
    }

    #[test]
    fn fields_may_be_named_like_the_replier_and_the_port() {
        let bytes = Named::Call {
            reply: "r".into(),
            port: 8,
            answer: local_port(),
        }
        .to_bytes()
        .unwrap();
        let (replier, replies) = channel_replier();
        match Named::from_bytes_with_reply(&bytes, replier).unwrap() {
            Named::Call {
                reply,
                port,
                answer,
            } => answer.send(format!("{reply}{port}")).unwrap(),
            other => panic!("{other:?}"),
        }
        let reply = replies.try_recv().unwrap().unwrap();
        assert_eq!(decode_reply::<String>("String", &reply).unwrap(), "r8");
        let cast = Named::Cast {
            reply: "c".into(),
            port: 9,
        };
        let back = Named::from_bytes(&cast.to_bytes().unwrap()).unwrap();
        assert!(matches!(back, Named::Cast { reply, port: 9 } if reply == "c"));
    }

    /// A replier whose sink is a channel, as a node router's would be.
    fn channel_replier() -> (Replier, mpsc::Receiver<Option<Vec<u8>>>) {
        let (tx, rx) = mpsc::channel();
        let replier = Replier::new(move |bytes| {
            tx.send(bytes).expect("the test still listens");
        });
        (replier, rx)
    }

    /// A port for building a call on the sending side, where the port stays local.
    fn local_port<T>() -> ReplyPort<T> {
        tokio::sync::oneshot::channel().0.into()
    }

    /// What a handler does with the store's messages.
    fn handle(msg: Store, map: &mut HashMap<String, u64>) {
        match msg {
            Store::Put { key, value } => {
                map.insert(key, value);
            }
            Store::Get { key, reply } => {
                reply.send(map.get(&key).copied()).unwrap();
            }
            Store::Len(reply) => reply.send(map.len()).unwrap(),
            Store::Swap(key, value, reply) => {
                let old = map.insert(key.clone(), value).ok_or(key);
                reply.send(old).unwrap();
            }
            Store::Odd(reply) => reply.send(Flaky(false)).unwrap(),
            Store::Local(done) => {
                let _ = done.send(());
            }
        }
    }

    #[test]
    fn call_tags_and_is_call() {
        assert_eq!(Store::TAGS, &[1, 2, 3, 4, 5]);
        assert_eq!(Store::CALL_TAGS, &[2, 3, 4, 5]);
        assert_eq!(Ask::CALL_TAGS, &[0], "a struct's one shape counts as tag 0");
        assert_eq!(Ask::TAGS, &[] as &[u32]);
        assert_eq!(super::Reading::CALL_TAGS, &[] as &[u32]);
        let put = Store::Put {
            key: "k".into(),
            value: 1,
        };
        assert!(!put.is_call());
        assert!(Store::Len(local_port()).is_call());
        let (tx, _rx) = mpsc::channel();
        let local = Store::Local(tx);
        assert!(!local.is_call());
        assert_eq!(local.tag(), None);
        let ask = Ask {
            question: "?".into(),
            reply: local_port(),
        };
        assert!(ask.is_call());
        assert_eq!(ask.tag(), None);
    }

    #[test]
    fn a_call_round_trips_through_bytes_and_its_reply_comes_back_as_bytes() {
        let mut map = HashMap::from([("cart".to_owned(), 3)]);
        // The caller's side: the port stays behind, only the fields travel.
        let get = Store::Get {
            key: "cart".into(),
            reply: local_port(),
        };
        let bytes = get.to_bytes().unwrap();
        assert_eq!(bytes, [2, 4, b'c', b'a', b'r', b't']);

        // The receiving side: decode with a replier, handle as any local message.
        let (replier, replies) = channel_replier();
        let decoded = Store::from_bytes_with_reply(&bytes, replier).unwrap();
        assert!(matches!(&decoded, Store::Get { key, .. } if key == "cart"));
        assert!(
            replies.try_recv().is_err(),
            "nothing before the handler answers"
        );
        handle(decoded, &mut map);
        let reply = replies.try_recv().unwrap().expect("a reply");
        assert_eq!(
            decode_reply::<Option<u64>>("Option<u64>", &reply).unwrap(),
            Some(3)
        );

        // A tuple variant, a port named `RpcReplyPort`, a reply that is a `Result`.
        let swap = Store::Swap("new".into(), 9, local_port())
            .to_bytes()
            .unwrap();
        let (replier, replies) = channel_replier();
        handle(
            Store::from_bytes_with_reply(&swap, replier).unwrap(),
            &mut map,
        );
        let reply = replies.try_recv().unwrap().unwrap();
        assert_eq!(
            decode_reply::<Result<u64, String>>("Result", &reply).unwrap(),
            Err("new".to_owned())
        );

        // A call with no other field.
        let len = Store::Len(local_port()).to_bytes().unwrap();
        assert_eq!(len, [3]);
        let (replier, replies) = channel_replier();
        handle(
            Store::from_bytes_with_reply(&len, replier).unwrap(),
            &mut map,
        );
        let reply = replies.try_recv().unwrap().unwrap();
        assert_eq!(reply, encode_reply("usize", &2usize).unwrap());
        assert_eq!(decode_reply::<usize>("usize", &reply).unwrap(), 2);
    }

    /// Reply types written through other paths, and pinned ones.
    #[derive(Debug, RemoteMessage)]
    #[allow(dead_code)] // only their reply types are looked at
    #[remote(name = "test.Paths")]
    pub(crate) enum Paths {
        #[remote(tag = 1)]
        Qualified(ReplyPort<std::option::Option<std::string::String>>),
        #[remote(tag = 2)]
        #[allow(clippy::type_complexity)] // a nested type is the point
        Nested(ReplyPort<(u64, [u8; 4], Vec<super::Flaky>, (bool,))>),
        #[remote(tag = 3, reply = "test.Answer")]
        Pinned(String, ReplyPort<u64>),
        #[remote(tag = 4)]
        Cast(u8),
    }

    #[derive(Debug, RemoteMessage)]
    #[remote(reply = "test.Pinned")]
    #[allow(dead_code)] // as `Paths`'
    pub(crate) struct PinnedAsk(ReplyPort<String>);

    #[test]
    fn a_message_type_and_each_calls_reply_type_have_a_wire_identity() {
        use foundation_actors::remote::{WireType, wire_id};

        assert_eq!(Store::WIRE_TYPE, WireType::named("kv.Store"));
        assert_eq!(Store::WIRE_TYPE.id(), wire_id("kv.Store"));
        assert_eq!(Ask::WIRE_TYPE.name(), "Ask", "the Rust name by default");
        assert_eq!(KvMsg::WIRE_TYPE.name(), "test.Kv");

        let named = |name| Some(WireType::named(name));
        let get = Store::Get {
            key: "k".into(),
            reply: local_port(),
        };
        let (tx, _rx) = mpsc::channel();
        let cases: Vec<(Store, Option<WireType>)> = vec![
            (
                Store::Put {
                    key: "k".into(),
                    value: 1,
                },
                None,
            ),
            (get, named("Option<u64>")),
            (Store::Len(local_port()), named("usize")),
            (
                Store::Swap(
                    "k".into(),
                    1,
                    RpcReplyPort::from(tokio::sync::oneshot::channel().0),
                ),
                named("Result<u64, String>"),
            ),
            (Store::Odd(local_port()), named("Flaky")),
            (Store::Local(tx), None),
        ];
        for (msg, want) in cases {
            assert_eq!(msg.reply_type(), want, "{msg:?}");
            if let Ok(bytes) = msg.to_bytes() {
                // The receiving side finds the same from the tag alone.
                assert_eq!(Store::reply_type_of(&bytes), want, "{msg:?}");
            }
        }
        assert_eq!(Store::reply_type_of(&[99]), None, "an unknown tag");
        assert_eq!(Store::reply_type_of(&[]), None, "no tag");
        assert_eq!(Store::reply_type_of(&[0xff]), None, "a broken tag");

        let paths: Vec<(Paths, &str)> = vec![
            (Paths::Qualified(local_port()), "Option<String>"),
            (
                Paths::Nested(local_port()),
                "(u64, [u8; 4], Vec<Flaky>, (bool,))",
            ),
            (Paths::Pinned("x".into(), local_port()), "test.Answer"),
        ];
        for (msg, want) in paths {
            assert_eq!(msg.reply_type(), named(want), "{msg:?}");
            let bytes = msg.to_bytes().unwrap();
            assert_eq!(Paths::reply_type_of(&bytes), named(want), "{msg:?}");
        }
        assert_eq!(Paths::Cast(1).reply_type(), None);
        assert_eq!(
            Paths::reply_type_of(&Paths::Cast(1).to_bytes().unwrap()),
            None
        );

        // A struct has one shape: the bytes need no tag to tell.
        let ask = Ask {
            question: "?".into(),
            reply: local_port(),
        };
        assert_eq!(ask.reply_type(), named("String"));
        assert_eq!(Ask::reply_type_of(b"anything"), named("String"));
        assert_eq!(PinnedAsk(local_port()).reply_type(), named("test.Pinned"));
        assert_eq!(super::Reading::reply_type_of(b""), None);

        // `#[actor(remote)]`: a call's reply type is its return type, or its port's.
        let get = KvMsg::Get("k".into(), local_port());
        assert_eq!(get.reply_type(), named("Option<u64>"));
        assert_eq!(
            KvMsg::reply_type_of(&get.to_bytes().unwrap()),
            named("Option<u64>")
        );
        assert_eq!(
            KvMsg::WaitFor("k".into(), local_port()).reply_type(),
            named("u64")
        );
        assert_eq!(KvMsg::Ticks(local_port()).reply_type(), named("u32"));
        assert_eq!(KvMsg::from(Tick).reply_type(), None);
    }

    #[test]
    fn a_struct_with_a_port_is_a_call() {
        let bytes = Ask {
            question: "why".into(),
            reply: local_port(),
        }
        .to_bytes()
        .unwrap();
        assert_eq!(bytes, [3, b'w', b'h', b'y']);
        let (replier, replies) = channel_replier();
        let Ask { question, reply } = Ask::from_bytes_with_reply(&bytes, replier).unwrap();
        reply.send(question.to_uppercase()).unwrap();
        let reply = replies.try_recv().unwrap().unwrap();
        assert_eq!(decode_reply::<String>("String", &reply).unwrap(), "WHY");

        let err = Ask::from_bytes(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::NeedsReply {
                    type_name: "Ask",
                    tag: None
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_port_dropped_unanswered_gives_no_reply() {
        let bytes = Store::Len(local_port()).to_bytes().unwrap();
        let (replier, replies) = channel_replier();
        let decoded = Store::from_bytes_with_reply(&bytes, replier).unwrap();
        drop(decoded);
        assert_eq!(replies.try_recv().unwrap(), None);
        assert!(replies.try_recv().is_err(), "the sink runs once");

        // A replier dropped without making a port answers `None` too.
        let (replier, replies) = channel_replier();
        assert!(format!("{replier:?}").starts_with("Replier"));
        drop(replier);
        assert_eq!(replies.try_recv().unwrap(), None);
    }

    #[test]
    fn a_call_decoded_as_a_cast_is_an_error() {
        let bytes = Store::Get {
            key: "k".into(),
            reply: local_port(),
        }
        .to_bytes()
        .unwrap();
        let err = Store::from_bytes(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::NeedsReply {
                    type_name: "kv.Store",
                    tag: Some(2)
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "`kv.Store` (tag 2) is a call: it needs a reply port, so decode it with `from_bytes_with_reply` (a call arrived as a cast)"
        );
    }

    #[test]
    fn a_cast_or_bad_bytes_with_a_replier_drop_it_at_once() {
        let bytes = Store::Put {
            key: "k".into(),
            value: 1,
        }
        .to_bytes()
        .unwrap();
        let (replier, replies) = channel_replier();
        let decoded = Store::from_bytes_with_reply(&bytes, replier).unwrap();
        assert_eq!(replies.try_recv().unwrap(), None, "no reply will come");
        assert!(matches!(decoded, Store::Put { value: 1, .. }));

        for bad in [&[2, 9][..], &[2, 1, b'k', 0], &[99], &[]] {
            let (replier, replies) = channel_replier();
            assert!(Store::from_bytes_with_reply(bad, replier).is_err());
            assert_eq!(replies.try_recv().unwrap(), None, "{bad:?}");
        }
    }

    #[test]
    fn a_reply_that_cannot_be_encoded_gives_no_reply() {
        let bytes = Store::Odd(local_port()).to_bytes().unwrap();
        let (replier, replies) = channel_replier();
        handle(
            Store::from_bytes_with_reply(&bytes, replier).unwrap(),
            &mut HashMap::new(),
        );
        assert_eq!(replies.try_recv().unwrap(), None);
        let err = encode_reply("Flaky", &Flaky(false)).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::Encode {
                    type_name: "Flaky",
                    tag: None,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_local_only_variant_is_not_encoded() {
        let (tx, _rx) = mpsc::channel();
        let mut out = vec![7];
        let err = Store::Local(tx).encode(&mut out).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::LocalOnly {
                    type_name: "kv.Store",
                    variant: "Local"
                }
            ),
            "{err:?}"
        );
        assert_eq!(out, [7]);
        assert_eq!(
            err.to_string(),
            "`kv.Store::Local` is local only: it has no wire tag and cannot be sent to a peer"
        );
    }

    #[test]
    fn reply_errors_name_the_type() {
        let err = decode_reply::<u64>("kv.Len", &[]).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::Malformed {
                    type_name: "kv.Len",
                    tag: None,
                    in_tag: false,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = decode_reply::<u8>("kv.Len", &[1, 2]).unwrap_err();
        assert_eq!(err.to_string(), "1 byte left over after a `kv.Len`");
    }

    #[test]
    fn ports_answered_or_dropped_on_other_threads_reply_once_each() {
        let (tx, rx) = mpsc::channel();
        let threads: Vec<_> = (0..64u64)
            .map(|i| {
                let tx = tx.clone();
                let port = Replier::new(move |bytes| tx.send((i, bytes)).unwrap()).port::<u64>();
                std::thread::spawn(move || {
                    if i % 3 == 0 {
                        drop(port);
                    } else {
                        port.send(i * 10).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        for t in threads {
            t.join().unwrap();
        }
        let mut seen: Vec<(u64, Option<Vec<u8>>)> = rx.iter().collect();
        seen.sort_by_key(|(i, _)| *i);
        assert_eq!(seen.len(), 64, "one outcome per port");
        for (i, bytes) in seen {
            match bytes {
                None => assert_eq!(i % 3, 0),
                Some(b) => assert_eq!(decode_reply::<u64>("u64", &b).unwrap(), i * 10),
            }
        }
    }

    /// A task that has spent tokio's cooperative budget still gets its port registered:
    /// the reply reaches the sink as it is sent, not when the task next yields.
    #[tokio::test(flavor = "current_thread")]
    async fn a_port_made_by_a_task_out_of_budget_replies_at_once() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..128 {
            tx.send(i).unwrap();
        }
        for _ in 0..128 {
            rx.recv().await.unwrap();
        }
        assert!(!tokio::task::coop::has_budget_remaining());
        let (replier, replies) = channel_replier();
        let port = replier.port::<u8>();
        port.send(5).unwrap();
        assert_eq!(replies.try_recv().unwrap(), Some(vec![5]));
    }

    // `#[actor(remote)]`: the whole path of a remote call.

    #[derive(Debug)]
    pub(crate) struct Tick;

    #[derive(Default)]
    pub(crate) struct Kv {
        map: HashMap<String, u64>,
        waiting: Vec<(String, ReplyPort<u64>)>,
        ticks: u32,
    }

    #[actor(remote = "test.Kv", vis = pub(crate))]
    impl Kv {
        #[cast(tag = 1)]
        fn put(&mut self, key: String, value: u64) {
            let (ready, waiting) = std::mem::take(&mut self.waiting)
                .into_iter()
                .partition::<Vec<_>, _>(|(k, _)| *k == key);
            self.waiting = waiting;
            for (_, reply) in ready {
                let _ = reply.send(value);
            }
            self.map.insert(key, value);
        }

        #[call(tag = 2)]
        fn get(&self, key: String) -> Option<u64> {
            self.map.get(&key).copied()
        }

        /// Answers once `key` is put.
        #[call(tag = 3)]
        fn wait_for(&mut self, key: String, reply: ReplyPort<u64>) {
            match self.map.get(&key) {
                Some(v) => {
                    let _ = reply.send(*v);
                }
                None => self.waiting.push((key, reply)),
            }
        }

        #[call(tag = 4)]
        fn ticks(&self) -> u32 {
            self.ticks
        }

        #[info]
        fn tick(&mut self, _: Tick) {
            self.ticks += 1;
        }
    }

    /// A replier whose sink a task can await, as a router's would be.
    fn async_replier() -> (Replier, tokio::sync::oneshot::Receiver<Option<Vec<u8>>>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let replier = Replier::new(move |bytes| {
            let _ = tx.send(bytes);
        });
        (replier, rx)
    }

    #[test]
    fn a_remote_actors_messages_have_tags_and_its_info_messages_stay_local() {
        assert_eq!(KvMsg::TYPE_NAME, "test.Kv");
        assert_eq!(KvMsg::TAGS, &[1, 2, 3, 4]);
        assert_eq!(KvMsg::CALL_TAGS, &[2, 3, 4]);
        let err = KvMsg::from(Tick).to_bytes().unwrap_err();
        assert!(
            matches!(
                err,
                WireError::LocalOnly {
                    type_name: "test.Kv",
                    variant: "Tick"
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_remote_call_to_an_actor_end_to_end() {
        let kv = Kv::spawn(Kv::default()).await.unwrap();

        // A cast from a peer.
        let put = KvMsg::Put("a".into(), 7).to_bytes().unwrap();
        kv.addr().cast(KvMsg::from_bytes(&put).unwrap()).unwrap();

        // A call from a peer: the caller's node encodes it (its port stays there)…
        let get = KvMsg::Get("a".into(), local_port()).to_bytes().unwrap();
        // …this node decodes it with a replier and casts it to the process…
        let (replier, reply) = async_replier();
        let msg = KvMsg::from_bytes_with_reply(&get, replier).unwrap();
        kv.addr().cast(msg).unwrap();
        // …and the reply bytes go back, for the caller's node to decode.
        let bytes = reply.await.unwrap().expect("a reply");
        assert_eq!(
            decode_reply::<Option<u64>>("Option<u64>", &bytes).unwrap(),
            Some(7)
        );

        // A call answered later, through the handler's own port.
        let wait = KvMsg::WaitFor("b".into(), local_port()).to_bytes().unwrap();
        let (replier, reply) = async_replier();
        kv.addr()
            .cast(KvMsg::from_bytes_with_reply(&wait, replier).unwrap())
            .unwrap();
        kv.put("b".into(), 11).await.unwrap();
        let bytes = reply.await.unwrap().expect("a reply");
        assert_eq!(decode_reply::<u64>("u64", &bytes).unwrap(), 11);

        // Info messages still work locally.
        kv.addr().cast(Tick.into()).unwrap();
        assert_eq!(kv.ticks().await.unwrap(), 1);

        // A remote caller parked in the process's state when it stops: the port goes
        // with the process, and the peer hears that no reply comes.
        let never = KvMsg::WaitFor("never".into(), local_port())
            .to_bytes()
            .unwrap();
        let (replier, parked) = async_replier();
        kv.addr()
            .cast(KvMsg::from_bytes_with_reply(&never, replier).unwrap())
            .unwrap();
        assert_eq!(kv.get("never".into()).await.unwrap(), None, "parked by now");
        kv.stop();
        assert_eq!(parked.await.unwrap(), None);

        // A call sent after the process stopped: refused (or queued and dropped with the
        // mailbox); either way the message and its port are dropped, and so no reply.
        let (replier, reply) = async_replier();
        let msg = KvMsg::from_bytes_with_reply(&get, replier).unwrap();
        let _ = kv.addr().cast(msg);
        assert_eq!(reply.await.unwrap(), None);

        // A call decoded as a cast is refused before it reaches the process.
        assert!(matches!(
            KvMsg::from_bytes(&get),
            Err(WireError::NeedsReply {
                type_name: "test.Kv",
                tag: Some(2)
            })
        ));
    }
}
