use foundation_actors::prelude::*;
use tokio::sync::oneshot;

// Neither `Clone` nor `Sync`: a process that is never supervised needs neither.
struct Conn {
    total: std::cell::Cell<u64>,
    on_close: Option<oneshot::Sender<u64>>,
}

#[actor]
impl Conn {
    #[cast]
    fn add(&mut self, n: u64) {
        self.total.set(self.total.get() + n);
    }

    #[call]
    fn total(&self) -> u64 {
        self.total.get()
    }

    #[terminate]
    fn close(&mut self) {
        if let Some(tx) = self.on_close.take() {
            let _ = tx.send(self.total.get());
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (tx, rx) = oneshot::channel();
    let c = Conn::spawn(Conn { total: std::cell::Cell::new(0), on_close: Some(tx) })
        .await
        .unwrap();
    c.add(2).await.unwrap();
    assert_eq!(c.total().await.unwrap(), 2);
    // `stop` overtakes queued messages: the call above made sure the cast was handled.
    c.stop();
    assert_eq!(rx.await.unwrap(), 2);
}
