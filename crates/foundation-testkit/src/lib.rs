//! Foundation's multi-process test harness (a dev-dependency; not published).
//!
//! A multi-node test runs one node in its own process and the others as children: the test
//! binary re-runs itself, running only an ignored test (the *entry*) that starts a node
//! from `FOUNDATION_TEST_NODE_*` variables. A child prints `@`-prefixed lines on stdout
//! ([`say`]) and obeys command lines on stdin ([`commands`]); the parent reads those lines
//! with [`Child::expect`]. [`Net`] puts children in network namespaces whose links the
//! test can cut, for real partitions.
//!
//! Test code: it panics on a broken environment, as a test should.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

/// Prints `@line` on stdout, flushed: what a child tells its parent.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@{line}");
    let _ = out.flush();
}

/// The command lines a child's parent writes to its stdin, as they come.
pub fn commands() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A setting the child was started with ([`Child::start`]): `FOUNDATION_TEST_NODE_<key>`.
pub fn setting(key: &str) -> Option<String> {
    std::env::var(format!("FOUNDATION_TEST_NODE_{key}")).ok()
}

/// The body of a node entry (the ignored test a child runs): in a child started by
/// [`Child::start`], runs `node(name)` on a 2-worker runtime, its logs on stderr filtered
/// by `RUST_LOG` (the parent prints them marked with the node's name); in an ordinary test
/// run (no `FOUNDATION_TEST_NODE_NAME`), does nothing.
pub fn run_node<F: std::future::Future<Output = ()>>(node: impl FnOnce(String) -> F) {
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
        node(name).await;
    });
}

/// A node process started by a test. Killed when dropped.
#[derive(Debug)]
pub struct Child {
    /// Its node name.
    pub name: String,
    /// The address it said it listens on.
    pub addr: String,
    proc: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std_mpsc::Receiver<String>,
}

impl Child {
    /// Starts node `name`: this test binary, running only the test `entry` (the path of
    /// an ignored test that reads its settings from `FOUNDATION_TEST_NODE_*`), with
    /// `FOUNDATION_TEST_NODE_NAME` set to `name` and each setting `(k, v)` as
    /// `FOUNDATION_TEST_NODE_<k>`. Waits for its `@ready <name> <addr>` line.
    pub fn start(entry: &str, name: &str, settings: &[(&str, &str)]) -> Self {
        Self::start_in(None, entry, name, settings)
    }

    /// As [`Child::start`], inside network namespace `netns` if given.
    pub fn start_in(
        netns: Option<&str>,
        entry: &str,
        name: &str,
        settings: &[(&str, &str)],
    ) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match netns {
            None => Command::new(exe),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
        };
        cmd.args(["--exact", entry, "--ignored", "--nocapture"]);
        Self::run(cmd, name, settings)
    }

    /// Runs `cmd` (a program that speaks the `@`-line protocol: a bench binary re-run as
    /// a node, say) as node `name`, with the settings as [`Child::start`] gives them, and
    /// waits for its `@ready <name> <addr>` line. Lines printed before that one are
    /// skipped, so a child says `ready` before it dials anyone.
    pub fn run(mut cmd: Command, name: &str, settings: &[(&str, &str)]) -> Self {
        cmd.env("FOUNDATION_TEST_NODE_NAME", name)
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

/// Network namespaces joined by a bridge: one host per node, and links the test can cut.
/// A cut link drops packets silently, as a partition does: no reset, no error.
///
/// Every `Net` has names of its own (process id, a per-process counter and a random part),
/// so tests that run at once, as threads of one process (`cargo test`) or as processes
/// (nextest), never share or delete each other's namespaces. A `Net` deletes only what it
/// created itself, also when it is dropped half-built.
#[derive(Debug)]
pub struct Net {
    tag: String,
    /// The namespaces this `Net` created, in order: the only ones its drop deletes.
    created: Vec<String>,
}

/// Tells `Net`s of one process apart.
static NETS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Net {
    /// `hosts` namespaces (at most 10) on one bridge, host `i` at `10.77.0.(i+1)`.
    ///
    /// # Panics
    ///
    /// When this process cannot make network namespaces (not root, or no `ip` from
    /// iproute2), with a message saying what is missing: a partition test that cannot
    /// partition fails, it never passes without having run.
    pub fn new(hosts: usize) -> Self {
        assert!(
            hosts <= 10,
            "Net::new: at most 10 hosts (interface names are short)"
        );
        let mut net = Self {
            tag: unique_tag(),
            created: Vec::new(),
        };
        let br = net.bridge();
        if let Err(why) = net.try_ip(&["netns", "add", &br]) {
            panic!(
                "this partition test needs network namespaces and could not make one                  (`ip netns add {br}`: {why}); it must run as root with iproute2 installed                  (`apt-get install iproute2`), as .ci/run does"
            );
        }
        net.created.push(br.clone());
        net.ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        net.ip(&["-n", &br, "link", "set", "br0", "up"]);
        // The other side of a split ([`Net::split`]).
        net.ip(&["-n", &br, "link", "add", "br1", "type", "bridge"]);
        net.ip(&["-n", &br, "link", "set", "br1", "up"]);
        for i in 0..hosts {
            let (ns, v, p) = (net.ns(i), net.veth(i), net.port(i));
            net.ip(&["netns", "add", &ns]);
            net.created.push(ns.clone());
            net.ip(&["link", "add", &v, "type", "veth", "peer", "name", &p]);
            // Until both ends are moved, the pair lives in this process's namespace: if
            // moving fails, delete it here (deleting one end deletes both).
            if let Err(why) = net
                .try_ip(&["link", "set", &v, "netns", &ns])
                .and_then(|()| net.try_ip(&["link", "set", &p, "netns", &br]))
            {
                let _ = net.try_ip(&["link", "del", &v]);
                let _ = net.try_ip(&["link", "del", &p]);
                panic!("moving veth {v}/{p} into {ns}/{br} failed: {why}");
            }
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
        net
    }

    fn bridge(&self) -> String {
        format!("fbr-{}", self.tag)
    }
    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("fh{i}-{}", self.tag)
    }
    // Interface names: at most 15 bytes ("fv9-" and an 8-digit tag make 12).
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

    /// Splits the hosts in two: those in `side` move to a bridge of their own, so each
    /// side still reaches its own hosts and nothing of the other (a 3|2 partition, say).
    pub fn split(&self, side: &[usize]) {
        self.attach(side, "br1");
    }

    /// Undoes [`Net::split`]: the hosts in `side` are back on the common bridge.
    pub fn rejoin(&self, side: &[usize]) {
        self.attach(side, "br0");
    }

    /// Puts the ports of the hosts in `side` on bridge `bridge`.
    fn attach(&self, side: &[usize], bridge: &str) {
        for &i in side {
            let port = self.port(i);
            self.ip(&["-n", &self.bridge(), "link", "set", &port, "master", bridge]);
        }
    }

    /// Runs `ip args`; the error says why it failed (its stderr, or that `ip` is missing).
    fn try_ip(&self, args: &[&str]) -> Result<(), String> {
        match Command::new("ip").args(args).output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(e) => Err(format!("cannot run `ip`: {e}")),
        }
    }

    fn ip(&self, args: &[&str]) {
        if let Err(why) = self.try_ip(args) {
            panic!("ip {}: {why}", args.join(" "));
        }
    }
}

/// Eight hex digits, different for every `Net` of every process on this machine: the
/// process id alone is not enough (tests of one binary share it, and it may exceed five
/// digits), so a per-process counter and the clock are hashed in.
fn unique_tag() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(NETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:08x}", h.finish() as u32)
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends in it. Only what this `Net` made.
        for ns in self.created.iter().rev() {
            if let Err(why) = self.try_ip(&["netns", "del", ns]) {
                eprintln!("Net: could not delete network namespace {ns}: {why}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Net;

    fn namespaces() -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Two `Net`s of one process (tests run as threads of one binary) have names of their
    /// own, and dropping one leaves the other whole.
    #[test]
    fn nets_of_one_process_do_not_share_or_delete_each_others_namespaces() {
        let (one, two) = std::thread::scope(|s| {
            let one = s.spawn(|| Net::new(2));
            let two = s.spawn(|| Net::new(2));
            (one.join().unwrap(), two.join().unwrap())
        });
        assert_ne!(one.ns(0), two.ns(0));
        let kept = [two.ns(0), two.ns(1)];
        let gone = [one.ns(0), one.ns(1)];
        drop(one);
        let list = namespaces();
        for ns in &kept {
            assert!(list.contains(ns.as_str()), "{ns} was deleted: {list}");
        }
        for ns in &gone {
            assert!(!list.contains(ns.as_str()), "{ns} is left over: {list}");
        }
        // Their links work: a cut and a heal of one host are plain `ip` commands that
        // succeed on the namespaces this `Net` made.
        two.cut(1);
        two.heal(1);
        two.split(&[1]);
        two.rejoin(&[1]);
    }
}
