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
