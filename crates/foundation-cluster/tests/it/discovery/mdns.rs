//! The mDNS strategy with real `mdns-sd` daemons talking over loopback.
//!
//! # Where the multicast goes
//!
//! Each test runs its daemons on the loopback interface only. Linux delivers multicast on
//! `lo` to a socket that names it with `IP_MULTICAST_IF` (as `mdns-sd` does), without the
//! `MULTICAST` flag or a route for 224.0.0.0/4, so no setup of the interface is needed.
//!
//! As root, the test first runs itself again inside a network namespace of its own
//! (`unshare --net`, then `ip link set lo up`): no mDNS packet, not even a group join,
//! reaches the machine's real interfaces, the standard port 5353 is free to use, and the
//! namespace vanishes with the process, so there is nothing to clean up or to set up twice.
//! Where it cannot (not root, or a container without the capability) it says so loudly
//! and runs on the machine's own loopback, on a random port.

use std::process::Command;
use std::time::Duration;

use foundation_cluster::discovery::{DiscoveryError, Mdns, Sighting, Strategy};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{PATIENCE, logs, until_seen};

/// Set in the copy of the test process that runs inside its own network namespace.
const IN_NAMESPACE: &str = "FOUNDATION_TEST_IN_NETNS";

/// How the test body is to run.
enum Isolation {
    /// In the namespace, on the standard mDNS port.
    Namespace,
    /// On the machine's loopback, on this mDNS port.
    Host(u16),
}

/// Runs test `name` (of this module) again inside a new network namespace and checks that
/// it passed, or says how the body should run here instead. `None`: it ran elsewhere.
fn isolate(name: &str) -> Option<Isolation> {
    if std::env::var_os(IN_NAMESPACE).is_some() {
        return Some(Isolation::Namespace);
    }
    if !can_unshare() {
        eprintln!(
            "\n!!! {name}: cannot make a network namespace (not root, or no `unshare`): \
             running on this machine's loopback with a random mDNS port instead.\n"
        );
        return Some(Isolation::Host(fastrand::u16(20_000..60_000)));
    }
    let test = format!(
        "{}::{name}",
        module_path!().split_once("::").map_or("", |(_, m)| m)
    );
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            r#"ip link set lo up && exec "$@""#,
            "sh",
        ])
        .arg(exe)
        .args(["--exact", &test, "--nocapture", "--test-threads=1"])
        .env(IN_NAMESPACE, "1")
        .output()
        .expect("`unshare` ran a moment ago");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("--- {test} in its own network namespace:\n{output}---");
    assert!(out.status.success(), "{test} failed in its namespace");
    assert!(
        output.contains("1 passed"),
        "{test} did not run in its namespace"
    );
    None
}

/// Whether this process may make a network namespace: root (with the capability it
/// needs, which a container may withhold) and `unshare` installed.
fn can_unshare() -> bool {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    });
    root && Command::new("unshare")
        .args(["--net", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// A node's strategy on loopback, started.
fn start(
    isolation: &Isolation,
    node: &str,
    cluster: &str,
    port: u16,
) -> (
    mpsc::Receiver<Sighting>,
    JoinHandle<Result<(), DiscoveryError>>,
) {
    let mut mdns = Mdns::new(node, cluster, port)
        .version("9.9.9")
        .capabilities(["test"])
        .interface("lo");
    if let Isolation::Host(mdns_port) = isolation {
        mdns = mdns.mdns_port(*mdns_port);
    }
    let (tx, rx) = mpsc::channel(16);
    (rx, tokio::spawn(Box::new(mdns).run(tx)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_one_cluster_find_each_other_and_see_a_leaver_go() {
    let Some(isolation) = isolate("nodes_of_one_cluster_find_each_other_and_see_a_leaver_go")
    else {
        return;
    };
    logs();
    let (mut a_rx, a) = start(&isolation, "node-a", "alpha", 7001);
    let (mut b_rx, b) = start(&isolation, "node-b", "alpha", 7002);
    let (mut c_rx, c) = start(&isolation, "node-c", "beta", 7003);
    let (mut d_rx, d) = start(&isolation, "node-d", "beta", 7004);

    // Each sees the other node of its cluster, and only it.
    let mut seen = until_seen(&mut a_rx, "mdns", &["127.0.0.1:7002"]).await;
    seen.extend(until_seen(&mut b_rx, "mdns", &["127.0.0.1:7001"]).await);
    let mut seen_by_beta = until_seen(&mut c_rx, "mdns", &["127.0.0.1:7004"]).await;
    seen_by_beta.extend(until_seen(&mut d_rx, "mdns", &["127.0.0.1:7003"]).await);

    // B leaves: its goodbye takes it out of A's set, which is then empty: the beta nodes,
    // on the wire all along, are not in it.
    drop(b_rx);
    assert_eq!(b.await.unwrap(), Ok(()));
    seen.extend(until_seen(&mut a_rx, "mdns", &[]).await);

    for peers in &seen {
        assert!(
            !peers
                .iter()
                .any(|p| p.ends_with(":7003") || p.ends_with(":7004")),
            "a node of another cluster was reported: {peers:?}"
        );
    }
    for peers in &seen_by_beta {
        assert!(
            !peers
                .iter()
                .any(|p| p.ends_with(":7001") || p.ends_with(":7002")),
            "a node of another cluster was reported: {peers:?}"
        );
    }

    drop((a_rx, c_rx, d_rx));
    for task in [a, c, d] {
        let stopped = tokio::time::timeout(PATIENCE, task).await;
        assert_eq!(stopped.unwrap().unwrap(), Ok(()));
    }
}

#[tokio::test]
async fn a_node_name_too_long_for_mdns_is_a_configuration_error() {
    let (tx, _rx) = mpsc::channel(1);
    let mdns = Mdns::new("n".repeat(64), "alpha", 7001).mdns_port(9);
    let err = tokio::time::timeout(Duration::from_secs(5), Box::new(mdns).run(tx))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            DiscoveryError::BadConfig {
                strategy: "mdns",
                ..
            }
        ),
        "{err}"
    );
}
