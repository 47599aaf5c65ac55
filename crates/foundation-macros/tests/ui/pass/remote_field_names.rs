//! Fields named like the generated codec's own locals: `#[derive(RemoteMessage)]` keeps
//! its locals in its own hygiene context, so these neither shadow nor are shadowed.

use foundation_actors::prelude::*;

#[derive(Debug, PartialEq, RemoteMessage)]
enum Pipe {
    #[remote(tag = 1)]
    Connect {
        out: String,
        this: u8,
        bytes: Vec<u8>,
        rest: Option<String>,
        tag: u32,
        other: i64,
        f0: u8,
    },
    #[remote(tag = 2)]
    Pair(String, u8),
}

#[derive(Debug, PartialEq, RemoteMessage)]
struct Route {
    this: u8,
    out: u16,
    bytes: String,
}

#[derive(Debug, PartialEq, RemoteMessage)]
struct Tuple(u8, String);

fn main() {
    let p = Pipe::Connect {
        out: "o".to_owned(),
        this: 1,
        bytes: vec![2],
        rest: None,
        tag: 3,
        other: -4,
        f0: 5,
    };
    assert_eq!(Pipe::from_bytes(&p.to_bytes().unwrap()).unwrap(), p);
    let p = Pipe::Pair("a".to_owned(), 6);
    assert_eq!(Pipe::from_bytes(&p.to_bytes().unwrap()).unwrap(), p);
    let r = Route {
        this: 1,
        out: 2,
        bytes: "b".to_owned(),
    };
    assert_eq!(Route::from_bytes(&r.to_bytes().unwrap()).unwrap(), r);
    let t = Tuple(7, "t".to_owned());
    assert_eq!(Tuple::from_bytes(&t.to_bytes().unwrap()).unwrap(), t);
}
