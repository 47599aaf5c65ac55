//! The dashboard in a real browser. `demo --serve` starts a cluster of 3 node processes;
//! headless Chromium loads one node's `/dashboard`, runs its script (which fetches
//! `/cluster`) and prints the DOM it rendered (`--dump-dom`), which the test reads: 3 nodes
//! up. Then another node is killed with SIGKILL, and the page is rendered again until it
//! shows 2 nodes up.
//!
//! Needs Chromium: on Debian, `apt-get install chromium` (`.ci/run` installs it). Without
//! it the test fails, saying so; `CHROMIUM=/path/to/chromium` picks another binary. A
//! screenshot of the 3-node dashboard is written to `$CARGO_TARGET_TMPDIR/dashboard.png`
//! (`docs/dashboard.png` was taken with the same flags). After a failure the demo's stderr
//! and Chromium's output are left in `$TMPDIR/foundation-dashboard-<pid>`.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// The flags every Chromium run gets: headless, as root, and quiet on a closed network
/// (no background fetches, updates or sync, which otherwise stall or fail here).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    // Virtual time: the page's timers and its fetch of /cluster run to completion
    // before the DOM is dumped or the screenshot taken.
    "--virtual-time-budget=6000",
];

/// The longest one Chromium run may take before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the dashboard may take to show what is expected (the cluster noticing a
/// killed node included), rendered again and again.
const RENDER_WAIT: Duration = Duration::from_secs(20);

/// The longest the demo may take to start its cluster and print the dashboards' URLs.
const DEMO_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn the_dashboard_shows_three_nodes_up_then_two_after_a_kill() {
    let started = Instant::now();
    let chromium = chromium();
    let scratch = std::env::temp_dir().join(format!("foundation-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();

    let (mut cluster, nodes) = Cluster::serve(&scratch);
    assert_eq!(nodes.len(), 3, "the demo listed {nodes:?}");
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let viewer = &nodes[0];
    let victim = &nodes[2];

    // All three up, as the first node sees them.
    let seen = render_until(&chromium, &scratch, &viewer.url, "3 nodes up", |s| {
        s.up == "3" && s.total == "3" && s.nodes_up().len() == 3
    });
    let mut up = seen.nodes_up();
    up.sort_unstable();
    assert_eq!(up, names, "{seen:?}");
    println!("rendered from {}: {seen:?}", viewer.name);

    // A picture of it, for a person to look at.
    let png = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(
        &chromium,
        &scratch,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1400,1000".to_owned(),
            viewer.url.clone(),
        ],
    );
    let bytes =
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} is not a PNG of a page ({} bytes)",
        png.display(),
        bytes.len()
    );
    println!("screenshot: {}", png.display());

    // One other node killed: the dashboard shows two up, and the victim not up.
    cluster.kill(victim.pid);
    let killed_at = Instant::now();
    let seen = render_until(&chromium, &scratch, &viewer.url, "2 nodes up", |s| {
        s.up == "2" && s.nodes_up().len() == 2
    });
    assert!(
        !seen.nodes_up().contains(&victim.name.as_str()),
        "{} was killed but shows up: {seen:?}",
        victim.name
    );
    println!("rendered from {} after the kill: {seen:?}", viewer.name);
    let shown = seen
        .sections
        .iter()
        .find(|(n, _)| *n == victim.name)
        .map_or_else(
            || "gone from the page".to_owned(),
            |(_, s)| format!("shown {s}"),
        );
    println!(
        "{} killed; the dashboard showed 2 nodes up {} ms later ({} {shown})",
        victim.name,
        killed_at.elapsed().as_millis(),
        victim.name,
    );

    drop(cluster);
    let _ = std::fs::remove_dir_all(&scratch);
    println!("took {} ms", started.elapsed().as_millis());
}

/// A node of the demo, as its `--serve` listing names it.
#[derive(Debug)]
struct Listed {
    name: String,
    url: String,
    pid: u32,
}

/// The demo and its node processes, all killed when dropped (after a failed assertion
/// too).
struct Cluster {
    demo: Child,
    /// The node processes not killed yet.
    pids: Vec<u32>,
}

impl Cluster {
    /// Starts `demo --serve` and reads its output until it lists the nodes' dashboards.
    fn serve(scratch: &Path) -> (Self, Vec<Listed>) {
        let stderr = scratch.join("demo.stderr");
        let mut demo = Command::new(env!("CARGO_BIN_EXE_demo"))
            .arg("--serve")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = demo.stdout.take().unwrap();
        let mut cluster = Self {
            demo,
            pids: Vec::new(),
        };
        let lines = lines_of(stdout);
        let until = Instant::now() + DEMO_TIMEOUT;
        let mut transcript = String::new();
        let mut listing = false;
        let mut nodes = Vec::new();
        while nodes.len() < 3 {
            let left = until.saturating_duration_since(Instant::now());
            let Ok(line) = lines.recv_timeout(left) else {
                let err = std::fs::read_to_string(&stderr).unwrap_or_default();
                panic!(
                    "the demo did not list 3 dashboards within {DEMO_TIMEOUT:?} (or exited):\n{transcript}\nstderr:\n{err}"
                );
            };
            transcript.push_str(&line);
            transcript.push('\n');
            if line.starts_with("The nodes keep running") {
                listing = true;
            } else if listing {
                let node = parse_listed(&line)
                    .unwrap_or_else(|| panic!("not a dashboard line: `{line}`\n{transcript}"));
                cluster.pids.push(node.pid);
                nodes.push(node);
            }
        }
        (cluster, nodes)
    }

    /// SIGKILL to one node process.
    fn kill(&mut self, pid: u32) {
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -9 {pid}: {status}");
        self.pids.retain(|p| *p != pid);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        // With its nodes gone the demo exits by itself (and removes its logs); if it has
        // not within a few seconds, it is killed.
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if !matches!(self.demo.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.demo.kill();
        let _ = self.demo.wait();
    }
}

/// The lines of `out`, read on a thread of their own.
fn lines_of(out: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `  n1: http://127.0.0.1:PORT/dashboard (pid 1234)`.
fn parse_listed(line: &str) -> Option<Listed> {
    let (name, rest) = line.trim().split_once(": ")?;
    let (url, pid) = rest.split_once(" (pid ")?;
    Some(Listed {
        name: name.to_owned(),
        url: url.to_owned(),
        pid: pid.strip_suffix(')')?.parse().ok()?,
    })
}

/// The Chromium to run: `$CHROMIUM`, or `chromium` on the `PATH` (or in `/usr/bin`). The
/// test fails without one: a browser test that passes without a browser would say nothing.
fn chromium() -> PathBuf {
    let found = match std::env::var_os("CHROMIUM") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .chain([PathBuf::from("/usr/bin")])
                .map(|dir| dir.join("chromium"))
                .find(|p| p.is_file())
        }
    };
    match found {
        Some(path) if path.is_file() => path,
        _ => panic!(
            "Chromium is not installed (no {}), and this test renders the dashboard in \
             headless Chromium: install it with `apt-get install chromium` (Debian; .ci/run \
             does), or set CHROMIUM to a Chromium binary",
            found.map_or_else(
                || "`chromium` on the PATH or in /usr/bin".to_owned(),
                |p| p.display().to_string()
            )
        ),
    }
}

/// Runs Chromium headless with `args` and a fresh profile, killing it (and its helper
/// processes) after [`CHROMIUM_TIMEOUT`]; its standard output.
fn run_chromium(chromium: &Path, scratch: &Path, args: &[String]) -> String {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let profile = scratch.join(format!("chromium-profile-{run}"));
    let stdout = scratch.join(format!("chromium-{run}.stdout"));
    let stderr = scratch.join(format!("chromium-{run}.stderr"));
    let mut child = Command::new(chromium)
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        // Its own process group: a timeout kills the browser's helpers with it.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium.display()));
    let group = format!("-{}", child.id());
    let until = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > until {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever is left of the group (helpers outliving the browser, or all of it on a
    // timeout).
    let _ = Command::new("kill")
        .args(["-9", "--", &group])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let err = std::fs::read_to_string(&stderr).unwrap_or_default();
    let tail: String = err
        .lines()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    match status {
        None => panic!(
            "chromium {args:?} did not finish within {CHROMIUM_TIMEOUT:?}; its stderr ended:\n{tail}"
        ),
        Some(s) if !s.success() => {
            panic!("chromium {args:?} failed ({s}); its stderr ended:\n{tail}")
        }
        Some(_) => {}
    }
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::read_to_string(&stdout).unwrap()
}

/// What a rendered dashboard shows.
#[derive(Debug, Default)]
struct Seen {
    /// `#nodes-up`'s text.
    up: String,
    /// `#nodes-total`'s text.
    total: String,
    /// Each `section` (a node's card): its `data-node` and `data-status`.
    sections: Vec<(String, String)>,
}

impl Seen {
    fn read(dom: &str) -> Self {
        let text_of = |id: &str| {
            let open = format!("id=\"{id}\">");
            dom.find(&open)
                .map(|at| &dom[at + open.len()..])
                .and_then(|rest| rest.split('<').next())
                .unwrap_or_default()
                .to_owned()
        };
        let attr = |tag: &str, name: &str| {
            let open = format!("{name}=\"");
            tag.find(&open)
                .map(|at| &tag[at + open.len()..])
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_owned()
        };
        let sections = dom
            .split("<section")
            .skip(1)
            .map(|s| s.split('>').next().unwrap_or_default())
            .map(|tag| (attr(tag, "data-node"), attr(tag, "data-status")))
            .collect();
        Self {
            up: text_of("nodes-up"),
            total: text_of("nodes-total"),
            sections,
        }
    }

    /// The nodes shown up.
    fn nodes_up(&self) -> Vec<&str> {
        self.sections
            .iter()
            .filter(|(_, s)| s == "up")
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// Renders `url` until what it shows passes `done`, for at most [`RENDER_WAIT`].
fn render_until(
    chromium: &Path,
    scratch: &Path,
    url: &str,
    what: &str,
    done: impl Fn(&Seen) -> bool,
) -> Seen {
    let until = Instant::now() + RENDER_WAIT;
    loop {
        let dom = run_chromium(
            chromium,
            scratch,
            &["--dump-dom".to_owned(), url.to_owned()],
        );
        let seen = Seen::read(&dom);
        if done(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < until,
            "the dashboard at {url} did not show {what} within {RENDER_WAIT:?}; last seen {seen:?} in:\n{dom}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
