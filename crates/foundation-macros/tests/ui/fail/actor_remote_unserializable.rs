use foundation_actors::prelude::*;

#[derive(Clone, Default)]
struct Store;

struct Blob;

#[actor(remote)]
impl Store {
    #[cast(tag = 1)]
    fn put(&mut self, key: String, blob: Blob) {
        let _ = (key, blob);
    }

    #[call(tag = 2)]
    fn get(&self, key: String) -> Blob {
        let _ = key;
        Blob
    }
}

fn main() {}
