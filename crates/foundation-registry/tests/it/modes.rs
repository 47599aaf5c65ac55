//! Unique and duplicate keys, values, and the lookups.

use foundation_registry::{Lookup, Mode, RegisterError, Registry, UpdateError};

use crate::support::{Msg, unstarted};

#[test]
fn a_unique_key_names_one_process() {
    let names: Registry<String, Msg> = Registry::unique();
    assert_eq!(names.mode(), Mode::Unique);
    let (a, b) = (unstarted("a"), unstarted("b"));

    names.register("svc".into(), &a, ()).unwrap();
    // Visible as soon as register returns.
    assert!(names.whereis("svc").unwrap().same_process(&a));

    match names.register("svc".into(), &b, ()) {
        Err(RegisterError::AlreadyRegistered { key, holder }) => {
            assert_eq!(key, "svc");
            assert!(holder.same_process(&a));
        }
        other => panic!("expected AlreadyRegistered, got {other:?}"),
    }
    // Not even twice by the holder itself.
    assert!(matches!(
        names.register("svc".into(), &a, ()),
        Err(RegisterError::AlreadyRegistered { .. })
    ));
    assert_eq!(names.count(), 1);
    assert_eq!(names.count_key("svc"), 1);

    // One process may hold many keys.
    names.register("svc2".into(), &a, ()).unwrap();
    let mut keys = names.keys(&a);
    keys.sort();
    assert_eq!(keys, ["svc", "svc2"]);
    assert!(names.keys(&b).is_empty());
}

#[test]
fn a_duplicate_key_names_a_group_in_registration_order() {
    let groups: Registry<&'static str, Msg, u32> = Registry::duplicate();
    let (a, b, c) = (unstarted("a"), unstarted("b"), unstarted("c"));
    groups.register("room", &a, 1).unwrap();
    groups.register("room", &b, 2).unwrap();
    groups.register("room", &c, 3).unwrap();
    // The same process twice: two entries, as in Elixir.
    groups.register("room", &a, 4).unwrap();

    let members = groups.lookup("room");
    let values: Vec<u32> = members.iter().map(|(_, v)| *v).collect();
    assert_eq!(values, [1, 2, 3, 4]);
    assert!(members[0].0.same_process(&a) && members[3].0.same_process(&a));
    assert_eq!(groups.count_key("room"), 4);
    assert_eq!(groups.count(), 4);
    assert_eq!(groups.keys(&a), ["room", "room"]);
    // whereis: the earliest entry.
    assert!(groups.whereis("room").unwrap().same_process(&a));

    // Unregistering a process removes all its entries under the key, and no other's.
    assert_eq!(groups.unregister("room", &a), 2);
    let values: Vec<u32> = groups.lookup("room").iter().map(|(_, v)| *v).collect();
    assert_eq!(values, [2, 3]);
    assert!(groups.whereis("room").unwrap().same_process(&b));
    assert!(groups.keys(&a).is_empty());
    assert_eq!(groups.count(), 2);
}

#[test]
fn values_are_metadata_that_lookups_filter_and_update() {
    #[derive(Clone, Debug, PartialEq)]
    struct Meta {
        region: &'static str,
        load: u32,
    }
    let workers: Registry<&'static str, Msg, Meta> = Registry::duplicate();
    let (a, b, c) = (unstarted("a"), unstarted("b"), unstarted("c"));
    let meta = |region, load| Meta { region, load };
    workers.register("resize", &a, meta("eu", 1)).unwrap();
    workers.register("resize", &b, meta("us", 5)).unwrap();
    workers.register("resize", &c, meta("eu", 9)).unwrap();
    workers.register("thumb", &c, meta("eu", 0)).unwrap();

    let eu = workers.lookup_match("resize", |m| m.region == "eu");
    assert_eq!(eu.len(), 2);
    assert!(eu[0].0.same_process(&a) && eu[1].0.same_process(&c));
    assert_eq!(workers.count_match("resize", |m| m.load > 3), 2);
    assert_eq!(workers.values("resize", &b), [meta("us", 5)]);

    let busy = workers.select(|_, _, m| m.load >= 5);
    let mut busy: Vec<(&str, u32)> = busy.iter().map(|(k, _, m)| (*k, m.load)).collect();
    busy.sort();
    assert_eq!(busy, [("resize", 5), ("resize", 9)]);

    // Unregister only c's "eu" entries under "resize" with a high load.
    assert_eq!(workers.unregister_match("resize", &c, |m| m.load > 5), 1);
    assert_eq!(workers.count_key("resize"), 2);
    assert_eq!(workers.keys(&c), ["thumb"]);
    // update_value is for unique registries, as in Elixir.
    assert_eq!(
        workers.update_value("thumb", &c, |m| m.clone()),
        Err(UpdateError::NotUnique)
    );
}

#[test]
fn update_value_replaces_one_processes_value() {
    let names: Registry<String, Msg, u32> = Registry::unique();
    let (a, b) = (unstarted("a"), unstarted("b"));
    names.register("counter".into(), &a, 1).unwrap();
    assert_eq!(names.update_value("counter", &a, |n| n + 10), Ok((11, 1)));
    assert_eq!(names.lookup("counter")[0].1, 11);
    assert_eq!(
        names.update_value("counter", &b, |n| n + 1),
        Err(UpdateError::NotRegistered {
            key: "\"counter\"".into()
        })
    );
    assert!(matches!(
        names.update_value("nobody", &a, |n| *n),
        Err(UpdateError::NotRegistered { .. })
    ));
}

#[test]
fn unregister_leaves_nothing_behind() {
    let names: Registry<String, Msg> = Registry::unique();
    let a = unstarted("a");
    for round in 0..1_000 {
        names.register(format!("k{}", round % 7), &a, ()).unwrap();
        assert_eq!(names.unregister(format!("k{}", round % 7).as_str(), &a), 1);
    }
    assert!(names.is_empty());
    assert!(names.keys(&a).is_empty());
    assert!(names.lookup("k0").is_empty());
    // Unregistering what is not there is no error.
    assert_eq!(names.unregister("k0", &a), 0);
    // The key is free again for anyone.
    names.register("k0".into(), &unstarted("b"), ()).unwrap();
}

#[test]
fn registries_are_independent() {
    let one: Registry<String, Msg> = Registry::unique();
    let two: Registry<String, Msg> = Registry::unique();
    let (a, b) = (unstarted("a"), unstarted("b"));
    one.register("x".into(), &a, ()).unwrap();
    two.register("x".into(), &b, ()).unwrap();
    assert!(one.whereis("x").unwrap().same_process(&a));
    assert!(two.whereis("x").unwrap().same_process(&b));
    // A clone is the same registry.
    let also_one = one.clone();
    also_one.unregister("x", &a);
    assert!(one.whereis("x").is_none());
}

#[test]
fn dispatch_hands_a_group_to_a_function() {
    let groups: Registry<String, Msg, u32> = Registry::duplicate();
    assert_eq!(
        groups.dispatch("empty", |_| panic!("called for no entries")),
        0
    );
    let (a, b) = (unstarted("a"), unstarted("b"));
    groups.register("g".into(), &a, 1).unwrap();
    groups.register("g".into(), &b, 2).unwrap();
    let mut seen = Vec::new();
    let n = groups.dispatch("g", |entries| {
        // Nothing is locked: the function may use the registry.
        groups.register("g2".into(), &entries[0].0, 0).unwrap();
        seen.extend(entries.iter().map(|(_, v)| *v));
    });
    assert_eq!(n, 2);
    assert_eq!(seen, [1, 2]);
    assert_eq!(groups.count_key("g2"), 1);
}

/// The lookups through the trait the cluster-wide registry will share.
fn contract<L: Lookup<String, Value = u32>>(names: &L) {
    assert_eq!(names.count_key("x"), 1);
    assert!(names.whereis("x").is_some());
    assert_eq!(names.lookup("x").len(), 1);
    assert_eq!(names.lookup("x")[0].1, 7);
    assert!(names.whereis("nobody").is_none());
    assert!(names.lookup("nobody").is_empty());
}

#[test]
fn the_lookup_trait_answers_as_the_registry() {
    for mode in [Mode::Unique, Mode::Duplicate] {
        let names: Registry<String, Msg, u32> = Registry::new(mode);
        names.register("x".into(), &unstarted("a"), 7).unwrap();
        contract(&names);
    }
}

#[test]
fn handles_are_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Registry<String, Msg, u32>>();
    check::<Registry<(u8, u64), Msg>>();
}
