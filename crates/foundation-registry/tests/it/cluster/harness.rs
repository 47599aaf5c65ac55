//! Node processes running a cluster registry: this test binary re-runs itself as a node
//! (see `foundation-testkit`).
//!
//! A child starts node `FOUNDATION_TEST_NODE_NAME` with the registry `names`, prints the
//! registry's events (`@ev registered <key> <node>`, `@ev unregistered <key>`,
//! `@ev lost <key> <winner>`), its processes' exits (`@exit <key> <reason>`) and members
//! (`@up <node>`, `@down <node>`), and obeys:
//!
//! - `register <key> <value>`: starts an [`Echo`] under its supervisor and registers it
//!   (`@registered <key> ok` or `@registered <key> err <error>`);
//! - `unregister <key>`, `stop <key>` (the process), `alive <key>` (the process),
//!   `whereis <key>` (`@whereis <key> <node>|-`), `await <key> <node>` (`@at <key> <node>`
//!   once the name resolves there),
//!   `cast <key> <note>`, `call <key> <note>`;
//! - `bulk <prefix> <n>`: registers `<prefix>0` … (`@bulk <n> ok`);
//! - `digest`: `@digest <count> <hash>` of every name and its node, sorted;
//! - services (the table `svc`): `offer <service> <caps,…|-> <meta>` (`@offered <id>`),
//!   `pick <service> <rr|random|least|local|hash:KEY>` (`@picked <id>|-`),
//!   `load <id> <load>` (`@load <id> <true|false>`);
//! - `wait <count>`: `@count <count>` once that many names resolve;
//! - with `CONSISTENT` set, the strongly consistent registry `locks` (3 voters, 1.5 s
//!   leases): `cready` (`@cready <leader>`), `claim <key>` (`@claim <key> ok <token>`,
//!   `taken <node>` or `err <why>`), `holder <key>` (linearizable: `@holder <key> <node>
//!   <token>`, `-` or `err <why>`), `release <key>`; lost leases print `@lease lost <key>`;
//! - with `SLOW` set, a process exported as `slow` that takes 1 ms over each note (the
//!   target of a flood; `MAX_REMOTE_QUEUED` sets the node's limit of remote messages
//!   queued at one process; `dropped` answers `@dropped <n>`, the node's count of remote
//!   messages dropped over that limit);
//! - `rss`: `@rss <KiB>`, the process's resident memory; `downs`: `@downs <n>`, how many
//!   times it has seen a node go down;
//! - `exit`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_actors::{RemoteMessage, SupervisorEvent};
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{ClusterEvent, Node, NodeConfig};
use foundation_registry::cluster::Options;
use foundation_registry::consistent::{
    ConsistentError, ConsistentOptions, ConsistentRegistry, LeaseEvent,
};
use foundation_registry::services::{InstanceId, Route, Services, Spec};
use foundation_registry::{ClusterRegistry, OnConflict, RegistryEvent};
pub use foundation_testkit::{Child, Net};
use foundation_testkit::{commands, say};

/// What registered processes take.
#[derive(Debug, RemoteMessage)]
#[remote(name = "test.Echo")]
pub enum Echo {
    /// Print `@got <key> <note>`.
    #[remote(tag = 1)]
    Note(String),
    /// Answer `<key>@<node> <note>`.
    #[remote(tag = 2)]
    Ask(String, ReplyPort<String>),
}

/// A registered process: knows its key and node.
#[derive(Clone)]
pub struct EchoActor {
    pub key: String,
    pub node: String,
}

impl Actor for EchoActor {
    type Msg = Echo;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<Echo>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(&self, _: &Addr<Echo>, msg: Echo, (): &mut ()) -> Result<(), ActorError> {
        match msg {
            Echo::Note(note) => say(&format!("got {} {note}", self.key)),
            Echo::Ask(note, port) => {
                let _ = port.send(format!("{}@{} {note}", self.key, self.node));
            }
        }
        Ok(())
    }
}

/// A process that takes 1 ms over each note and answers asks: what a flood aims at.
pub struct SlowActor;

impl Actor for SlowActor {
    type Msg = Echo;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<Echo>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(&self, _: &Addr<Echo>, msg: Echo, (): &mut ()) -> Result<(), ActorError> {
        match msg {
            Echo::Note(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            Echo::Ask(note, port) => {
                let _ = port.send(format!("slow {note}"));
            }
        }
        Ok(())
    }
}

/// The registry every node runs.
pub type Names = ClusterRegistry<String, Echo, String>;

/// The service table every node runs.
pub type Svc = Services<Echo, String>;

/// The route a command names.
pub fn route(word: &str) -> Route {
    match word {
        "rr" => Route::RoundRobin,
        "random" => Route::Random,
        "least" => Route::LeastLoaded,
        "local" => Route::LocalFirst,
        w => Route::hash(w.strip_prefix("hash:").unwrap()),
    }
}

/// The registry options nodes use: digests often, so tests of lost messages are quick.
pub fn options() -> Options {
    Options::new("names").sync_every(Duration::from_millis(200))
}

/// `@digest` of a registry: how many names, and a hash of them with their nodes.
pub fn digest(names: &Names) -> String {
    let mut all = names.names();
    all.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    all.hash(&mut h);
    format!("digest {} {:x}", all.len(), h.finish())
}

pub fn event_line(e: &RegistryEvent<String>) -> String {
    match e {
        RegistryEvent::Registered { key, node } => format!("ev registered {key} {node}"),
        RegistryEvent::Unregistered { key } => format!("ev unregistered {key}"),
        RegistryEvent::Lost { key, winner } => format!("ev lost {key} {winner}"),
        _ => format!("ev {e:?}"),
    }
}

const ENTRY: &str = "cluster::harness::node_process";

/// Starts node process `name` (settings: `SEEDS`, `LISTEN`, `SILENCE_MS`, `QUIET`=1 for
/// no per-name events, `UNREGISTER`=1 for [`OnConflict::Unregister`], `SLOW`=1 and
/// `MAX_REMOTE_QUEUED` for a flood's target).
pub fn start(name: &str, settings: &[(&str, &str)]) -> Child {
    Child::start(ENTRY, name, settings)
}

/// As [`start`], in network namespace `netns`.
pub fn start_in(netns: &str, name: &str, settings: &[(&str, &str)]) -> Child {
    Child::start_in(Some(netns), ENTRY, name, settings)
}

/// Nodes `a`, `b` and `c` in the three namespaces of `net`, each listening on its own
/// address with a 1 s silence limit, `b` and `c` seeded with `a`; `extra` adds settings
/// per node.
pub fn start_three_in(net: &Net, extra: [&[(&str, &str)]; 3]) -> [Child; 3] {
    let listen = |i: usize| format!("{}:4370", net.addr(i));
    let seed = listen(0);
    std::array::from_fn(|i| {
        let own = listen(i);
        let mut settings = vec![("SILENCE_MS", "1000"), ("LISTEN", own.as_str())];
        if i > 0 {
            settings.push(("SEEDS", seed.as_str()));
        }
        settings.extend_from_slice(extra[i]);
        start_in(&net.ns(i), ["a", "b", "c"][i], &settings)
    })
}

/// The node side: runs only in a child started by [`start`].
#[test]
#[ignore = "runs as a child process of the multi-node tests"]
fn node_process() {
    foundation_testkit::run_node(run);
}

async fn run(name: String) {
    let var = foundation_testkit::setting;
    let listen = var("LISTEN").unwrap_or_else(|| "127.0.0.1:0".into());
    let mut config = NodeConfig::new(&name, "cookie").listen(listen.parse().unwrap());
    if let Some(ms) = var("SILENCE_MS") {
        config = config.silence(Duration::from_millis(ms.parse().unwrap()));
    }
    if let Some(n) = var("MAX_REMOTE_QUEUED") {
        config = config.max_remote_queued(n.parse().unwrap());
    }
    let node = Node::start(config).await.unwrap();
    if var("SLOW").is_some() {
        let slow = spawn(SlowActor, ()).await.unwrap();
        node.export("slow", slow).unwrap();
    }
    let mut opts = options();
    if var("UNREGISTER").is_some() {
        opts = opts.on_conflict(OnConflict::Unregister);
    }
    let names: Names = ClusterRegistry::start_with(&node, opts).await.unwrap();
    if var("QUIET").is_none() {
        let mut events = names.subscribe();
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                say(&event_line(&e));
            }
        });
    }
    let svc: Svc = Services::start_with(
        &node,
        Options::new("svc").sync_every(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let mut offered: HashMap<String, InstanceId> = HashMap::new();
    let locks: Option<ConsistentRegistry<String, Echo, String>> = match var("CONSISTENT") {
        Some(_) => {
            let options = ConsistentOptions::new("locks")
                .lease(Duration::from_millis(1500))
                .group(|g| g.voters(3).write_timeout(Duration::from_secs(2)));
            let locks = ConsistentRegistry::start(&node, options).await.unwrap();
            let mut lost = locks.subscribe();
            tokio::spawn(async move {
                while let Ok(LeaseEvent::Lost { key, .. }) = lost.recv().await {
                    say(&format!("lease lost {key}"));
                }
            });
            Some(locks)
        }
        None => None,
    };
    let sup = DynamicSupervisor::start("echoes", None).await.unwrap();
    let mut exits = sup.handle().subscribe();
    tokio::spawn(async move {
        while let Ok(e) = exits.recv().await {
            if let SupervisorEvent::ChildExited { child, reason, .. } = e {
                say(&format!("exit {child} {reason}"));
            }
        }
    });
    let mut cluster = node.subscribe();
    let downs = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = downs.clone();
    tokio::spawn(async move {
        while let Ok(e) = cluster.recv().await {
            match e {
                ClusterEvent::NodeUp(m) => say(&format!("up {}", m.id)),
                ClusterEvent::NodeDown { member, .. } => {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    say(&format!("down {}", member.id));
                }
                _ => {}
            }
        }
    });
    // Ready before dialing: a line printed before `ready` would be skipped by the parent's
    // wait for it.
    say(&format!("ready {} {}", node.name(), node.advertised()));
    for seed in var("SEEDS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        node.connect(&seed.parse::<Peer>().unwrap());
    }
    let mut procs: HashMap<String, Addr<Echo>> = HashMap::new();
    let mut lines = commands();
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["register", key, value] => {
                let addr = spawn_echo(&sup, key, &name).await;
                match names.register((*key).to_owned(), &addr, (*value).to_owned()) {
                    Ok(()) => {
                        procs.insert((*key).to_owned(), addr);
                        say(&format!("registered {key} ok"));
                    }
                    Err(e) => say(&format!("registered {key} err {e}")),
                }
            }
            ["bulk", prefix, n] => {
                let n: usize = n.parse().unwrap();
                let addr = spawn_echo(&sup, prefix, &name).await;
                let mut ok = 0;
                for i in 0..n {
                    if names
                        .register(format!("{prefix}{i}"), &addr, String::new())
                        .is_ok()
                    {
                        ok += 1;
                    }
                }
                say(&format!("bulk {ok} ok"));
            }
            ["unregister", key] => {
                say(&format!(
                    "unregistered {key} {}",
                    names.unregister(&(*key).to_owned())
                ));
            }
            ["stop", key] => {
                if let Some(addr) = procs.remove(*key) {
                    addr.stop(None);
                }
            }
            ["await", key, node] => {
                while names.whereis(*key).as_ref().map(|l| l.node()) != Some(*node) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                say(&format!("at {key} {node}"));
            }
            ["alive", key] => {
                let alive = procs.get(*key).is_some_and(Addr::is_running);
                say(&format!("alive {key} {alive}"));
            }
            ["whereis", key] => {
                let at = names.whereis(*key);
                say(&format!(
                    "whereis {key} {}",
                    at.as_ref().map_or("-", |l| l.node())
                ));
            }
            ["cast", key, note] => {
                let r = names.cast(*key, Echo::Note((*note).to_owned()));
                say(&format!(
                    "cast {key} {}",
                    r.map_or_else(|e| e.to_string(), |()| "ok".into())
                ));
            }
            ["call", key, note] => {
                let note = (*note).to_owned();
                let r = names
                    .call(*key, |p| Echo::Ask(note, p), Duration::from_secs(5))
                    .await;
                say(&format!(
                    "call {key} {}",
                    r.unwrap_or_else(|e| format!("err {e}"))
                ));
            }
            ["digest"] => say(&digest(&names)),
            ["dropped"] => say(&format!("dropped {}", node.stats().remote_dropped)),
            ["rss"] => say(&format!("rss {}", rss_kib())),
            ["downs"] => say(&format!(
                "downs {}",
                downs.load(std::sync::atomic::Ordering::Relaxed)
            )),
            ["offer", service, caps, meta] => {
                let key = format!("{service}-{}", offered.len() + 1);
                let addr = spawn_echo(&sup, &key, &name).await;
                let mut spec = Spec::new((*meta).to_owned());
                for cap in caps.split(',').filter(|c| *c != "-") {
                    spec = spec.capability(cap);
                }
                let id = svc.register(service, &addr, spec).unwrap();
                offered.insert(id.to_string(), id.clone());
                say(&format!("offered {id}"));
            }
            ["pick", service, how] => {
                let picked = svc.pick(service, route(how));
                say(&format!(
                    "picked {}",
                    picked.map_or("-".to_owned(), |i| i.id().to_string())
                ));
            }
            ["load", id, load] => {
                let done = offered
                    .get(*id)
                    .is_some_and(|i| svc.set_load(i, load.parse().unwrap()));
                say(&format!("load {id} {done}"));
            }
            ["wait", n] => {
                let n: usize = n.parse().unwrap();
                while names.count() != n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                say(&format!("count {n}"));
            }
            ["cready"] => {
                let locks = locks.as_ref().unwrap();
                match locks.wait_ready(Duration::from_secs(20)).await {
                    Ok(leader) => say(&format!("cready {leader}")),
                    Err(e) => say(&format!("cready err {e}")),
                }
            }
            ["claim", key] => {
                let locks = locks.as_ref().unwrap();
                let addr = spawn_echo(&sup, key, &name).await;
                match locks
                    .register((*key).to_owned(), &addr, String::new())
                    .await
                {
                    Ok(lease) => {
                        procs.insert((*key).to_owned(), addr);
                        say(&format!("claim {key} ok {}", lease.token));
                    }
                    Err(ConsistentError::Taken { holder, .. }) => {
                        addr.stop(None);
                        say(&format!("claim {key} taken {holder}"));
                    }
                    Err(e) => {
                        addr.stop(None);
                        say(&format!("claim {key} err {e}"));
                    }
                }
            }
            ["holder", key] => {
                let locks = locks.as_ref().unwrap();
                match locks.whereis(&(*key).to_owned()).await {
                    Ok(Some(h)) => say(&format!("holder {key} {} {}", h.location.node(), h.token)),
                    Ok(None) => say(&format!("holder {key} -")),
                    Err(e) => say(&format!("holder {key} err {e}")),
                }
            }
            ["release", key] => {
                let locks = locks.as_ref().unwrap();
                let r = locks.unregister(&(*key).to_owned()).await;
                say(&format!(
                    "release {key} {}",
                    r.map_or_else(|e| e.to_string(), |b| b.to_string())
                ));
            }
            ["exit"] => break,
            _ => say(&format!("unknown command {line}")),
        }
    }
    names.shutdown();
    node.shutdown().await;
}

/// Starts an echo process for `key` under `sup`, transient (a conflict's stop is final).
pub async fn spawn_echo(sup: &DynamicSupervisor, key: &str, node: &str) -> Addr<Echo> {
    let actor = EchoActor {
        key: key.to_owned(),
        node: node.to_owned(),
    };
    let spec = ChildSpec::new(key, actor, ()).restart(Restart::Transient);
    sup.start_child(spec).await.unwrap()
}

/// This process's resident memory in KiB (`VmRSS`; 0 where `/proc` has none).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
