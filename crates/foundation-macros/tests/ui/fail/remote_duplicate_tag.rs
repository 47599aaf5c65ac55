use foundation_actors::prelude::*;

#[derive(RemoteMessage)]
enum Msg {
    #[remote(tag = 1)]
    Get(String),
    #[remote(tag = 1)]
    Put(String, u64),
}

fn main() {}
