use std::time::Duration;

use foundation_actors::prelude::*;

#[derive(Clone, Default)]
pub struct Store {
    value: String,
}

#[actor(vis = pub, handle = StoreHandle, message = StoreRequest)]
impl Store {
    #[cast]
    fn set(&mut self, value: String) {
        self.value = value;
    }

    #[call]
    fn get(&self) -> String {
        self.value.clone()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let s: StoreHandle = Store::spawn(Store::default()).await.unwrap();
    s.set("v".to_owned()).await.unwrap();
    let s = s.with_timeout(Duration::from_secs(5));
    assert_eq!(s.get().await.unwrap(), "v");
    let _: &Addr<StoreRequest> = s.addr();
    s.stop();
}
