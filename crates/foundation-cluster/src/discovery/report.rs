//! What the strategies share: sending a sighting only when it changed, and polling on an
//! interval until the node stops.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{DiscoveryError, Peer, Sighting};

/// Sends one strategy's sightings, each only if it differs from the one sent before (the
/// first is always sent, even empty, so the node learns what the strategy sees).
#[derive(Debug)]
pub(crate) struct Reporter {
    strategy: &'static str,
    report: mpsc::Sender<Sighting>,
    last: Option<Vec<Peer>>,
}

impl Reporter {
    pub(crate) fn new(strategy: &'static str, report: mpsc::Sender<Sighting>) -> Self {
        Self {
            strategy,
            report,
            last: None,
        }
    }

    /// Reports `peers` (sorted and deduplicated here) if they changed. Returns `false` once
    /// the node has stopped listening.
    pub(crate) async fn send(&mut self, mut peers: Vec<Peer>) -> bool {
        peers.sort();
        peers.dedup();
        if self.last.as_ref() == Some(&peers) {
            return !self.report.is_closed();
        }
        tracing::debug!(strategy = self.strategy, peers = ?peers, "discovery: peers changed");
        self.last = Some(peers.clone());
        let sighting = Sighting {
            strategy: self.strategy,
            peers,
        };
        self.report.send(sighting).await.is_ok()
    }

    /// Resolves when the node has stopped listening.
    pub(crate) async fn closed(&self) {
        self.report.closed().await;
    }
}

/// What one poll found.
#[derive(Debug)]
pub(crate) enum Poll {
    /// The peers seen now.
    Peers(Vec<Peer>),
    /// This poll failed; the poller has logged why and the next poll will try again.
    Retry,
}

/// A strategy that polls: one look at what it watches.
pub(crate) trait Poller: Send {
    /// Looks once. Transient failures are logged here and give [`Poll::Retry`]; an `Err`
    /// stops the strategy.
    fn poll(&mut self) -> impl Future<Output = Result<Poll, DiscoveryError>> + Send + '_;
}

/// Polls now and then every `every` (counted from the end of the previous poll, so a slow
/// server is not asked more often than that), reporting what is found, until the node
/// stops listening (`Ok`) or a poll fails fatally. A poll in flight when the node stops is
/// dropped.
pub(crate) async fn poll_every(
    mut reporter: Reporter,
    every: Duration,
    mut poller: impl Poller,
) -> Result<(), DiscoveryError> {
    loop {
        let found = tokio::select! {
            found = poller.poll() => found?,
            () = reporter.closed() => return Ok(()),
        };
        if let Poll::Peers(peers) = found {
            if !reporter.send(peers).await {
                return Ok(());
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = reporter.closed() => return Ok(()),
        }
    }
}

/// Logs a strategy's failed polls: at `warn` (or `error`, for failures that need a person)
/// when the reason differs from the previous poll's, at `debug` while it repeats, so that
/// a server down for an hour logs once rather than on every poll; and logs the recovery.
#[derive(Debug)]
pub(crate) struct Troubles {
    strategy: &'static str,
    last: Option<String>,
}

impl Troubles {
    pub(crate) fn new(strategy: &'static str) -> Self {
        Self {
            strategy,
            last: None,
        }
    }

    /// A poll failed for `why`; `needs_a_person` logs a new reason at `error`.
    pub(crate) fn failed(&mut self, why: String, needs_a_person: bool) {
        let strategy = self.strategy;
        if self.last.as_ref() == Some(&why) {
            tracing::debug!(strategy, "discovery: still failing, will retry: {why}");
        } else if needs_a_person {
            tracing::error!(strategy, "discovery: {why}; will retry");
        } else {
            tracing::warn!(strategy, "discovery: {why}; will retry");
        }
        self.last = Some(why);
    }

    /// A poll succeeded.
    pub(crate) fn succeeded(&mut self) {
        if let Some(why) = self.last.take() {
            tracing::info!(
                strategy = self.strategy,
                "discovery: working again after: {why}"
            );
        }
    }
}
