//! Routing over a group of instances, local and remote, live and stopped.

use std::collections::HashMap;

use foundation_actors::{Actor, ActorError, spawn};

use super::*;

#[derive(Debug)]
struct Nothing;

impl RemoteMessage for Nothing {
    const TYPE_NAME: &'static str = "test.Nothing";
    const TAGS: &'static [u32] = &[];
    fn tag(&self) -> Option<u32> {
        None
    }
    fn encode(&self, _: &mut Vec<u8>) -> Result<(), foundation_actors::WireError> {
        Ok(())
    }
    fn from_bytes(_: &[u8]) -> Result<Self, foundation_actors::WireError> {
        Ok(Self)
    }
}

struct Idle;

impl Actor for Idle {
    type Msg = Nothing;
    type State = ();
    type Args = ();
    async fn init(&self, _: &Addr<Nothing>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(&self, _: &Addr<Nothing>, _: Nothing, (): &mut ()) -> Result<(), ActorError> {
        Ok(())
    }
}

fn instance(
    node: &str,
    n: u64,
    local: Option<Addr<Nothing>>,
    load: u64,
    caps: &[&str],
) -> Instance<Nothing, ()> {
    Instance {
        id: Arc::new(InstanceId {
            service: "svc".into(),
            node: node.into(),
            n,
        }),
        found: Arc::new(Found {
            location: Location {
                node: Arc::from(node),
                export: Arc::from("$registry/test/1"),
                local,
            },
            id: n,
            value: Record {
                capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
                metadata: (),
                load,
            },
        }),
    }
}

fn group(members: Vec<Instance<Nothing, ()>>) -> Group<Nothing, ()> {
    Group {
        members,
        next: AtomicUsize::new(0),
    }
}

fn label(i: &Instance<Nothing, ()>) -> String {
    format!("{}#{}", i.node(), i.id().n)
}

fn remote(n: usize) -> Vec<Instance<Nothing, ()>> {
    (0..n)
        .map(|k| instance(&format!("n{k}"), k as u64, None, 0, &[]))
        .collect()
}

#[test]
fn round_robin_takes_each_in_turn() {
    let g = group(remote(3));
    let picks: Vec<String> = (0..6)
        .map(|_| label(&g.pick(Route::RoundRobin, |_| true).unwrap()))
        .collect();
    assert_eq!(picks, ["n0#0", "n1#1", "n2#2", "n0#0", "n1#1", "n2#2"]);
}

#[test]
fn random_reaches_every_instance() {
    let g = group(remote(4));
    let mut seen = HashMap::new();
    for _ in 0..400 {
        *seen
            .entry(label(&g.pick(Route::Random, |_| true).unwrap()))
            .or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
}

#[test]
fn least_loaded_takes_the_lowest_load_and_shares_ties() {
    let g = group(vec![
        instance("a", 0, None, 5, &[]),
        instance("b", 1, None, 1, &[]),
        instance("c", 2, None, 1, &[]),
        instance("d", 3, None, 9, &[]),
    ]);
    let mut seen = HashMap::new();
    for _ in 0..10 {
        *seen
            .entry(label(&g.pick(Route::LeastLoaded, |_| true).unwrap()))
            .or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "only the two least loaded: {seen:?}");
    assert_eq!(seen["b#1"], 5);
    assert_eq!(seen["c#2"], 5);
}

#[test]
fn consistent_hash_is_stable_and_moves_only_the_keys_of_a_removed_instance() {
    let all = remote(5);
    let g = group(all.clone());
    let keys: Vec<String> = (0..2000).map(|k| format!("user-{k}")).collect();
    let before: Vec<String> = keys
        .iter()
        .map(|k| label(&g.pick(Route::hash(k.as_str()), |_| true).unwrap()))
        .collect();
    // The same key, the same instance, every time (and on every node: the hash is fixed).
    for (k, b) in keys.iter().zip(&before) {
        assert_eq!(
            label(&g.pick(Route::hash(k.as_str()), |_| true).unwrap()),
            *b
        );
    }
    // Spread over all five.
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for b in &before {
        *counts.entry(b.as_str()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 5);
    assert!(counts.values().all(|c| *c > 200), "{counts:?}");
    // n2 goes: only its keys move.
    let fewer = group(all.into_iter().filter(|i| i.node() != "n2").collect());
    for (k, b) in keys.iter().zip(&before) {
        let now = label(&fewer.pick(Route::hash(k.as_str()), |_| true).unwrap());
        if b != "n2#2" {
            assert_eq!(now, *b, "key {k} moved though its instance stayed");
        }
    }
}

#[tokio::test]
async fn local_first_prefers_this_node_and_falls_back_to_any() {
    let here = spawn(Idle, ()).await.unwrap();
    let mut members = remote(3);
    members.push(instance("me", 9, Some(here.clone()), 0, &[]));
    let g = group(members);
    for _ in 0..5 {
        assert_eq!(label(&g.pick(Route::LocalFirst, |_| true).unwrap()), "me#9");
    }
    // The local one stops: never picked again, by any route.
    here.stop(None);
    while !here.is_stopped() {
        tokio::task::yield_now().await;
    }
    for route in [
        Route::LocalFirst,
        Route::RoundRobin,
        Route::Random,
        Route::LeastLoaded,
        Route::hash("k"),
    ] {
        for _ in 0..20 {
            assert_ne!(
                label(&g.pick(route, |_| true).unwrap()),
                "me#9",
                "{route:?}"
            );
        }
    }
}

#[test]
fn a_capability_narrows_the_choice_and_none_matching_picks_nothing() {
    let g = group(vec![
        instance("a", 0, None, 0, &["http"]),
        instance("b", 1, None, 0, &["http", "gpu"]),
        instance("c", 2, None, 0, &[]),
    ]);
    for _ in 0..5 {
        let i = g.pick(Route::RoundRobin, |i| i.has("gpu")).unwrap();
        assert_eq!(label(&i), "b#1");
    }
    assert!(g.pick(Route::Random, |i| i.has("tpu")).is_none());
    assert!(
        group(Vec::new())
            .pick(Route::RoundRobin, |_| true)
            .is_none()
    );
}

#[test]
fn the_index_keeps_instances_in_id_order_and_drops_empty_services() {
    let index: Index<Nothing, ()> = DashMap::new();
    let a = instance("a", 2, None, 0, &[]);
    let b = instance("a", 1, None, 0, &[]);
    update(&index, a.id(), Some(&a.found));
    update(&index, b.id(), Some(&b.found));
    let order: Vec<u64> = index
        .get("svc")
        .unwrap()
        .members
        .iter()
        .map(|i| i.id().n)
        .collect();
    assert_eq!(order, [1, 2]);
    update(&index, a.id(), None);
    update(&index, b.id(), None);
    assert!(index.get("svc").is_none());
}
