//! The distributed supervisor across node processes: a singleton on one node of three,
//! reached from all; failover after kill -9; replicated and per-node children, a joining
//! node getting its instance; temporary children not restarted; local restarts and a
//! transient child's normal end; terminate_child everywhere; which_children agreeing; bad
//! input; a real partition, the minority stopping its singleton before the majority
//! starts it.

pub mod harness;
mod pause;
mod rejoin;
mod split;

use harness::{Child, Net, start, three, three_in};

/// Tells `node` to start a child and returns the answer's tail (`ok <node>` or
/// `err <Variant>`).
fn start_child(node: &mut Child, line: &str) -> String {
    let id = line.split_whitespace().nth(1).unwrap().to_owned();
    node.tell(&format!("start {line}"));
    let prefix = format!("started {id} ");
    let got = node.expect(|l| l.starts_with(&prefix));
    got[prefix.len()..].to_owned()
}

/// The node a successful start answered from.
fn started_on(answer: &str) -> String {
    answer
        .strip_prefix("ok ")
        .unwrap_or_else(|| panic!("start failed: {answer}"))
        .to_owned()
}

/// Tells `node` to wait until child `id` answers on a node other than `from`; returns
/// that node and the last line starting with `also` that came meanwhile (the wait skips
/// other lines, and `also` lines may come before or after the answer).
fn moved(node: &mut Child, id: &str, from: &str, also: &str) -> (String, Option<String>) {
    node.tell(&format!("moved {id} {from}"));
    let prefix = format!("moved {id} ");
    let mut seen = None;
    loop {
        let line = node.expect(|l| l.starts_with(&prefix) || l.starts_with(also));
        match line.strip_prefix(&prefix) {
            Some(at) => return (at.to_owned(), seen),
            None => seen = Some(line),
        }
    }
}

/// The nodes but the one at `gone`.
fn without(nodes: [Child; 3], gone: usize) -> Vec<Child> {
    nodes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != gone)
        .map(|(_, n)| n)
        .collect()
}

fn call(node: &mut Child, id: &str) -> String {
    node.tell(&format!("call {id}"));
    let prefix = format!("call {id} ");
    let got = node.expect(|l| l.starts_with(&prefix));
    got[prefix.len()..].to_owned()
}

fn ask(node: &mut Child, line: &str, answer: &str) {
    node.tell(line);
    node.expect(|l| l == answer);
}

/// Waits (up to 25 s) until `node`'s which_children reads `table` with `instances`
/// instances running; on a timeout, fails with what it reads instead.
fn converge(node: &mut Child, instances: usize, table: &str) {
    node.tell(&format!("converge {instances} {table}"));
    let want = format!("converged {table}");
    let got = node.expect(|l| l == want || l.starts_with("diverged "));
    assert_eq!(got, want, "node {}", node.name);
}

#[test]
fn a_singleton_runs_on_exactly_one_of_three_nodes_and_answers_by_name_from_each() {
    let mut nodes = three();
    let owner = started_on(&start_child(&mut nodes[1], "echo s1 singleton"));
    let table = format!("s1={owner}/running;");
    for node in &mut nodes {
        ask(
            node,
            &format!("await s1 {owner}"),
            &format!("at s1 {owner}"),
        );
        assert_eq!(call(node, "s1"), format!("s1@{owner}"));
        // One instance in the cluster, and every node's records say so.
        converge(node, 1, &table);
    }
}

#[test]
fn a_singleton_whose_node_is_killed_answers_on_another_node() {
    let mut nodes = three();
    let owner = started_on(&start_child(&mut nodes[0], "echo s2 singleton"));
    let victim = nodes.iter().position(|n| n.name == owner).unwrap();
    nodes[victim].kill();
    let mut survivors = without(nodes, victim);
    let mut new_owner = None;
    let mut failover_on = None;
    for node in &mut survivors {
        let (at, event) = moved(node, "s2", &owner, "ev started s2");
        if let Some(line) = event {
            // Started where it moved to, as a failover (counted against its intensity).
            assert_eq!(line, "ev started s2 failover", "on {}", node.name);
            failover_on = Some(node.name.clone());
        }
        assert_ne!(at, owner);
        assert_eq!(*new_owner.get_or_insert_with(|| at.clone()), at);
        if node.name == at && failover_on.is_none() {
            // Its event may come after the name resolved (and before the call's answer).
            let line = node.expect(|l| l.starts_with("ev started s2"));
            assert_eq!(line, "ev started s2 failover");
            failover_on = Some(at.clone());
        }
        assert_eq!(call(node, "s2"), format!("s2@{at}"));
    }
    let new_owner = new_owner.unwrap();
    assert_eq!(failover_on, Some(new_owner.clone()));
    for node in &mut survivors {
        converge(node, 1, &format!("s2={new_owner}/running;"));
    }
}

#[test]
fn a_killed_nodes_singleton_moves_at_once_when_its_address_refuses_connections() {
    // A silence limit of a minute: a failover that waited for it (and the margin) would
    // not come within the harness's 30 s wait. The killed node's lanes close at once, and
    // its address refuses connections: no process is there, so nothing to wait for.
    let long = ("SILENCE_MS", "60000");
    let mut a = start("a", &[long]);
    let seed = a.addr.clone();
    let b = start("b", &[long, ("SEEDS", &seed)]);
    let c = start("c", &[long, ("SEEDS", &seed)]);
    ask(&mut a, "members 3", "members 3");
    let mut nodes = [a, b, c];
    for n in &mut nodes[1..] {
        ask(n, "members 3", "members 3");
    }
    let owner = started_on(&start_child(&mut nodes[0], "echo s3 singleton"));
    // Every node has its record first: a node killed the moment a start returns may take
    // the only record with it (documented).
    for node in &mut nodes {
        converge(node, 1, &format!("s3={owner}/running;"));
    }
    let victim = nodes.iter().position(|n| n.name == owner).unwrap();
    nodes[victim].kill();
    let mut survivors = without(nodes, victim);
    let mut new_owner = None;
    for node in &mut survivors {
        let (at, _) = moved(node, "s3", &owner, "ev started s3");
        assert_ne!(at, owner);
        assert_eq!(*new_owner.get_or_insert_with(|| at.clone()), at);
        assert_eq!(call(node, "s3"), format!("s3@{at}"));
    }
}

#[test]
fn a_supervisor_dropped_without_a_shutdown_has_its_children_started_elsewhere() {
    // Its node stays up, so no failure detector would ever tell the peers: the drop must.
    let mut nodes = three();
    let owner = started_on(&start_child(&mut nodes[0], "echo d1 singleton"));
    let dropped = nodes.iter().position(|n| n.name == owner).unwrap();
    ask(&mut nodes[dropped], "drop", "dropped");
    let mut heir = None;
    for (i, node) in nodes.iter_mut().enumerate() {
        if i == dropped {
            continue;
        }
        let (at, _) = moved(node, "d1", &owner, "ev started d1");
        assert_ne!(at, owner);
        assert_eq!(*heir.get_or_insert_with(|| at.clone()), at);
        assert_eq!(call(node, "d1"), format!("d1@{at}"));
    }
}

#[test]
fn replicated_and_all_children_run_per_node_and_a_joining_node_gets_its_instance() {
    let mut a = start("a", &[("SILENCE_MS", "1000")]);
    let seed = a.addr.clone();
    let mut b = start("b", &[("SILENCE_MS", "1000"), ("SEEDS", &seed)]);
    ask(&mut a, "members 2", "members 2");
    ask(&mut b, "members 2", "members 2");
    // A name call from a node with an instance reaches the local one.
    started_on(&start_child(&mut a, "echo r2 rep:2"));
    started_on(&start_child(&mut b, "echo every all"));
    // More replicas than nodes: not an error, one on each node.
    started_on(&start_child(&mut a, "echo r5 rep:5"));
    let table = "every=a,b/running;r2=a,b/running;r5=a,b/running;";
    for node in [&mut a, &mut b] {
        converge(node, 6, table);
        let me = node.name.clone();
        assert_eq!(call(node, "r2"), format!("r2@{me}"));
        assert_eq!(call(node, "every"), format!("every@{me}"));
    }

    // A joining node gets its `All` instance and r5's third; r2 stays on two.
    let mut c = start("c", &[("SILENCE_MS", "1000"), ("SEEDS", &seed)]);
    ask(&mut c, "members 3", "members 3");
    ask(&mut c, "await every c", "at every c");
    assert_eq!(call(&mut c, "every"), "every@c");
    let table = "every=a,b,c/running;r2=a,b/running;r5=a,b,c/running;";
    for node in [&mut a, &mut b, &mut c] {
        converge(node, 8, table);
    }
    let r2 = call(&mut c, "r2");
    assert!(r2 == "r2@a" || r2 == "r2@b", "{r2}");
}

#[test]
fn a_temporary_child_is_not_restarted_after_its_node_dies_and_a_pinned_one_waits() {
    let mut nodes = three();
    let owner = started_on(&start_child(&mut nodes[0], "echo t1 singleton temporary"));
    let victim = nodes.iter().position(|n| n.name == owner).unwrap();
    let line = format!("echo p1 pinned:{owner}");
    assert_eq!(
        start_child(&mut nodes[(victim + 1) % 3], &line),
        format!("ok {owner}")
    );
    nodes[victim].kill();
    let mut survivors = without(nodes, victim);
    for node in &mut survivors {
        ask(node, "members 2", "members 2");
        // The temporary child is forgotten (its record removed), never started again.
        ask(node, "forgotten t1", "forgotten t1");
        // The pinned one waits for its node.
        ask(node, "status p1 pending", "status p1 pending");
        assert_eq!(call(node, "p1"), "err");
    }
    // Pinned to a node that is gone: refused.
    let line = format!("echo p2 pinned:{owner}");
    assert_eq!(start_child(&mut survivors[0], &line), "err Placement");
}

#[test]
fn terminate_child_removes_it_everywhere_and_which_children_agrees_on_every_node() {
    let mut nodes = three();
    let owner = started_on(&start_child(&mut nodes[0], "echo k1 singleton"));
    started_on(&start_child(&mut nodes[0], "echo k2 all"));
    let table = format!("k1={owner}/running;k2=a,b,c/running;");
    for node in &mut nodes {
        converge(node, 4, &table);
    }
    ask(&mut nodes[1], "terminate k1", "terminated k1 ok");
    for node in &mut nodes {
        ask(node, "forgotten k1", "forgotten k1");
        converge(node, 3, "k2=a,b,c/running;");
    }
    ask(&mut nodes[2], "terminate k2", "terminated k2 ok");
    for node in &mut nodes {
        ask(node, "forgotten k2", "forgotten k2");
        converge(node, 0, "");
    }
    nodes[0].tell("terminate k2");
    let got = nodes[0].expect(|l| l.starts_with("terminated k2"));
    assert!(got.starts_with("terminated k2 err"), "{got}");
}

#[test]
fn bad_input_gets_a_typed_error_and_a_child_failing_everywhere_is_given_up() {
    let mut a = start("a", &[("SILENCE_MS", "1000")]);
    let seed = a.addr.clone();
    let mut b = start("b", &[("SILENCE_MS", "1000"), ("SEEDS", &seed)]);
    ask(&mut a, "members 2", "members 2");
    ask(&mut b, "members 2", "members 2");

    let owner = started_on(&start_child(&mut a, "echo d1 singleton"));
    converge(&mut b, 1, &format!("d1={owner}/running;"));
    assert_eq!(
        start_child(&mut b, "echo d1 singleton"),
        "err AlreadyStarted"
    );
    assert_eq!(
        start_child(&mut a, "nokind x1 singleton"),
        "err UnknownKind"
    );
    assert_eq!(start_child(&mut a, "echo x2 pinned:zzz"), "err Placement");
    assert_eq!(start_child(&mut a, "echo x3 rep:0"), "err Placement");

    // A name held by a process that is not a child.
    ask(&mut a, "squat sq", "squat sq ok");
    assert_eq!(start_child(&mut a, "echo sq singleton"), "err NameTaken");

    // An init that fails on every node: tried within its move intensity, then given up
    // and removed everywhere (no crash loop).
    assert_eq!(start_child(&mut b, "crash cr singleton"), "err GaveUp");
    for node in [&mut a, &mut b] {
        ask(node, "forgotten cr", "forgotten cr");
        converge(node, 1, &format!("d1={owner}/running;"));
    }
}

#[test]
fn a_crash_is_restarted_on_its_node_and_a_transient_child_that_stops_normally_is_forgotten() {
    let mut nodes = three();
    let owner = started_on(&start_child(&mut nodes[0], "echo w1 singleton"));
    for node in &mut nodes {
        ask(
            node,
            &format!("await w1 {owner}"),
            &format!("at w1 {owner}"),
        );
    }
    // OTP semantics on its node: restarted there, behind the same name.
    nodes[1].tell("crash w1");
    for node in &mut nodes {
        ask(node, "restarts w1 1", "restarts w1 1");
        assert_eq!(call(node, "w1"), format!("w1@{owner}"));
    }
    converge(&mut nodes[2], 1, &format!("w1={owner}/running;"));

    // A transient child that ends normally is not restarted anywhere: it is forgotten.
    let owner = started_on(&start_child(&mut nodes[0], "echo w2 singleton transient"));
    ask(
        &mut nodes[2],
        &format!("await w2 {owner}"),
        &format!("at w2 {owner}"),
    );
    nodes[2].tell("quit w2");
    for node in &mut nodes {
        ask(node, "forgotten w2", "forgotten w2");
    }
}

#[test]
fn a_cut_off_minority_stops_its_singleton_before_the_majority_starts_it() {
    let net = Net::new(3);
    // A 2 s margin: well above heartbeat + latency + detection tick + stop time here. The
    // children take 10 s to stop on their own (`terminate`): the losing side must not
    // wait for that (it kills what has not stopped within a quarter of the margin).
    let mut nodes = three_in(&net, &[("MARGIN_MS", "2000"), ("STOP_MS", "10000")]);
    let owner = started_on(&start_child(&mut nodes[0], "echo q1 singleton"));
    let cut = nodes.iter().position(|n| n.name == owner).unwrap();
    // A child pinned to the owner: bound to its node, never started elsewhere.
    let pinned = format!("echo p9 pinned:{owner}");
    assert_eq!(start_child(&mut nodes[0], &pinned), format!("ok {owner}"));
    net.cut(cut);
    // The minority (the owner alone) loses the quorum and stops its instance.
    nodes[cut].expect(|l| l == "ev quorumlost");
    nodes[cut].expect(|l| l == "ev stopped q1");
    let stopped = nanos(&nodes[cut].expect(|l| l.starts_with("t stopped q1 ")));
    // The pinned child keeps running there: no other side could start a second one.
    assert_eq!(call(&mut nodes[cut], "p9"), format!("p9@{owner}"));
    // The majority starts it once the wait (silence + margin) is over: after the
    // minority's instance stopped, on the machine clock all processes share.
    let mut heir = None;
    let mut started = None;
    for (i, node) in nodes.iter_mut().enumerate() {
        if i == cut {
            continue;
        }
        let (at, event) = moved(node, "q1", &owner, "t started q1 ");
        if let Some(line) = event {
            started = Some(nanos(&line));
        }
        assert_eq!(*heir.get_or_insert_with(|| at.clone()), at);
    }
    let heir = heir.unwrap();
    let heir_node = nodes.iter_mut().find(|n| n.name == heir).unwrap();
    let started =
        started.unwrap_or_else(|| nanos(&heir_node.expect(|l| l.starts_with("t started q1 "))));
    assert!(
        stopped < started,
        "two instances at once: the minority stopped at {stopped}, the majority started at {started}"
    );
    // Healed: one instance, and every node agrees where.
    net.heal(cut);
    nodes[cut].expect(|l| l == "ev quorumback");
    for node in &mut nodes {
        converge(node, 2, &format!("p9={owner}/running;q1={heir}/running;"));
        ask(node, &format!("await q1 {heir}"), &format!("at q1 {heir}"));
        assert_eq!(call(node, "q1"), format!("q1@{heir}"));
    }
}

#[test]
fn under_a_static_quorum_of_three_neither_side_of_a_2_1_split_runs_the_singleton() {
    let net = Net::new(3);
    let mut nodes = three_in(&net, &[("QUORUM", "static:3")]);
    let owner = started_on(&start_child(&mut nodes[0], "echo z1 singleton"));
    let cut = nodes.iter().position(|n| n.name == owner).unwrap();
    net.cut(cut);
    // Both sides are below the quorum: the owner stops its instance, the other two start
    // none (the policy the user chose: no instance rather than a guess).
    nodes[cut].expect(|l| l == "ev quorumlost");
    nodes[cut].expect(|l| l == "ev stopped z1");
    for (i, node) in nodes.iter_mut().enumerate() {
        if i != cut {
            node.expect(|l| l == "ev quorumlost");
            converge(node, 0, "z1=/starting;");
        }
    }
    // Healed: the quorum is back everywhere and the singleton runs once.
    net.heal(cut);
    for node in &mut nodes {
        node.expect(|l| l == "ev quorumback");
    }
    ask(&mut nodes[cut], "status z1 running", "status z1 running");
    nodes[cut].tell("children");
    let table = nodes[cut].expect(|l| l.starts_with("children "))["children ".len()..].to_owned();
    for node in &mut nodes {
        converge(node, 1, &table);
    }
}

/// The time in a `t started|stopped <id> <nanos>` line.
fn nanos(line: &str) -> u128 {
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// An id whose rendezvous owner among `a`, `b`, `c` is `c` (so it moves to `c` when `c`
/// joins and the child may move).
fn id_won_by_c(prefix: &str) -> String {
    use foundation_registry::placement::Rendezvous;
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|id| {
            let score = |n: &str| Rendezvous::score(n, id.as_bytes());
            score("c") > score("a") && score("c") > score("b")
        })
        .unwrap()
}

#[test]
fn an_eager_child_moves_to_a_joining_owner_and_a_manual_one_only_on_rebalance() {
    let mut a = start("a", &[("SILENCE_MS", "1000")]);
    let seed = a.addr.clone();
    let mut b = start("b", &[("SILENCE_MS", "1000"), ("SEEDS", &seed)]);
    ask(&mut a, "members 2", "members 2");
    ask(&mut b, "members 2", "members 2");
    let (eager, manual) = (id_won_by_c("e"), id_won_by_c("m"));
    let first = started_on(&start_child(
        &mut a,
        &format!("echo {eager} singleton eager"),
    ));
    let second = started_on(&start_child(
        &mut a,
        &format!("echo {manual} singleton manual"),
    ));

    let mut c = start("c", &[("SILENCE_MS", "1000"), ("SEEDS", &seed)]);
    for node in [&mut a, &mut b, &mut c] {
        ask(node, "members 3", "members 3");
    }
    // The eager child moves to its new owner (for now: stopped there, started here).
    ask(
        &mut c,
        &format!("await {eager} c"),
        &format!("at {eager} c"),
    );
    let table = format!("{eager}=c/running;{manual}={second}/running;");
    for node in [&mut a, &mut b, &mut c] {
        converge(node, 2, &table);
    }
    assert_ne!(first, "c");
    // The manual one stays until a rebalance is asked for, then moves too.
    ask(&mut b, "rebalance", "rebalanced");
    ask(
        &mut c,
        &format!("await {manual} c"),
        &format!("at {manual} c"),
    );
    let table = format!("{eager}=c/running;{manual}=c/running;");
    for node in [&mut a, &mut b, &mut c] {
        converge(node, 2, &table);
        assert_eq!(call(node, &manual), format!("{manual}@c"));
    }
}

#[test]
fn roles_restrict_where_a_child_runs_and_a_local_child_goes_with_its_node() {
    let mut a = start("a", &[("SILENCE_MS", "1000")]);
    let seed = a.addr.clone();
    let mut b = start(
        "b",
        &[("SILENCE_MS", "1000"), ("SEEDS", &seed), ("ROLE", "gpu")],
    );
    let mut c = start("c", &[("SILENCE_MS", "1000"), ("SEEDS", &seed)]);
    for node in [&mut a, &mut b, &mut c] {
        ask(node, "members 3", "members 3");
    }
    // Only b offers the role: every instance runs there, whoever starts it.
    assert_eq!(start_child(&mut a, "echo g1 rep:3 role:gpu"), "ok b");
    // No node offers this one: the child waits (Pending), and says so.
    assert_eq!(
        start_child(&mut c, "echo t1 singleton role:tpu"),
        "err Pending"
    );
    ask(&mut a, "status t1 pending", "status t1 pending");
    // A local child runs on the node that started it...
    assert_eq!(start_child(&mut c, "echo l1 local"), "ok c");
    for node in [&mut a, &mut b] {
        ask(node, "await l1 c", "at l1 c");
    }
    // ...and goes with it.
    c.kill();
    for node in [&mut a, &mut b] {
        ask(node, "forgotten l1", "forgotten l1");
        converge(node, 1, "g1=b/running;t1=/pending;");
    }
}

#[test]
fn a_node_back_with_a_new_incarnation_has_its_children_started_again_at_once() {
    let mut nodes = three();
    let seed = nodes[0].addr.clone();
    // A child pinned to c: only c's return brings it back.
    assert_eq!(start_child(&mut nodes[0], "echo p1 pinned:c"), "ok c");
    nodes[2].kill();
    for node in &mut nodes[..2] {
        ask(node, "members 2", "members 2");
        ask(node, "status p1 pending", "status p1 pending");
    }
    // c again, as a new incarnation: its pinned child starts there, and every node agrees.
    let mut c = start("c", &[("SILENCE_MS", "1000"), ("SEEDS", &seed)]);
    ask(&mut c, "await p1 c", "at p1 c");
    nodes[2] = c;
    for node in &mut nodes {
        converge(node, 1, "p1=c/running;");
        assert_eq!(call(node, "p1"), "p1@c");
    }
}

#[test]
fn a_supervisor_shut_down_gracefully_has_its_children_started_elsewhere_without_a_wait() {
    let mut nodes = three();
    let owner = started_on(&start_child(&mut nodes[0], "echo g1 singleton"));
    let leaving = nodes.iter().position(|n| n.name == owner).unwrap();
    // `exit`: the supervisor shuts down (its instances stop, its peers are told), then the
    // node.
    nodes[leaving].tell("exit");
    let mut heir = None;
    let mut cause = None;
    for (i, node) in nodes.iter_mut().enumerate() {
        if i == leaving {
            continue;
        }
        let (at, event) = moved(node, "g1", &owner, "ev started g1 ");
        if let Some(line) = event {
            cause = Some(line["ev started g1 ".len()..].to_owned());
        }
        assert_eq!(*heir.get_or_insert_with(|| at.clone()), at);
    }
    let heir = heir.unwrap();
    let cause = cause.unwrap_or_else(|| {
        let node = nodes.iter_mut().find(|n| n.name == heir).unwrap();
        node.expect(|l| l.starts_with("ev started g1 "))["ev started g1 ".len()..].to_owned()
    });
    // Not a failover: nothing failed, nothing counts against its intensity, and nothing
    // waits for the quorum.
    assert_ne!(cause, "failover");
}

#[test]
fn a_quorum_policy_that_cannot_hold_in_the_cluster_refuses_children_with_a_typed_error() {
    // A static quorum of one in a cluster of two (both sides could reach it) and a referee
    // that is no member: refused, typed. A referee that is a member: accepted.
    for (quorum, id, answer) in [
        ("static:1", "v1", "err Quorum"),
        ("referee:zz", "v2", "err Quorum"),
        ("referee:b", "v3", "ok"),
    ] {
        let settings = [("SILENCE_MS", "1000"), ("QUORUM", quorum)];
        let mut a = start("a", &settings);
        let seed = a.addr.clone();
        let mut b = start("b", &[settings[0], settings[1], ("SEEDS", &seed)]);
        if quorum == "static:1" {
            // Reported as the membership settles at two.
            a.expect(|l| l == "ev quoruminvalid");
        }
        ask(&mut a, "members 2", "members 2");
        ask(&mut b, "members 2", "members 2");
        let got = start_child(&mut a, &format!("echo {id} singleton"));
        assert!(got.starts_with(answer), "{quorum}: {got}");
    }
}

/// Tells `node` to migrate child `id` to `to`; returns the answer's tail (`ok <node>` or
/// `err <Variant>`).
fn migrate(node: &mut Child, id: &str, to: &str) -> String {
    node.tell(&format!("migrate {id} {to}"));
    let prefix = format!("migrated {id} ");
    let got = node.expect(|l| l.starts_with(&prefix));
    got[prefix.len()..].to_owned()
}

/// The child's log as `node` reads it: `<len> seq` when it is exactly 1..=len.
fn log(node: &mut Child, id: &str) -> String {
    node.tell(&format!("log {id}"));
    let prefix = format!("log {id} ");
    let got = node.expect(|l| l.starts_with(&prefix));
    got[prefix.len()..].to_owned()
}

/// Ends `node`'s stream to `id`; returns the last number sent (after checking that no
/// send failed).
fn end_stream(node: &mut Child, id: &str) -> u64 {
    node.tell(&format!("endstream {id}"));
    let prefix = format!("streamed {id} ");
    let got = node.expect(|l| l.starts_with(&prefix));
    let words: Vec<&str> = got[prefix.len()..].split(' ').collect();
    assert_eq!(words[1], "0", "sends failed during the stream: {got}");
    words[0].parse().unwrap()
}

#[test]
fn migrate_moves_a_singleton_with_its_state_and_a_stream_sent_through_the_move_arrives_once_in_order()
 {
    let mut nodes = three();
    let owner = started_on(&start_child(&mut nodes[0], "stream m1 singleton"));
    let from = nodes.iter().position(|n| n.name == owner).unwrap();
    let (to, sender) = ((from + 1) % 3, (from + 2) % 3);
    let target = nodes[to].name.clone();
    // A stream from a third node, running through the move.
    ask(
        &mut nodes[sender],
        &format!("await m1 {owner}"),
        &format!("at m1 {owner}"),
    );
    nodes[sender].tell("stream m1");
    nodes[sender].expect(|l| l == "streaming m1");
    // Asked from the target, carried out by the owner; started there as a handoff.
    nodes[to].tell(&format!("migrate m1 {target}"));
    // A call while it moves (held, if it comes during the hold) sees a whole prefix.
    let during = log(&mut nodes[sender], "m1");
    assert!(
        during.ends_with(" seq"),
        "a call during the move read {during}"
    );
    nodes[to].expect_all(&[&format!("migrated m1 ok {target}"), "ev started m1 handoff"]);
    let last = end_stream(&mut nodes[sender], "m1");
    // Every number once, in order, on the new incarnation: the state came whole and
    // nothing sent during the move was lost or overtaken.
    for node in &mut nodes {
        assert_eq!(call(node, "m1"), format!("m1@{target}"));
        assert_eq!(
            log(node, "m1"),
            format!("{last} seq"),
            "read from {}",
            node.name
        );
        converge(node, 1, &format!("m1={target}/running;"));
    }
}

/// A singleton `id` of kind `stream` on one of three nodes; another node streams numbers
/// to it while its node is told `how` (`exit`: the supervisor's shutdown then
/// `Node::leave`; `leave`: `Node::leave` alone). The heir must have started it as a
/// handoff, and every number must be in its log once, in order.
fn leave_during_a_stream(id: &str, how: &str) {
    let mut nodes = three();
    let owner = started_on(&start_child(
        &mut nodes[0],
        &format!("stream {id} singleton"),
    ));
    let leaving = nodes.iter().position(|n| n.name == owner).unwrap();
    let sender = (leaving + 1) % 3;
    ask(
        &mut nodes[sender],
        &format!("await {id} {owner}"),
        &format!("at {id} {owner}"),
    );
    nodes[sender].tell(&format!("stream {id}"));
    nodes[sender].expect(|l| l == format!("streaming {id}"));
    nodes[leaving].tell(how);
    let started = format!("ev started {id} ");
    let (heir, event) = moved(&mut nodes[sender], id, &owner, &started);
    assert_ne!(heir, owner);
    let last = end_stream(&mut nodes[sender], id);
    assert_eq!(log(&mut nodes[sender], id), format!("{last} seq"));
    // Started on the heir as a handoff, not a failover.
    let heir_node = nodes.iter_mut().find(|n| n.name == heir).unwrap();
    let event = event.unwrap_or_else(|| heir_node.expect(|l| l.starts_with(&started)));
    assert_eq!(event, format!("{started}handoff"));
}

#[test]
fn a_graceful_shutdown_hands_its_singleton_off_with_the_state_and_every_message() {
    // The supervisor shuts down gracefully (handing off first), then the node leaves.
    leave_during_a_stream("h1", "exit");
}

#[test]
fn a_singleton_whose_node_is_killed_starts_elsewhere_from_its_last_checkpoint() {
    let mut nodes = three();
    let owner = started_on(&start_child(&mut nodes[0], "stream k1 singleton"));
    let victim = nodes.iter().position(|n| n.name == owner).unwrap();
    let sender = (victim + 1) % 3;
    ask(
        &mut nodes[sender],
        &format!("await k1 {owner}"),
        &format!("at k1 {owner}"),
    );
    nodes[sender].tell("push k1 1 10");
    nodes[sender].expect(|l| l == "pushed k1 10 0");
    nodes[sender].tell("save k1");
    nodes[sender].expect(|l| l == "save k1");
    // Copied to both other nodes (two replicas by default)...
    for (i, node) in nodes.iter_mut().enumerate() {
        if i != victim {
            ask(node, "saved k1 1", "saved k1 1");
        }
    }
    // ...and two more numbers that no checkpoint holds.
    nodes[sender].tell("push k1 11 12");
    nodes[sender].expect(|l| l == "pushed k1 12 0");
    assert_eq!(log(&mut nodes[sender], "k1"), "12 seq");
    nodes[victim].kill();
    let mut survivors = without(nodes, victim);
    for node in &mut survivors {
        let (at, _) = moved(node, "k1", &owner, "ev started k1 ");
        assert_ne!(at, owner);
        // The last checkpoint: 1..=10; what came after it died with the node.
        assert_eq!(log(node, "k1"), "10 seq", "read from {}", node.name);
    }
}

#[test]
fn migrate_refuses_unknown_nodes_missing_roles_unknown_children_and_unmovable_ones() {
    let mut a = start("a", &[("SILENCE_MS", "1000"), ("ROLE", "gpu")]);
    let seed = a.addr.clone();
    let mut b = start(
        "b",
        &[("SILENCE_MS", "1000"), ("SEEDS", &seed), ("ROLE", "gpu")],
    );
    let mut c = start("c", &[("SILENCE_MS", "1000"), ("SEEDS", &seed)]);
    for node in [&mut a, &mut b, &mut c] {
        ask(node, "members 3", "members 3");
    }
    let owner = started_on(&start_child(&mut a, "stream g1 singleton role:gpu"));
    ask(&mut c, "status g1 running", "status g1 running");
    assert_eq!(migrate(&mut c, "g1", "c"), "err MissingRole");
    assert_eq!(migrate(&mut c, "g1", "nowhere"), "err UnknownNode");
    assert_eq!(migrate(&mut c, "nothing", "a"), "err NotFound");
    started_on(&start_child(&mut a, "echo e1 singleton"));
    ask(&mut b, "status e1 running", "status e1 running");
    assert_eq!(migrate(&mut b, "e1", "c"), "err NoHandoff");
    started_on(&start_child(&mut a, "stream r1 rep:2"));
    ask(&mut b, "status r1 running", "status r1 running");
    assert_eq!(migrate(&mut b, "r1", "c"), "err NotMovable");
    // Refused moves leave it where it was, answering.
    assert_eq!(call(&mut c, "g1"), format!("g1@{owner}"));
}

#[tokio::test]
async fn the_supervisors_silence_is_the_nodes_unless_set_and_never_shorter() {
    use foundation_cluster::node::{Node, NodeConfig};
    use foundation_registry::ClusterRegistry;
    use foundation_registry::distributed::{ChildName, DistributedSpec, DistributedSupervisor};
    use foundation_registry::placement::Timing;
    use std::time::Duration;

    let config = NodeConfig::new("dsup-silence", "cookie")
        .listen("127.0.0.1:0".parse().unwrap())
        .silence(Duration::from_millis(4_500));
    let node = Node::start(config).await.unwrap();
    let names: ClusterRegistry<ChildName, harness::Work> =
        ClusterRegistry::start(&node, "silence").await.unwrap();
    let unset = DistributedSupervisor::start(&node, &names, DistributedSpec::new("unset"))
        .await
        .unwrap();
    assert_eq!(unset.timing().silence, Duration::from_millis(4_500));
    assert_eq!(unset.timing().margin, Duration::from_secs(1));
    let short = Timing {
        silence: Duration::from_secs(1),
        margin: Duration::from_millis(300),
    };
    let raised =
        DistributedSupervisor::start(&node, &names, DistributedSpec::new("short").timing(short))
            .await
            .unwrap();
    assert_eq!(raised.timing().silence, Duration::from_millis(4_500));
    assert_eq!(raised.timing().margin, Duration::from_millis(300));
    let long = Timing {
        silence: Duration::from_secs(9),
        margin: Duration::from_millis(300),
    };
    let kept =
        DistributedSupervisor::start(&node, &names, DistributedSpec::new("long").timing(long))
            .await
            .unwrap();
    assert_eq!(kept.timing(), long);
    for sup in [unset, raised, kept] {
        sup.shutdown().await;
    }
    node.shutdown().await;
}

/// A child that starts from a number and replies it.
#[derive(Clone)]
struct From64;

impl foundation_actors::Actor for From64 {
    type Msg = harness::Work;
    type State = u64;
    type Args = u64;
    async fn init(
        &self,
        _: &foundation_actors::Addr<harness::Work>,
        n: u64,
    ) -> Result<u64, foundation_actors::ActorError> {
        Ok(n)
    }
    async fn handle(
        &self,
        _: &foundation_actors::Addr<harness::Work>,
        _: harness::Work,
        _: &mut u64,
    ) -> Result<(), foundation_actors::ActorError> {
        Ok(())
    }
}

#[tokio::test]
async fn arguments_not_of_the_kinds_type_are_refused_by_start_child() {
    use foundation_actors::ChildSpec;
    use foundation_cluster::node::{Node, NodeConfig};
    use foundation_registry::ClusterRegistry;
    use foundation_registry::distributed::{
        ChildName, DistributedSpec, DistributedSupervisor, StartChildError,
    };
    use foundation_registry::placement::{ChildPlacement, Placement};

    let config = NodeConfig::new("dsup-args", "cookie").listen("127.0.0.1:0".parse().unwrap());
    let node = Node::start(config).await.unwrap();
    let names: ClusterRegistry<ChildName, harness::Work> =
        ClusterRegistry::start(&node, "wrong-args").await.unwrap();
    let spec =
        DistributedSpec::new("wrong-args").kind("from", |n: u64| ChildSpec::new("from", From64, n));
    let sup = DistributedSupervisor::start(&node, &names, spec)
        .await
        .unwrap();
    let one = |id: &str| ChildPlacement::new(id, Placement::Singleton);

    // postcard would read the string's length (5) as the number and ignore the rest: the
    // child would start, from 5. A unit has no bytes at all: the child would fail to
    // start on every node and be given up, with nothing saying why.
    for (id, r) in [
        ("s", sup.start_child("from", "hello", one("s")).await),
        ("u", sup.start_child("from", &(), one("u")).await),
        (
            "t",
            sup.start_child("from", &(1_u64, 2_u64), one("t")).await,
        ),
    ] {
        match r {
            Err(StartChildError::WrongArgs {
                child,
                kind,
                expected,
            }) => assert_eq!(
                (child.as_str(), kind.as_str(), expected),
                (id, "from", "u64")
            ),
            other => panic!("{id}: expected WrongArgs, got {other:?}"),
        }
        assert!(sup.which_children().is_empty(), "{id}: nothing recorded");
    }
    let e = sup
        .start_child("from", "hello", one("s"))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the arguments of child \"s\" are not of kind \"from\"'s argument type `u64`"
    );
    // The right type starts.
    assert!(sup.start_child("from", &7_u64, one("ok")).await.is_ok());
    sup.shutdown().await;
    node.shutdown().await;
}

#[test]
fn a_rebalance_hands_a_singleton_off_to_its_new_owner_with_its_state() {
    let mut a = start("a", &[("SILENCE_MS", "1000")]);
    let seed = a.addr.clone();
    let mut b = start("b", &[("SILENCE_MS", "1000"), ("SEEDS", &seed)]);
    ask(&mut a, "members 2", "members 2");
    ask(&mut b, "members 2", "members 2");
    let id = id_won_by_c("hm");
    let first = started_on(&start_child(
        &mut a,
        &format!("stream {id} singleton manual"),
    ));
    a.tell(&format!("push {id} 1 50"));
    a.expect(|l| l == format!("pushed {id} 50 0"));
    assert_eq!(log(&mut a, &id), "50 seq");
    let mut c = start("c", &[("SILENCE_MS", "1000"), ("SEEDS", &seed)]);
    for node in [&mut a, &mut b, &mut c] {
        ask(node, "members 3", "members 3");
    }
    // c wins it now: a rebalance moves it there, as a handoff, with its log.
    ask(&mut b, "rebalance", "rebalanced");
    c.tell(&format!("await {id} c"));
    c.expect_all(&[&format!("at {id} c"), &format!("ev started {id} handoff")]);
    assert_ne!(first, "c");
    for node in [&mut a, &mut b, &mut c] {
        assert_eq!(log(node, &id), "50 seq", "read from {}", node.name);
    }
}

/// A node that declares a singleton the cluster runs before it has met any member (a
/// cluster of one, it starts its own instance at once) yields when the records meet,
/// whatever its name: `zzz` sorts after every member's name, which decided the conflict
/// before (the running instance was stopped and its state lost).
#[test]
fn a_newcomer_declaring_a_running_singleton_before_it_met_the_cluster_yields_to_it() {
    let mut nodes = three();
    let owner = started_on(&start_child(&mut nodes[0], "stream hits singleton"));
    nodes[0].tell("push hits 1 24");
    nodes[0].expect(|l| l == "pushed hits 24 0");
    assert_eq!(log(&mut nodes[0], "hits"), "24 seq");
    let mut zzz = start("zzz", &[("SILENCE_MS", "1000")]);
    assert_eq!(start_child(&mut zzz, "stream hits singleton"), "ok zzz");
    let seed = nodes[0].addr.clone();
    ask(
        &mut zzz,
        &format!("connect {seed}"),
        &format!("connecting {seed}"),
    );
    let mut all: Vec<&mut Child> = nodes.iter_mut().collect();
    all.push(&mut zzz);
    // The state is the running instance's (a fresh one would read `0 seq`), and one
    // instance is left, where it ran.
    for node in all {
        ask(node, "members 4", "members 4");
        converge(node, 1, &format!("hits={owner}/running;"));
        assert_eq!(call(node, "hits"), format!("hits@{owner}"));
        assert_eq!(log(node, "hits"), "24 seq", "read from {}", node.name);
    }
}

/// As above, but the newcomer's registration of the name wins the registry's conflict:
/// the running instance's registration has a larger Lamport clock (5 or more: four
/// registrations and removals came before it), and the newcomer's name, `0`, sorts before
/// every member's. The registry takes the name from the running instance, which its
/// default policy (`OnConflict::Stop`) used to stop; the records keep it, the newcomer's
/// instance stops, and the running one is named again: its state is the one read (a
/// stopped and restarted instance would read `0 seq`: nothing was checkpointed).
#[test]
fn a_newcomer_whose_registration_wins_the_name_still_yields_the_running_singleton() {
    let mut nodes = three();
    for k in ["k1", "k2"] {
        started_on(&start_child(&mut nodes[0], &format!("echo {k} singleton")));
        ask(
            &mut nodes[0],
            &format!("terminate {k}"),
            &format!("terminated {k} ok"),
        );
    }
    let owner = started_on(&start_child(&mut nodes[0], "stream hits singleton"));
    nodes[0].tell("push hits 1 24");
    nodes[0].expect(|l| l == "pushed hits 24 0");
    assert_eq!(log(&mut nodes[0], "hits"), "24 seq");
    let mut early = start("0", &[("SILENCE_MS", "1000")]);
    assert_eq!(start_child(&mut early, "stream hits singleton"), "ok 0");
    // Its instance answers by name before it meets anyone: a registration at clock 1.
    assert_eq!(log(&mut early, "hits"), "0 seq");
    let seed = nodes[0].addr.clone();
    ask(
        &mut early,
        &format!("connect {seed}"),
        &format!("connecting {seed}"),
    );
    let mut all: Vec<&mut Child> = nodes.iter_mut().collect();
    all.push(&mut early);
    for node in all {
        ask(node, "members 4", "members 4");
        converge(node, 1, &format!("hits={owner}/running;"));
        ask(
            node,
            &format!("await hits {owner}"),
            &format!("at hits {owner}"),
        );
        assert_eq!(log(node, "hits"), "24 seq", "read from {}", node.name);
    }
}

#[test]
fn a_crashed_handoff_child_is_restarted_on_its_node_from_its_last_checkpoint() {
    let mut nodes = three();
    let owner = started_on(&start_child(&mut nodes[0], "stream c1 singleton"));
    let node = &mut nodes[0];
    ask(
        node,
        &format!("await c1 {owner}"),
        &format!("at c1 {owner}"),
    );
    node.tell("push c1 1 5");
    node.expect(|l| l == "pushed c1 5 0");
    ask(node, "save c1", "save c1");
    node.tell("push c1 6 7");
    node.expect(|l| l == "pushed c1 7 0");
    assert_eq!(log(node, "c1"), "7 seq");
    // Restarted by its local supervisor, on its node: from the checkpoint (1..=5); what
    // came after it is lost with the crashed incarnation's state.
    node.tell("crash c1");
    ask(node, "restarts c1 1", "restarts c1 1");
    assert_eq!(log(node, "c1"), "5 seq");
    assert_eq!(call(node, "c1"), format!("c1@{owner}"));
}

#[test]
fn node_leave_alone_hands_its_singleton_off_with_the_state_and_every_message() {
    // Only `Node::leave`: its leave hook hands the children off first.
    leave_during_a_stream("n1", "leave");
}

/// `place_child` and `wait_child` on one node in this process (the node, its registry and
/// a supervisor with the kinds `ok`, an idle child, and `crash`, whose `init` always
/// fails): names unique to each test, as the tests of this binary share a process under
/// `cargo test`.
mod placing {
    use std::time::Duration;

    use foundation_actors::prelude::*;
    use foundation_cluster::node::{Node, NodeConfig};
    use foundation_registry::ClusterRegistry;
    use foundation_registry::distributed::{
        ChildName, ChildStatus, DistributedSpec, DistributedSupervisor, StartChildError,
    };
    use foundation_registry::placement::{ChildPlacement, Placement, Quorum};

    use super::harness::{Crasher, Work};

    #[derive(Clone)]
    struct Idle;

    impl Actor for Idle {
        type Msg = Work;
        type State = ();
        type Args = ();

        async fn init(&self, _: &Addr<Work>, (): ()) -> Result<(), ActorError> {
            Ok(())
        }

        async fn handle(&self, _: &Addr<Work>, msg: Work, (): &mut ()) -> Result<(), ActorError> {
            if let Work::Ask(port) = msg {
                let _ = port.send("idle".to_owned());
            }
            Ok(())
        }
    }

    /// Arguments that refuse to encode.
    struct Unencodable;

    impl serde::Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }

    async fn one_node(
        name: &str,
        quorum: Quorum,
    ) -> (
        Node,
        ClusterRegistry<ChildName, Work>,
        DistributedSupervisor<Work>,
    ) {
        let config = NodeConfig::new(name, "cookie").listen("127.0.0.1:0".parse().unwrap());
        let node = Node::start(config).await.unwrap();
        let names: ClusterRegistry<ChildName, Work> =
            ClusterRegistry::start(&node, name).await.unwrap();
        let spec = DistributedSpec::new(name)
            .kind("ok", |(): ()| ChildSpec::new("ok", Idle, ()))
            .kind("crash", |(): ()| ChildSpec::new("crash", Crasher, ()))
            .sync_every(Duration::from_millis(20))
            .quorum(quorum);
        let sup = DistributedSupervisor::start(&node, &names, spec)
            .await
            .unwrap();
        (node, names, sup)
    }

    #[tokio::test]
    async fn place_child_returns_once_recorded_and_wait_child_once_it_answers() {
        let (node, _names, sup) = one_node("dsup-place-ok", Quorum::KeepMajority).await;
        let placed = sup
            .place_child("ok", &(), ChildPlacement::new("p1", Placement::Singleton))
            .unwrap();
        assert_eq!(placed.id(), "p1");
        assert_eq!(placed.owners(), ["dsup-place-ok"]);
        // Recorded at once: listed, and a second placement of its id is refused.
        assert!(sup.which_children().iter().any(|c| c.id == "p1"));
        let again = sup.place_child("ok", &(), ChildPlacement::new("p1", Placement::Singleton));
        assert!(
            matches!(again, Err(StartChildError::AlreadyStarted { .. })),
            "{again:?}"
        );
        let at = sup.wait_child(&placed).await.unwrap();
        assert_eq!(at.node(), "dsup-place-ok");
        assert_eq!(
            sup.call("p1", Work::Ask, Duration::from_secs(5))
                .await
                .unwrap(),
            "idle"
        );
        let status = sup
            .which_children()
            .into_iter()
            .find(|c| c.id == "p1")
            .map(|c| c.status);
        assert_eq!(status, Some(ChildStatus::Running));
        // Waiting again for a running child answers at once; after its removal, Removed.
        assert_eq!(
            sup.wait_child(&placed).await.unwrap().node(),
            "dsup-place-ok"
        );
        sup.terminate_child("p1").await.unwrap();
        let gone = sup.wait_child(&placed).await;
        assert!(
            matches!(gone, Err(StartChildError::Removed { .. })),
            "{gone:?}"
        );
        // Placed again: another child of the same id, which the old placement is not.
        let second = sup
            .place_child("ok", &(), ChildPlacement::new("p1", Placement::Singleton))
            .unwrap();
        sup.wait_child(&second).await.unwrap();
        let old = sup.wait_child(&placed).await;
        assert!(
            matches!(old, Err(StartChildError::AlreadyStarted { .. })),
            "{old:?}"
        );
        sup.shutdown().await;
        node.shutdown().await;
    }

    #[tokio::test]
    async fn a_placed_child_whose_init_fails_everywhere_is_given_up_and_wait_child_says_so() {
        let (node, _names, sup) = one_node("dsup-place-crash", Quorum::KeepMajority).await;
        let mut events = sup.subscribe();
        let placed = sup
            .place_child(
                "crash",
                &(),
                ChildPlacement::new("c1", Placement::Singleton),
            )
            .unwrap();
        let got = sup.wait_child(&placed).await;
        assert!(
            matches!(got, Err(StartChildError::GaveUp { ref child, .. }) if child == "c1"),
            "{got:?}"
        );
        // The nodes that tried it said so in their events too.
        let mut failed = 0;
        loop {
            match events.recv().await.unwrap() {
                foundation_registry::distributed::DistributedEvent::StartFailed { .. } => {
                    failed += 1
                }
                foundation_registry::distributed::DistributedEvent::GaveUp { child, .. } => {
                    assert_eq!(child, "c1");
                    break;
                }
                _ => {}
            }
        }
        assert!(failed >= 1);
        assert!(sup.which_children().iter().all(|c| c.id != "c1"));
        sup.shutdown().await;
        node.shutdown().await;
    }

    #[tokio::test]
    async fn place_child_refuses_bad_input_with_start_childs_typed_errors() {
        let (node, names, sup) = one_node("dsup-place-bad", Quorum::KeepMajority).await;
        let single = |id: &str| ChildPlacement::new(id, Placement::Singleton);
        let r = sup.place_child("nokind", &(), single("x1"));
        assert!(
            matches!(r, Err(StartChildError::UnknownKind { .. })),
            "{r:?}"
        );
        let r = sup.place_child("ok", &Unencodable, single("x2"));
        assert!(matches!(r, Err(StartChildError::Args { .. })), "{r:?}");
        let pinned = ChildPlacement::new("x3", Placement::Pinned("zzz".into()));
        let r = sup.place_child("ok", &(), pinned);
        assert!(matches!(r, Err(StartChildError::Placement(_))), "{r:?}");
        let none = ChildPlacement::new("x4", Placement::Replicated { n: 0 });
        let r = sup.place_child("ok", &(), none);
        assert!(matches!(r, Err(StartChildError::Placement(_))), "{r:?}");
        // A name held by a process that is not a child.
        let squatter = spawn(Idle, ()).await.unwrap();
        names
            .register(ChildName::unique("sq"), &squatter, ())
            .unwrap();
        let r = sup.place_child("ok", &(), single("sq"));
        assert!(matches!(r, Err(StartChildError::NameTaken { .. })), "{r:?}");
        // Nothing of those was recorded.
        assert!(sup.which_children().is_empty());
        sup.shutdown().await;
        let r = sup.place_child("ok", &(), single("x5"));
        assert!(matches!(r, Err(StartChildError::Closed)), "{r:?}");

        // A split-brain policy that cannot hold among the members.
        let spec = DistributedSpec::<Work>::new("dsup-place-bad-quorum")
            .kind("ok", |(): ()| ChildSpec::new("ok", Idle, ()))
            .quorum(Quorum::StaticQuorum(0));
        let strict = DistributedSupervisor::start(&node, &names, spec)
            .await
            .unwrap();
        let r = strict.place_child("ok", &(), single("x6"));
        assert!(matches!(r, Err(StartChildError::Quorum(_))), "{r:?}");
        strict.shutdown().await;
        squatter.stop(None);
        node.shutdown().await;
    }
}
