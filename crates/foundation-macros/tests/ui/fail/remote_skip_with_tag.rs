use foundation_actors::prelude::*;

#[derive(RemoteMessage)]
enum Msg {
    #[remote(tag = 1, skip)]
    Tick,
    #[remote(tag = 2)]
    Get(String),
}

fn main() {}
