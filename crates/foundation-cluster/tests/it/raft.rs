//! Consensus groups across node processes: one order everywhere, a leader's death, a
//! voter replaced, a minority cut off by a real partition.

use crate::node::harness::{self, Child};

fn ask(child: &mut Child, line: &str, answer: &str) -> String {
    child.tell(line);
    child.expect(|l| l.starts_with(answer))
}

/// Asks `child` for the leader until one other than `not` is named (an election takes a
/// moment, and a node learns of it a moment later).
fn leader_seen_by(child: &mut Child, not: &str) -> String {
    for _ in 0..300 {
        let l = ask(child, "rleader", "rleader ");
        let name = l["rleader ".len()..].to_owned();
        if name != "-" && name != not {
            return name;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("node {}: no new leader in 15 s", child.name);
}

#[test]
fn a_group_commits_one_order_everywhere_outlives_its_leader_and_replaces_the_dead_voter() {
    let a = harness::start("a", &[("RAFT_VOTERS", "3")]);
    let seed = a.addr.clone();
    let mut nodes = vec![a];
    for name in ["b", "c", "d"] {
        nodes.push(harness::start(
            name,
            &[("RAFT_VOTERS", "3"), ("SEEDS", &seed)],
        ));
    }
    let leader = leader_seen_by(&mut nodes[0], "-");
    // Three voters, the smallest names among the first three up (a always: it started
    // the group); the fourth node is a learner.
    let voters = ask(&mut nodes[0], "rvoters", "rvoters");
    let names: Vec<&str> = voters["rvoters ".len()..].split(',').collect();
    assert_eq!(names.len(), 3, "{voters}");
    assert_eq!(names[0], "a", "{voters}");

    // Writes from every node, the leader's and the learner's included.
    for (i, node) in nodes.iter_mut().enumerate() {
        let line = format!("w{i}");
        let got = ask(node, &format!("rwrite {line}"), &format!("rwrite {line}"));
        assert!(got.starts_with(&format!("rwrite {line} ok")), "{got}");
    }
    // The same four lines, in the same order, on every node.
    let summary = ask(&mut nodes[0], "rread", "rread");
    assert!(summary.starts_with("rread 4 "), "{summary}");
    for node in &mut nodes[1..] {
        assert_eq!(ask(node, "rread", "rread"), summary);
    }

    // The leader dies: the others elect another and go on; the learner takes its seat.
    let at = nodes.iter().position(|n| n.name == leader).unwrap();
    nodes[at].kill();
    nodes.remove(at);
    leader_seen_by(&mut nodes[0], &leader);
    let got = ask(&mut nodes[0], "rwrite after", "rwrite after");
    assert!(got.starts_with("rwrite after ok 5"), "{got}");
    for node in &mut nodes {
        let read = ask(node, "rread", "rread");
        assert!(read.starts_with("rread 5 "), "{read}");
    }
    let mut want: Vec<&str> = ["a", "b", "c", "d"]
        .into_iter()
        .filter(|n| *n != leader)
        .collect();
    want.sort_unstable();
    let want = format!("rvoters {}", want.join(","));
    let mut voters = String::new();
    for _ in 0..300 {
        voters = ask(&mut nodes[0], "rvoters", "rvoters");
        if voters == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(voters, want, "the dead voter was not replaced");
}

#[test]
fn a_minority_cut_off_cannot_write_and_catches_up_after_the_heal() {
    let net = harness::Net::new(3);
    let listen = |i: usize| format!("{}:4370", net.addr(i));
    let seed = listen(0);
    let settings = |i: usize| {
        let mut s = vec![
            ("RAFT_VOTERS", "3".to_owned()),
            ("SILENCE_MS", "1000".to_owned()),
            ("LISTEN", listen(i)),
        ];
        if i > 0 {
            s.push(("SEEDS", seed.clone()));
        }
        s
    };
    let mut nodes: Vec<Child> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let s = settings(i);
            let s: Vec<(&str, &str)> = s.iter().map(|(k, v)| (*k, v.as_str())).collect();
            harness::start_in(&net.ns(i), name, &s)
        })
        .collect();
    // A full mesh first: the majority must be connected without the node cut off.
    for (i, node) in nodes.iter_mut().enumerate() {
        let want: Vec<&str> = ["a", "b", "c"]
            .into_iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| n)
            .collect();
        let want = format!("members {}", want.join(","));
        let mut got = String::new();
        for _ in 0..300 {
            got = ask(node, "members", "members");
            if got == want {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(got, want);
    }
    let leader = leader_seen_by(&mut nodes[0], "-");
    let got = ask(&mut nodes[1], "rwrite before", "rwrite before");
    assert!(got.starts_with("rwrite before ok 1"), "{got}");

    // Cut the leader off: it is the minority.
    let cut = nodes.iter().position(|n| n.name == leader).unwrap();
    net.cut(cut);
    let got = ask(&mut nodes[cut], "rwrite lonely", "rwrite lonely");
    assert!(
        got.starts_with("rwrite lonely err"),
        "a minority wrote: {got}"
    );
    let read = ask(&mut nodes[cut], "rread", "rread");
    assert!(
        read.starts_with("rread err"),
        "a minority read linearizably: {read}"
    );
    // The majority elects a new leader and writes.
    let other = (cut + 1) % 3;
    let mut written = String::new();
    for _ in 0..20 {
        written = ask(&mut nodes[other], "rwrite majority", "rwrite majority");
        if written.starts_with("rwrite majority ok") {
            break;
        }
    }
    assert!(written.starts_with("rwrite majority ok 2"), "{written}");

    // Healed: the old leader follows, drops its unacknowledged line, and catches up.
    net.heal(cut);
    let summary = ask(&mut nodes[other], "rread", "rread");
    assert!(summary.starts_with("rread 2 "), "{summary}");
    let mut caught_up = String::new();
    for _ in 0..100 {
        caught_up = ask(&mut nodes[cut], "rread", "rread");
        if caught_up == summary {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(caught_up, summary, "the healed node did not converge");
}
