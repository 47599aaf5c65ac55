use foundation_actors::prelude::*;

#[derive(RemoteMessage)]
enum Msg {
    #[remote(tag = 1)]
    Get(String),
    Put(String, u64),
}

fn wire_name<M: RemoteMessage>() -> &'static str {
    M::TYPE_NAME
}

fn main() {
    // `Msg` still implements the trait: no second error here.
    let _ = wire_name::<Msg>();
}
