//! Work across the cluster: map-reduce over three node processes with one killed mid-run
//! (the result equals a single node's, no item lost or counted twice), jobs re-queued from
//! a killed node and its workers given to the others, backpressure, bad input.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{Node, NodeConfig};
use foundation_registry::work::{
    ClusterEcosystem, JobError, MapReduceError, SubmitError, WorkSpec,
};
use foundation_testkit::{Child, commands, say};

const ENTRY: &str = "work::node_process";

/// What a map-reduce run computes per item: (1, a mix of the item), so a lost item
/// changes the count and a duplicate changes both.
fn score(i: u64) -> (u64, u64) {
    (1, i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20)
}

fn add(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    (a.0 + b.0, a.1.wrapping_add(b.1))
}

/// The spec every node process starts: `score` (sleeping `DELAY_US` per item, so a run
/// lasts long enough to kill a node in it), `add`, and `hold` (a job that says `@took`,
/// sleeps `HOLD_MS` and answers its node's name).
fn spec(me: &str) -> WorkSpec {
    let var = foundation_testkit::setting;
    let delay = Duration::from_micros(var("DELAY_US").map_or(0, |v| v.parse().unwrap()));
    let hold = Duration::from_millis(var("HOLD_MS").map_or(300, |v| v.parse().unwrap()));
    let me = me.to_owned();
    let spec = WorkSpec::new("it")
        .job("score", move |i: u64| {
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            score(i)
        })
        .reduce("add", add)
        .job("hold", move |n: u64| {
            say(&format!("took {n}"));
            std::thread::sleep(hold);
            me.clone()
        })
        .workers(var("WORKERS").map_or(2, |v| v.parse().unwrap()))
        .capacity(var("CAPACITY").map_or(64, |v| v.parse().unwrap()))
        .chunk(var("CHUNK").map_or(50, |v| v.parse().unwrap()))
        .report_every(Duration::from_millis(100));
    match var("RESPAWN") {
        Some(_) => spec.respawn_lost_workers(true),
        None => spec,
    }
}

/// Polls `f` every 10 ms until it is true (the parent bounds the wait).
async fn until(mut f: impl FnMut() -> bool) {
    while !f() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The node side: runs only in a child started by [`start`]. Obeys:
///
/// - `members <n>`: `@members <n>` once the table has `n` nodes running workers;
/// - `coordinator`: `@coordinator <node>` once the coordinator answers;
/// - `mr <count>`: map-reduce of `0..count`: `@mr <count> <sum>`;
/// - `mrstart <count>`: starts it, then `@mrdone <count> <sum>` or `@mrerr <error>`;
/// - `progress`: `@progress <done> <total> <node>=<n>,…`;
/// - `submit <n>`: submits `n` `hold` jobs, then `@results <node>,…` (sorted) and
///   `@requeued <k>` once all are done;
/// - `workers <nodes> <total>`: `@workers <node>=<n>,…` once the table has that many
///   nodes and workers in all;
/// - `restart`: shuts this node's part down and starts it again (`@restarted`).
#[test]
#[ignore = "runs as a child process of the work tests"]
fn node_process() {
    foundation_testkit::run_node(run);
}

async fn run(name: String) {
    let var = foundation_testkit::setting;
    let config = NodeConfig::new(&name, "cookie")
        .listen("127.0.0.1:0".parse().unwrap())
        .silence(Duration::from_millis(1000));
    let node = Node::start(config).await.unwrap();
    let mut eco = ClusterEcosystem::start(&node, spec(&name)).await.unwrap();
    say(&format!("ready {} {}", node.name(), node.advertised()));
    for seed in var("SEEDS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        node.connect(&seed.parse::<Peer>().unwrap());
    }
    let mut progress = None;
    let mut lines = commands();
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["members", n] => {
                let n: usize = n.parse().unwrap();
                until(|| eco.stats().nodes.iter().filter(|l| l.workers > 0).count() == n).await;
                say(&format!("members {n}"));
            }
            ["coordinator"] => {
                until(|| eco.coordinator().is_some()).await;
                say(&format!("coordinator {}", eco.coordinator().unwrap()));
            }
            ["mr", count] => {
                let count: u64 = count.parse().unwrap();
                let r: Option<(u64, u64)> = eco.map_reduce("score", 0..count, "add").await.unwrap();
                let (n, sum) = r.unwrap();
                say(&format!("mr {n} {sum}"));
            }
            ["mrstart", count] => {
                let count: u64 = count.parse().unwrap();
                let run = eco
                    .start_map_reduce::<u64, (u64, u64)>("score", 0..count, "add")
                    .unwrap();
                progress = Some(run.tracker());
                tokio::spawn(async move {
                    match run.wait().await {
                        Ok(Some((n, sum))) => say(&format!("mrdone {n} {sum}")),
                        Ok(None) => say("mrdone 0 0"),
                        Err(e) => say(&format!("mrerr {e}")),
                    }
                });
            }
            ["progress"] => {
                let p = progress.as_ref().unwrap().progress();
                let per: Vec<String> = p.per_node.iter().map(|(n, k)| format!("{n}={k}")).collect();
                say(&format!(
                    "progress {} {} {}",
                    p.done,
                    p.total,
                    per.join(",")
                ));
            }
            ["submit", n] => {
                let n: u64 = n.parse().unwrap();
                let mut jobs = Vec::new();
                for i in 0..n {
                    jobs.push(eco.submit::<u64, String>("hold", &i).await.unwrap());
                }
                let eco = eco.clone();
                tokio::spawn(async move {
                    let mut results = Vec::new();
                    for job in jobs {
                        results.push(job.result().await.unwrap());
                    }
                    results.sort();
                    say(&format!("results {}", results.join(",")));
                    say(&format!("requeued {}", eco.stats().requeued));
                });
            }
            ["workers", nodes, total] => {
                let (nodes, total): (usize, u32) = (nodes.parse().unwrap(), total.parse().unwrap());
                let table = || {
                    let s = eco.stats().nodes;
                    (s.len() == nodes && s.iter().map(|l| l.workers).sum::<u32>() == total).then(
                        || {
                            s.iter()
                                .map(|l| format!("{}={}", l.node, l.workers))
                                .collect::<Vec<_>>()
                                .join(",")
                        },
                    )
                };
                until(|| table().is_some()).await;
                say(&format!("workers {}", table().unwrap()));
            }
            ["restart"] => {
                eco.shutdown().await;
                eco = ClusterEcosystem::start(&node, spec(&name)).await.unwrap();
                say("restarted");
            }
            ["exit"] => break,
            _ => say(&format!("unknown command {line}")),
        }
    }
    eco.shutdown().await;
    node.shutdown().await;
}

fn start(name: &str, settings: &[(&str, &str)]) -> Child {
    Child::start(ENTRY, name, settings)
}

/// Nodes `a`, `b`, `c` seeded with `a`, each with `settings`; returns once each has all
/// three in its table.
fn three(settings: &[(&str, &str)]) -> [Child; 3] {
    let a = start("a", settings);
    let seed = a.addr.clone();
    let mut with_seed = settings.to_vec();
    with_seed.push(("SEEDS", &seed));
    let b = start("b", &with_seed);
    let c = start("c", &with_seed);
    let mut nodes = [a, b, c];
    for n in &mut nodes {
        n.tell("members 3");
        n.expect(|l| l == "members 3");
    }
    nodes
}

/// `(count, sum)` of a `@mr…` line's last two words.
fn result(line: &str) -> (u64, u64) {
    let w: Vec<&str> = line.split_whitespace().collect();
    (
        w[w.len() - 2].parse().unwrap(),
        w[w.len() - 1].parse().unwrap(),
    )
}

#[test]
fn map_reduce_with_a_node_killed_mid_run_equals_the_single_node_result() {
    const N: u64 = 10_000;
    let expected = (0..N).map(score).fold((0, 0), add);

    // One node alone: the single-node result.
    let mut solo = start("solo", &[]);
    solo.tell(&format!("mr {N}"));
    let single = result(&solo.expect(|l| l.starts_with("mr ")));
    assert_eq!(single, expected);
    drop(solo);

    // Three nodes; items slow enough (2 ms each, 6 workers) that the run lasts seconds.
    let mut nodes = three(&[("DELAY_US", "2000")]);
    nodes[0].tell("coordinator");
    let coordinator = nodes[0].expect(|l| l.starts_with("coordinator "));
    let coordinator = coordinator.rsplit(' ').next().unwrap().to_owned();
    // The caller is a node that does not run the coordinator; the node killed is the one
    // that does, so both a worker node and the coordinator die mid-run.
    let caller = nodes.iter().position(|n| n.name != coordinator).unwrap();
    let victim = nodes.iter().position(|n| n.name == coordinator).unwrap();
    nodes[caller].tell(&format!("mrstart {N}"));
    // Mid-run: a fifth of the items done, some of them by the victim.
    let victim_name = nodes[victim].name.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never got going"
        );
        nodes[caller].tell("progress");
        let p = nodes[caller].expect(|l| l.starts_with("progress "));
        let w: Vec<&str> = p.split_whitespace().collect();
        let done: u64 = w[1].parse().unwrap();
        let by_victim = w.get(3).is_some_and(|per| {
            per.split(',').any(|kv| {
                kv.split_once('=')
                    .is_some_and(|(n, k)| n == victim_name && k != "0")
            })
        });
        assert!(
            done < N,
            "the run finished before the kill: make items slower"
        );
        if done >= N / 5 && by_victim {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    nodes[victim].kill();
    let line = nodes[caller]
        .try_expect(Duration::from_secs(120), |l| {
            l.starts_with("mrdone ") || l.starts_with("mrerr ")
        })
        .expect("the run never ended");
    assert!(line.starts_with("mrdone "), "{line}");
    // Every item counted once: the count and the sum are the single node's.
    assert_eq!(result(&line), single);
    // The coordinator failed over to a node left.
    nodes[caller].tell("coordinator");
    let now = nodes[caller].expect(|l| l.starts_with("coordinator "));
    assert_ne!(now.rsplit(' ').next().unwrap(), victim_name);
}

#[test]
fn a_killed_nodes_jobs_are_sent_again_and_its_workers_come_back_elsewhere() {
    // One worker per node, each job held 300 ms: nine jobs spread three per node.
    let [mut a, mut b, mut c] = three(&[("WORKERS", "1"), ("RESPAWN", "1"), ("HOLD_MS", "300")]);
    a.tell("workers 3 3");
    a.expect(|l| l.starts_with("workers "));
    a.tell("submit 9");
    // c has a job in hand: kill it there.
    c.expect(|l| l.starts_with("took "));
    c.kill();
    let results = a.try_expect(Duration::from_secs(60), |l| l.starts_with("results "));
    let results = results.expect("not every job ended");
    let nodes: Vec<&str> = results["results ".len()..].split(',').collect();
    assert_eq!(nodes.len(), 9, "{results}");
    let requeued = a.expect(|l| l.starts_with("requeued "));
    let requeued: u64 = requeued["requeued ".len()..].parse().unwrap();
    assert!(requeued >= 1, "c's jobs were not sent again");
    // Its worker is given to the nodes left: three workers on two nodes.
    a.tell("workers 2 3");
    let table = a.expect(|l| l.starts_with("workers "));
    assert!(!table.contains("c="), "{table}");
    b.tell("workers 2 3");
    b.expect(|l| l.starts_with("workers "));
}

#[test]
fn a_part_shut_down_and_started_again_is_given_work_again() {
    let [mut a, mut b, mut c] = three(&[]);
    c.tell("restart");
    c.expect(|l| l == "restarted");
    // a saw c's part say bye; the coordinator's table shows the new part, and a sends it
    // work again.
    for n in [&mut a, &mut b, &mut c] {
        n.tell("members 3");
        n.expect(|l| l == "members 3");
    }
    a.tell("mr 5000");
    let got = result(&a.expect(|l| l.starts_with("mr ")));
    assert_eq!(got, (0..5000).map(score).fold((0, 0), add));
}

/// A job that waits for [`GATE`].
static GATE: AtomicBool = AtomicBool::new(false);

fn gated(n: u64) -> u64 {
    while !GATE.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(2));
    }
    n + 1
}

#[tokio::test]
async fn a_full_cluster_makes_the_producer_wait_or_refuses() {
    let node =
        Node::start(NodeConfig::new("work-bp", "cookie").listen("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
    let spec = WorkSpec::new("bp")
        .job("gated", gated)
        .workers(1)
        .capacity(2);
    let eco = ClusterEcosystem::start(&node, spec).await.unwrap();
    // One in the worker's hands and two queued fill the only node.
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(eco.try_submit::<u64, u64>("gated", &i).unwrap());
    }
    assert!(matches!(
        eco.try_submit::<u64, u64>("gated", &9),
        Err(SubmitError::Full)
    ));
    // A submit waits while it is full: it cannot get in before the gate opens.
    assert!(matches!(
        eco.submit_timeout::<u64, u64>("gated", &9, Duration::from_millis(200))
            .await,
        Err(SubmitError::Timeout(_))
    ));
    let waiting = {
        let eco = eco.clone();
        tokio::spawn(async move { eco.submit::<u64, u64>("gated", &3).await })
    };
    GATE.store(true, Ordering::Release);
    jobs.push(
        tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
    );
    let mut got = Vec::new();
    for job in jobs {
        got.push(
            tokio::time::timeout(Duration::from_secs(30), job.result())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(got, [1, 2, 3, 4]);
    assert_eq!(eco.stats().outstanding, 0);
    eco.shutdown().await;
    node.shutdown().await;
}

/// A value that refuses to serialize.
#[derive(serde::Deserialize)]
struct Unserializable;

impl serde::Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses"))
    }
}

#[tokio::test]
async fn bad_input_gets_typed_errors_and_a_panicking_map_fails_only_its_run() {
    let node =
        Node::start(NodeConfig::new("work-bad", "cookie").listen("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
    let spec = WorkSpec::new("bad")
        .job("double", |n: u64| n * 2)
        .job("boom", |n: u64| -> u64 {
            if n == 7 { panic!("seven") } else { n }
        })
        .reduce("add", |a: u64, b: u64| a + b)
        .reduce("concat", |a: String, b: String| a + &b)
        .job("un", |_: Unserializable| 0_u64);
    let eco = ClusterEcosystem::start(&node, spec).await.unwrap();
    assert!(matches!(
        eco.submit::<u64, u64>("nope", &1).await,
        Err(SubmitError::UnknownKind { .. })
    ));
    assert!(matches!(
        eco.submit::<String, u64>("double", &"x".to_owned()).await,
        Err(SubmitError::WrongTypes { .. })
    ));
    assert!(matches!(
        eco.map_reduce::<u64, u64>("nope", 0..3_u64, "add").await,
        Err(MapReduceError::UnknownKind { .. })
    ));
    assert!(matches!(
        eco.map_reduce::<u64, u64>("double", 0..3_u64, "nope").await,
        Err(MapReduceError::UnknownReduce { .. })
    ));
    assert!(matches!(
        eco.map_reduce::<u64, String>("double", 0..3_u64, "concat")
            .await,
        Err(MapReduceError::WrongTypes { .. })
    ));
    // Inputs and items that do not serialize: refused before anything is sent.
    assert!(matches!(
        eco.submit::<Unserializable, u64>("un", &Unserializable)
            .await,
        Err(SubmitError::Input { .. })
    ));
    assert!(matches!(
        eco.map_reduce::<Unserializable, u64>("un", [Unserializable, Unserializable], "add")
            .await,
        Err(MapReduceError::Item { index: 0, .. })
    ));
    // A panicking map fails its run and its job, not the workers.
    match eco.map_reduce::<u64, u64>("boom", 0..20_u64, "add").await {
        Err(MapReduceError::Failed { why, .. }) => assert!(why.contains("seven"), "{why}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    match eco
        .submit::<u64, u64>("boom", &7)
        .await
        .unwrap()
        .result()
        .await
    {
        Err(JobError::Failed { why, .. }) => assert!(why.contains("seven"), "{why}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(
        eco.map_reduce::<u64, u64>("double", 0..100_u64, "add")
            .await
            .unwrap(),
        Some(9900)
    );
    assert_eq!(
        eco.map_reduce::<u64, u64>("double", 0..0_u64, "add")
            .await
            .unwrap(),
        None
    );
    eco.shutdown().await;
    assert!(matches!(
        eco.submit::<u64, u64>("double", &1).await,
        Err(SubmitError::Closed)
    ));
    node.shutdown().await;
}

#[tokio::test]
async fn a_node_without_the_workers_role_runs_none_and_a_run_with_no_workers_times_out() {
    let node =
        Node::start(NodeConfig::new("work-role", "cookie").listen("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
    let spec = WorkSpec::new("role")
        .job("double", |n: u64| n * 2)
        .reduce("add", |a: u64, b: u64| a + b)
        .on_role("gpu");
    let eco = ClusterEcosystem::start(&node, spec).await.unwrap();
    assert_eq!(eco.stats().workers_here, 0);
    assert!(matches!(
        eco.try_submit::<u64, u64>("double", &1),
        Err(SubmitError::Full)
    ));
    // Nowhere to run: the run waits for a node with the role, and gives up with what it
    // has done, never hangs.
    let run = eco
        .start_map_reduce::<u64, u64>("double", 0..10_u64, "add")
        .unwrap();
    match run.wait_timeout(Duration::from_millis(300)).await {
        Err(MapReduceError::Timeout { done, total, .. }) => assert_eq!((done, total), (0, 10)),
        other => panic!("expected Timeout, got {other:?}"),
    }
    // The abandoned run's chunks are dropped from the ledger.
    assert_eq!(eco.stats().outstanding, 0);
    eco.shutdown().await;
    node.shutdown().await;
}
