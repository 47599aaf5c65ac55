use foundation_actors::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    sku: String,
    qty: u32,
}

#[derive(Debug, PartialEq, RemoteMessage)]
#[remote(name = "shop.Command")]
enum Command {
    #[remote(tag = 1)]
    Put { key: String, items: Vec<Item> },
    #[remote(tag = 2)]
    Get(String),
    #[remote(tag = 300)]
    Ping,
}

#[derive(Debug, PartialEq, RemoteMessage)]
struct Reading {
    sensor: String,
    value: f64,
}

#[derive(Debug, PartialEq, RemoteMessage)]
struct Heartbeat;

#[derive(Debug, RemoteMessage)]
enum Never {}

fn main() {
    assert_eq!(Command::TYPE_NAME, "shop.Command");
    assert_eq!(Command::TAGS, &[1, 2, 300]);
    let put = Command::Put {
        key: "cart".to_owned(),
        items: vec![Item {
            sku: "a-1".to_owned(),
            qty: 2,
        }],
    };
    let mut bytes = Vec::new();
    put.encode(&mut bytes).unwrap();
    assert_eq!(Command::from_bytes(&bytes).unwrap(), put);

    let r = Reading {
        sensor: "t".to_owned(),
        value: 1.5,
    };
    let mut bytes = Vec::new();
    r.encode(&mut bytes).unwrap();
    assert_eq!(Reading::from_bytes(&bytes).unwrap(), r);
    assert_eq!(Reading::TYPE_NAME, "Reading");

    let mut bytes = Vec::new();
    Heartbeat.encode(&mut bytes).unwrap();
    assert!(bytes.is_empty());
    assert_eq!(Heartbeat::from_bytes(&bytes).unwrap(), Heartbeat);
    assert!(Never::from_bytes(&[0]).is_err());
}
