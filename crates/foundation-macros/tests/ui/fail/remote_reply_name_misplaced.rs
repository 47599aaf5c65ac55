use foundation_actors::prelude::*;

#[derive(RemoteMessage)]
#[remote(reply = "kv.Answer")]
enum OnTheEnum {
    #[remote(tag = 1)]
    Get(ReplyPort<u64>),
}

#[derive(RemoteMessage)]
enum OnACast {
    #[remote(tag = 1, reply = "kv.Answer")]
    Put(String),
}

#[derive(RemoteMessage)]
enum OnALocalVariant {
    #[remote(skip, reply = "kv.Answer")]
    Tick(ReplyPort<u64>),
}

#[derive(RemoteMessage)]
#[remote(reply = "kv.Answer")]
struct NotACall(String);

fn main() {}
