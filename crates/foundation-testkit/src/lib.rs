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
#[derive(Debug)]
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
