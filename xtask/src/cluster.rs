//! `cargo xtask cluster status|tree|names [--url URL] [--token T]`: a running cluster, as
//! one node's `/cluster` endpoint reports it, printed for the terminal.
//!
//! - `status`: one line per node (name, status, address, profile, discovery, uptime, the
//!   members it sees), then why each node uses its discovery;
//! - `tree`: per node, its distributed supervisors and their children (id, kind, status,
//!   nodes), as an indented tree;
//! - `names`: the cluster-wide registries' names (scope, key -> node), then each node's
//!   topics with their subscriber counts and its caches with their hit ratio.
//!
//! The URL is the node's HTTP endpoint (`http://127.0.0.1:4380` by default; a dashboard's
//! URL, as `demo --keep-running` prints it, will do too). The token, if the endpoint wants
//! one, is `--token` or `FOUNDATION_HTTP_TOKEN`, sent as `Authorization: Bearer`.
//!
//! The JSON is read as `serde_json::Value` (the shape of `foundation::runtime::ClusterInfo`):
//! xtask does not depend on foundation.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Where a node's endpoint listens unless configured otherwise.
const DEFAULT_URL: &str = "http://127.0.0.1:4380";

/// What to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Status,
    Tree,
    Names,
}

#[derive(Debug)]
struct Args {
    view: View,
    url: String,
    token: Option<String>,
}

const USAGE: &str =
    "usage: cargo xtask cluster status|tree|names [--url http://127.0.0.1:PORT] [--token T]";

fn parse(args: &[OsString], env_token: Option<String>) -> Result<Args> {
    let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
    let view = match args.next().as_deref() {
        Some("status") => View::Status,
        Some("tree") => View::Tree,
        Some("names") => View::Names,
        Some(other) => bail!("xtask cluster: unknown view `{other}`\n{USAGE}"),
        None => bail!("xtask cluster: which view?\n{USAGE}"),
    };
    let mut url = DEFAULT_URL.to_owned();
    let mut token = env_token.filter(|t| !t.is_empty());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => {
                url = args
                    .next()
                    .with_context(|| format!("xtask cluster: --url needs a URL\n{USAGE}"))?;
            }
            "--token" => {
                token =
                    Some(args.next().with_context(|| {
                        format!("xtask cluster: --token needs a token\n{USAGE}")
                    })?);
            }
            other => bail!("xtask cluster: unknown argument `{other}`\n{USAGE}"),
        }
    }
    Ok(Args {
        view,
        url: base_url(&url),
        token,
    })
}

/// The endpoint's base: `http://` added if missing, and a path the user may have pasted
/// (`/dashboard`, `/cluster`, a trailing `/`) taken off.
fn base_url(url: &str) -> String {
    let mut url = url.trim().to_owned();
    if !url.contains("://") {
        url.insert_str(0, "http://");
    }
    for tail in ["/", "/dashboard", "/cluster", "/"] {
        if let Some(rest) = url.strip_suffix(tail) {
            url = rest.to_owned();
        }
    }
    url
}

/// Runs the command: fetches `/cluster` and prints the view asked for.
pub(crate) fn run(args: &[OsString]) -> Result<()> {
    let args = parse(args, std::env::var("FOUNDATION_HTTP_TOKEN").ok())?;
    let cluster = fetch(&args.url, args.token.as_deref())?;
    let text = match args.view {
        View::Status => status(&cluster),
        View::Tree => tree(&cluster),
        View::Names => names(&cluster),
    };
    print!("{text}");
    Ok(())
}

/// GETs `<base>/cluster` and parses it.
fn fetch(base: &str, token: Option<&str>) -> Result<Value> {
    let url = format!("{base}/cluster");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into();
    let mut request = agent.get(&url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request.call().map_err(|e| {
        let why = match &e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused".to_owned()
            }
            other => other.to_string(),
        };
        anyhow::anyhow!(
            "cannot reach {url}: {why}; is a node running? start one with cargo xtask demo --keep-running"
        )
    })?;
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("{url}: cannot read the answer"))?;
    match status.as_u16() {
        200 => {}
        401 if token.is_some() => {
            bail!("{url} refused the token (401): check --token or FOUNDATION_HTTP_TOKEN")
        }
        401 => bail!("{url} wants a token (401): pass --token T or set FOUNDATION_HTTP_TOKEN"),
        _ => bail!("{url} answered {status}: {}", body.trim()),
    }
    serde_json::from_str(&body)
        .with_context(|| format!("{url} did not answer with the cluster's JSON"))
}

// ---------------------------------------------------------------------------------------
// The views: plain text from the JSON, so that a test can check them from a sample.
// ---------------------------------------------------------------------------------------

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// A `[a, b]` pair of the JSON (a Rust tuple), as two strings.
fn pair(v: &Value) -> (String, String) {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "-".to_owned(),
    };
    (text(v.get(0)), text(v.get(1)))
}

fn nodes(cluster: &Value) -> &[Value] {
    array(cluster, "nodes")
}

/// A node's own report, if it answered.
fn info(node: &Value) -> Option<&Value> {
    node.get("info").filter(|i| i.is_object())
}

/// Why a node has no report: `no report`, or `no report: <error>`.
fn no_report(node: &Value) -> String {
    node.get("error")
        .and_then(Value::as_str)
        .map_or_else(|| "no report".to_owned(), |e| format!("no report: {e}"))
}

/// `1 hit`, `2 hits`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `1h 02m`, `3m 05s`, `12s`.
fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

/// Rows as columns padded to their widest cell (the last column is not padded).
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c] - cell.chars().count();
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn header(cluster: &Value) -> String {
    let all = nodes(cluster);
    let up = all.iter().filter(|n| str_of(n, "status") == "up").count();
    format!(
        "cluster {}, seen from {}: {up} of {} nodes up\n",
        str_of(cluster, "cluster_name"),
        str_of(cluster, "node"),
        all.len()
    )
}

/// One line per node, then why each uses its discovery and its profile.
pub(crate) fn status(cluster: &Value) -> String {
    let mut rows = vec![
        [
            "NODE",
            "STATUS",
            "ADDR",
            "PROFILE",
            "DISCOVERY",
            "UPTIME",
            "MEMBERS SEEN",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    let (mut discovery_why, mut profile_why) = (Vec::new(), Vec::new());
    for node in nodes(cluster) {
        let name = str_of(node, "name");
        let mut row = vec![
            name.to_owned(),
            str_of(node, "status").to_owned(),
            str_of(node, "addr").to_owned(),
        ];
        match info(node) {
            Some(i) => {
                let members: Vec<String> = array(i, "members")
                    .iter()
                    .map(|m| {
                        let (name, status) = pair(m);
                        format!("{name} {status}")
                    })
                    .collect();
                row.extend([
                    str_of(i, "profile").to_owned(),
                    str_of(i, "discovery").to_owned(),
                    uptime(u64_of(i, "uptime_ms")),
                    if members.is_empty() {
                        "none".to_owned()
                    } else {
                        members.join(", ")
                    },
                ]);
                discovery_why.push(vec![
                    name.to_owned(),
                    str_of(i, "discovery").to_owned(),
                    str_of(i, "discovery_reason").to_owned(),
                ]);
                profile_why.push(vec![
                    name.to_owned(),
                    str_of(i, "profile").to_owned(),
                    str_of(i, "profile_reason").to_owned(),
                ]);
            }
            None => {
                row.extend(["-", "-", "-"].map(str::to_owned));
                row.push(no_report(node));
            }
        }
        rows.push(row);
    }
    let mut out = header(cluster);
    out.push('\n');
    out.push_str(&table(&rows, ""));
    for (title, why) in [
        ("discovery (node, strategy, why)", discovery_why),
        ("profile (node, profile, why)", profile_why),
    ] {
        let _ = writeln!(out, "\n{title}:");
        if why.is_empty() {
            out.push_str("  no node reported\n");
        } else {
            out.push_str(&table(&why, "  "));
        }
    }
    out
}

/// Per node, its supervisors and their children, as a tree.
pub(crate) fn tree(cluster: &Value) -> String {
    let mut out = header(cluster);
    for node in nodes(cluster) {
        let _ = writeln!(
            out,
            "\n{} ({})",
            str_of(node, "name"),
            str_of(node, "status")
        );
        let Some(i) = info(node) else {
            let _ = writeln!(out, "└─ {}", no_report(node));
            continue;
        };
        let supervisors = array(i, "supervisors");
        if supervisors.is_empty() {
            out.push_str("└─ no supervisors\n");
        }
        for (s, sup) in supervisors.iter().enumerate() {
            let last_sup = s + 1 == supervisors.len();
            let (branch, stem) = if last_sup {
                ("└─", "   ")
            } else {
                ("├─", "│  ")
            };
            let children = array(sup, "children");
            let _ = writeln!(
                out,
                "{branch} {} (supervisor, {})",
                str_of(sup, "name"),
                count(children.len() as u64, "child", "children")
            );
            let rows: Vec<Vec<String>> = children
                .iter()
                .enumerate()
                .map(|(c, child)| {
                    let on: Vec<&str> = array(child, "nodes")
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    let restarts = u64_of(child, "restarts");
                    let mut row = vec![
                        format!(
                            "{} {}",
                            if c + 1 == children.len() {
                                "└─"
                            } else {
                                "├─"
                            },
                            str_of(child, "id")
                        ),
                        format!("kind {}", str_of(child, "kind")),
                        str_of(child, "status").to_owned(),
                        if on.is_empty() {
                            "on no node".to_owned()
                        } else {
                            format!("on {}", on.join(", "))
                        },
                    ];
                    if restarts > 0 {
                        row.push(count(restarts, "restart", "restarts"));
                    }
                    row
                })
                .collect();
            out.push_str(&table(&rows, stem));
        }
    }
    out
}

/// The registries' names, then each node's topics and caches.
pub(crate) fn names(cluster: &Value) -> String {
    let mut out = header(cluster);
    // Registries are cluster-wide: every node reports the same names (or nearly, while
    // a change spreads), so each (scope, key, node) is shown once.
    let mut registered: Vec<(String, String, String)> = Vec::new();
    let mut topics = Vec::new();
    let mut caches = Vec::new();
    for node in nodes(cluster) {
        let name = str_of(node, "name");
        let Some(i) = info(node) else { continue };
        for registry in array(i, "registries") {
            for entry in array(registry, "names") {
                let (key, at) = pair(entry);
                let row = (str_of(registry, "scope").to_owned(), key, at);
                if !registered.contains(&row) {
                    registered.push(row);
                }
            }
        }
        for topic in array(i, "topics") {
            let (topic, subscribers) = pair(topic);
            let subscribers = subscribers.parse().unwrap_or(0);
            topics.push(vec![
                name.to_owned(),
                topic,
                count(subscribers, "subscriber", "subscribers"),
            ]);
        }
        for cache in array(i, "caches") {
            let (hits, misses) = (u64_of(cache, "hits"), u64_of(cache, "misses"));
            let ratio = if hits + misses == 0 {
                "no reads".to_owned()
            } else {
                #[allow(clippy::cast_precision_loss)] // counts far below 2^52
                let pct = 100.0 * hits as f64 / (hits + misses) as f64;
                format!("{pct:.0}% hit")
            };
            caches.push(vec![
                name.to_owned(),
                str_of(cache, "name").to_owned(),
                ratio,
                format!(
                    "({}, {}, {}, {})",
                    count(hits, "hit", "hits"),
                    count(misses, "miss", "misses"),
                    count(u64_of(cache, "writes"), "write", "writes"),
                    count(u64_of(cache, "evictions"), "eviction", "evictions")
                ),
            ]);
        }
    }
    registered.sort();
    out.push_str("\nnames (scope, key -> node):\n");
    if registered.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<Vec<String>> = registered
            .into_iter()
            .map(|(scope, key, at)| vec![scope, key, format!("-> {at}")])
            .collect();
        out.push_str(&table(&rows, "  "));
    }
    out.push_str("\ntopics (node, topic, local subscribers):\n");
    if topics.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&table(&topics, "  "));
    }
    out.push_str("\ncaches (node, cache, hit ratio):\n");
    if caches.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&table(&caches, "  "));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that fails should stop loudly
mod tests {
    use super::*;

    /// A `/cluster` answer as `demo` gives one after a node was killed: n1 and n2 up (n2
    /// reports), n3 down with no report.
    const SAMPLE: &str = r#"{
      "node": "n1",
      "cluster_name": "demo",
      "nodes": [
        {"name": "n1", "addr": "127.0.0.1:40001", "status": "up", "error": null,
         "info": {"name": "n1", "incarnation": 7, "profile": "development",
           "profile_reason": "auto: the `none` strategy is a laptop's",
           "discovery": "none", "discovery_reason": "`cluster = \"none\"` set in code",
           "http": "127.0.0.1:41001", "uptime_ms": 65000,
           "members": [["n2", "up"], ["n3", "down (Unreachable)"]],
           "supervisors": [
             {"name": "ledgers", "children": [
               {"id": "ledger", "kind": "ledger", "status": "Running", "nodes": ["n2"], "restarts": 1},
               {"id": "audit", "kind": "auditor", "status": "Pending(no node)", "nodes": [], "restarts": 0}]},
             {"name": "empty", "children": []}],
           "registries": [{"scope": "work", "names": [["\"coordinator\"", "n1"]]}],
           "topics": [["chat.lobby", 1], ["chat.*", 2]],
           "caches": [{"name": "demo-cache", "hits": 3, "misses": 1, "writes": 2, "evictions": 0}],
           "totals": {"at_ms": 65000, "restarts": 0, "delivered": 3, "dropped": 0, "remote": 2,
                      "cache_hits": 3, "cache_misses": 1, "members_up": 2},
           "history": []}},
        {"name": "n2", "addr": "127.0.0.1:40002", "status": "up", "error": null,
         "info": {"name": "n2", "incarnation": 8, "profile": "development",
           "profile_reason": "`profile = \"development\"` set in FOUNDATION_PROFILE",
           "discovery": "static", "discovery_reason": "`cluster = \"static\"` set in code",
           "http": null, "uptime_ms": 3723000,
           "members": [["n1", "up"]],
           "supervisors": [],
           "registries": [{"scope": "work", "names": [["\"coordinator\"", "n1"]]}],
           "topics": [],
           "caches": [{"name": "empty-cache", "hits": 0, "misses": 0, "writes": 0, "evictions": 0}],
           "totals": {"at_ms": 0, "restarts": 0, "delivered": 0, "dropped": 0, "remote": 0,
                      "cache_hits": 0, "cache_misses": 0, "members_up": 2},
           "history": []}},
        {"name": "n3", "addr": "127.0.0.1:40003", "status": "down (Unreachable)",
         "info": null, "error": null}
      ]
    }"#;

    fn sample() -> Value {
        serde_json::from_str(SAMPLE).unwrap()
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments_give_the_view_the_url_and_the_token() {
        let a = parse(&os(&["status"]), None).unwrap();
        assert_eq!(
            (a.view, a.url.as_str(), a.token),
            (View::Status, DEFAULT_URL, None)
        );
        // A dashboard's URL as the demo prints it, and the token from the environment.
        let a = parse(
            &os(&["tree", "--url", "127.0.0.1:5000/dashboard"]),
            Some("from-env".to_owned()),
        )
        .unwrap();
        assert_eq!(
            (a.view, a.url.as_str(), a.token.as_deref()),
            (View::Tree, "http://127.0.0.1:5000", Some("from-env"))
        );
        // --token wins over the environment.
        let a = parse(
            &os(&["names", "--token", "t", "--url", "http://h:1/"]),
            Some("from-env".to_owned()),
        )
        .unwrap();
        assert_eq!(
            (a.view, a.url.as_str(), a.token.as_deref()),
            (View::Names, "http://h:1", Some("t"))
        );
        for bad in [
            &[][..],
            &["stats"],
            &["status", "--url"],
            &["status", "--port", "1"],
        ] {
            let e = parse(&os(bad), None).unwrap_err().to_string();
            assert!(e.contains("usage: cargo xtask cluster"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn nothing_listening_is_a_clear_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = fetch(&format!("http://127.0.0.1:{port}"), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "cannot reach http://127.0.0.1:{port}/cluster: connection refused; is a node \
                 running? start one with cargo xtask demo --keep-running"
            )
        );
    }

    #[test]
    fn status_is_one_line_per_node_then_the_discovery_reasons() {
        let text = status(&sample());
        assert_eq!(
            text,
            r#"cluster demo, seen from n1: 2 of 3 nodes up

NODE  STATUS              ADDR             PROFILE      DISCOVERY  UPTIME  MEMBERS SEEN
n1    up                  127.0.0.1:40001  development  none       1m 05s  n2 up, n3 down (Unreachable)
n2    up                  127.0.0.1:40002  development  static     1h 02m  n1 up
n3    down (Unreachable)  127.0.0.1:40003  -            -          -       no report

discovery (node, strategy, why):
  n1  none    `cluster = "none"` set in code
  n2  static  `cluster = "static"` set in code

profile (node, profile, why):
  n1  development  auto: the `none` strategy is a laptop's
  n2  development  `profile = "development"` set in FOUNDATION_PROFILE
"#,
            "got:\n{text}"
        );
    }

    #[test]
    fn tree_shows_each_nodes_supervisors_and_children() {
        let text = tree(&sample());
        assert_eq!(
            text,
            r#"cluster demo, seen from n1: 2 of 3 nodes up

n1 (up)
├─ ledgers (supervisor, 2 children)
│  ├─ ledger  kind ledger   Running           on n2       1 restart
│  └─ audit   kind auditor  Pending(no node)  on no node
└─ empty (supervisor, 0 children)

n2 (up)
└─ no supervisors

n3 (down (Unreachable))
└─ no report
"#,
            "got:\n{text}"
        );
    }

    #[test]
    fn names_shows_registries_once_then_topics_and_caches_per_node() {
        let text = names(&sample());
        assert_eq!(
            text,
            r#"cluster demo, seen from n1: 2 of 3 nodes up

names (scope, key -> node):
  work  "coordinator"  -> n1

topics (node, topic, local subscribers):
  n1  chat.lobby  1 subscriber
  n1  chat.*      2 subscribers

caches (node, cache, hit ratio):
  n1  demo-cache   75% hit   (3 hits, 1 miss, 2 writes, 0 evictions)
  n2  empty-cache  no reads  (0 hits, 0 misses, 0 writes, 0 evictions)
"#,
            "got:\n{text}"
        );
    }
}
