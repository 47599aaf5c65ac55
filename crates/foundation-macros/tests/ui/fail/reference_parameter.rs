use std::collections::HashMap;

use foundation_actors::prelude::*;

#[derive(Clone)]
struct Cache {
    entries: HashMap<String, u64>,
}

#[actor]
impl Cache {
    #[call]
    fn get(&self, key: &str) -> Option<u64> {
        self.entries.get(key).copied()
    }
}

fn main() {
    let _ = Cache::spawn(Cache {
        entries: HashMap::new(),
    });
}
