//! A job queue and a map-reduce over a cluster-wide ecosystem
//! (`foundation::registry::work`): every node runs two workers; the node started with
//! `--submit` sends jobs to whichever node has room, shows where each ran, then runs a
//! map-reduce and checks its result.
//!
//! Run with, in two or three terminals (the nodes find each other by mDNS on a LAN; see
//! `chat` for `FOUNDATION_PEERS` where multicast does not pass):
//!
//! ```text
//! cargo run -p examples --bin jobs                          # a worker node (Ctrl-C leaves)
//! cargo run -p examples --bin jobs -- --submit --nodes 3    # waits for 3 nodes, submits
//! ```
//!
//! `--nodes N` (1 by default) is how many nodes with workers to wait for (30 s at most).
//! The submitter prints one line per job (`job 7: 49, ran on <node>`, with the count per
//! node so far), then the map-reduce's progress and its items per node, and exits 0 once
//! the sum is checked.

use std::collections::BTreeMap;

use foundation::prelude::*;

/// Jobs submitted one by one.
const JOBS: u64 = 24;
/// Items of the map-reduce: the squares of 1..=ITEMS, summed.
const ITEMS: u64 = 200_000;
/// The longest the submitter waits for anything.
const WAIT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logs("warn");
    let mut args = std::env::args().skip(1);
    let (mut submit, mut nodes) = (false, 1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--submit" => submit = true,
            "--nodes" => nodes = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            other => anyhow::bail!("unknown argument `{other}`: jobs [--submit [--nodes N]]"),
        }
    }
    anyhow::ensure!(nodes > 0, "--nodes takes a number, at least 1");

    let app = Foundation::start().await?;
    let me = app.node().name().to_owned();
    // The same kinds on every node: a function cannot cross the wire, its name can.
    let here = me.clone();
    let spec = WorkSpec::new("jobs")
        .job("slow-square", move |n: u64| {
            std::thread::sleep(Duration::from_millis(100)); // some work
            (here.clone(), n * n)
        })
        .job("square", |n: u64| n * n)
        .reduce("sum", |a: u64, b: u64| a + b)
        .workers(2)
        .chunk(10_000);
    let work = ClusterEcosystem::start(app.node(), spec).await?;
    println!("jobs: {me} at {}, 2 workers", app.node().advertised());

    let outcome = if submit {
        tokio::select! {
            r = run(&work, nodes) => r,
            () = app.stopped() => Ok(()),
        }
    } else {
        println!("jobs: waiting for work (Ctrl-C leaves)");
        app.stopped().await;
        Ok(())
    };
    work.shutdown().await;
    app.shutdown().await;
    outcome
}

async fn run(work: &ClusterEcosystem, nodes: usize) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let ready = work.stats().nodes.iter().filter(|n| n.workers > 0).count();
        if ready >= nodes {
            println!("jobs: {ready} node(s) with workers");
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < until,
            "{ready} node(s) with workers after {WAIT:?}, not {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The queue: submitted all at once, each to the least-loaded node with room.
    let mut jobs = Vec::new();
    for n in 1..=JOBS {
        jobs.push((
            n,
            work.submit::<u64, (String, u64)>("slow-square", &n).await?,
        ));
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for (n, job) in jobs {
        let (node, square) = tokio::time::timeout(WAIT, job.result()).await??;
        anyhow::ensure!(square == n * n, "job {n} answered {square}");
        *per_node.entry(node.clone()).or_default() += 1;
        println!(
            "job {n:>2}: {square:>3}, ran on {node:<12} so far: {}",
            tally(&per_node)
        );
    }

    // The map-reduce: chunks mapped and folded where they run, folded again here.
    let run = work.start_map_reduce::<u64, u64>("square", 1..=ITEMS, "sum")?;
    let tracker = run.tracker();
    let sum = run.wait_timeout(WAIT).await?.unwrap_or(0);
    let expected = ITEMS * (ITEMS + 1) * (2 * ITEMS + 1) / 6;
    anyhow::ensure!(sum == expected, "the sum is {sum}, not {expected}");
    let progress = tracker.progress();
    println!("map-reduce: sum of the squares of 1..={ITEMS} = {sum} (checked)");
    println!(
        "map-reduce: {} items mapped, per node: {}",
        progress.done,
        tally(&progress.per_node)
    );
    Ok(())
}

/// `a 3, b 2`: a count per node.
fn tally(per_node: &BTreeMap<String, usize>) -> String {
    let counts: Vec<String> = per_node.iter().map(|(n, c)| format!("{n} {c}")).collect();
    counts.join(", ")
}
