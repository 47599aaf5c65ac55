use foundation_actors::prelude::*;

#[derive(RemoteMessage)]
enum Msg {
    #[remote(tag = 1)]
    Get(ReplyPort<u64>, String),
    #[remote(tag = 2)]
    Named { reply: ReplyPort<u64>, key: String },
}

#[derive(RemoteMessage)]
struct Ask {
    reply: ReplyPort<String>,
    question: String,
}

fn main() {}
