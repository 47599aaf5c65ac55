use foundation_actors::prelude::*;
use foundation_actors::remote::{Replier, decode_reply};

#[derive(Clone, Default)]
pub struct Counter {
    total: u64,
}

/// Local only: no serde.
pub struct Tick(u8);

#[actor(remote = "demo.Counter")]
impl Counter {
    #[cast(tag = 1)]
    fn add(&mut self, n: u64) {
        self.total += n;
    }

    #[call(tag = 2)]
    fn total(&self) -> u64 {
        self.total
    }

    #[call(tag = 3)]
    fn total_later(&self, reply: ReplyPort<u64>) {
        let _ = reply.send(self.total);
    }

    /// Configured out before the derive sees it: its parameter needs no serde.
    #[cfg(any())]
    #[cast(tag = 9)]
    fn never(&mut self, t: Tick) {
        let _ = t;
    }

    #[info]
    fn tick(&mut self, t: Tick) {
        self.total += u64::from(t.0);
    }
}

#[derive(Clone, Default)]
struct Plain;

// `remote` without a name: the enum's name is the wire name.
#[actor(remote, vis = pub(crate))]
impl Plain {
    #[cast(tag = 7)]
    fn poke(&mut self) {}
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(CounterMsg::TYPE_NAME, "demo.Counter");
    assert_eq!(CounterMsg::TAGS, &[1, 2, 3]);
    assert_eq!(CounterMsg::CALL_TAGS, &[2, 3]);
    assert_eq!(PlainMsg::TYPE_NAME, "PlainMsg");
    assert!(CounterMsg::from(Tick(1)).to_bytes().is_err());

    let c = Counter::spawn(Counter::default()).await.unwrap();
    c.add(2).await.unwrap();
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let bytes = CounterMsg::TotalLater(tx.into()).to_bytes().unwrap();
    let (out_tx, out_rx) = tokio::sync::oneshot::channel();
    let replier = Replier::new(move |bytes| {
        let _ = out_tx.send(bytes);
    });
    c.addr()
        .cast(CounterMsg::from_bytes_with_reply(&bytes, replier).unwrap())
        .unwrap();
    let reply = out_rx.await.unwrap().unwrap();
    assert_eq!(decode_reply::<u64>("u64", &reply).unwrap(), 2);
    c.stop();
}
