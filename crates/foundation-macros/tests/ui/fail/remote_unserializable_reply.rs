use foundation_actors::prelude::*;

struct NotSerde;

#[derive(RemoteMessage)]
enum Msg {
    #[remote(tag = 1)]
    Get(String, ReplyPort<NotSerde>),
}

fn main() {}
