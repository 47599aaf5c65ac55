//! The pubsub's counters, also recorded through the [`metrics`] facade, so that whatever
//! recorder the application installs (a Prometheus exporter, …) sees them.
//!
//! Every metric has the labels `node` (its node's name, as the `foundation` runtime's own
//! series; none for a [`PubSub::local`](crate::PubSub::local)) and `pubsub` (the pubsub's
//! name), so two nodes in one process keep their series apart; only the drop counter also
//! has `topic` (the topic or pattern subscribed to), and only for topics that lost a
//! message: a node with 100,000 topics has no 100,000 series of them. Per subscriber, drops
//! are read with [`PubSub::drops`](crate::PubSub::drops), not labelled (one series per
//! subscriber would grow without bound).
//!
//! Handles are registered once, when the pubsub starts (the drop counter of a topic, at its
//! first drop), with the recorder installed then: install it before starting pubsubs. A
//! message's path updates them; it never looks a series up by its labels.
//! Each is updated where the counter of [`Stats`](crate::Stats) is, by the same amount, so
//! a broadcast costs one more (inlined, branch-only without a recorder) call per counter it
//! already updates, never one per subscriber.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use ::metrics::{Counter, Gauge, Label, Unit};

/// Messages handed to local subscribers (`Stats::delivered`).
pub(crate) const DELIVERED: &str = "foundation_pubsub_delivered_total";
/// Messages lost to a subscriber's overflow policy, labelled `pubsub` and `topic`
/// (`Stats::dropped`, per topic).
pub(crate) const DROPPED: &str = "foundation_pubsub_dropped_total";
/// Subscriptions ended by `Overflow::Disconnect` (`Stats::disconnected`).
pub(crate) const DISCONNECTED: &str = "foundation_pubsub_disconnected_total";
/// Deliveries refused for a type that is not the subscriber's (`Stats::wrong_type`).
pub(crate) const WRONG_TYPE: &str = "foundation_pubsub_wrong_type_total";
/// Peers' messages that did not decode or named an invalid topic (`Stats::malformed`).
pub(crate) const MALFORMED: &str = "foundation_pubsub_malformed_total";
/// Broadcasts received from peers (`Stats::received`).
pub(crate) const RECEIVED: &str = "foundation_pubsub_received_total";
/// Broadcasts sent to peers (`Stats::sent`).
pub(crate) const SENT: &str = "foundation_pubsub_sent_total";
/// Sends to peers that failed (`Stats::send_failed`).
pub(crate) const SEND_FAILED: &str = "foundation_pubsub_send_failed_total";
/// Peers' messages the node dropped at the pubsub's process (`Stats::remote_dropped`);
/// read from the node, so brought up to date when the stats are read and once a gossip
/// period.
pub(crate) const REMOTE_DROPPED: &str = "foundation_pubsub_remote_dropped_total";
/// Interest messages sent to peers (`Stats::interest_sent`).
pub(crate) const INTEREST_SENT: &str = "foundation_pubsub_interest_messages_total";
/// Their encoded bytes (`Stats::interest_bytes`).
pub(crate) const INTEREST_BYTES: &str = "foundation_pubsub_interest_bytes_total";
/// Whole interest sets sent (`Stats::interest_full`).
pub(crate) const INTEREST_FULL: &str = "foundation_pubsub_interest_full_total";
/// Local subscriptions now (a gauge).
pub(crate) const SUBSCRIPTIONS: &str = "foundation_pubsub_subscriptions";
/// Topics and patterns with a local subscription now: this node's interest (a gauge).
pub(crate) const TOPICS: &str = "foundation_pubsub_topics";

/// One counter of [`Stats`](crate::Stats): the value it reads, and the same count in
/// the metrics facade. Its methods are an atomic's, so it is used as one.
#[derive(Debug)]
pub(crate) struct Count {
    value: AtomicU64,
    metric: Counter,
}

impl Default for Count {
    /// A count recorded nowhere else.
    fn default() -> Self {
        Self::new(Counter::noop())
    }
}

impl Count {
    pub(crate) fn new(metric: Counter) -> Self {
        Self {
            value: AtomicU64::new(0),
            metric,
        }
    }

    /// Adds `n` to both; returns the value before, as an atomic's `fetch_add` does.
    #[inline]
    pub(crate) fn fetch_add(&self, n: u64, order: Ordering) -> u64 {
        self.metric.increment(n);
        self.value.fetch_add(n, order)
    }

    #[inline]
    pub(crate) fn load(&self, order: Ordering) -> u64 {
        self.value.load(order)
    }
}

/// A subscription's drops: the count [`PubSub::drops`](crate::PubSub::drops) reads, and
/// its topic's drop counter in the metrics facade, registered at its first drop. It sits
/// behind the subscription's pointer to it, so the subscription's entry, which a fan-out
/// reads by the thousand, is no larger for it (a larger entry measured ~30% slower per
/// delivery to 10,000 actors).
#[derive(Debug, Default)]
pub(crate) struct DropCount {
    value: AtomicU64,
    metric: OnceLock<Counter>,
}

impl DropCount {
    #[inline]
    pub(crate) fn fetch_add(&self, n: u64, order: Ordering) -> u64 {
        self.value.fetch_add(n, order)
    }

    #[inline]
    pub(crate) fn load(&self, order: Ordering) -> u64 {
        self.value.load(order)
    }

    /// The metric, registered with `make` the first time.
    pub(crate) fn metric(&self, make: impl FnOnce() -> Counter) -> &Counter {
        self.metric.get_or_init(make)
    }
}

/// The labels of every series of pubsub `name`: `node` (when it runs on one), `pubsub`.
pub(crate) fn labels(name: &str, node: Option<&str>) -> Vec<Label> {
    node.map(|n| Label::new("node", n.to_owned()))
        .into_iter()
        .chain([Label::new("pubsub", name.to_owned())])
        .collect()
}

/// A counter of the pubsub labelled `labels` ([`labels`]).
pub(crate) fn counter(metric: &'static str, labels: &[Label]) -> Counter {
    ::metrics::counter!(metric, labels.to_vec())
}

/// The drop counter of topic (or pattern) `topic` of the pubsub labelled `labels`.
pub(crate) fn dropped(labels: &[Label], topic: &str) -> Counter {
    let mut labels = labels.to_vec();
    labels.push(Label::new("topic", topic.to_owned()));
    ::metrics::counter!(DROPPED, labels)
}

/// Gives the [`metrics`](::metrics) recorder installed now the help text (and unit) of
/// every pubsub metric, which an exporter shows with them (Prometheus' `# HELP`). Call it
/// once per process, after installing the recorder (the `foundation` runtime does); a
/// recorder keeps the first description of a name.
pub fn describe_metrics() {
    use ::metrics::{describe_counter, describe_gauge};
    describe_counter!(
        DELIVERED,
        Unit::Count,
        "Messages handed to local subscribers"
    );
    describe_counter!(
        DROPPED,
        Unit::Count,
        "Messages lost to a subscriber's overflow policy, by topic (only topics that lost one)"
    );
    describe_counter!(
        DISCONNECTED,
        Unit::Count,
        "Subscriptions ended by the Disconnect overflow policy"
    );
    describe_counter!(
        WRONG_TYPE,
        Unit::Count,
        "Deliveries refused for a type that is not the subscriber's"
    );
    describe_counter!(
        MALFORMED,
        Unit::Count,
        "Peers' messages that did not decode or named an invalid topic"
    );
    describe_counter!(RECEIVED, Unit::Count, "Broadcasts received from peers");
    describe_counter!(SENT, Unit::Count, "Broadcasts sent to peers");
    describe_counter!(SEND_FAILED, Unit::Count, "Sends to peers that failed");
    describe_counter!(
        REMOTE_DROPPED,
        Unit::Count,
        "Peers' messages the node dropped at the pubsub's process, which held its limit of unhandled ones"
    );
    describe_counter!(
        INTEREST_SENT,
        Unit::Count,
        "Interest messages sent to peers: deltas, parts of whole sets, digests, requests"
    );
    describe_counter!(
        INTEREST_BYTES,
        Unit::Bytes,
        "Encoded bytes of the interest messages sent to peers"
    );
    describe_counter!(
        INTEREST_FULL,
        Unit::Count,
        "Whole interest sets sent to peers"
    );
    describe_gauge!(SUBSCRIPTIONS, Unit::Count, "Local subscriptions now");
    describe_gauge!(
        TOPICS,
        Unit::Count,
        "Topics and patterns with a local subscription now: this node's interest"
    );
}

/// The gauges of the pubsub labelled `labels`.
#[derive(Debug)]
pub(crate) struct Gauges {
    pub(crate) subscriptions: Gauge,
    pub(crate) topics: Gauge,
}

impl Gauges {
    pub(crate) fn new(labels: &[Label]) -> Self {
        Self {
            subscriptions: ::metrics::gauge!(SUBSCRIPTIONS, labels.to_vec()),
            topics: ::metrics::gauge!(TOPICS, labels.to_vec()),
        }
    }
}
