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
