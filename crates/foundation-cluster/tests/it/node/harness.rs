//! Real node processes for tests: this test binary re-runs itself as a node.
//!
//! A child runs the ignored test `node::harness::node_process` with its settings in
//! `FOUNDATION_TEST_NODE_*` variables. It prints `@`-prefixed lines on stdout (its
//! readiness, membership events, messages its `probe` process got) and obeys commands on
//! stdin. The parent reads those lines with [`Child::expect`].

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use foundation_actors::{Actor, ActorError, Addr, Context, RemoteMessage, ReplyPort, spawn};
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{ClusterEvent, Node, NodeConfig};

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

/// The same wire name with a variant the other side does not know.
#[derive(Debug, RemoteMessage)]
#[remote(name = "test.Probe")]
pub enum ProbeV2 {
    #[remote(tag = 1)]
    Note(String),
    #[remote(tag = 9)]
    Newer(u64),
}

struct ProbeActor;

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

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@{line}");
    let _ = out.flush();
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

/// The node side: runs only in a child started by [`Child::start`].
#[test]
#[ignore = "runs as a child process of the multi-node tests"]
fn node_process() {
    let Ok(name) = std::env::var("FOUNDATION_TEST_NODE_NAME") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
        let var = |k: &str| std::env::var(format!("FOUNDATION_TEST_NODE_{k}")).ok();
        let listen = var("LISTEN").unwrap_or_else(|| "127.0.0.1:0".into());
        let mut config = NodeConfig::new(&name, var("COOKIE").unwrap_or_else(|| "cookie".into()))
            .listen(listen.parse().unwrap());
        if let Some(dir) = var("TLS_DIR") {
            config = config.tls(tls_from(std::path::Path::new(&dir)));
        }
        if let Some(ms) = var("SILENCE_MS") {
            config = config.silence(Duration::from_millis(ms.parse().unwrap()));
        }
        let node = Node::start(config).await.unwrap();
        let probe = spawn(ProbeActor, ()).await.unwrap();
        node.export("probe", probe).unwrap();
        let mut events = node.subscribe();
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                say(&format!("event {}", event_line(&e)));
            }
        });
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
        say(&format!("ready {} {}", node.name(), node.advertised()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
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

/// A node process started by a test. Killed when dropped.
pub struct Child {
    pub name: String,
    pub addr: String,
    proc: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std_mpsc::Receiver<String>,
}

impl Child {
    /// Starts node `name` with extra settings (`SEEDS`, `COOKIE`, `SILENCE_MS`) and waits
    /// for it to be ready.
    pub fn start(name: &str, settings: &[(&str, &str)]) -> Self {
        Self::start_in(None, name, settings)
    }

    /// As [`Child::start`], inside network namespace `netns` if given.
    pub fn start_in(netns: Option<&str>, name: &str, settings: &[(&str, &str)]) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match netns {
            None => Command::new(exe),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
        };
        cmd.args([
            "--exact",
            "node::harness::node_process",
            "--ignored",
            "--nocapture",
        ])
        .env("FOUNDATION_TEST_NODE_NAME", name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in settings {
            cmd.env(format!("FOUNDATION_TEST_NODE_{k}"), v);
        }
        let mut proc = cmd.spawn().unwrap();
        // The child's log, each line marked with its node.
        let stderr = proc.stderr.take().unwrap();
        let tag = name.to_owned();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("[{tag}] {line}");
            }
        });
        let stdin = proc.stdin.take().unwrap();
        let stdout = proc.stdout.take().unwrap();
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(l) = line.strip_prefix('@') {
                    if tx.send(l.to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let mut child = Self {
            name: name.to_owned(),
            addr: String::new(),
            proc,
            stdin,
            lines,
        };
        let ready = child.expect(|l| l.starts_with("ready "));
        child.addr = ready.rsplit(' ').next().unwrap().to_owned();
        child
    }

    /// Sends a command line.
    pub fn tell(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits (up to 30 s: a bound for a hung test, not a timing check) for a line
    /// matching `want`, skipping others; returns it.
    pub fn expect(&mut self, want: impl Fn(&str) -> bool) -> String {
        self.try_expect(Duration::from_secs(30), want)
            .unwrap_or_else(|| panic!("node {}: no matching line in 30 s", self.name))
    }

    /// Waits for every line of `want`, in any order (up to 30 s in all).
    pub fn expect_all(&mut self, want: &[&str]) {
        let mut left: Vec<String> = want.iter().map(|w| (*w).to_owned()).collect();
        while !left.is_empty() {
            let got = self.expect(|l| left.iter().any(|w| w == l));
            left.retain(|w| *w != got);
        }
    }

    /// As [`Child::expect`], with a bound; `None` if no such line came.
    pub fn try_expect(&mut self, within: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let until = Instant::now() + within;
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(l) if want(&l) => return Some(l),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// SIGKILL: the process dies at once, its sockets close.
    pub fn kill(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }

    /// SIGSTOP / SIGCONT: a paused process keeps its sockets open but says nothing.
    pub fn pause(&self, paused: bool) {
        let sig = if paused { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([sig, &self.proc.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
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

/// Waits for an event matching `want` (up to 30 s).
pub async fn wait_event(
    events: &mut tokio::sync::broadcast::Receiver<ClusterEvent>,
    want: impl Fn(&ClusterEvent) -> bool,
) -> ClusterEvent {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(e) if want(&e) => return e,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("no matching cluster event in 30 s")
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

/// Network namespaces joined by a bridge: one host per node, and links the test can cut.
/// A cut link drops packets silently, as a partition does: no reset, no error.
pub struct Net {
    tag: String,
    hosts: usize,
}

impl Net {
    /// `hosts` namespaces on one bridge, host `i` at `10.77.0.(i+1)`. `None` (with a loud
    /// message) when this process cannot make namespaces: not root, or no `ip`.
    pub fn new(hosts: usize) -> Option<Self> {
        let tag = format!("{}", std::process::id() % 100_000);
        let net = Self { tag, hosts };
        if !net.try_ip(&["netns", "add", &net.bridge()]) {
            eprintln!(
                "SKIPPED: cannot create network namespaces (needs root and iproute2); \
                 the partition test did not run"
            );
            return None;
        }
        let br = net.bridge();
        net.ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        net.ip(&["-n", &br, "link", "set", "br0", "up"]);
        for i in 0..hosts {
            let (ns, v, p) = (net.ns(i), net.veth(i), net.port(i));
            net.ip(&["netns", "add", &ns]);
            net.ip(&["link", "add", &v, "type", "veth", "peer", "name", &p]);
            net.ip(&["link", "set", &v, "netns", &ns]);
            net.ip(&["link", "set", &p, "netns", &br]);
            net.ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                &v,
            ]);
            net.ip(&["-n", &ns, "link", "set", &v, "up"]);
            net.ip(&["-n", &ns, "link", "set", "lo", "up"]);
            net.ip(&["-n", &br, "link", "set", &p, "master", "br0"]);
            net.ip(&["-n", &br, "link", "set", &p, "up"]);
        }
        Some(net)
    }

    fn bridge(&self) -> String {
        format!("fbr{}", self.tag)
    }
    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("fh{i}-{}", self.tag)
    }
    fn veth(&self, i: usize) -> String {
        format!("fv{i}-{}", self.tag)
    }
    fn port(&self, i: usize) -> String {
        format!("fp{i}-{}", self.tag)
    }
    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> String {
        format!("10.77.0.{}", i + 1)
    }

    /// Cuts host `i` off: its bridge port goes down, its packets are dropped.
    pub fn cut(&self, i: usize) {
        self.ip(&["-n", &self.bridge(), "link", "set", &self.port(i), "down"]);
    }

    /// Joins host `i` again.
    pub fn heal(&self, i: usize) {
        self.ip(&["-n", &self.bridge(), "link", "set", &self.port(i), "up"]);
    }

    fn try_ip(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(args)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends in it.
        for i in 0..self.hosts {
            let _ = self.try_ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = self.try_ip(&["netns", "del", &self.bridge()]);
    }
}
