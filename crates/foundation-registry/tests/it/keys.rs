//! Keys of other types than strings.

use foundation_registry::Registry;
use serde::Serialize;

use crate::support::{Msg, unstarted};

/// A key as the cluster-wide registry will want them: `Serialize` as well.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
enum Service {
    Shard { table: String, n: u16 },
    Leader,
}

#[test]
fn an_enum_key() {
    let names: Registry<Service, Msg> = Registry::unique();
    let (a, b) = (unstarted("a"), unstarted("b"));
    let shard = |n| Service::Shard {
        table: "users".into(),
        n,
    };
    names.register(shard(1), &a, ()).unwrap();
    names.register(shard(2), &b, ()).unwrap();
    names.register(Service::Leader, &a, ()).unwrap();
    assert!(names.whereis(&shard(2)).unwrap().same_process(&b));
    assert!(names.whereis(&shard(3)).is_none());
    let e = names.register(shard(1), &b, ()).unwrap_err();
    // The key is shown by its Debug form, and handed back.
    assert!(
        e.to_string().contains(r#"Shard { table: "users", n: 1 }"#),
        "{e}"
    );
    assert_eq!(e.into_key(), shard(1));
    assert_eq!(names.keys(&a).len(), 2);
}

#[test]
fn integer_and_tuple_keys() {
    let by_id: Registry<u64, Msg, &'static str> = Registry::duplicate();
    let a = unstarted("a");
    by_id.register(42, &a, "x").unwrap();
    assert_eq!(by_id.lookup(&42)[0].1, "x");

    let by_pair: Registry<(String, u8), Msg> = Registry::unique();
    by_pair.register(("eu".into(), 1), &a, ()).unwrap();
    assert!(by_pair.whereis(&("eu".to_string(), 1)).is_some());
    assert!(by_pair.whereis(&("eu".to_string(), 2)).is_none());
}

#[test]
fn string_keys_are_looked_up_by_str() {
    let names: Registry<String, Msg> = Registry::unique();
    let a = unstarted("a");
    names.register("héllo wörld ✓".into(), &a, ()).unwrap();
    names.register(String::new(), &a, ()).unwrap();
    assert!(names.whereis("héllo wörld ✓").is_some());
    // The empty string is a key like any other.
    assert!(names.whereis("").is_some());
    assert_eq!(names.count_key("héllo"), 0);
}
