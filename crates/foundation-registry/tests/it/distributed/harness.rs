//! Node processes running the distributed supervisor `work`: this test binary re-runs
//! itself as a node (see `foundation-testkit`).
//!
//! A child starts node `FOUNDATION_TEST_NODE_NAME` (settings: `SEEDS`, `LISTEN`, `SILENCE_MS`,
//! which is also the supervisor's silence, `MARGIN_MS`, its margin, 500 ms unless set,
//! `QUORUM`: `majority` (the default), `oldest`, `static:N`, `referee:NODE`, `downall`;
//! `ROLE`, a role the node offers; `STRICT`, strict mode with a consistent registry
//! `leases`; `STORE`, the address of the test's fenced store; `STOP_MS`, how long an
//! `echo` child's `terminate` takes), the
//! registry `work` of
//! [`ChildName`]s and the supervisor `work` with the kinds `echo` (answers
//! `<id>@<node>`), `crash` (its `init` always fails) and `stream` (a [`Handoff`] child
//! logging the numbers pushed to it). It prints the supervisor's
//! events (`@ev started <id> <cause>`, `@ev stopped <id>`, each followed by
//! `@t started|stopped <id> <unix nanos>`, `@ev ended <id>`,
//! `@ev gaveup <id>`, `@ev quorumlost`, `@ev quorumback`, `@ev quoruminvalid`); each `echo` child prints
//! `@t up <id> <node> <unix nanos>` when its `init` runs and `@t down <id> <node> <unix
//! nanos>` when it stops (its `terminate`), its own record of when it ran, which the test
//! process, outside every partition, collects. It obeys:
//!
//! - `start <kind> <id> <singleton|rep:N|all|pinned:NODE|local> [transient|temporary]
//!   [manual|eager] [role:ROLE]`:
//!   `@started <id> ok <node>` or `@started <id> err <Variant>`;
//! - `declare <n> <prefix> [eager]`: once the node sees a member, `place_child` of `echo`
//!   singletons `<prefix>0` … `<prefix><n-1>` without waiting (boot code declaring its
//!   children), then `@declared <prefix> <ok> <already started> <name taken> <other
//!   errors>`;
//! - `members <n>`: `@members <n>` once `n` nodes run the supervisor, as this one sees;
//! - `await <id> <node>`: `@at <id> <node>` once the child answers by name there;
//! - `moved <id> <node>`: `@moved <id> <other>` once it answers on a node other than
//!   `node`;
//! - `call <id>`: `@call <id> <reply>` or `@call <id> err`;
//! - `forgotten <id>`: `@forgotten <id>` once it is not a child any more and does not
//!   answer by name;
//! - `status <id> <running|starting|pending>`: `@status <id> <status>` once it has it;
//! - `single <id>`: `@single <id> <node>` once one instance of `id` runs, on `node`;
//! - `children`: `@children <id>=<nodes>/<status>;…` (which_children, sorted);
//! - `converge <n> <line>`: `@converged <line>` once `children` prints `line` and `n`
//!   instances run (so several nodes can be asked for the same table), or after 25 s
//!   `@diverged <instances> <line>` with what it has instead;
//! - `crash <id>` / `quit <id>`: the child fails / stops normally;
//! - `restarts <id> <n>`: `@restarts <id> <n>` once its instances were restarted `n`
//!   times by their local supervisors, in all;
//! - `rebalance`: asks for a rebalance (`@rebalanced`);
//! - `terminate <id>`: `@terminated <id> ok|err <Variant>`;
//! - `squat <id>`: registers a process that is no child under `unique(id)`
//!   (`@squat <id> ok`);
//! - `leader` (with `STRICT`): `@leader <node>` once the lease group has a leader;
//! - `slowwrite <id>`: the child begins a [`Work::SlowWrite`]; `go` lets it finish;
//! - `token <id>`: `@token <id> <token|none>`, the fencing token of the instance here;
//! - `lives`: `@lives <line>;<line>;…`, every `up|down …` line of this process's
//!   children so far, in order;
//! - `migrate <id> <node>`: `@migrated <id> ok <node>` or `@migrated <id> err <Variant>`;
//! - `push <id> <from> <to>`: casts `Push(from..=to)`, then `@pushed <id> <to> <errors>`;
//! - `save <id>`: casts `Save` (a `stream` child checkpoints its log), then `@save <id>`;
//! - `saved <id> <seq>`: `@saved <id> <seq>` once this node keeps checkpoint `seq`;
//! - `log <id>`: `@log <id> <len> seq` if the child's log is 1..=len, else
//!   `@log <id> <len> gap <index>:<number>`;
//! - `stream <id>` / `endstream <id>`: casts `Push(1)`, `Push(2)`, … until told to end
//!   (`@streaming <id>` after 100, `@streamed <id> <last> <errors>` at the end);
//! - `drop`: drops the supervisor's handle without a shutdown (`@dropped`); the node
//!   stays up;
//! - `exit`: a graceful leave (the supervisor's `shutdown`, then `Node::leave`);
//! - `leave`: `Node::leave` alone (its hook shuts the supervisor down first).

use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{Node, NodeConfig};
use foundation_registry::consistent::{ConsistentOptions, ConsistentRegistry};
use foundation_registry::distributed::{
    ChildName, ChildStatus, DistributedEvent, DistributedSpec, DistributedSupervisor, Fence,
    Handoff, MigrateError, StartChildError, checkpoint,
};
use foundation_registry::placement::{
    ChildPlacement, Placement, Quorum, Rebalance, StartCause, Timing,
};
use foundation_registry::{ClusterRegistry, OnConflict};
pub use foundation_testkit::{Child, Net};
use foundation_testkit::{commands, say};

/// What distributed children take.
#[derive(Debug, RemoteMessage)]
#[remote(name = "test.Work")]
pub enum Work {
    /// Answer `<id>@<node>`.
    #[remote(tag = 1)]
    Ask(ReplyPort<String>),
    /// Fail (the local supervisor restarts it).
    #[remote(tag = 2)]
    Crash,
    /// Stop normally.
    #[remote(tag = 3)]
    Quit,
    /// Read the fencing token (`@fence read <id> <node> <token>`) and write to the store
    /// with it once the node is told `go`: a write begun before a pause and finished
    /// after it.
    #[remote(tag = 7)]
    SlowWrite,
    /// Append a number to the log (`stream` children).
    #[remote(tag = 4)]
    Push(u64),
    /// The numbers logged (`stream` children; others answer nothing).
    #[remote(tag = 5)]
    Log(ReplyPort<Vec<u64>>),
    /// Checkpoint the log (`stream` children).
    #[remote(tag = 6)]
    Save,
}

/// A distributed child: knows its id and node.
#[derive(Clone)]
pub struct Worker {
    pub id: String,
    pub node: String,
    /// Its lease's fencing token (strict mode).
    pub fence: Fence,
    /// The fenced store it writes to (`STORE`), if any.
    pub store: Option<String>,
}

impl Worker {
    /// Sends write `seq` with `token` (0 without a lease) to the store, if there is one:
    /// one datagram `<id> <node> <token> <seq>`.
    fn write(&self, token: u64, seq: u32) {
        if let Some(store) = &self.store {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let line = format!("{} {} {token} {seq}", self.id, self.node);
            socket.send_to(line.as_bytes(), store.as_str()).unwrap();
        }
    }
}

/// What a `go` command lets through: the second half of a [`Work::SlowWrite`].
static GATE: std::sync::LazyLock<tokio::sync::Notify> =
    std::sync::LazyLock::new(tokio::sync::Notify::new);

impl Actor for Worker {
    type Msg = Work;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<Work>, (): ()) -> Result<(), ActorError> {
        life(&format!("up {} {} {}", self.id, self.node, unix_nanos()));
        self.write(self.fence.token().unwrap_or(0), 0);
        Ok(())
    }

    async fn terminate(&self, _: &Addr<Work>, (): &mut ()) -> Result<(), ActorError> {
        // `STOP_MS`: a child slow to stop (its `terminate` takes that long).
        if let Some(ms) = foundation_testkit::setting("STOP_MS") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        }
        life(&format!("down {} {} {}", self.id, self.node, unix_nanos()));
        Ok(())
    }

    async fn handle(&self, me: &Addr<Work>, msg: Work, (): &mut ()) -> Result<(), ActorError> {
        match msg {
            Work::Ask(port) => {
                let _ = port.send(format!("{}@{}", self.id, self.node));
            }
            Work::Crash => return Err("asked to crash".into()),
            Work::Quit => me.stop(None),
            Work::SlowWrite => {
                // A write in flight: the token read now, the write sent later by a task of
                // its own (as an I/O request queued before a pause goes out after it),
                // whatever happens to the child meanwhile.
                let token = self.fence.token().unwrap_or(0);
                say(&format!("fence read {} {} {token}", self.id, self.node));
                let writer = self.clone();
                tokio::spawn(async move {
                    GATE.notified().await;
                    writer.write(token, 1);
                });
            }
            Work::Push(_) | Work::Log(_) | Work::Save => {}
        }
        Ok(())
    }
}

/// Every `up|down` line of this process's `echo` children, in order.
static LIVES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Prints `@t <line>` and keeps it for `lives`.
fn life(line: &str) {
    say(&format!("t {line}"));
    LIVES.lock().unwrap().push(line.to_owned());
}

/// A distributed child with state that moves ([`Handoff`]): the numbers pushed to it.
#[derive(Clone)]
pub struct Streamer {
    pub id: String,
    pub node: String,
}

impl Actor for Streamer {
    type Msg = Work;
    type State = Vec<u64>;
    type Args = ();

    async fn init(&self, _: &Addr<Work>, (): ()) -> Result<Vec<u64>, ActorError> {
        Ok(Vec::new())
    }

    async fn handle(
        &self,
        me: &Addr<Work>,
        msg: Work,
        log: &mut Vec<u64>,
    ) -> Result<(), ActorError> {
        match msg {
            Work::Ask(port) => {
                let _ = port.send(format!("{}@{}", self.id, self.node));
            }
            Work::Crash => return Err("asked to crash".into()),
            Work::Quit => me.stop(None),
            Work::Push(n) => log.push(n),
            Work::SlowWrite => {}
            Work::Log(port) => {
                let _ = port.send(log.clone());
            }
            Work::Save => {
                checkpoint(&*log)?;
            }
        }
        Ok(())
    }
}

impl Handoff for Streamer {
    type Snapshot = Vec<u64>;

    fn export(&self, log: Vec<u64>) -> Vec<u64> {
        log
    }

    async fn restore(&self, _: &Addr<Work>, log: Vec<u64>, (): ()) -> Result<Vec<u64>, ActorError> {
        Ok(log)
    }
}

/// A child whose `init` always fails.
#[derive(Clone)]
pub struct Crasher;

impl Actor for Crasher {
    type Msg = Work;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<Work>, (): ()) -> Result<(), ActorError> {
        Err("crasher: init fails everywhere".into())
    }

    async fn handle(&self, _: &Addr<Work>, _: Work, (): &mut ()) -> Result<(), ActorError> {
        Ok(())
    }
}

const ENTRY: &str = "distributed::harness::node_process";

/// Starts node process `name` with `settings`.
pub fn start(name: &str, settings: &[(&str, &str)]) -> Child {
    Child::start(ENTRY, name, settings)
}

/// Nodes `a`, `b` and `c` in the three namespaces of `net` (a 1 s silence limit), `b` and
/// `c` seeded with `a`, with `extra` settings; returns once each sees all three running
/// the supervisor.
pub fn three_in(net: &Net, extra: &[(&str, &str)]) -> [Child; 3] {
    let nodes: Vec<Child> = nodes_in(net, 3, extra);
    nodes.try_into().unwrap()
}

/// The names of the nodes [`nodes_in`] starts, in order.
pub const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

/// Nodes `a`, `b`, … (`n` of them, at most 5) in the first `n` namespaces of `net` (a 1 s
/// silence limit), each seeded with `a`, started one after another (so `a` is the oldest),
/// with `extra` settings; returns once each sees all `n` running the supervisor.
pub fn nodes_in(net: &Net, n: usize, extra: &[(&str, &str)]) -> Vec<Child> {
    let listen = |i: usize| format!("{}:4370", net.addr(i));
    let seed = listen(0);
    let mut nodes: Vec<Child> = (0..n)
        .map(|i| {
            let own = listen(i);
            let mut settings = vec![("SILENCE_MS", "1000"), ("LISTEN", own.as_str())];
            if i > 0 {
                settings.push(("SEEDS", seed.as_str()));
            }
            settings.extend_from_slice(extra);
            Child::start_in(Some(&net.ns(i)), ENTRY, NAMES[i], &settings)
        })
        .collect();
    let members = format!("members {n}");
    for node in &mut nodes {
        node.tell(&members);
        node.expect(|l| l == members);
    }
    nodes
}

/// Nodes `a`, `b`, `c` (a 1 s silence limit), `b` and `c` seeded with `a`; returns once
/// each sees all three running the supervisor.
pub fn three() -> [Child; 3] {
    let a = start("a", &[("SILENCE_MS", "1000")]);
    let seed = a.addr.clone();
    let b = start("b", &[("SILENCE_MS", "1000"), ("SEEDS", &seed)]);
    let c = start("c", &[("SILENCE_MS", "1000"), ("SEEDS", &seed)]);
    let mut nodes = [a, b, c];
    for n in &mut nodes {
        n.tell("members 3");
        n.expect(|l| l == "members 3");
    }
    nodes
}

fn placement(id: &str, word: &str) -> ChildPlacement {
    let placement = match word {
        "singleton" => Placement::Singleton,
        "all" => Placement::All,
        "local" => Placement::Local,
        w if w.starts_with("rep:") => Placement::Replicated {
            n: w[4..].parse().unwrap(),
        },
        w if w.starts_with("pinned:") => Placement::Pinned(w[7..].to_owned()),
        w => panic!("unknown placement {w}"),
    };
    ChildPlacement::new(id, placement)
}

fn variant(e: &StartChildError) -> &'static str {
    match e {
        StartChildError::UnknownKind { .. } => "UnknownKind",
        StartChildError::Args { .. } => "Args",
        StartChildError::AlreadyStarted { .. } => "AlreadyStarted",
        StartChildError::NameTaken { .. } => "NameTaken",
        StartChildError::Placement(_) => "Placement",
        StartChildError::Quorum(_) => "Quorum",
        StartChildError::GaveUp { .. } => "GaveUp",
        StartChildError::Pending { .. } => "Pending",
        StartChildError::Removed { .. } => "Removed",
        StartChildError::Timeout { .. } => "Timeout",
        _ => "Other",
    }
}

fn migrate_variant(e: &MigrateError) -> &'static str {
    match e {
        MigrateError::NotFound { .. } => "NotFound",
        MigrateError::NotMovable { .. } => "NotMovable",
        MigrateError::NoHandoff { .. } => "NoHandoff",
        MigrateError::UnknownNode { .. } => "UnknownNode",
        MigrateError::MissingRole { .. } => "MissingRole",
        MigrateError::NotRunning { .. } => "NotRunning",
        MigrateError::Failed { .. } => "Failed",
        MigrateError::Timeout { .. } => "Timeout",
        _ => "Other",
    }
}

/// Whether `log` is exactly 1, 2, …, its length: `seq`, or `gap <index>` at the first
/// number out of place.
fn sequence(log: &[u64]) -> String {
    match log.iter().enumerate().find(|(i, n)| **n != *i as u64 + 1) {
        None => "seq".to_owned(),
        Some((i, n)) => format!("gap {i}:{n}"),
    }
}

fn children_line(sup: &DistributedSupervisor<Work>) -> (String, usize) {
    let mut line = String::new();
    let mut instances = 0;
    for c in sup.which_children() {
        let nodes: Vec<&str> = c
            .instances
            .iter()
            .filter(|i| i.live)
            .map(|i| i.node.as_str())
            .collect();
        instances += nodes.len();
        let status = match c.status {
            ChildStatus::Running => "running",
            ChildStatus::Starting => "starting",
            ChildStatus::Pending(_) => "pending",
            _ => "other",
        };
        line.push_str(&format!("{}={}/{status};", c.id, nodes.join(",")));
    }
    (line, instances)
}

/// The split-brain policy a `QUORUM` setting names (`KeepMajority` without one).
fn quorum(word: Option<&str>) -> Quorum {
    match word {
        None | Some("majority") => Quorum::KeepMajority,
        Some("oldest") => Quorum::keep_oldest(),
        Some("downall") => Quorum::DownAll,
        Some(w) if w.starts_with("static:") => Quorum::StaticQuorum(w[7..].parse().unwrap()),
        Some(w) if w.starts_with("referee:") => Quorum::KeepReferee(w[8..].to_owned()),
        Some(w) => panic!("unknown quorum {w}"),
    }
}

/// Nanoseconds on the wall clock: every node process of a test shares the machine's.
fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Polls `f` every 10 ms until it is true (the parent bounds the wait).
async fn until(mut f: impl FnMut() -> bool) {
    while !f() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The node side: runs only in a child started by [`start`].
#[test]
#[ignore = "runs as a child process of the distributed supervisor's tests"]
fn node_process() {
    foundation_testkit::run_node(run);
}

async fn run(name: String) {
    let var = foundation_testkit::setting;
    let silence = Duration::from_millis(var("SILENCE_MS").map_or(3000, |ms| ms.parse().unwrap()));
    let listen = var("LISTEN").unwrap_or_else(|| "127.0.0.1:0".into());
    let config = NodeConfig::new(&name, "cookie")
        .listen(listen.parse().unwrap())
        .silence(silence);
    let node = Node::start(config).await.unwrap();
    let names: ClusterRegistry<ChildName, Work> =
        ClusterRegistry::start(&node, "work").await.unwrap();
    let me = name.clone();
    let store = var("STORE");
    let me2 = name.clone();
    let spec = DistributedSpec::new("work")
        .handoff_kind("stream", move |id: String| {
            (
                Streamer {
                    id,
                    node: me2.clone(),
                },
                (),
            )
        })
        .kind_fenced("echo", move |id: String, fence| {
            ChildSpec::new(
                id.clone(),
                Worker {
                    id,
                    node: me.clone(),
                    fence,
                    store: store.clone(),
                },
                (),
            )
        })
        .kind("crash", |(): ()| ChildSpec::new("crash", Crasher, ()))
        .timing(Timing {
            silence,
            margin: Duration::from_millis(var("MARGIN_MS").map_or(500, |ms| ms.parse().unwrap())),
        })
        .quorum(quorum(var("QUORUM").as_deref()))
        .sync_every(Duration::from_millis(200))
        .probe_closed(var("PROBE").as_deref() != Some("off"));
    let spec = match var("ROLE") {
        Some(role) => spec.role(role),
        None => spec,
    };
    // Strict mode: singletons under leases of a consistent registry (1.5 s leases, three
    // voters: the test's three nodes).
    let leases = match var("STRICT") {
        Some(_) => {
            let options = ConsistentOptions::new("leases")
                .lease(Duration::from_millis(1500))
                .on_lost(OnConflict::Unregister)
                .group(|g| g.voters(3).write_timeout(Duration::from_secs(2)));
            Some(
                ConsistentRegistry::<ChildName, Work>::start(&node, options)
                    .await
                    .unwrap(),
            )
        }
        None => None,
    };
    let spec = match &leases {
        Some(leases) => spec.strict(leases.clone()),
        None => spec,
    };
    let sup = DistributedSupervisor::start(&node, &names, spec)
        .await
        .unwrap();
    let mut events = sup.subscribe();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            match e {
                DistributedEvent::Started { child, cause } => {
                    let cause = match cause {
                        StartCause::New => "new",
                        StartCause::Grow => "grow",
                        StartCause::Failover { .. } => "failover",
                        StartCause::Restart => "restart",
                        StartCause::HandOff { .. } => "handoff",
                        _ => "other",
                    };
                    say(&format!("ev started {child} {cause}"));
                    say(&format!("t started {child} {}", unix_nanos()));
                }
                DistributedEvent::Stopped { child, .. } => {
                    say(&format!("ev stopped {child}"));
                    say(&format!("t stopped {child} {}", unix_nanos()));
                }
                DistributedEvent::Ended { child, .. } => say(&format!("ev ended {child}")),
                DistributedEvent::GaveUp { child, .. } => say(&format!("ev gaveup {child}")),
                DistributedEvent::QuorumLost(_) => say("ev quorumlost"),
                DistributedEvent::QuorumRegained => say("ev quorumback"),
                DistributedEvent::QuorumInvalid(_) => say("ev quoruminvalid"),
                _ => {}
            }
        }
    });
    say(&format!("ready {} {}", node.name(), node.advertised()));
    for seed in var("SEEDS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        node.connect(&seed.parse::<Peer>().unwrap());
    }
    let mut squatters = Vec::new();
    let mut leave_only = false;
    let mut streams: std::collections::HashMap<String, tokio::sync::oneshot::Sender<()>> =
        std::collections::HashMap::new();
    let mut lines = commands();
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["start", kind, id, how, rest @ ..] => {
                let mut p = placement(id, how);
                for word in rest {
                    if let Some(role) = word.strip_prefix("role:") {
                        p = p.on_role(role);
                        continue;
                    }
                    p = match *word {
                        "transient" => p.restart(Restart::Transient),
                        "temporary" => p.restart(Restart::Temporary),
                        "manual" => p.rebalance(Rebalance::Manual),
                        "eager" => p.rebalance(Rebalance::Eager),
                        w => panic!("unknown start option {w}"),
                    };
                }
                let r = if *kind == "crash" {
                    sup.start_child(kind, &(), p).await
                } else {
                    sup.start_child(kind, &(*id).to_owned(), p).await
                };
                tracing::debug!(?r, "start_child returned");
                match r {
                    Ok(at) => say(&format!("started {id} ok {}", at.node())),
                    Err(e) => {
                        tracing::info!(error = %e, "start_child refused");
                        say(&format!("started {id} err {}", variant(&e)));
                    }
                }
            }
            ["declare", n, prefix, rest @ ..] => {
                // Boot code declaring its singletons, once the node has joined (sees a
                // member), without waiting for them: `place_child` of `<prefix>0` …
                until(|| !node.members().is_empty()).await;
                let n: usize = n.parse().unwrap();
                let (mut ok, mut already, mut taken, mut other) = (0, 0, 0, 0);
                for i in 0..n {
                    let id = format!("{prefix}{i}");
                    let mut p = ChildPlacement::new(id.clone(), Placement::Singleton);
                    if rest.contains(&"eager") {
                        p = p.rebalance(Rebalance::Eager);
                    }
                    match sup.place_child("echo", &id, p) {
                        Ok(_) => ok += 1,
                        Err(StartChildError::AlreadyStarted { .. }) => already += 1,
                        // Its instance's name reached this node before its record did.
                        Err(StartChildError::NameTaken { .. }) => taken += 1,
                        Err(e) => {
                            tracing::info!(error = %e, "place_child refused");
                            other += 1;
                        }
                    }
                }
                say(&format!("declared {prefix} {ok} {already} {taken} {other}"));
            }
            ["members", n] => {
                let n: usize = n.parse().unwrap();
                until(|| sup.members().len() == n).await;
                say(&format!("members {n}"));
            }
            ["await", id, at] => {
                until(|| sup.whereis(id).is_some_and(|l| l.node() == *at)).await;
                say(&format!("at {id} {at}"));
            }
            ["moved", id, from] => {
                until(|| sup.whereis(id).is_some_and(|l| l.node() != *from)).await;
                let at = sup.whereis(id).map(|l| l.node().to_owned()).unwrap();
                say(&format!("moved {id} {at}"));
            }
            ["call", id] => match sup.call(id, Work::Ask, Duration::from_secs(5)).await {
                Ok(reply) => say(&format!("call {id} {reply}")),
                Err(_) => say(&format!("call {id} err")),
            },
            ["forgotten", id] => {
                until(|| {
                    sup.whereis(id).is_none() && sup.which_children().iter().all(|c| c.id != *id)
                })
                .await;
                say(&format!("forgotten {id}"));
            }
            ["status", id, want] => {
                until(|| {
                    sup.which_children().iter().any(|c| {
                        c.id == *id
                            && match c.status {
                                ChildStatus::Running => *want == "running",
                                ChildStatus::Starting => *want == "starting",
                                ChildStatus::Pending(_) => *want == "pending",
                                _ => false,
                            }
                    })
                })
                .await;
                say(&format!("status {id} {want}"));
            }
            ["single", id] => {
                let one = || {
                    sup.which_children().into_iter().find_map(|c| {
                        let live: Vec<String> = c
                            .instances
                            .iter()
                            .filter(|i| i.live)
                            .map(|i| i.node.clone())
                            .collect();
                        (c.id == *id && live.len() == 1).then(|| live[0].clone())
                    })
                };
                until(|| one().is_some()).await;
                say(&format!("single {id} {}", one().unwrap()));
            }
            ["children"] => say(&format!("children {}", children_line(&sup).0)),
            ["converge", n, rest @ ..] if rest.len() <= 1 => {
                let n: usize = n.parse().unwrap();
                let want = rest.first().copied().unwrap_or("");
                let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
                loop {
                    let (line, instances) = children_line(&sup);
                    if line == want && instances == n {
                        say(&format!("converged {want}"));
                        break;
                    }
                    if tokio::time::Instant::now() > deadline {
                        say(&format!("diverged {instances} {line}"));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            ["crash", id] => {
                sup.cast(id, Work::Crash).unwrap();
            }
            ["quit", id] => {
                sup.cast(id, Work::Quit).unwrap();
            }
            ["restarts", id, n] => {
                let n: u64 = n.parse().unwrap();
                until(|| {
                    sup.which_children().iter().any(|c| {
                        c.id == *id && c.instances.iter().map(|i| i.restarts).sum::<u64>() == n
                    })
                })
                .await;
                say(&format!("restarts {id} {n}"));
            }
            ["rebalance"] => {
                sup.rebalance().await.unwrap();
                say("rebalanced");
            }
            ["terminate", id] => match sup.terminate_child(id).await {
                Ok(()) => say(&format!("terminated {id} ok")),
                Err(e) => say(&format!("terminated {id} err {e}")),
            },
            ["squat", id] => {
                let addr = spawn(
                    Worker {
                        id: (*id).to_owned(),
                        node: name.clone(),
                        fence: Fence::default(),
                        store: None,
                    },
                    (),
                )
                .await
                .unwrap();
                names.register(ChildName::unique(*id), &addr, ()).unwrap();
                squatters.push(addr);
                say(&format!("squat {id} ok"));
            }
            ["leader"] => {
                let leader = leases
                    .as_ref()
                    .unwrap()
                    .wait_ready(Duration::from_secs(25))
                    .await
                    .unwrap();
                say(&format!("leader {leader}"));
            }
            ["slowwrite", id] => sup.cast(id, Work::SlowWrite).unwrap(),
            ["go"] => GATE.notify_one(),
            ["token", id] => say(&format!(
                "token {id} {}",
                sup.fencing_token(id)
                    .map_or("none".to_owned(), |t| t.to_string())
            )),
            ["lives"] => say(&format!("lives {}", LIVES.lock().unwrap().join(";"))),
            ["migrate", id, to] => match sup.migrate(id, to).await {
                Ok(at) => say(&format!("migrated {id} ok {}", at.node())),
                Err(e) => {
                    tracing::info!(error = %e, "migrate refused");
                    say(&format!("migrated {id} err {}", migrate_variant(&e)));
                }
            },
            ["push", id, from, to] => {
                let (from, to): (u64, u64) = (from.parse().unwrap(), to.parse().unwrap());
                let errors = (from..=to)
                    .filter(|n| sup.cast(id, Work::Push(*n)).is_err())
                    .count();
                say(&format!("pushed {id} {to} {errors}"));
            }
            ["save", id] => {
                sup.cast(id, Work::Save).unwrap();
                say(&format!("save {id}"));
            }
            ["saved", id, seq] => {
                let seq: u64 = seq.parse().unwrap();
                until(|| sup.checkpoint_seq(id).is_some_and(|s| s >= seq)).await;
                say(&format!("saved {id} {seq}"));
            }
            ["log", id] => match sup.call(id, Work::Log, Duration::from_secs(10)).await {
                Ok(log) => say(&format!("log {id} {} {}", log.len(), sequence(&log))),
                Err(e) => say(&format!("log {id} err {e}")),
            },
            // Pushes 1, 2, … to `id` until `endstream`: `@streaming` after the first
            // 100, `@streamed <id> <last> <errors>` at the end.
            ["stream", id] => {
                let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel();
                streams.insert((*id).to_owned(), stop_tx);
                let (sup, id) = (sup.clone(), (*id).to_owned());
                tokio::spawn(async move {
                    let (mut n, mut errors) = (0_u64, 0_u64);
                    loop {
                        n += 1;
                        if let Err(e) = sup.cast(&id, Work::Push(n)) {
                            if errors == 0 {
                                tracing::warn!(n, error = %e, "stream: cast failed");
                            }
                            errors += 1;
                        }
                        if n == 100 {
                            say(&format!("streaming {id}"));
                        }
                        if n % 20 == 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            if stop_rx.try_recv().is_ok() {
                                break;
                            }
                        }
                    }
                    say(&format!("streamed {id} {n} {errors}"));
                });
            }
            ["endstream", id] => {
                if let Some(stop) = streams.remove(*id) {
                    let _ = stop.send(());
                }
            }
            ["drop"] => {
                // The last handle dropped without a shutdown; the node stays up.
                drop(sup);
                say("dropped");
                loop {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            }
            ["connect", peer] => {
                node.connect(&peer.parse::<Peer>().unwrap());
                say(&format!("connecting {peer}"));
            }
            ["exit"] => break,
            ["leave"] => {
                leave_only = true;
                break;
            }
            _ => say(&format!("unknown command {line}")),
        }
    }
    if leave_only {
        // `Node::leave` alone: its leave hook shuts the supervisor down gracefully first.
        node.leave().await;
        names.shutdown();
        return;
    }
    // A graceful leave: the supervisor first (its instances stop and its peers are
    // told), then the node, which drains what is queued before it goes.
    sup.shutdown().await;
    names.shutdown();
    node.leave().await;
}
