use foundation_actors::prelude::*;

struct NotSerde;

#[derive(RemoteMessage)]
enum Msg {
    #[remote(tag = 1)]
    A(NotSerde),
    #[remote(tag = 2)]
    B(String, u64),
}

fn main() {}
