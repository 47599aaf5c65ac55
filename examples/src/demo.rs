//! The Foundation cluster demo: three node processes on loopback, each one
//! `Foundation::start`, and what a cluster does, step by step, with timings.
//!
//! Run with: `cargo xtask demo` (or `cargo run -p examples --bin demo`). Options:
//!
//! - `--nodes N`: start N nodes (3 to 16; 3 by default);
//! - `--keep-running`: leave the nodes up at the end and print their dashboards' URLs
//!   and process ids, as `  n1: http://127.0.0.1:PORT/dashboard (pid 1234)` (Ctrl-C
//!   stops them gracefully). The singleton step has killed one node by then: N - 1 are
//!   left;
//! - `--serve`: as `--keep-running`, but kills no node: the singleton step starts the
//!   ledger and deposits without killing its node, the graceful stop is skipped, and all
//!   N nodes are left up (a cluster to look at, or for a test to kill nodes of).
//!
//! The steps:
//!
//! 1. **Cluster formation**: node `n1` starts alone; the others are started with `n1` as
//!    their static seed (`cluster = "static"`), and membership gossip does the rest.
//! 2. **Chat over pubsub**: every node subscribes to `chat.lobby` and says hello; every
//!    node hears every line (a broadcast crosses the network once per node).
//! 3. **A job queue and a map-reduce**: the squares of 1..=200,000 summed over a
//!    cluster-wide ecosystem; each node maps a share, the caller reduces.
//! 4. **Singleton failover**: a `ledger` singleton (a distributed supervisor's child,
//!    `#[actor(handoff)]`) takes three deposits, checkpointing each; its node is killed
//!    with SIGKILL; the ledger answers again from another node, with its balance.
//! 5. **A replicated cache**: a value put on one node is a hit on another.
//! 6. **Graceful stop**: SIGTERM to every node; each leaves the cluster and exits 0.
//!
//! It ends with a summary table and exits 0, or exits 1 naming the step that failed (the
//! nodes' logs are kept then, and their paths printed).
//!
//! Each node is this same program, run as `demo node <name> [seed]`: it reads commands on
//! its stdin and answers one line each on its stdout.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Instant;

use foundation::cache::Replicated;
use foundation::prelude::*;
use foundation::registry::distributed::checkpoint;
use foundation::registry::work::WorkSpec;

const COOKIE: &str = "foundation-demo";
const CLUSTER: &str = "demo";
/// The topic of the chat.
const LOBBY: &str = "chat.lobby";
/// How many numbers the map-reduce squares and sums.
const ITEMS: u64 = 200_000;
/// The longest the demo waits for any one thing before it calls the step failed.
const STEP_WAIT: Duration = Duration::from_secs(30);

/// A chat line, as broadcast: its wire form is its fields, in order.
#[derive(Clone, Debug, RemoteMessage)]
#[remote(name = "demo.ChatLine")]
struct ChatLine {
    from: String,
    text: String,
}

/// The ledger: a singleton whose state moves with it, and is checkpointed on every
/// deposit, so a failover after a crash starts from the last one.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(crate = "foundation::serde")]
struct Ledger {
    balance: u64,
    deposits: u32,
}

#[actor(remote = "demo.Ledger", handoff)]
impl Ledger {
    #[call(tag = 1)]
    fn deposit(&mut self, amount: u64) -> u64 {
        self.balance += amount;
        self.deposits += 1;
        // Copied to other nodes' memory: where a failover starts from.
        if let Err(e) = checkpoint(&*self) {
            tracing::warn!(error = %e, "ledger: checkpoint failed");
        }
        self.balance
    }

    #[call(tag = 2)]
    fn balance(&self) -> (u64, u32) {
        (self.balance, self.deposits)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("node") {
        return node_main(&args[1..]);
    }
    match Options::parse(&args) {
        Ok(options) => driver(&options),
        Err(e) => {
            eprintln!("demo: {e}\nusage: demo [--nodes N] [--keep-running | --serve]");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------------------
// A node: one Foundation runtime, driven over stdin/stdout.
// ---------------------------------------------------------------------------------------

fn node_main(args: &[String]) -> ExitCode {
    let Some(name) = args.first().cloned() else {
        eprintln!("demo node: a name is required");
        return ExitCode::from(2);
    };
    let seed = args.get(1).cloned();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo node {name}: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(node(name.clone(), seed));
    // The read of stdin blocks a thread of the runtime's: do not wait for it.
    rt.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo node {name}: {e:#}");
            println!("err {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What a node runs: the runtime, the chat, the work ecosystem, the ledger's supervisor
/// and the replicated cache.
struct Parts {
    app: Foundation,
    lobby: Topic<ChatLine>,
    heard: std::sync::Arc<std::sync::Mutex<Vec<ChatLine>>>,
    work: ClusterEcosystem,
    ledgers: DistributedSupervisor<LedgerMsg>,
    cache: Replicated<String, String>,
}

async fn node(name: String, seed: Option<String>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ractor_cluster=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut builder = Foundation::builder()
        .no_config_file()
        .node_name(&name)
        .cluster_name(CLUSTER)
        .cookie(COOKIE)
        // Every node a laptop's, whatever its discovery (static seeds alone would make
        // the seeded nodes `production`).
        .profile(Profile::Development)
        .listen("127.0.0.1:0".parse()?)
        .http_listen("127.0.0.1:0".parse()?)
        // A silent node is declared down after 1 s (3 s by default): a quick failover.
        .set("silence_ms", 1000);
    builder = match &seed {
        Some(seed) => builder.cluster(Discovery::Static).peers([seed]),
        None => builder.cluster(Discovery::None),
    };
    let app = builder.start().await?;
    let lobby = Topic::<ChatLine>::new(LOBBY)?;
    let work = app
        .work(
            WorkSpec::new("demo-jobs")
                .job("square", |n: u64| n * n)
                .reduce("sum", |a: u64, b: u64| a + b)
                .workers(2)
                .chunk(5_000),
        )
        .await?;
    let ledgers = app
        .supervisor(
            DistributedSpec::new("ledgers").handoff_kind("ledger", |(): ()| {
                (Ledger::handoff_actor(), Ledger::default())
            }),
        )
        .await?;
    let cache = app.replicated_cache("demo-cache").await?;
    let parts = Parts {
        app,
        lobby,
        heard: std::sync::Arc::default(),
        work,
        ledgers,
        cache,
    };
    let http = parts
        .app
        .http_addr()
        .map_or_else(|| "-".to_owned(), |a| a.to_string());
    println!("ready {} {http}", parts.app.node().advertised());

    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut lines = tokio::io::AsyncBufReadExt::lines(stdin);
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let answer = match command(&parts, line.trim()).await {
                    Ok(a) => format!("ok {a}"),
                    Err(e) => format!("err {e:#}"),
                };
                println!("{answer}");
            }
            // SIGTERM (or Ctrl-C): the runtime leaves the cluster by itself.
            () = parts.app.stopped() => break,
        }
    }
    // In reverse order: the work ecosystem (its jobs go to the nodes left), the ledger
    // (handed off), then the node leaves the cluster.
    parts.app.shutdown().await;
    Ok(())
}

async fn command(p: &Parts, line: &str) -> anyhow::Result<String> {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or_default();
    let arg = words.collect::<Vec<_>>().join(" ");
    match verb {
        "members" => {
            let up = p
                .app
                .node()
                .members()
                .iter()
                .filter(|m| m.status == foundation::cluster::membership::Status::Up)
                .filter(|m| m.id != p.app.node().name())
                .count();
            Ok((up + 1).to_string())
        }
        "subscribe" => {
            let mut sub = p.app.pubsub().subscribe_stream(&p.lobby)?;
            let heard = p.heard.clone();
            tokio::spawn(async move {
                while let Some(line) = sub.recv().await {
                    heard
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((*line).clone());
                }
            });
            Ok("subscribed".to_owned())
        }
        "wait-subscribers" => {
            let n: usize = arg.parse()?;
            let seen = p
                .app
                .pubsub()
                .wait_for_subscribers(&p.lobby, n, STEP_WAIT)
                .await?;
            Ok(seen.to_string())
        }
        "say" => {
            let line = ChatLine {
                from: p.app.node().name().to_owned(),
                text: arg,
            };
            p.app.pubsub().broadcast(&p.lobby, line)?;
            Ok("said".to_owned())
        }
        "heard" => {
            let heard = p
                .heard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let from: Vec<String> = heard.iter().map(|l| l.from.clone()).collect();
            Ok(format!("{} {}", heard.len(), from.join(",")))
        }
        "work-nodes" => {
            // The nodes with workers in the coordinator's last table.
            let stats = p.work.stats();
            Ok(stats
                .nodes
                .iter()
                .filter(|n| n.workers > 0)
                .count()
                .to_string())
        }
        "mapreduce" => {
            let n: u64 = arg.parse()?;
            let run = p
                .work
                .start_map_reduce::<u64, u64>("square", 1..=n, "sum")?;
            let progress = run.tracker();
            let sum = run.wait().await?.unwrap_or(0);
            let per_node: Vec<String> = progress
                .progress()
                .per_node
                .iter()
                .map(|(node, items)| format!("{node}={items}"))
                .collect();
            Ok(format!("{sum} {}", per_node.join(",")))
        }
        "ledger-start" => {
            let placement = ChildPlacement::new("ledger", Placement::Singleton);
            p.ledgers.start_child("ledger", &(), placement).await?;
            Ok("started".to_owned())
        }
        "deposit" => {
            let amount: u64 = arg.parse()?;
            let balance = p
                .ledgers
                .call("ledger", |r| LedgerMsg::Deposit(amount, r), STEP_WAIT)
                .await?;
            Ok(balance.to_string())
        }
        "balance" => {
            let (balance, deposits) = p
                .ledgers
                .call("ledger", LedgerMsg::Balance, Duration::from_secs(2))
                .await?;
            let at = p
                .ledgers
                .whereis("ledger")
                .map_or_else(|| "?".to_owned(), |l| l.node().to_owned());
            Ok(format!("{balance} {deposits} {at}"))
        }
        "cache-put" => {
            let (k, v) = arg.split_once(' ').unwrap_or((&arg, ""));
            p.cache
                .put(k.to_owned(), v.to_owned(), Ttl::Default)
                .await?;
            Ok("put".to_owned())
        }
        "cache-get" => match p.cache.get(&arg).await? {
            Some(v) => Ok(format!("hit {v}")),
            None => Ok("miss".to_owned()),
        },
        other => anyhow::bail!("unknown command `{other}`"),
    }
}

// ---------------------------------------------------------------------------------------
// The driver: starts the nodes, runs the steps, prints the summary.
// ---------------------------------------------------------------------------------------

struct Options {
    nodes: usize,
    keep_running: bool,
    /// Kill no node, and keep them all running.
    serve: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            nodes: 3,
            keep_running: false,
            serve: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--keep-running" => options.keep_running = true,
                "--serve" => options.serve = true,
                "--nodes" => {
                    let n = args.next().ok_or("--nodes needs a number")?;
                    options.nodes = n
                        .parse()
                        .ok()
                        .filter(|n| (3..=16).contains(n))
                        .ok_or_else(|| format!("--nodes takes 3 to 16, not `{n}`"))?;
                }
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        if options.keep_running && options.serve {
            return Err(
                "--serve keeps the nodes running already: give one of --keep-running and --serve"
                    .to_owned(),
            );
        }
        Ok(options)
    }
}

/// A node process, as the driver sees it.
struct NodeProc {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    addr: String,
    http: String,
    log: PathBuf,
}

impl NodeProc {
    fn start(name: &str, seed: Option<&str>, logs: &std::path::Path) -> anyhow::Result<Self> {
        let log = logs.join(format!("{name}.log"));
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("node").arg(name);
        if let Some(seed) = seed {
            cmd.arg(seed);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Self {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            addr: String::new(),
            http: String::new(),
            log,
        };
        let ready = node.read()?;
        let mut words = ready.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("ready"), Some(addr), Some(http)) => {
                node.addr = addr.to_owned();
                node.http = http.to_owned();
                Ok(node)
            }
            _ => anyhow::bail!("{name} did not start: {ready}"),
        }
    }

    fn read(&self) -> anyhow::Result<String> {
        match self.lines.recv_timeout(STEP_WAIT) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                anyhow::bail!("{} did not answer within {STEP_WAIT:?}", self.name)
            }
            Err(RecvTimeoutError::Disconnected) => anyhow::bail!("{} exited", self.name),
        }
    }

    /// Sends one command and returns its answer.
    fn ask(&mut self, command: &str) -> anyhow::Result<String> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        let answer = self.read()?;
        match answer.split_once(' ') {
            Some(("ok", rest)) => Ok(rest.to_owned()),
            _ if answer == "ok" => Ok(String::new()),
            _ => anyhow::bail!("{} answered `{command}` with: {answer}", self.name),
        }
    }

    /// Asks `command` until `done` accepts the answer, for at most `STEP_WAIT`.
    fn ask_until(&mut self, command: &str, done: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let until = Instant::now() + STEP_WAIT;
        loop {
            let answer = self.ask(command);
            match answer {
                Ok(a) if done(&a) => return Ok(a),
                Ok(a) if Instant::now() > until => {
                    anyhow::bail!("{}: `{command}` still answers `{a}`", self.name)
                }
                Err(e) if Instant::now() > until => return Err(e),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One row of the summary.
struct Row {
    step: &'static str,
    took: Duration,
    result: String,
}

fn driver(options: &Options) -> ExitCode {
    let logs = std::env::temp_dir().join(format!("foundation-demo-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&logs) {
        eprintln!("demo: cannot make {}: {e}", logs.display());
        return ExitCode::FAILURE;
    }
    let started = Instant::now();
    let mut nodes: Vec<NodeProc> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    println!(
        "Foundation cluster demo: {} node processes on loopback\n",
        options.nodes
    );
    let outcome = run_steps(options, &logs, &mut nodes, &mut rows);
    let failed = outcome.err();
    print_summary(&rows, failed.as_ref().map(|(step, _)| *step), started);
    match failed {
        None => {
            if options.keep_running || options.serve {
                keep_running(&mut nodes);
            } else {
                // Stopped gracefully in the last step.
            }
            let _ = std::fs::remove_dir_all(&logs);
            ExitCode::SUCCESS
        }
        Some((step, e)) => {
            eprintln!("\ndemo: step `{step}` failed: {e:#}");
            eprintln!("demo: the nodes' logs are in {}", logs.display());
            for node in &mut nodes {
                node.kill();
            }
            ExitCode::FAILURE
        }
    }
}

type StepError = (&'static str, anyhow::Error);

fn step<T>(
    rows: &mut Vec<Row>,
    name: &'static str,
    f: impl FnOnce() -> anyhow::Result<(String, T)>,
) -> Result<T, StepError> {
    println!("▶ {name}");
    let t = Instant::now();
    match f() {
        Ok((result, value)) => {
            let took = t.elapsed();
            println!("  ✔ {result} ({})\n", ms(took));
            rows.push(Row {
                step: name,
                took,
                result,
            });
            Ok(value)
        }
        Err(e) => Err((name, e)),
    }
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn run_steps(
    options: &Options,
    logs: &std::path::Path,
    nodes: &mut Vec<NodeProc>,
    rows: &mut Vec<Row>,
) -> Result<(), StepError> {
    let n = options.nodes;

    step(rows, "cluster formation", || {
        let first = NodeProc::start("n1", None, logs)?;
        println!(
            "  n1 up at {} (dashboard http://{}/dashboard)",
            first.addr, first.http
        );
        let seed = first.addr.clone();
        nodes.push(first);
        for i in 2..=n {
            let node = NodeProc::start(&format!("n{i}"), Some(&seed), logs)?;
            println!("  n{i} up at {}, seed {seed}", node.addr);
            nodes.push(node);
        }
        let want = n.to_string();
        for node in nodes.iter_mut() {
            node.ask_until("members", |a| a == want)?;
        }
        Ok((format!("{n} nodes, each sees {n} members up"), ()))
    })?;

    step(rows, "chat over pubsub", || {
        for node in nodes.iter_mut() {
            node.ask("subscribe")?;
        }
        for node in nodes.iter_mut() {
            node.ask(&format!("wait-subscribers {n}"))?;
        }
        for node in nodes.iter_mut() {
            let line = format!("say hello from {}", node.name);
            node.ask(&line)?;
            println!("  {}: hello from {}", node.name, node.name);
        }
        for node in nodes.iter_mut() {
            let heard = node.ask_until("heard", |a| a.starts_with(&format!("{n} ")))?;
            println!("  {} heard {heard}", node.name);
        }
        Ok((format!("{n} lines, each heard on all {n} nodes"), ()))
    })?;

    step(rows, "job queue + map-reduce", || {
        // The work coordinator's table reaches every node a report later.
        let want = n.to_string();
        nodes[0].ask_until("work-nodes", |a| a == want)?;
        let answer = nodes[0].ask(&format!("mapreduce {ITEMS}"))?;
        let (sum, spread) = answer.split_once(' ').unwrap_or((&answer, ""));
        let expected: u64 = (1..=ITEMS).map(|i| i * i).sum();
        anyhow::ensure!(
            sum == expected.to_string(),
            "the sum is {sum}, not {expected}"
        );
        println!("  sum of squares of 1..={ITEMS} = {sum}");
        println!("  items mapped per node: {spread}");
        let used = spread.split(',').filter(|s| !s.is_empty()).count();
        anyhow::ensure!(
            used >= 2,
            "the items were mapped on {used} node(s) only: {spread}"
        );
        Ok((
            format!("{ITEMS} items on {used} nodes ({spread}), result checked"),
            (),
        ))
    })?;

    if options.serve {
        step(rows, "singleton (no kill: --serve)", || {
            let (balance, at) = start_ledger(nodes)?;
            Ok((format!("ledger on {at} with balance {balance}"), ()))
        })?;
        step(rows, "replicated cache", || cache_step(nodes, 0, 1))?;
        return Ok(());
    }

    let survivors = step(rows, "singleton failover", || {
        let (balance, at) = start_ledger(nodes)?;
        let victim = nodes
            .iter()
            .position(|p| p.name == at)
            .ok_or_else(|| anyhow::anyhow!("the ledger runs on unknown node `{at}`"))?;
        let killed_at = Instant::now();
        nodes[victim].kill();
        println!("  killed {at} (SIGKILL)");
        let survivors: Vec<usize> = (0..nodes.len()).filter(|i| *i != victim).collect();
        let asker = survivors[0];
        let after = nodes[asker].ask_until("balance", |a| {
            a.split_whitespace().nth(2).is_some_and(|node| node != at)
        })?;
        let took = killed_at.elapsed();
        let mut words = after.split_whitespace();
        let (bal, _, now_at) = (
            words.next().unwrap_or(""),
            words.next().unwrap_or(""),
            words.next().unwrap_or(""),
        );
        anyhow::ensure!(
            bal == balance,
            "the ledger came back with balance {bal}, not {balance}"
        );
        println!(
            "  ledger answers again from {now_at}, balance {bal}, {} after the kill",
            ms(took)
        );
        Ok((
            format!(
                "{at} killed; back on {now_at} with balance {bal} in {}",
                ms(took)
            ),
            survivors,
        ))
    })?;

    step(rows, "replicated cache", || {
        cache_step(nodes, survivors[0], survivors[1])
    })?;

    if options.keep_running {
        return Ok(());
    }

    step(rows, "graceful stop (SIGTERM)", || {
        let live: Vec<usize> = survivors.clone();
        for &i in &live {
            signal_term(&nodes[i])?;
        }
        for &i in &live {
            let until = Instant::now() + STEP_WAIT;
            let status = loop {
                if let Some(s) = nodes[i].child.try_wait()? {
                    break s;
                }
                anyhow::ensure!(
                    Instant::now() < until,
                    "{} did not stop within {STEP_WAIT:?} of SIGTERM",
                    nodes[i].name
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            anyhow::ensure!(
                status.success(),
                "{} exited with {status} (log: {})",
                nodes[i].name,
                nodes[i].log.display()
            );
        }
        Ok((
            format!("{} nodes left the cluster and exited 0", live.len()),
            (),
        ))
    })?;
    Ok(())
}

/// Starts the ledger singleton from the first node and deposits three times: its balance
/// and the node it runs on.
fn start_ledger(nodes: &mut [NodeProc]) -> anyhow::Result<(String, String)> {
    nodes[0].ask("ledger-start")?;
    let mut balance = String::new();
    for amount in [10, 20, 12] {
        balance = nodes[0].ask(&format!("deposit {amount}"))?;
    }
    let before = nodes[0].ask("balance")?;
    let at = before.split_whitespace().nth(2).unwrap_or("?").to_owned();
    println!("  ledger on {at}: balance {balance} after 3 deposits");
    Ok((balance, at))
}

/// A value put on node `a` of `nodes`, read back from node `b`.
fn cache_step(nodes: &mut [NodeProc], a: usize, b: usize) -> anyhow::Result<(String, ())> {
    nodes[a].ask("cache-put greeting hello-from-the-cluster")?;
    let put_at = Instant::now();
    let hit = nodes[b].ask_until("cache-get greeting", |a| a.starts_with("hit "))?;
    let took = put_at.elapsed();
    println!(
        "  put on {}, {} on {} after {}",
        nodes[a].name,
        hit,
        nodes[b].name,
        ms(took)
    );
    Ok((
        format!("put on {}, hit on {}", nodes[a].name, nodes[b].name),
        (),
    ))
}

fn signal_term(node: &NodeProc) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM {} failed", node.child.id());
    Ok(())
}

fn keep_running(nodes: &mut [NodeProc]) {
    println!("The nodes keep running (Ctrl-C stops them gracefully). Dashboards:");
    for node in nodes.iter_mut().filter(|n| !n.http.is_empty()) {
        if matches!(node.child.try_wait(), Ok(None)) {
            println!(
                "  {}: http://{}/dashboard (pid {})",
                node.name,
                node.http,
                node.child.id()
            );
        }
    }
    let _ = std::io::stdout().flush();
    // The nodes are in this process group: Ctrl-C reaches them too, and each leaves
    // gracefully; this waits for them.
    for node in nodes.iter_mut() {
        let _ = node.child.wait();
    }
}

fn print_summary(rows: &[Row], failed: Option<&str>, started: Instant) {
    let width = rows.iter().map(|r| r.step.len()).max().unwrap_or(4).max(24);
    println!("\nSummary");
    println!("| {:<width$} | {:>8} | result", "step", "time");
    println!("|{}|{}|--------", "-".repeat(width + 2), "-".repeat(10));
    for r in rows {
        println!("| {:<width$} | {:>8} | ✔ {}", r.step, ms(r.took), r.result);
    }
    if let Some(step) = failed {
        println!("| {step:<width$} | {:>8} | ✘ failed", "-");
    }
    println!("total: {}", ms(started.elapsed()));
}
