//! Real node processes for tests: this test binary re-runs itself as a node.
//!
//! A child runs the ignored test `node::harness::node_process` with its settings in
//! `FOUNDATION_TEST_NODE_*` variables. It prints `@`-prefixed lines on stdout (its
//! readiness, membership events, messages its `probe` process got) and obeys commands on
//! stdin. The parent reads those lines with [`Child::expect`] (`foundation-testkit`).
//!
//! `stats` answers `@stats rss=<KiB> hwm=<KiB> fds=<n> [low_nice=<n>] <key>=<n>…` (its
//! resident memory, its peak, its open file descriptors, the nice value of its thread for
//! low-priority lanes once it has one, then its node's `NodeStats` fields).
//!
//! `CHANNELS` declares channels: `<name>:<low|normal>:<parallelism>,…`. `MAX_FRAME` sets
//! the largest frame the node accepts and sends, in bytes.
//! `wrong-types` prints `@wrong-types <n>`: how many items the node refused for their type.
//!
//! Besides `probe` and `slow`, a child exports `big` (a [`BigActor`]: prints `@big <length>
//! <ok|broken>` for each [`Big`] it gets) and `gate` (a [`GateActor`], its own limit
//! [`GATE_LIMIT`] of unhandled remote messages): each note waits in its handler until
//! `open <n>` lets `n` more through (printing `@gate <note>`). `export-stats <name> <queued>
//! <dropped> <refused>` prints `@export-stats <name> queued=<n> max_queued=<n> dropped=<n>
//! refused=<n>` once the export's counters are those (the parent's deadline fails a test).
//! `mailboxes <queued>` prints `@mailboxes queued=<n> max=<n> deepest=<name>:<queued>/<max>,…`
//! (`Node::mailboxes(3)`) once its exports hold `queued` messages from other nodes.
//!
//! With `RAFT_VOTERS` set, a child also runs the consensus group `journal` (a [`Journal`])
//! and obeys `rwrite <line>` (`@rwrite <line> ok <count>|err <why>`), `rread` (a
//! linearizable read: `@rread <summary>`), `rwait <n>` (`@rlocal <summary>` once `n` lines
//! are applied here), `rleader` and `rvoters`.

use std::time::{Duration, Instant};

use foundation_actors::{Actor, ActorError, Addr, Context, RemoteMessage, ReplyPort, spawn};
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{
    ChannelConfig, ClusterEvent, ExportConfig, Node, NodeConfig, Priority,
};
use foundation_cluster::raft::{Group, GroupOptions, Machine};
pub use foundation_testkit::{Child, Net};
use foundation_testkit::{commands, say};

/// What tests send to a node's `probe` process.
#[derive(Debug, RemoteMessage)]
#[remote(name = "test.Probe")]
pub enum Probe {
    /// Print the note with the context it came with.
    #[remote(tag = 1)]
    Note(String),
    /// Answer with the note and the context it came with.
    #[remote(tag = 2)]
    Ask(String, ReplyPort<String>),
    /// Drop the reply port without answering.
    #[remote(tag = 3)]
    Ignore(ReplyPort<String>),
    /// Keep the reply port and never answer.
    #[remote(tag = 4)]
    Hold(ReplyPort<String>),
}

/// A process taking 1 ms per message, exported as `slow`: a flood's target.
struct SlowActor;

impl Actor for SlowActor {
    type Msg = Probe;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<Probe>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(&self, _: &Addr<Probe>, msg: Probe, (): &mut ()) -> Result<(), ActorError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        if let Probe::Ask(note, port) = msg {
            let _ = port.send(note);
        }
        Ok(())
    }
}

/// A large message: bytes `i % 256` at each position `i` ([`Big::pattern`]).
#[derive(Debug, RemoteMessage)]
#[remote(name = "test.Big")]
pub enum Big {
    #[remote(tag = 1)]
    Bytes(Bytes),
}

impl Big {
    /// `len` bytes of the pattern (`len` a multiple of 256).
    pub fn pattern(len: usize) -> Self {
        let block: Vec<u8> = (0..=255).collect();
        Self::Bytes(Bytes(block.repeat(len / 256)))
    }
}

/// A `Vec<u8>` encoded as one byte string (its length, then a copy of it). Serde encodes a
/// plain `Vec<u8>` as a sequence, one call per byte: 100 MiB took 28 s to encode in a
/// debug build on a loaded machine, what no test should spend.
#[derive(Debug)]
pub struct Bytes(pub Vec<u8>);

impl serde::Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

/// The process every node exports as `big`: prints the length of each [`Big`] it gets,
/// and whether its bytes are the pattern's (checked at a prime stride and at the end:
/// cheap in a debug build, and any shift or truncation shows).
struct BigActor;

impl Actor for BigActor {
    type Msg = Big;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<Big>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(&self, _: &Addr<Big>, msg: Big, (): &mut ()) -> Result<(), ActorError> {
        let Big::Bytes(Bytes(bytes)) = msg;
        let whole = (0..bytes.len())
            .step_by(4099)
            .chain(bytes.len().checked_sub(1))
            .all(|i| bytes[i] == i as u8);
        let whole = if whole { "ok" } else { "broken" };
        say(&format!("big {} {whole}", bytes.len()));
        Ok(())
    }
}

/// The limit of unhandled remote messages of a child's `gate`.
pub const GATE_LIMIT: usize = 4;

/// Lets the `gate`'s notes through, one permit each.
static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

/// A process whose notes wait for `open`, exported as `gate` with its own limit: it holds
/// what it was sent until told, so what passes the limit is known exactly.
struct GateActor;

impl Actor for GateActor {
    type Msg = Probe;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<Probe>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(&self, _: &Addr<Probe>, msg: Probe, (): &mut ()) -> Result<(), ActorError> {
        match msg {
            Probe::Note(note) => {
                GATE.acquire().await?.forget();
                say(&format!("gate {note}"));
            }
            Probe::Ask(note, port) => {
                let _ = port.send(note);
            }
            Probe::Ignore(_) | Probe::Hold(_) => {}
        }
        Ok(())
    }
}

/// The same wire name with a variant the other side does not know.
#[derive(Debug, RemoteMessage)]
#[remote(name = "test.Probe")]
pub enum ProbeV2 {
    #[remote(tag = 1)]
    Note(String),
    #[remote(tag = 9)]
    Newer(u64),
}

/// Another type whose tags match `Probe`'s: a node must not run `Probe`'s handlers for it.
#[derive(Debug, RemoteMessage)]
#[remote(name = "test.Other")]
#[allow(dead_code)] // the ports only shape the calls: the replies come back over the wire
pub enum Other {
    #[remote(tag = 1)]
    Note(String),
    #[remote(tag = 2)]
    Ask(String, ReplyPort<String>),
}

/// `Probe` as a peer whose `Ask` answers another type would have it: same wire name, same
/// tag, another reply type.
#[derive(Debug, RemoteMessage)]
#[remote(name = "test.Probe")]
#[allow(dead_code)] // as `Other`'s
pub enum ProbeAskNumber {
    #[remote(tag = 2)]
    Ask(String, ReplyPort<u64>),
}

/// A `probe` process in this process, for calls a node makes to itself.
pub async fn probe() -> Addr<Probe> {
    spawn(ProbeActor, ()).await.unwrap()
}

/// The process every node exports as `probe`.
pub struct ProbeActor;

impl Actor for ProbeActor {
    type Msg = Probe;
    type State = Vec<ReplyPort<String>>;
    type Args = ();

    async fn init(&self, _: &Addr<Probe>, (): ()) -> Result<Self::State, ActorError> {
        Ok(Vec::new())
    }

    async fn handle(
        &self,
        _: &Addr<Probe>,
        msg: Probe,
        held: &mut Self::State,
    ) -> Result<(), ActorError> {
        let note = match msg {
            Probe::Note(note) => note,
            Probe::Ask(note, port) => {
                say(&format!("asked {note}"));
                let _ = port.send(format!("{note} {}", seen()));
                return Ok(());
            }
            Probe::Ignore(port) => {
                drop(port);
                return Ok(());
            }
            Probe::Hold(port) => {
                held.push(port);
                return Ok(());
            }
        };
        say(&format!("got {note} {}", seen()));
        Ok(())
    }
}

/// The context a message came with, as `trace=… req=…`.
fn seen() -> String {
    let (trace, req) = Context::current().map_or(("none".to_owned(), "none".to_owned()), |c| {
        (
            c.trace_id().to_string(),
            c.request_id().unwrap_or("none").to_owned(),
        )
    });
    format!("trace={trace} req={req}")
}

pub fn event_line(e: &ClusterEvent) -> String {
    match e {
        ClusterEvent::NodeUp(m) => format!("up {}", m.id),
        ClusterEvent::NodeLeaving(m) => format!("leaving {}", m.id),
        ClusterEvent::NodeDown { member, reason } => format!("down {} {reason:?}", member.id),
        ClusterEvent::Rejected { peer, why } => format!("rejected {peer} {why}"),
        _ => format!("{e:?}"),
    }
}

/// A replicated journal: each command is a line; `apply` answers the line count.
#[derive(Default)]
pub struct Journal(pub Vec<String>);

impl Journal {
    /// `<count> <hash of all lines>`: equal on two nodes iff they applied the same lines
    /// in the same order (for tests' purposes).
    pub fn summary(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.0.hash(&mut h);
        format!("{} {:x}", self.0.len(), h.finish())
    }
}

impl Machine for Journal {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        self.0.push(String::from_utf8_lossy(command).into_owned());
        self.0.len().to_string().into_bytes()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.join("\n").into_bytes()
    }
    fn restore(&mut self, snapshot: &[u8]) {
        let text = String::from_utf8_lossy(snapshot);
        self.0 = if text.is_empty() {
            Vec::new()
        } else {
            text.split('\n').map(str::to_owned).collect()
        };
    }
}

/// The node side: runs only in a child started by [`Child::start`].
#[test]
#[ignore = "runs as a child process of the multi-node tests"]
fn node_process() {
    foundation_testkit::run_node(|name| async move {
        let var = foundation_testkit::setting;
        let listen = var("LISTEN").unwrap_or_else(|| "127.0.0.1:0".into());
        let mut config = NodeConfig::new(&name, var("COOKIE").unwrap_or_else(|| "cookie".into()))
            .listen(listen.parse().unwrap());
        if let Some(dir) = var("TLS_DIR") {
            config = config.tls(tls_from(std::path::Path::new(&dir)));
        }
        if let Some(ms) = var("SILENCE_MS") {
            config = config.silence(Duration::from_millis(ms.parse().unwrap()));
        }
        if let Some(caps) = var("MAX_UNAUTH") {
            // `<in all>,<per IP address>`
            let (all, per_ip) = caps.split_once(',').unwrap();
            config = config.max_unauthenticated(all.parse().unwrap(), per_ip.parse().unwrap());
        }
        if let Some(n) = var("MAX_REMOTE_QUEUED") {
            config = config.max_remote_queued(n.parse().unwrap());
        }
        if let Some(bytes) = var("MAX_FRAME") {
            config = config.max_frame(bytes.parse().unwrap());
        }
        // `<name>:<low|normal>:<parallelism>,…`
        for spec in var("CHANNELS")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
        {
            let parts: Vec<&str> = spec.split(':').collect();
            let priority = match parts[1] {
                "low" => Priority::Low,
                _ => Priority::Normal,
            };
            let channel = ChannelConfig::default()
                .priority(priority)
                .parallelism(parts[2].parse().unwrap());
            config = config.channel(parts[0], channel);
        }
        let node = Node::start(config).await.unwrap();
        let probe = spawn(ProbeActor, ()).await.unwrap();
        node.export("probe", probe).unwrap();
        let slow = spawn(SlowActor, ()).await.unwrap();
        node.export("slow", slow).unwrap();
        let big = spawn(BigActor, ()).await.unwrap();
        node.export("big", big).unwrap();
        let gate = spawn(GateActor, ()).await.unwrap();
        node.export_with("gate", gate, ExportConfig::new().max_queued(GATE_LIMIT))
            .unwrap();
        let mut events = node.subscribe();
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                say(&format!("event {}", event_line(&e)));
            }
        });
        let group = match var("RAFT_VOTERS") {
            Some(n) => {
                let options = GroupOptions::new("journal")
                    .voters(n.parse().unwrap())
                    .write_timeout(Duration::from_secs(2));
                Some(
                    Group::start(&node, options, Journal::default())
                        .await
                        .unwrap(),
                )
            }
            None => None,
        };
        // Ready before dialing: a line printed before `ready` would be skipped by the
        // parent's wait for it.
        say(&format!("ready {} {}", node.name(), node.advertised()));
        if let Some(peers) = var("ENV_PEERS") {
            // As a deployment would: FOUNDATION_PEERS in the environment, strategy detected.
            let env = move |k: &str| (k == "FOUNDATION_PEERS").then(|| peers.clone());
            node.discover_from_env(env).unwrap();
        }
        for seed in var("SEEDS")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
        {
            node.connect(&seed.parse::<Peer>().unwrap());
        }
        let mut rx = commands();
        while let Some(line) = rx.recv().await {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["send", to, name, note] => {
                    let r = node.send(to, name, &Probe::Note((*note).to_owned()));
                    say(&format!("sent {r:?}"));
                }
                ["burn", ms] => {
                    // Keep every core busy: the node must not be declared down for it.
                    let until = Instant::now() + Duration::from_millis(ms.parse().unwrap());
                    for _ in 0..4 {
                        std::thread::spawn(move || {
                            let mut x = 0u64;
                            while Instant::now() < until {
                                x = x.wrapping_mul(31).wrapping_add(1);
                                std::hint::black_box(x);
                            }
                        });
                    }
                    say("burning");
                }
                ["owners", keys] => {
                    let ring = node.ring();
                    let owners: Vec<&str> = keys
                        .split(',')
                        .map(|k| ring.owner(k.as_bytes()).map_or("-", String::as_str))
                        .collect();
                    say(&format!("owners {}", owners.join(",")));
                }
                ["rwrite", text] => {
                    let group = group.as_ref().unwrap();
                    match group.write(text.as_bytes().to_vec()).await {
                        Ok(n) => say(&format!("rwrite {text} ok {}", String::from_utf8_lossy(&n))),
                        Err(e) => say(&format!("rwrite {text} err {e}")),
                    }
                }
                ["rread"] => {
                    let group = group.as_ref().unwrap();
                    match group.read(Journal::summary).await {
                        Ok(s) => say(&format!("rread {s}")),
                        Err(e) => say(&format!("rread err {e}")),
                    }
                }
                ["rwait", n] => {
                    let group = group.as_ref().unwrap();
                    let n: usize = n.parse().unwrap();
                    while group.read_local(|j| j.0.len()) < n {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    say(&format!("rlocal {}", group.read_local(Journal::summary)));
                }
                ["rleader"] => {
                    let group = group.as_ref().unwrap();
                    say(&format!(
                        "rleader {}",
                        group.leader().unwrap_or_else(|| "-".into())
                    ));
                }
                ["rvoters"] => {
                    let group = group.as_ref().unwrap();
                    say(&format!("rvoters {}", group.voters().join(",")));
                }
                ["stats"] => {
                    let n = node.stats();
                    say(&format!(
                        "stats {} unauthenticated={} over_cap={} handshake_timeouts={} oversized_preauth={} accept_errors={} remote_dropped={} remote_refused={} lanes_in={} lanes_out={}",
                        process_stats(),
                        n.unauthenticated,
                        n.over_cap,
                        n.handshake_timeouts,
                        n.oversized_preauth,
                        n.accept_errors,
                        n.remote_dropped,
                        n.remote_refused,
                        n.lanes_in,
                        n.lanes_out
                    ));
                }
                ["open", n] => {
                    GATE.add_permits(n.parse().unwrap());
                    say(&format!("opened {n}"));
                }
                ["export-stats", name, queued, dropped, refused] => {
                    let want: [u64; 3] = [queued, dropped, refused].map(|n| n.parse().unwrap());
                    // Polled here: the parent's deadline on the answer is what fails a test.
                    let s = loop {
                        let s = node.export_stats(name).unwrap();
                        if [s.queued as u64, s.dropped, s.refused] == want {
                            break s;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    };
                    say(&format!(
                        "export-stats {name} queued={} max_queued={} dropped={} refused={}",
                        s.queued, s.max_queued, s.dropped, s.refused
                    ));
                }
                ["mailboxes", from_peers] => {
                    let want: usize = from_peers.parse().unwrap();
                    // Polled here, as export-stats.
                    let m = loop {
                        let m = node.mailboxes(3);
                        if m.from_peers == want {
                            break m;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    };
                    let deepest: Vec<String> = m
                        .deepest
                        .iter()
                        .map(|b| {
                            format!("{}:{}/{}/{}", b.name, b.queued, b.from_peers, b.max_queued)
                        })
                        .collect();
                    say(&format!(
                        "mailboxes queued={} max={} from_peers={} deepest={}",
                        m.queued,
                        m.max,
                        m.from_peers,
                        deepest.join(",")
                    ));
                }
                ["wrong-types"] => {
                    say(&format!("wrong-types {}", node.stats().wrong_type));
                }
                ["members"] => {
                    let mut m: Vec<String> = node.members().into_iter().map(|m| m.id).collect();
                    m.sort();
                    say(&format!("members {}", m.join(",")));
                }
                ["leave"] => {
                    node.leave().await;
                    say("left");
                }
                ["exit"] => break,
                _ => say(&format!("unknown command {line}")),
            }
        }
        node.shutdown().await;
    });
}

/// This process's resident memory (`rss`, and its peak `hwm`, in KiB) and open file
/// descriptors (`fds`), as `key=value` words.
fn process_stats() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    // Only once the thread exists: every value on the line is a number.
    let low = low_lanes_nice().map_or_else(String::new, |n| format!(" low_nice={n}"));
    format!("rss={} hwm={} fds={fds}{low}", kib("VmRSS:"), kib("VmHWM:"))
}

/// The nice value of this process's thread for low-priority lanes, if it has one (it is
/// started with the first such lane).
pub fn low_lanes_nice() -> Option<i64> {
    std::fs::read_dir("/proc/self/task").ok()?.find_map(|t| {
        let dir = t.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim() != "fnd-low-lanes" {
            return None;
        }
        // `pid (comm) state …`: the nice value is field 19, the 17th after the comm.
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let after = &stat[stat.rfind(')')? + 1..];
        after.split_whitespace().nth(16)?.parse().ok()
    })
}

/// The entry children run.
const ENTRY: &str = "node::harness::node_process";

/// Starts node process `name` (see [`Child::start`]).
pub fn start(name: &str, settings: &[(&str, &str)]) -> Child {
    Child::start(ENTRY, name, settings)
}

/// Starts node process `name` allowed at most `fds` open file descriptors (`prlimit`).
pub fn start_with_fd_limit(name: &str, fds: u32, settings: &[(&str, &str)]) -> Child {
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg(format!("--nofile={fds}:{fds}"))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", ENTRY, "--ignored", "--nocapture"]);
    Child::run(cmd, name, settings)
}

/// Starts node process `name` in network namespace `netns`.
pub fn start_in(netns: &str, name: &str, settings: &[(&str, &str)]) -> Child {
    Child::start_in(Some(netns), ENTRY, name, settings)
}

/// One in-process node per test process: ractor's registries are process-wide.
pub static IN_PROCESS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts this process's node, listening on a free loopback port.
pub async fn local_node(name: &str, tune: impl FnOnce(NodeConfig) -> NodeConfig) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let config = tune(NodeConfig::new(name, "cookie").listen("127.0.0.1:0".parse().unwrap()));
    Node::start(config).await.unwrap()
}

/// Waits for an event matching `want` (up to 30 s). A failure lists the events seen
/// meanwhile.
pub async fn wait_event(
    events: &mut tokio::sync::broadcast::Receiver<ClusterEvent>,
    want: impl Fn(&ClusterEvent) -> bool,
) -> ClusterEvent {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(e) if want(&e) => return e,
                Ok(e) => seen.push(format!("{e:?}")),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    seen.push(format!("({n} events lost)"));
                }
                Err(e) => panic!("event stream ended: {e}; seen before: {seen:#?}"),
            }
        }
    })
    .await;
    match found {
        Ok(e) => e,
        Err(_) => panic!("no matching cluster event in 30 s; seen meanwhile: {seen:#?}"),
    }
}

/// Writes a CA and a certificate for `foundation.test` signed by it into `dir`.
pub fn write_tls(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["foundation.test".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("node.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("node.key"), key.serialize_pem()).unwrap();
}

/// TLS settings from the files [`write_tls`] wrote.
pub fn tls_from(dir: &std::path::Path) -> foundation_cluster::node::Tls {
    use std::sync::Arc;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};

    let certs = vec![CertificateDer::from_pem_file(dir.join("node.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(dir.join("node.key")).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
        .unwrap();
    let server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    foundation_cluster::node::Tls::new(Arc::new(server), Arc::new(client), "foundation.test")
        .unwrap()
}
