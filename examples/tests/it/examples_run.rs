//! Runs example programs as real processes, as a user would.
//!
//! `chat`: two nodes on loopback, the second given the first's address as its static
//! seed; a line written to one's stdin is printed by the other (both ways); the end of
//! stdin (a pipe, not a terminal) does not stop them; SIGTERM makes each leave the
//! cluster (the other prints it) and exit 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest any one step may take.
const WAIT: Duration = Duration::from_secs(30);

/// A running `chat`: its stdin, its stdout's lines as they come, its stderr kept for
/// the failure messages. Killed when dropped (a failed test leaves nothing behind).
struct Chat {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Chat {
    fn start(name: &'static str, nick: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat"));
        // Only what this test sets: none of the caller's FOUNDATION_* or foundation.toml.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FOUNDATION_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .arg(nick)
            .current_dir(std::env::temp_dir())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("FOUNDATION_NODE_NAME", name)
            .env("FOUNDATION_LISTEN", "127.0.0.1:0")
            .env("FOUNDATION_COOKIE", "examples-run-chat")
            .env("FOUNDATION_HTTP", "false")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let keep = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                keep.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            name,
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// What it printed so far, for a failure message.
    fn transcript(&self) -> String {
        format!(
            "{} stdout:\n{}\n{} stderr:\n{}",
            self.name,
            self.seen.join("\n"),
            self.name,
            self.stderr.lock().unwrap()
        )
    }

    /// The first line (from now) that `want` accepts, within `within`; `None` after.
    fn line_within(&mut self, within: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// The first line that starts with `prefix`, within [`WAIT`]; panics after.
    fn expect(&mut self, prefix: &str) -> String {
        self.line_within(WAIT, |l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line\n{}", self.transcript()))
    }

    fn say(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{text}").unwrap();
        stdin.flush().unwrap();
    }

    fn terminate(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Its exit status, within [`WAIT`]; panics after.
    fn exit_status(&mut self) -> std::process::ExitStatus {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // What it printed on its way out (its stdout closes as it exits).
                let _ = self.line_within(Duration::from_secs(2), |_| false);
                return status;
            }
            assert!(
                Instant::now() < until,
                "{} still runs {WAIT:?} after SIGTERM\n{}",
                self.name,
                self.transcript()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes lines to `from` until `to` prints one of them (interest in a topic reaches a
/// new peer a moment after the node itself: a broadcast before then is not delivered).
fn say_until_heard(from: &mut Chat, to: &mut Chat, nick: &str) {
    let until = Instant::now() + WAIT;
    let heard = format!("<{nick}@{}> hello from {nick}", from.name);
    for i in 1.. {
        from.say(&format!("hello from {nick} #{i}"));
        if to
            .line_within(Duration::from_millis(500), |l| l.starts_with(&heard))
            .is_some()
        {
            return;
        }
        assert!(
            Instant::now() < until,
            "{} never printed `{heard}`\n{}\n{}",
            to.name,
            to.transcript(),
            from.transcript()
        );
    }
}

#[test]
fn chat_two_processes_talk_and_leave_gracefully() {
    let mut n1 = Chat::start("n1", "alice", &[("FOUNDATION_DISCOVERY", "none")]);
    let banner = n1.expect("chat: n1 at ");
    let addr = banner.trim_start_matches("chat: n1 at ").trim().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{banner}");

    let mut n2 = Chat::start(
        "n2",
        "bob",
        &[
            ("FOUNDATION_DISCOVERY", "static"),
            ("FOUNDATION_PEERS", &addr),
        ],
    );
    n2.expect("chat: n2 at 127.0.0.1:");
    n1.expect("* n2 joined");
    n2.expect("* n1 joined");

    say_until_heard(&mut n1, &mut n2, "alice");
    say_until_heard(&mut n2, &mut n1, "bob");

    // The end of stdin, when stdin is not a terminal (a pod's), does not stop a node.
    n1.stdin = None;
    n2.stdin = None;
    std::thread::sleep(Duration::from_millis(500));
    for node in [&mut n1, &mut n2] {
        assert!(
            node.child.try_wait().unwrap().is_none(),
            "{} stopped at the end of its stdin\n{}",
            node.name,
            node.transcript()
        );
    }

    // SIGTERM: n2 leaves the cluster (n1 sees it go) and exits 0; then n1.
    n2.terminate();
    let left = n1.line_within(WAIT, |l| {
        l.starts_with("* n2 is leaving") || l.starts_with("* n2 left")
    });
    assert!(
        left.is_some(),
        "n1 did not see n2 leave\n{}",
        n1.transcript()
    );
    let status = n2.exit_status();
    assert!(status.success(), "n2: {status}\n{}", n2.transcript());
    assert!(
        n2.seen.iter().any(|l| l == "chat: n2 left"),
        "{}",
        n2.transcript()
    );
    n1.terminate();
    let status = n1.exit_status();
    assert!(status.success(), "n1: {status}\n{}", n1.transcript());
}
