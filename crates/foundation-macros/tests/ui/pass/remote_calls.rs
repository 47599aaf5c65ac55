use foundation_actors::prelude::*;
use foundation_actors::remote::{Replier, decode_reply};
// ractor's name for the same type.
use foundation_actors::ReplyPort as RpcReplyPort;

/// Not serializable.
#[derive(Debug)]
struct Opaque;

#[derive(Debug, RemoteMessage)]
#[remote(name = "kv.Store")]
enum Store {
    #[remote(tag = 1)]
    Put { key: String, value: u64 },
    #[remote(tag = 2)]
    Get {
        key: String,
        reply: ReplyPort<Option<u64>>,
    },
    #[remote(tag = 3)]
    Len(foundation_actors::ReplyPort<usize>),
    #[remote(tag = 4)]
    Swap(String, u64, RpcReplyPort<u64>),
    #[remote(skip)]
    Local(Opaque),
}

// A struct call.
#[derive(Debug, RemoteMessage)]
struct Ask {
    question: String,
    reply: ReplyPort<String>,
}

fn main() {
    assert_eq!(Store::CALL_TAGS, &[2, 3, 4]);
    assert_eq!(Ask::CALL_TAGS, &[0]);
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let bytes = Store::Len(tx.into()).to_bytes().unwrap();
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    let replier = Replier::new(move |bytes| out_tx.send(bytes).unwrap());
    match Store::from_bytes_with_reply(&bytes, replier).unwrap() {
        Store::Len(reply) => reply.send(4).unwrap(),
        other => panic!("{other:?}"),
    }
    let reply = out_rx.recv().unwrap().unwrap();
    assert_eq!(decode_reply::<usize>("usize", &reply).unwrap(), 4);
}
