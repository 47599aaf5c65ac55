use foundation_actors::prelude::*;

#[derive(RemoteMessage)]
enum Msg {
    #[remote(tag = 1)]
    Both(String, ReplyPort<u64>, foundation_actors::ReplyPort<u64>),
}

fn main() {}
