use foundation_actors::prelude::*;

#[derive(Clone, Default)]
struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[cast]
    fn add(&mut self, n: u64) {
        self.total += n;
    }

    #[call]
    fn total(&self) -> u64 {
        self.total
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let c: CounterRef = Counter::spawn(Counter::default()).await.unwrap();
    c.add(2).await.unwrap();
    assert_eq!(c.total().await.unwrap(), 2);
    let _: CounterMsg = CounterMsg::Add(1);
    c.stop();
}
