//! Discovery strategies against real daemons and servers on loopback.

use std::time::Duration;

use foundation_cluster::discovery::{Peer, Sighting};
use tokio::sync::mpsc;

mod dns;
#[cfg(feature = "kubernetes")]
mod kubernetes;
mod mdns;

/// How long a test waits for what it expects before it fails. Generous: it bounds a
/// failing test, never a passing one, which goes on as soon as the sighting arrives.
const PATIENCE: Duration = Duration::from_secs(30);

/// Logs to the test's output (shown when it fails); `RUST_LOG` filters.
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "foundation_cluster=debug".into()),
        )
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

/// `host:port` of each peer, sorted, for readable assertions.
fn shown(peers: &[Peer]) -> Vec<String> {
    let mut shown: Vec<String> = peers.iter().map(ToString::to_string).collect();
    shown.sort();
    shown
}

/// Receives sightings until one shows exactly `want` (as `host:port` strings), and returns
/// the sightings received before it. Fails after [`PATIENCE`], naming what was seen.
async fn until_seen(
    rx: &mut mpsc::Receiver<Sighting>,
    strategy: &str,
    want: &[&str],
) -> Vec<Vec<String>> {
    let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    let mut before = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(sighting)) => {
                assert_eq!(sighting.strategy, strategy);
                let peers = shown(&sighting.peers);
                if peers == want {
                    return before;
                }
                before.push(peers);
            }
            Ok(None) => panic!("the strategy stopped before reporting {want:?}; saw {before:?}"),
            Err(_) => panic!("no sighting of {want:?} within {PATIENCE:?}; saw {before:?}"),
        }
    }
}
