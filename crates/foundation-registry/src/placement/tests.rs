//! The placement core under simulated membership: property-style checks over many random
//! views (fixed seeds, so a failure replays), and the rules one by one.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foundation_actors::Restart;

use super::*;

fn view(names: &[&str]) -> View {
    names.iter().map(|n| NodeInfo::new(*n, 1)).collect()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i}")).collect()
}

fn random_view(rng: &mut fastrand::Rng, max: usize) -> View {
    let n = rng.usize(1..=max);
    let mut v = View::new();
    for i in 0..n {
        let mut node = NodeInfo::new(format!("n{}", rng.u32(0..1000)), rng.u64(1..5));
        if rng.u8(0..4) == 0 {
            node = node.with_role("gpu");
        }
        if i > 0 && rng.u8(0..8) == 0 {
            node = node.leaving();
        }
        v.insert(node);
    }
    v
}

fn singleton(id: &str) -> ChildPlacement {
    ChildPlacement::new(id, Placement::Singleton)
}

fn on(node: &str) -> ChildState {
    ChildState::running_on([Instance::new(node, 1)])
}

fn planner() -> Planner {
    Planner::new(Rendezvous)
}

/// Carries a cluster plan out on the records, as the I/O layer will (handoffs complete).
fn apply(view: &View, children: &mut Vec<Child>, plan: &ClusterPlan, now_ms: u64) {
    for (node, actions) in &plan.nodes {
        let inc = view.get(node).map_or(0, |n| n.incarnation);
        for action in actions {
            let Some(child) = children.iter_mut().find(|c| c.spec.id == action.child()) else {
                continue;
            };
            match action {
                Action::Start { cause, .. } => {
                    if cause.counts() {
                        let period = child.spec.intensity.period;
                        child.state.count_failure(now_ms, period);
                    }
                    child.state.started(Instance::new(node.clone(), inc));
                }
                Action::Receive { .. } => child.state.started(Instance::new(node.clone(), inc)),
                Action::HandOff { .. } | Action::Stop { .. } => child.state.removed(node),
                Action::Keep { .. } => {}
            }
        }
    }
    // Lost instances are replaced by the starts above; drop their records.
    for child in children.iter_mut() {
        child
            .state
            .instances
            .retain(|i| view.is_live(&i.node, i.incarnation));
    }
    for outcome in &plan.outcomes {
        if let Outcome::Forget { child, .. } | Outcome::GaveUp { child, .. } = outcome {
            children.retain(|c| &c.spec.id != child);
        }
    }
}

// ---------------------------------------------------------------- distribution

#[test]
fn placement_rendezvous_scores_are_pinned() {
    // xxh3 is fixed by its specification: these values hold on every platform and
    // version. If this test fails, nodes of different versions would disagree on owners.
    // The values were computed by the reference C implementation (Python's `xxhash`
    // package: xxh3_64 of the 8-byte little-endian length, the name and the key).
    assert_eq!(Rendezvous::score("a", b"k"), 0xba07_7853_5162_a148);
    assert_eq!(
        Rendezvous::score("node-1", b"billing"),
        0xde91_e405_ee37_0216
    );
}

#[test]
fn placement_rendezvous_score_is_the_streaming_hash_at_every_length() {
    // Short inputs hash in one shot from a stack buffer, long ones stream: the same value.
    for len in [0, 1, 200, 239, 240, 241, 247, 248, 249, 300, 1000] {
        let key = vec![0x5a_u8; len];
        for node in ["a", "node-1"] {
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            hasher.update(&(node.len() as u64).to_le_bytes());
            hasher.update(node.as_bytes());
            hasher.update(&key);
            assert_eq!(
                Rendezvous::score(node, &key),
                hasher.digest(),
                "{node} {len}"
            );
        }
    }
}

#[test]
fn placement_owners_of_a_new_child_are_its_plans_starts() {
    // `owners_new` answers `place_child` without a plan: it must be what the plan of the
    // new child alone starts, for every placement, role, rebalance, load and strategy.
    let mut rng = fastrand::Rng::with_seed(21);
    let strategies: [Arc<dyn Distribution>; 2] = [Arc::new(Rendezvous), Arc::new(LeastLoaded)];
    for round in 0..2_000 {
        let view = random_view(&mut rng, 7);
        let members: Vec<String> = view.names().map(str::to_owned).collect();
        let some_node = |rng: &mut fastrand::Rng| match rng.u8(0..4) {
            0 => "gone".to_owned(),
            _ => members[rng.usize(0..members.len())].clone(),
        };
        let placement = match rng.u8(0..5) {
            0 => Placement::Singleton,
            1 => Placement::Replicated { n: rng.usize(0..9) },
            2 => Placement::All,
            3 => Placement::Local,
            _ => Placement::Pinned(some_node(&mut rng)),
        };
        let mut spec = ChildPlacement::new(format!("child-{round}"), placement).rebalance(
            match rng.u8(0..3) {
                0 => Rebalance::Eager,
                1 => Rebalance::Passive,
                _ => Rebalance::Manual,
            },
        );
        if rng.bool() {
            spec = spec.on_role("gpu");
        }
        if rng.u8(0..4) != 0 {
            spec = spec.home(some_node(&mut rng));
        }
        let load: Load = members
            .iter()
            .flat_map(|m| std::iter::repeat_n(m.as_str(), rng.usize(0..3)))
            .collect();
        let planner = Planner::new(strategies[round % 2].clone());
        let plan = planner.plan_cluster_loaded(
            &view,
            &[Child::new(spec.clone())],
            load.clone(),
            1_000,
            false,
        );
        let planned: Vec<&str> = plan
            .placements()
            .remove(spec.id.as_str())
            .map(|nodes| nodes.into_iter().collect())
            .unwrap_or_default();
        assert_eq!(
            planner.owners_new(&spec, &view, &load),
            planned,
            "{spec:?} in {view:?}"
        );
    }
}

#[test]
fn placement_distributions_keep_the_contract() {
    let mut rng = fastrand::Rng::with_seed(11);
    let strategies: [&dyn Distribution; 2] = [&Rendezvous, &LeastLoaded];
    for _ in 0..500 {
        let all = names(rng.usize(0..12));
        let candidates: Vec<&str> = all.iter().map(String::as_str).collect();
        let load: Load = candidates
            .iter()
            .flat_map(|c| std::iter::repeat_n(*c, rng.usize(0..3)))
            .collect();
        let key = rng.u64(..).to_le_bytes();
        for strategy in strategies {
            let ranked = strategy.rank(&key, &candidates, &load);
            let as_set: BTreeSet<&str> = ranked.iter().copied().collect();
            assert_eq!(ranked.len(), candidates.len(), "{strategy:?}");
            assert_eq!(as_set, candidates.iter().copied().collect(), "{strategy:?}");
            let mut shuffled = candidates.clone();
            rng.shuffle(&mut shuffled);
            assert_eq!(
                strategy.rank(&key, &shuffled, &load),
                ranked,
                "{strategy:?}: the order of candidates must not matter"
            );
        }
    }
}

#[test]
fn placement_least_loaded_prefers_the_emptiest_node() {
    let load: Load = ["a", "a", "b"].into_iter().collect();
    assert_eq!(
        LeastLoaded.rank(b"x", &["a", "b", "c"], &load),
        ["c", "b", "a"]
    );

    // New children spread over the nodes, each going to the least loaded one.
    let v = view(&["a", "b", "c"]);
    let children: Vec<Child> = (0..9)
        .map(|i| Child::new(singleton(&format!("job-{i}"))))
        .collect();
    let plan = Planner::new(LeastLoaded).plan_cluster(&v, &children, 0, false);
    for node in ["a", "b", "c"] {
        assert_eq!(plan.actions(node).len(), 3, "{node}: {plan:?}");
    }
}

#[test]
fn placement_join_moves_only_what_the_new_node_wins() {
    // 1,000 eager singletons on N nodes; one node joins: only children now owned by the
    // newcomer move (by a handoff to it), about 1/(N+1) of them.
    let mut rng = fastrand::Rng::with_seed(3);
    for n in [2usize, 3, 5, 8] {
        let before_names = names(n);
        let before = view(&before_names.iter().map(String::as_str).collect::<Vec<_>>());
        let mut children: Vec<Child> = (0..1000)
            .map(|_| {
                Child::new(singleton(&format!("c{}", rng.u64(..))).rebalance(Rebalance::Eager))
            })
            .collect();
        let start = planner().plan_cluster(&before, &children, 0, false);
        apply(&before, &mut children, &start, 0);

        let mut after = before.clone();
        after.insert(NodeInfo::new("newcomer", 1));
        let plan = planner().plan_cluster(&after, &children, 0, false);
        let mut moved = 0;
        for (node, actions) in &plan.nodes {
            for action in actions {
                match action {
                    Action::HandOff { to, .. } => {
                        assert_eq!(to, "newcomer");
                        moved += 1;
                    }
                    Action::Receive { .. } => assert_eq!(node, "newcomer"),
                    Action::Keep { .. } => {}
                    other => panic!("a join started or stopped something: {other:?}"),
                }
            }
        }
        let ideal = 1000 / (n + 1);
        eprintln!("{n} nodes + 1: {moved} of 1000 singletons moved (ideal {ideal})");
        assert!(
            moved <= ideal + ideal / 2 + 20,
            "{n} nodes + 1: {moved} of 1000 moved (ideal {ideal})"
        );
    }
}

#[test]
fn placement_shards_moved_when_a_fourth_node_joins_three() {
    // The call issue 15's shards will make: 1,024 shards, 3 nodes then 4.
    let three = view(&["node-a", "node-b", "node-c"]);
    let mut four = three.clone();
    four.insert(NodeInfo::new("node-d", 1));
    let load = Load::new();
    let moved = (0u32..1024)
        .filter(|shard| {
            let key = shard.to_le_bytes();
            planner().owners(&three, &key, 1, None, &load)
                != planner().owners(&four, &key, 1, None, &load)
        })
        .count();
    // Ideal: 256 (25%). Issue 15's bound is 27%.
    eprintln!("3 nodes + 1: {moved} of 1024 shards moved");
    assert!(moved <= 1024 * 27 / 100, "{moved} of 1024 shards moved");
    assert!(moved >= 1024 * 20 / 100, "{moved} of 1024 shards moved");
}

// ---------------------------------------------------------------- agreement

#[test]
fn placement_every_node_computes_the_same_plan() {
    // Random views and records: the plan does not depend on the order records or members
    // are given in, a node's own plan is its part of the cluster plan, and a singleton
    // ends up on exactly one node whenever a node can take it.
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..300 {
        let v = random_view(&mut rng, 9);
        let members: Vec<&NodeInfo> = v.iter().collect();
        let mut children = Vec::new();
        for i in 0..rng.usize(1..30) {
            let placement = match rng.u8(0..4) {
                0 => Placement::Replicated { n: rng.usize(1..5) },
                1 => Placement::All,
                _ => Placement::Singleton,
            };
            let mut spec = ChildPlacement::new(format!("c{i}"), placement).rebalance(
                [Rebalance::Eager, Rebalance::Passive, Rebalance::Manual][rng.usize(0..3)],
            );
            if rng.u8(0..5) == 0 {
                spec = spec.on_role("gpu");
            }
            let mut state = ChildState::new();
            for _ in 0..rng.usize(0..3) {
                let node = members[rng.usize(0..members.len())];
                // Sometimes on an older incarnation: lost.
                let inc = node.incarnation - u64::from(rng.bool());
                state.started(Instance::new(node.id.clone(), inc));
            }
            children.push(Child::with_state(spec, state));
        }
        let planner = planner();
        let whole = planner.plan_cluster(&v, &children, 0, false);

        let mut shuffled = children.clone();
        rng.shuffle(&mut shuffled);
        let mut order: Vec<NodeInfo> = v.iter().cloned().collect();
        rng.shuffle(&mut order);
        let v2: View = order.into_iter().collect();
        assert_eq!(planner.plan_cluster(&v2, &shuffled, 0, false), whole);

        for node in v.names() {
            let mine = planner.plan(node, &v, &children, 0);
            assert_eq!(mine.actions, whole.actions(node));
            assert_eq!(mine.outcomes, whole.outcomes);
        }
        let placed = whole.placements();
        for child in &children {
            let eligible = v.eligible(child.spec.role.as_deref());
            let count = placed.get(child.spec.id.as_str()).map_or(0, BTreeSet::len);
            let pending = whole
                .outcomes
                .iter()
                .any(|o| matches!(o, Outcome::Pending { child: c, .. } if *c == child.spec.id));
            match child.spec.placement {
                Placement::Singleton if !eligible.is_empty() => assert_eq!(count, 1),
                Placement::Replicated { n } if !eligible.is_empty() => {
                    assert_eq!(count, n.min(eligible.len()));
                }
                Placement::All if !eligible.is_empty() => assert_eq!(count, eligible.len()),
                _ => assert!(pending || count > 0),
            }
        }
    }
}

#[test]
fn placement_passive_never_moves_a_child_whose_node_is_alive() {
    let mut rng = fastrand::Rng::with_seed(9);
    for _ in 0..300 {
        let mut v = random_view(&mut rng, 8);
        let eligible: Vec<String> = v.eligible(None).into_iter().map(str::to_owned).collect();
        let children: Vec<Child> = (0..20)
            .map(|i| {
                let node = &eligible[rng.usize(0..eligible.len())];
                let inc = v.get(node).map_or(0, |n| n.incarnation);
                Child::with_state(
                    singleton(&format!("p{i}")),
                    ChildState::running_on([Instance::new(node.clone(), inc)]),
                )
            })
            .collect();
        // Others join and die; the nodes running children stay.
        let running: BTreeSet<&str> = children
            .iter()
            .map(|c| c.state.instances[0].node.as_str())
            .collect();
        for _ in 0..rng.usize(1..4) {
            v.insert(NodeInfo::new(format!("j{}", rng.u32(..)), 1));
        }
        let idle: Vec<String> = v
            .names()
            .filter(|n| !running.contains(n))
            .map(str::to_owned)
            .collect();
        for gone in idle.iter().filter(|_| rng.bool()) {
            v.remove(gone);
        }
        let plan = planner().plan_cluster(&v, &children, 0, false);
        for (node, actions) in &plan.nodes {
            for action in actions {
                assert!(
                    matches!(action, Action::Keep { .. }),
                    "{node}: {action:?} for a passive child on a live node"
                );
            }
        }
        // A manual rebalance may move `Manual` children, but never `Passive` ones.
        assert_eq!(planner().plan_cluster(&v, &children, 0, true), plan);
    }
}

// ---------------------------------------------------------------- node down

#[test]
fn placement_node_down_moves_permanent_and_transient_children_not_temporary() {
    let v = view(&["a", "b", "c"]);
    let specs = [
        singleton("perm"),
        singleton("trans").restart(Restart::Transient),
        singleton("temp").restart(Restart::Temporary),
    ];
    // Each runs on its owner; that node dies.
    for spec in specs {
        let owner = planner().owners(&v, spec.key(), 1, None, &Load::new())[0].to_owned();
        let children = vec![Child::with_state(spec.clone(), on(&owner))];
        let mut after = v.clone();
        after.remove(&owner);
        let plan = planner().plan_cluster(&after, &children, 0, false);
        let starts: Vec<&Action> = plan
            .nodes
            .values()
            .flatten()
            .filter(|a| matches!(a, Action::Start { .. }))
            .collect();
        match spec.restart {
            Restart::Temporary => {
                assert!(starts.is_empty(), "{plan:?}");
                assert_eq!(
                    plan.outcomes,
                    [Outcome::Forget {
                        child: "temp".into(),
                        reason: ForgetReason::Lost
                    }]
                );
            }
            _ => {
                assert_eq!(
                    starts,
                    [&Action::Start {
                        child: spec.id.clone(),
                        cause: StartCause::Failover {
                            lost: vec![owner.clone()]
                        }
                    }],
                    "{}",
                    spec.id
                );
                assert!(plan.outcomes.is_empty());
            }
        }
    }
}

#[test]
fn placement_a_restarted_node_loses_its_instances() {
    // Same name, new incarnation: the instance recorded on the old one is lost.
    let owner = planner().owners(&view(&["a", "b"]), b"s", 1, None, &Load::new())[0].to_owned();
    let mut v = view(&["a", "b"]);
    v.insert(NodeInfo::new(owner.clone(), 2));
    let children = vec![Child::with_state(singleton("s"), on(&owner))];
    let plan = planner().plan_cluster(&v, &children, 0, false);
    assert_eq!(
        plan.actions(&owner),
        [Action::Start {
            child: "s".into(),
            cause: StartCause::Failover {
                lost: vec![owner.clone()]
            }
        }]
    );
}

#[test]
fn placement_ended_children_follow_their_restart_type() {
    let v = view(&["a", "b"]);
    let cases = [
        (Restart::Permanent, Exit::Normal, true),
        (Restart::Permanent, Exit::Failed, true),
        (Restart::Transient, Exit::Normal, false),
        (Restart::Transient, Exit::Failed, true),
        (Restart::Temporary, Exit::Normal, false),
        (Restart::Temporary, Exit::Failed, false),
    ];
    for (restart, exit, restarted) in cases {
        let mut state = on("a");
        state.ended("a", exit);
        let children = vec![Child::with_state(singleton("x").restart(restart), state)];
        let plan = planner().plan_cluster(&v, &children, 0, false);
        let starts: Vec<&Action> = plan.nodes.values().flatten().collect();
        if restarted {
            assert!(
                matches!(
                    starts[..],
                    [Action::Start {
                        cause: StartCause::Restart,
                        ..
                    }]
                ),
                "{restart:?} {exit:?}: {plan:?}"
            );
        } else {
            assert!(starts.is_empty(), "{restart:?} {exit:?}: {plan:?}");
            assert_eq!(
                plan.outcomes,
                [Outcome::Forget {
                    child: "x".into(),
                    reason: ForgetReason::Ended(exit)
                }]
            );
        }
    }
}

#[test]
fn placement_a_child_that_kills_every_node_stops_moving() {
    // Each node the child lands on dies. After `max_failures` failovers within the period
    // the planner gives up, with a typed outcome.
    let intensity = MoveIntensity {
        max_failures: 3,
        period: Duration::from_secs(60),
    };
    let mut v = view(&["a", "b", "c", "d", "e", "f"]);
    let mut children = vec![Child::new(singleton("killer").intensity(intensity))];
    let mut now = 0;
    let first = planner().plan_cluster(&v, &children, now, false);
    apply(&v, &mut children, &first, now);
    let mut landed = Vec::new();
    let outcome = loop {
        let Some(child) = children.first() else {
            panic!("forgotten without an outcome");
        };
        let node = child.state.instances[0].node.clone();
        landed.push(node.clone());
        v.remove(&node);
        now += 1_000;
        let plan = planner().plan_cluster(&v, &children, now, false);
        if let Some(out) = plan.outcomes.first() {
            break out.clone();
        }
        apply(&v, &mut children, &plan, now);
    };
    assert_eq!(
        outcome,
        Outcome::GaveUp {
            child: "killer".into(),
            failures: 4,
            max: 3
        }
    );
    // First start and three failovers, each on a different node.
    assert_eq!(landed.len(), 4);
    assert_eq!(landed.iter().collect::<BTreeSet<_>>().len(), 4);

    // Failures older than the period no longer count.
    let mut state = ChildState::new();
    for at in [0, 1_000, 2_000] {
        state.count_failure(at, intensity.period);
    }
    state.started(Instance::new("zz-gone", 1));
    let children = vec![Child::with_state(
        singleton("killer").intensity(intensity),
        state,
    )];
    let plan = planner().plan_cluster(&view(&["a"]), &children, 70_000, false);
    assert!(plan.outcomes.is_empty(), "{plan:?}");
    assert!(matches!(
        plan.actions("a"),
        [Action::Start {
            cause: StartCause::Failover { .. },
            ..
        }]
    ));
}

// ---------------------------------------------------------------- planned moves

#[test]
fn placement_a_planned_move_is_a_handoff_never_two_instances() {
    let mut rng = fastrand::Rng::with_seed(21);
    for _ in 0..200 {
        let v = random_view(&mut rng, 7);
        let eligible: Vec<String> = v.eligible(None).into_iter().map(str::to_owned).collect();
        let children: Vec<Child> = (0..10)
            .map(|i| {
                let node = &v.names().collect::<Vec<_>>()[rng.usize(0..v.len())].to_owned();
                let inc = v.get(node).map_or(0, |n| n.incarnation);
                let rebalance = [Rebalance::Eager, Rebalance::Passive][rng.usize(0..2)];
                Child::with_state(
                    singleton(&format!("m{i}")).rebalance(rebalance),
                    ChildState::running_on([Instance::new(node.clone(), inc)]),
                )
            })
            .collect();
        let plan = planner().plan_cluster(&v, &children, 0, true);
        for child in &children {
            let acts: Vec<(&String, &Action)> = plan
                .nodes
                .iter()
                .flat_map(|(n, acts)| acts.iter().map(move |a| (n, a)))
                .filter(|(_, a)| a.child() == child.spec.id)
                .collect();
            let from = &child.state.instances[0].node;
            let leaving = v.get(from).is_some_and(|n| n.leaving);
            let moves = leaving || child.spec.rebalance == Rebalance::Eager;
            match acts[..] {
                [(n, Action::Keep { .. })] => assert_eq!(n, from),
                [
                    (a, Action::HandOff { to, .. }),
                    (b, Action::Receive { from: f, .. }),
                ]
                | [
                    (b, Action::Receive { from: f, .. }),
                    (a, Action::HandOff { to, .. }),
                ] => {
                    assert!(moves, "{acts:?}");
                    assert_eq!(a, from);
                    assert_eq!((b, f), (to, from));
                    assert!(eligible.contains(to));
                }
                _ => panic!("not a keep or a handoff: {acts:?}"),
            }
            assert!(
                !acts.iter().any(|(_, a)| matches!(a, Action::Start { .. })),
                "a planned move started a second instance: {acts:?}"
            );
        }
    }
}

#[test]
fn placement_a_leaving_node_hands_off_passive_children() {
    let v = view(&["a", "b", "c"]);
    let owner = planner().owners(&v, b"s", 1, None, &Load::new())[0].to_owned();
    let children = vec![Child::with_state(singleton("s"), on(&owner))];
    let mut leaving = v.clone();
    leaving.insert(NodeInfo::new(owner.clone(), 1).leaving());
    let next = planner().owners(&leaving, b"s", 1, None, &Load::new())[0].to_owned();
    assert_ne!(next, owner);
    let plan = planner().plan_cluster(&leaving, &children, 0, false);
    assert_eq!(
        plan.actions(&owner),
        [Action::HandOff {
            child: "s".into(),
            to: next.clone()
        }]
    );
    assert_eq!(
        plan.actions(&next),
        [Action::Receive {
            child: "s".into(),
            from: owner
        }]
    );
}

#[test]
fn placement_manual_children_move_on_rebalance_only() {
    let v = view(&["a", "b", "c"]);
    let owner = planner().owners(&v, b"m", 1, None, &Load::new())[0];
    let elsewhere = v.names().find(|n| *n != owner).unwrap_or_default();
    let children = vec![Child::with_state(
        singleton("m").rebalance(Rebalance::Manual),
        on(elsewhere),
    )];
    let plan = planner().plan("x", &v, &children, 0);
    assert!(plan.actions.is_empty() && plan.outcomes.is_empty());
    assert_eq!(
        planner().plan(elsewhere, &v, &children, 0).actions,
        [Action::Keep { child: "m".into() }]
    );
    assert_eq!(
        planner().rebalance(elsewhere, &v, &children, 0).actions,
        [Action::HandOff {
            child: "m".into(),
            to: owner.to_owned()
        }]
    );
}

#[test]
fn placement_duplicates_after_a_heal_keep_one() {
    let v = view(&["a", "b", "c"]);
    let state = ChildState::running_on([Instance::new("a", 1), Instance::new("c", 1)]);
    let children = vec![Child::with_state(singleton("dup"), state)];
    let plan = planner().plan_cluster(&v, &children, 0, false);
    let placed = plan.placements();
    assert_eq!(placed["dup"].len(), 1);
    let stops: Vec<&Action> = plan
        .nodes
        .values()
        .flatten()
        .filter(|a| {
            matches!(
                a,
                Action::Stop {
                    reason: StopReason::Duplicate,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(stops.len(), 1, "{plan:?}");
}

// ---------------------------------------------------------------- placements

#[test]
fn placement_replicated_beyond_the_cluster_runs_everywhere_and_tops_up() {
    let v = view(&["a", "b"]);
    let mut children = vec![Child::new(ChildPlacement::new(
        "r",
        Placement::Replicated { n: 3 },
    ))];
    let plan = planner().plan_cluster(&v, &children, 0, false);
    assert_eq!(plan.placements()["r"], ["a", "b"].into());
    apply(&v, &mut children, &plan, 0);
    let mut bigger = v.clone();
    bigger.insert(NodeInfo::new("c", 1));
    bigger.insert(NodeInfo::new("d", 1));
    let plan = planner().plan_cluster(&bigger, &children, 0, false);
    let grown: Vec<&Action> = plan
        .nodes
        .values()
        .flatten()
        .filter(|a| {
            matches!(
                a,
                Action::Start {
                    cause: StartCause::Grow,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(grown.len(), 1, "{plan:?}");
    assert_eq!(plan.placements()["r"].len(), 3);
}

#[test]
fn placement_all_follows_joins_and_leaves() {
    let v = view(&["a", "b"]);
    let mut children = vec![Child::new(ChildPlacement::new(
        "everywhere",
        Placement::All,
    ))];
    let plan = planner().plan_cluster(&v, &children, 0, false);
    apply(&v, &mut children, &plan, 0);
    let mut next = v.clone();
    next.insert(NodeInfo::new("c", 1));
    next.insert(NodeInfo::new("a", 1).leaving());
    let plan = planner().plan_cluster(&next, &children, 0, false);
    assert_eq!(
        plan.actions("c"),
        [Action::Start {
            child: "everywhere".into(),
            cause: StartCause::Grow
        }]
    );
    assert_eq!(
        plan.actions("a"),
        [Action::Stop {
            child: "everywhere".into(),
            reason: StopReason::NodeLeaving
        }]
    );
    assert_eq!(
        plan.actions("b"),
        [Action::Keep {
            child: "everywhere".into()
        }]
    );
}

#[test]
fn placement_pinned_waits_for_its_node() {
    let v = view(&["a", "b"]);
    let spec = ChildPlacement::new("p", Placement::Pinned("b".into()));
    assert_eq!(spec.validate(&v), Ok(()));
    assert_eq!(
        ChildPlacement::new("p", Placement::Pinned("zz".into())).validate(&v),
        Err(PlacementError::UnknownNode {
            child: "p".into(),
            node: "zz".into()
        })
    );
    let mut children = vec![Child::with_state(spec, on("b"))];
    let down = view(&["a"]);
    let plan = planner().plan_cluster(&down, &children, 0, false);
    assert!(plan.nodes.is_empty(), "{plan:?}");
    assert_eq!(
        plan.outcomes,
        [Outcome::Pending {
            child: "p".into(),
            reason: PendingReason::PinnedNodeDown { node: "b".into() }
        }]
    );
    // b comes back (a new incarnation): started there, counted as a failover.
    let mut back = down.clone();
    back.insert(NodeInfo::new("b", 2));
    let plan = planner().plan_cluster(&back, &children, 0, false);
    assert_eq!(
        plan.actions("b"),
        [Action::Start {
            child: "p".into(),
            cause: StartCause::Failover {
                lost: vec!["b".into()]
            }
        }]
    );
    apply(&back, &mut children, &plan, 0);
    assert_eq!(children[0].state.failures.len(), 1);
}

#[test]
fn placement_local_children_go_with_their_home() {
    let v = view(&["a", "b"]);
    assert_eq!(
        ChildPlacement::new("l", Placement::Local).validate(&v),
        Err(PlacementError::NoHome { child: "l".into() })
    );
    let spec = ChildPlacement::new("l", Placement::Local).home("a");
    let children = vec![Child::new(spec.clone())];
    assert_eq!(
        planner().plan_cluster(&v, &children, 0, false).actions("a"),
        [Action::Start {
            child: "l".into(),
            cause: StartCause::New
        }]
    );
    let children = vec![Child::with_state(spec, on("a"))];
    let plan = planner().plan_cluster(&view(&["b"]), &children, 0, false);
    assert!(plan.nodes.is_empty());
    assert_eq!(
        plan.outcomes,
        [Outcome::Forget {
            child: "l".into(),
            reason: ForgetReason::HomeDown
        }]
    );
}

#[test]
fn placement_roles_restrict_owners_and_a_missing_role_waits() {
    let mut v = view(&["a", "b", "c"]);
    v.insert(NodeInfo::new("g", 1).with_role("gpu"));
    let children: Vec<Child> = (0..20)
        .map(|i| Child::new(singleton(&format!("g{i}")).on_role("gpu")))
        .collect();
    let plan = planner().plan_cluster(&v, &children, 0, false);
    assert_eq!(plan.actions("g").len(), 20);
    assert_eq!(plan.nodes.len(), 1);

    let plan = planner().plan_cluster(&view(&["a", "b"]), &children, 0, false);
    assert!(plan.nodes.is_empty());
    assert_eq!(plan.outcomes.len(), 20);
    assert!(plan.outcomes.iter().all(|o| matches!(
        o,
        Outcome::Pending {
            reason: PendingReason::NoEligibleNode { role: Some(r) },
            ..
        } if r == "gpu"
    )));
}

#[test]
fn placement_bad_input_gives_errors_or_outcomes_not_panics() {
    let v = view(&["a"]);
    assert_eq!(
        ChildPlacement::new("", Placement::Singleton).validate(&v),
        Err(PlacementError::EmptyId)
    );
    assert_eq!(
        ChildPlacement::new("r", Placement::Replicated { n: 0 }).validate(&v),
        Err(PlacementError::ZeroReplicas { child: "r".into() })
    );
    // Unvalidated oddities are planned without a panic.
    let children = vec![
        Child::with_state(
            ChildPlacement::new("r", Placement::Replicated { n: 0 }),
            on("a"),
        ),
        Child::new(singleton("twice")),
        Child::new(singleton("twice")),
        Child::with_state(ChildPlacement::new("l", Placement::Local), on("a")),
    ];
    let plan = planner().plan_cluster(&v, &children, u64::MAX, false);
    assert!(plan.outcomes.contains(&Outcome::DuplicateId {
        child: "twice".into()
    }));
    let empty = planner().plan_cluster(&View::new(), &children, 0, false);
    assert!(empty.nodes.is_empty());
}

// ---------------------------------------------------------------- quorum

/// Every split of `n` nodes into two sides (one side may be empty), as (side, other side).
fn splits(n: usize) -> Vec<(View, View, View)> {
    let all = names(n);
    // Ages differ from name order so KeepOldest is not KeepMajority's tie rule in disguise.
    let node = |i: usize| NodeInfo::new(all[i].clone(), ((i * 7) % n) as u64);
    let stable: View = (0..n).map(node).collect();
    (0..1u32 << n)
        .map(|mask| {
            let a: View = (0..n).filter(|i| mask & (1 << i) != 0).map(node).collect();
            let b: View = (0..n).filter(|i| mask & (1 << i) == 0).map(node).collect();
            (stable.clone(), a, b)
        })
        .collect()
}

/// How many non-empty sides keep running.
fn winners(quorum: &Quorum, stable: &View, sides: [&View; 2]) -> usize {
    sides
        .into_iter()
        .filter(|side| {
            // Every member of a side must reach the same verdict.
            let verdicts: BTreeSet<bool> = side
                .names()
                .map(|me| quorum.decide(stable, side, me).keeps())
                .collect();
            assert!(verdicts.len() <= 1, "{quorum:?}: a side disagrees");
            verdicts.contains(&true)
        })
        .count()
}

#[test]
fn placement_quorum_policies_give_one_winner_per_split() {
    for n in 1..=7 {
        for (stable, a, b) in splits(n) {
            let sides = [&a, &b];
            let referee = all_names(&stable)[n / 2].clone();
            for quorum in [
                Quorum::KeepMajority,
                Quorum::keep_oldest(),
                Quorum::KeepOldest {
                    down_if_alone: false,
                },
                Quorum::KeepReferee(referee),
            ] {
                assert_eq!(
                    winners(&quorum, &stable, sides),
                    1,
                    "{quorum:?}, {n} nodes: {:?} | {:?}",
                    all_names(&a),
                    all_names(&b)
                );
            }
            // A static quorum over half: never two winners (maybe none).
            let q = Quorum::StaticQuorum(n / 2 + 1);
            assert_eq!(q.validate(&stable), Ok(()));
            assert!(winners(&q, &stable, sides) <= 1);
            // DownAll: nobody keeps running after a real split.
            if !a.is_empty() && !b.is_empty() {
                assert_eq!(winners(&Quorum::DownAll, &stable, sides), 0);
            }
        }
    }
}

fn all_names(v: &View) -> Vec<String> {
    v.names().map(str::to_owned).collect()
}

#[test]
fn placement_quorum_rules_and_reasons() {
    let stable = view(&["a", "b", "c", "d"]);
    let ab = view(&["a", "b"]);
    let cd = view(&["c", "d"]);
    assert_eq!(
        Quorum::KeepMajority.decide(&stable, &ab, "a"),
        Verdict::Keep,
        "a tie goes to the side with the smallest name"
    );
    assert_eq!(
        Quorum::KeepMajority.decide(&stable, &cd, "c"),
        Verdict::Stop(QuorumLoss::TieLost {
            smallest: "a".into()
        })
    );
    assert_eq!(
        Quorum::KeepMajority.decide(&stable, &view(&["d"]), "d"),
        Verdict::Stop(QuorumLoss::Minority {
            reachable: 1,
            stable: 4
        })
    );
    // Newcomers during the partition do not count.
    let grown = view(&["c", "d", "x", "y", "z"]);
    assert!(!Quorum::KeepMajority.decide(&stable, &grown, "c").keeps());
    // Nothing lost: everyone keeps running, whatever the policy.
    assert!(Quorum::DownAll.decide(&stable, &stable, "a").keeps());

    // KeepOldest with down_if_alone: the oldest, crashed or cut off alone, gives way.
    let mut aged = View::new();
    for (name, age) in [("a", 5), ("b", 1), ("c", 3)] {
        aged.insert(NodeInfo::new(name, age));
    }
    let b_alone = view(&["b"]);
    let rest = view(&["a", "c"]);
    assert_eq!(
        Quorum::keep_oldest().decide(&aged, &b_alone, "b"),
        Verdict::Stop(QuorumLoss::OldestAlone { oldest: "b".into() })
    );
    assert!(Quorum::keep_oldest().decide(&aged, &rest, "a").keeps());
    let strict = Quorum::KeepOldest {
        down_if_alone: false,
    };
    assert!(strict.decide(&aged, &b_alone, "b").keeps());
    assert_eq!(
        strict.decide(&aged, &rest, "a"),
        Verdict::Stop(QuorumLoss::OldestUnreachable { oldest: "b".into() })
    );

    assert_eq!(
        Quorum::StaticQuorum(2).validate(&stable),
        Err(QuorumError::QuorumTooSmall { quorum: 2, size: 4 })
    );
    assert_eq!(
        Quorum::KeepReferee("zz".into()).validate(&stable),
        Err(QuorumError::UnknownReferee {
            referee: "zz".into()
        })
    );
}

// ---------------------------------------------------------------- timing

/// A two-way partition in simulated time: when each side last heard the other, when the
/// loser's children are gone and when the winner may start them.
fn partition_overlaps(timing: Timing, bounds: &MarginBounds, rng: &mut fastrand::Rng) -> bool {
    let t0 = Instant::now();
    let ms = |m: u64| Duration::from_millis(m);
    let h = bounds.heartbeat.as_millis() as u64;
    let d = bounds.max_latency.as_millis() as u64;
    let p = 10_000u64; // the partition begins
    // The loser last hears the winner at most `d` after P; the winner last hears the
    // loser no earlier than the loser's last heartbeat before P.
    let loser_heard = p - rng.u64(0..=h) + rng.u64(0..=d);
    let winner_heard = p - rng.u64(0..=h) + rng.u64(0..=d);
    let stable = view(&["a", "b", "c"]);
    let (winners, losers) = (view(&["a", "b"]), view(&["c"]));
    let quorum = Quorum::KeepMajority;
    let lose = timing.decide(&quorum, &stable, &losers, "c", t0 + ms(loser_heard));
    let win = timing.decide(&quorum, &stable, &winners, "a", t0 + ms(winner_heard));
    let (Some(stop_at), Some(start_after)) = (lose.stop_at, win.start_after) else {
        panic!("no decision: {lose:?} {win:?}");
    };
    assert!(!lose.verdict.keeps() && win.verdict.keeps());
    // The loser notices up to a tick late, and its children take up to `shutdown`.
    let gone = stop_at
        + ms(rng.u64(0..=bounds.detection_tick.as_millis() as u64))
        + ms(rng.u64(0..=bounds.shutdown.as_millis() as u64));
    gone >= start_after
}

#[test]
fn placement_the_winner_starts_only_after_the_loser_stopped() {
    let bounds = MarginBounds {
        heartbeat: Duration::from_millis(500),
        max_latency: Duration::from_millis(100),
        detection_tick: Duration::from_millis(100),
        shutdown: Duration::from_millis(1_000),
        drift_ppm: 0,
    };
    let timing = Timing::for_bounds(Duration::from_secs(3), &bounds);
    assert_eq!(timing.margin, Duration::from_millis(1_700));
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..10_000 {
        assert!(!partition_overlaps(timing, &bounds, &mut rng));
    }
    // Without the margin, two instances overlap in some runs: the check can fail.
    let bare = Timing {
        silence: timing.silence,
        margin: Duration::ZERO,
    };
    assert!((0..10_000).any(|_| partition_overlaps(bare, &bounds, &mut rng)));

    // The decision as the I/O loop reads it.
    let t0 = Instant::now();
    let stable = view(&["a", "b", "c"]);
    let win = timing.decide(&Quorum::KeepMajority, &stable, &view(&["a", "b"]), "a", t0);
    assert!(!win.may_start(t0 + timing.silence));
    assert!(win.may_start(t0 + timing.silence + timing.margin));
    let lose = timing.decide(&Quorum::KeepMajority, &stable, &view(&["c"]), "c", t0);
    assert_eq!(lose.stop_at, Some(t0 + timing.silence));
    assert!(!lose.may_start(t0 + Duration::from_secs(3600)));

    // Nothing lost: no waiting.
    let all = view(&["a", "b"]);
    let d = timing.decide(&Quorum::KeepMajority, &all, &all, "a", Instant::now());
    assert_eq!(d.start_after, None);
    assert_eq!(d.stop_at, None);
}

#[test]
fn placement_margin_covers_clock_drift() {
    let bounds = MarginBounds {
        heartbeat: Duration::from_millis(500),
        max_latency: Duration::from_millis(100),
        detection_tick: Duration::from_millis(100),
        shutdown: Duration::from_millis(300),
        drift_ppm: 1_000,
    };
    // 1 s of bounds + 2 × 0.1% of (3 s + 1 s) = 1.008 s.
    assert_eq!(
        bounds.margin(Duration::from_secs(3)),
        Duration::from_millis(1_008)
    );
}

#[test]
fn placement_records_track_facts() {
    let mut s = ChildState::new();
    assert!(!s.ever_started());
    s.started(Instance::new("b", 1));
    s.started(Instance::new("a", 1));
    s.started(Instance::new("b", 2));
    assert_eq!(
        s.instances,
        [Instance::new("a", 1), Instance::new("b", 2)],
        "one record per node, sorted"
    );
    s.ended("a", Exit::Failed);
    assert_eq!(s.ended, Some(Exit::Failed));
    s.removed("b");
    assert!(s.instances.is_empty() && s.ever_started());

    // Members of the cluster's membership view become nodes without roles.
    let mut member = foundation_cluster::membership::Member::new("m", "10.0.0.9:4369", 7);
    assert_eq!(NodeInfo::from(&member), NodeInfo::new("m", 7));
    member.status = foundation_cluster::membership::Status::Leaving;
    assert!(NodeInfo::from(&member).leaving);
}

#[test]
fn placement_keep_referee_and_down_all_decide_and_time_as_documented() {
    let stable = view(&["a", "b", "c", "d"]);
    let referee = Quorum::KeepReferee("c".into());
    assert_eq!(referee.validate(&stable), Ok(()));
    // The side reaching the referee keeps running, however small; the referee alone too.
    assert!(referee.decide(&stable, &view(&["c"]), "c").keeps());
    assert!(referee.decide(&stable, &view(&["b", "c"]), "b").keeps());
    assert_eq!(
        referee.decide(&stable, &view(&["a", "b", "d"]), "a"),
        Verdict::Stop(QuorumLoss::RefereeUnreachable {
            referee: "c".into()
        })
    );
    // DownAll: one member lost without a graceful leave stops every side, the larger too.
    assert_eq!(
        Quorum::DownAll.decide(&stable, &view(&["a", "b", "c"]), "a"),
        Verdict::Stop(QuorumLoss::DownAll)
    );
    // A static quorum of zero never holds.
    assert_eq!(
        Quorum::StaticQuorum(0).validate(&stable),
        Err(QuorumError::QuorumTooSmall { quorum: 0, size: 4 })
    );

    // The timing: a losing side stops when the lost members are declared down (silence
    // after it last heard them) and never starts failovers; a winning side waits the
    // silence and the margin.
    let timing = Timing {
        silence: Duration::from_secs(1),
        margin: Duration::from_millis(500),
    };
    let t0 = Instant::now();
    let lose = timing.decide(&Quorum::DownAll, &stable, &view(&["a", "b", "c"]), "a", t0);
    assert_eq!(lose.stop_at, Some(t0 + Duration::from_secs(1)));
    assert!(!lose.may_start(t0 + Duration::from_secs(60)));
    let win = timing.decide(&referee, &stable, &view(&["c", "d"]), "d", t0);
    assert_eq!(win.start_after, Some(t0 + Duration::from_millis(1_500)));
    assert!(!win.may_start(t0 + Duration::from_millis(1_499)));
    assert!(win.may_start(t0 + Duration::from_millis(1_500)));
    let lose = timing.decide(&referee, &stable, &view(&["a", "b", "d"]), "b", t0);
    assert!(!lose.verdict.keeps() && lose.start_after.is_none());
}
