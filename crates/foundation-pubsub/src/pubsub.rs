//! The pubsub: the local subscriber table, the fan-out, and the public handle.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use foundation_actors::{Addr, AddrKey, Context};
use foundation_cluster::node::Node;

use crate::buffer::BufferConfig;
use crate::cluster::{self, Remote};
use crate::error::{BroadcastError, StartError, SubscribeError, TopicError, WaitError};
use crate::subscriber::{
    ActorSub, Entry, Outcome, Payload, Published, StreamQueue, StreamSub, Subscription, each_ahead,
    lock,
};
use crate::telemetry::{self, Count, DropCount};
use crate::topic::{Topic, validate};
use crate::trie::Trie;

/// How a pubsub on a node runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) name: String,
    pub(crate) channel: String,
    pub(crate) gossip_every: Duration,
    pub(crate) max_queued: Option<usize>,
}

impl Options {
    /// The pubsub `name`: pubsubs of the same name on different nodes are one; different
    /// names are separate (several may run on one node).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            channel: cluster::CHANNEL.to_owned(),
            gossip_every: Duration::from_secs(1),
            max_queued: None,
        }
    }

    /// The node channel broadcasts ride. Default [`CHANNEL`](crate::CHANNEL) (`pubsub`),
    /// which every node must declare with
    /// [`NodeConfig::channel`](foundation_cluster::node::NodeConfig::channel).
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// How often this node sends every peer a digest of its interest (the topics it has
    /// subscribers for): its version, a few bytes, besides the deltas sent at once on each
    /// change and the whole set sent to each node that joins. A peer whose version differs
    /// asks for the whole set, so it bounds how long a lost update stays wrong. Default 1 s.
    pub fn gossip_every(mut self, every: Duration) -> Self {
        self.gossip_every = every.max(Duration::from_millis(10));
        self
    }

    /// How many messages from peers (broadcasts and interest) may wait at this pubsub's
    /// process on the node, not yet fanned out; past it the node drops the newest, counted
    /// in [`Stats::remote_dropped`]. Default: the node's
    /// [`NodeConfig::max_remote_queued`](foundation_cluster::node::NodeConfig::max_remote_queued)
    /// (10,000). The process fans each broadcast out without waiting for any subscriber,
    /// so it falls behind only when broadcasts arrive faster than it can fan them out.
    pub fn max_queued(mut self, messages: usize) -> Self {
        self.max_queued = Some(messages);
        self
    }
}

/// A pubsub's counters, since it started. A batch of broadcasts from a peer is counted
/// once it has been fanned out to every subscriber, so a subscriber may read a message a
/// moment before `delivered` counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages handed to local subscribers. Each broadcast a subscriber gets is counted
    /// once, where it stops: here, or in `dropped` when the subscriber's policy loses it
    /// (a message that an [`Overflow::DropOldest`](crate::Overflow::DropOldest) buffer
    /// pushes out moves from here to `dropped`).
    pub delivered: u64,
    /// Messages lost to a subscriber's overflow policy (or a restarting actor's full
    /// backlog), all subscribers together. Per subscriber: [`PubSub::drops`].
    pub dropped: u64,
    /// Subscriptions ended by [`Overflow::Disconnect`](crate::Overflow::Disconnect).
    pub disconnected: u64,
    /// Deliveries refused because the message was not of the subscriber's type (a topic
    /// declared with different types, here or on the publisher's node).
    pub wrong_type: u64,
    /// Messages from peers that did not decode, or named an invalid topic.
    pub malformed: u64,
    /// Broadcasts received from peers.
    pub received: u64,
    /// Broadcasts sent to peers (one per interested node per broadcast).
    pub sent: u64,
    /// Sends to peers that failed (the peer went down, or its channel was full): at most
    /// once means these are lost.
    pub send_failed: u64,
    /// Messages from peers (broadcasts, or their interest) the node dropped before they
    /// reached this pubsub's process, because it held its limit of unhandled ones
    /// ([`Options::max_queued`]): at most once means these are lost too. Not in
    /// `received`; each peer's broadcasts to this node are `received + remote_dropped`.
    pub remote_dropped: u64,
    /// Interest messages sent to peers: deltas, parts of whole sets, digests, requests.
    pub interest_sent: u64,
    /// Their encoded size, in bytes (without the node's framing). A subscription that
    /// changes this node's interest costs the bytes of its topic or pattern, once per
    /// peer, whatever the number of topics.
    pub interest_bytes: u64,
    /// Whole interest sets sent (each to one peer, in as many parts as it takes): to a
    /// node that came up, or that asked after missing a delta.
    pub interest_full: u64,
}

/// The counters of [`Stats`], each also in the metrics facade (see `telemetry.rs`).
#[derive(Debug)]
pub(crate) struct Counters {
    delivered: Count,
    /// All topics together; in the metrics facade per topic instead (`DropCount::metric`).
    dropped: Count,
    disconnected: Count,
    pub(crate) wrong_type: Count,
    pub(crate) malformed: Count,
    pub(crate) received: Count,
    pub(crate) sent: Count,
    pub(crate) send_failed: Count,
    pub(crate) interest_sent: Count,
    pub(crate) interest_bytes: Count,
    pub(crate) interest_full: Count,
    /// Set (not counted) from the node's count: `Remote::dropped`.
    pub(crate) remote_dropped: metrics::Counter,
    pub(crate) gauges: telemetry::Gauges,
}

impl Counters {
    /// The handles of the pubsub labelled `labels`, registered once here: a message's
    /// path only updates them.
    fn new(labels: &[metrics::Label]) -> Self {
        let count = |metric| Count::new(telemetry::counter(metric, labels));
        Self {
            delivered: count(telemetry::DELIVERED),
            dropped: Count::default(),
            disconnected: count(telemetry::DISCONNECTED),
            wrong_type: count(telemetry::WRONG_TYPE),
            malformed: count(telemetry::MALFORMED),
            received: count(telemetry::RECEIVED),
            sent: count(telemetry::SENT),
            send_failed: count(telemetry::SEND_FAILED),
            interest_sent: count(telemetry::INTEREST_SENT),
            interest_bytes: count(telemetry::INTEREST_BYTES),
            interest_full: count(telemetry::INTEREST_FULL),
            remote_dropped: telemetry::counter(telemetry::REMOTE_DROPPED, labels),
            gauges: telemetry::Gauges::new(labels),
        }
    }
}

/// The drops of one subscription ([`PubSub::drops`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drops {
    /// The topic or pattern subscribed to.
    pub topic: String,
    /// The subscriber: an actor's label, or `stream`.
    pub subscriber: String,
    /// The subscriber's process, for an actor.
    pub process: Option<AddrKey>,
    /// Messages it lost.
    pub dropped: u64,
    /// Whether the subscription has ended (disconnected by its overflow policy,
    /// unsubscribed, its subscriber stopped, or the pubsub shut down): its count is kept
    /// among the last [`ENDED_DROPS_KEPT`] ended ones.
    pub ended: bool,
}

/// How many ended subscriptions that lost messages [`PubSub::drops`] still reports, the
/// most recent ones: what a subscriber lost is readable after an
/// [`Overflow::Disconnect`](crate::Overflow::Disconnect) ended it, with a bound on what is
/// kept however many subscriptions come and go.
pub const ENDED_DROPS_KEPT: usize = 256;

type List = Arc<Vec<Arc<Entry>>>;

impl Entry {
    /// Its drops, if it lost any.
    fn drops(&self) -> Option<Drops> {
        let dropped = self.dropped.load(Ordering::Relaxed);
        (dropped > 0).then(|| Drops {
            topic: self.filter.to_string(),
            subscriber: self.label.clone(),
            process: self.sub.process(),
            dropped,
            ended: false,
        })
    }
}

/// A broadcast from a peer, as its pubsub process received it: fanned out with the others
/// that arrived with it ([`Core::receive_batch`]).
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) topic: String,
    /// The wire id of its payload's type.
    pub(crate) type_id: u64,
    pub(crate) payload: Vec<u8>,
    /// The context it came with (the publisher's).
    pub(crate) ctx: Option<Context>,
}

#[derive(Default)]
struct Registry {
    /// Subscriptions by topic or pattern. Each list is copied on write: a fan-out takes a
    /// reference to it and runs without the lock.
    trie: Trie<List>,
    ids: HashMap<u64, Arc<Entry>>,
    /// How many subscriptions each topic or pattern has: this node's interest, as
    /// gossiped.
    filters: BTreeMap<Arc<str>, u32>,
}

/// What every handle of one pubsub shares.
pub(crate) struct Core {
    pub(crate) name: String,
    /// The labels of its series (`node`, `pubsub`): a topic's drop counter adds `topic`.
    labels: Vec<metrics::Label>,
    reg: RwLock<Registry>,
    next_id: AtomicU64,
    pub(crate) counters: Counters,
    closed: AtomicBool,
    pub(crate) remote: Option<Remote>,
    /// The drops of the last [`ENDED_DROPS_KEPT`] ended subscriptions that lost messages.
    ended: Mutex<std::collections::VecDeque<Drops>>,
}

impl Core {
    fn new(name: &str, remote: Option<Remote>) -> Self {
        let labels = telemetry::labels(name, remote.as_ref().map(|r| r.node().name()));
        Self {
            name: name.to_owned(),
            reg: RwLock::new(Registry::default()),
            next_id: AtomicU64::new(1),
            counters: Counters::new(&labels),
            labels,
            closed: AtomicBool::new(false),
            remote,
            ended: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.reg
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.reg
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, entry: Arc<Entry>) {
        let filter = entry.filter.clone();
        {
            let mut reg = self.write();
            let list = reg
                .trie
                .slot(&entry.filter)
                .get_or_insert_with(List::default);
            Arc::make_mut(list).push(entry.clone());
            *reg.filters.entry(entry.filter.clone()).or_insert(0) += 1;
            reg.ids.insert(entry.id, entry);
            self.gauges(&reg);
        }
        self.interest_changed(&filter);
    }

    /// Ends subscription `id`; returns whether it was there.
    pub(crate) fn remove(&self, id: u64) -> bool {
        let entry = {
            let mut reg = self.write();
            let Some(entry) = reg.ids.remove(&id) else {
                return false;
            };
            let now_empty = match reg.trie.slot(&entry.filter) {
                Some(list) => {
                    Arc::make_mut(list).retain(|e| e.id != id);
                    list.is_empty()
                }
                None => true,
            };
            if now_empty {
                reg.trie.remove(&entry.filter);
            }
            if let Some(n) = reg.filters.get_mut(&entry.filter) {
                *n -= 1;
                if *n == 0 {
                    reg.filters.remove(&entry.filter);
                }
            }
            self.gauges(&reg);
            entry
        };
        if let Some(hook) = lock(&entry.hook).take() {
            hook.cancel();
        }
        entry.sub.end();
        self.keep_drops(&entry);
        self.interest_changed(&entry.filter);
        true
    }

    /// Keeps an ended subscription's drops, if it lost any, for [`PubSub::drops`].
    fn keep_drops(&self, e: &Entry) {
        if let Some(mut d) = e.drops() {
            d.ended = true;
            let mut ended = lock(&self.ended);
            if ended.len() == ENDED_DROPS_KEPT {
                ended.pop_front();
            }
            ended.push_back(d);
        }
    }

    /// Sets the gauges from the registry (under its lock, so they end at its last state).
    fn gauges(&self, reg: &Registry) {
        let g = &self.counters.gauges;
        g.subscriptions.set(reg.ids.len() as f64);
        g.topics.set(reg.filters.len() as f64);
    }

    fn interest_changed(&self, filter: &Arc<str>) {
        if let Some(remote) = &self.remote {
            remote.changed(filter);
        }
    }

    /// The counts of `filters` now (0 for one without a subscription), under one lock.
    pub(crate) fn counts_of(&self, filters: &[Arc<str>]) -> Vec<(String, u32)> {
        let reg = self.read();
        filters
            .iter()
            .map(|f| (f.to_string(), reg.filters.get(f).copied().unwrap_or(0)))
            .collect()
    }

    /// This node's interest: each topic or pattern with its number of subscriptions.
    pub(crate) fn interest(&self) -> Vec<(String, u32)> {
        self.read()
            .filters
            .iter()
            .map(|(f, n)| (f.to_string(), *n))
            .collect()
    }

    fn lists(&self, topic: &str) -> Vec<List> {
        let reg = self.read();
        let mut lists = Vec::new();
        reg.trie.matches(topic, |l| lists.push(l.clone()));
        lists
    }

    pub(crate) fn local_count(&self, topic: &str, pattern: bool) -> usize {
        let reg = self.read();
        if pattern {
            return reg.filters.get(topic).map_or(0, |n| *n as usize);
        }
        let mut n = 0;
        reg.trie.matches(topic, |l| n += l.len());
        n
    }

    /// Hands `msg` (an `Arc<Published<T>>`) to every local subscriber of `topic` but `skip`.
    fn fan_out(&self, topic: &str, msg: &dyn std::any::Any, skip: Option<AddrKey>) {
        let mut delivered = 0u64;
        for list in self.lists(topic) {
            each_ahead(&list, |e, sub| {
                if skip.is_some() && sub.process() == skip {
                    return;
                }
                match sub.deliver(msg) {
                    Outcome::Delivered => delivered += 1,
                    outcome => delivered += self.account(e, outcome),
                }
            });
        }
        if delivered > 0 {
            self.counters
                .delivered
                .fetch_add(delivered, Ordering::Relaxed);
        }
    }

    /// Counts what one delivery did, and ends the subscription if it must; returns 1 for
    /// a delivery. Out of line: the fan-out counts a plain delivery itself.
    #[cold]
    #[inline(never)]
    fn account(&self, e: &Entry, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Delivered => 1,
            Outcome::Dropped => {
                self.drop_one(e);
                0
            }
            Outcome::Disconnect => {
                self.drop_one(e);
                self.counters.disconnected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    pubsub = %self.name, topic = %e.filter, subscriber = %e.label,
                    "a slow subscriber was disconnected: its buffer was full"
                );
                self.remove(e.id);
                0
            }
            Outcome::Gone => {
                self.remove(e.id);
                0
            }
            Outcome::WrongType => {
                self.wrong_type(e, format_args!("another type, published on this node"));
                0
            }
        }
    }

    fn drop_one(&self, e: &Entry) {
        self.drop_n(e, 1);
    }

    fn drop_n(&self, e: &Entry, n: u64) {
        e.dropped.fetch_add(n, Ordering::Relaxed);
        self.counters.dropped.fetch_add(n, Ordering::Relaxed);
        // Registered at the topic's first drop: topics that never drop have no series.
        e.dropped
            .metric(|| telemetry::dropped(&self.labels, &e.filter))
            .increment(n);
    }

    fn wrong_type(&self, e: &Entry, sent: fmt::Arguments<'_>) {
        self.counters.wrong_type.fetch_add(1, Ordering::Relaxed);
        // Once per subscription at warn level: a flood of them must not flood the log.
        if !e.warned.swap(true, Ordering::Relaxed) {
            let expected = e.sub.wire_type();
            tracing::warn!(
                pubsub = %self.name, topic = %e.filter, subscriber = %e.label,
                expected = expected.name(), expected_id = format_args!("{:#018x}", expected.id()),
                %sent,
                "a message of another type than the subscriber's was refused (counted in wrong_type)"
            );
        }
    }

    /// A broadcast from a peer, its payload of the type whose wire id is `type_id`: as
    /// [`Core::receive_batch`] of it alone.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn receive(&self, topic: &str, type_id: u64, payload: &[u8], ctx: Option<Context>) {
        self.receive_batch(&[Incoming {
            topic: topic.to_owned(),
            type_id,
            payload: payload.to_vec(),
            ctx,
        }]);
    }

    /// Broadcasts from peers, in the order they arrived. Each run of consecutive ones to
    /// the same topic with the same type is fanned out together: each subscriber is handed
    /// the whole run in order before the next subscriber ([`Deliver::deliver_run`]: a
    /// stream's queue takes it under one lock, an actor gets it as one batch, one mailbox
    /// message and one wake), and every subscriber still sees each publisher's messages
    /// in order.
    ///
    /// [`Deliver::deliver_run`]: crate::subscriber::Deliver::deliver_run
    pub(crate) fn receive_batch(&self, batch: &[Incoming]) {
        let mut rest = batch;
        while let Some(first) = rest.first() {
            let len = rest
                .iter()
                .take_while(|b| b.topic == first.topic && b.type_id == first.type_id)
                .count();
            let (run, after) = rest.split_at(len);
            self.receive_run(run);
            rest = after;
        }
    }

    /// A run of broadcasts from peers to one topic, of the type whose wire id is the
    /// run's: refused by each subscriber whose type has another id (before anything is
    /// decoded), decoded once per payload type among the others, then fanned out.
    fn receive_run(&self, run: &[Incoming]) {
        let Some(first) = run.first() else {
            return;
        };
        let (topic, type_id) = (first.topic.as_str(), first.type_id);
        let n = run.len() as u64;
        if let Err(e) = validate(topic, false) {
            self.counters.malformed.fetch_add(n, Ordering::Relaxed);
            self.counters.received.fetch_add(n, Ordering::Release);
            tracing::warn!(pubsub = %self.name, error = %e, "a peer's broadcast names an invalid topic");
            return;
        }
        type Decoded = Vec<Option<Box<dyn std::any::Any + Send>>>;
        let mut decoded: Vec<(std::any::TypeId, Decoded)> = Vec::new();
        let mut delivered = 0u64;
        for list in self.lists(topic) {
            each_ahead(&list, |e, sub| {
                if sub.wire_type().id() != type_id {
                    for _ in run {
                        self.wrong_type(e, format_args!("wire id {type_id:#018x}, from a peer"));
                    }
                    return;
                }
                let ty = sub.payload_type();
                let k = match decoded.iter().position(|(t, _)| *t == ty) {
                    Some(k) => k,
                    None => {
                        let values: Decoded = run
                            .iter()
                            .map(|b| match sub.decode(&b.payload, b.ctx.clone()) {
                                Ok(v) => Some(v),
                                Err(error) => {
                                    self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                                    tracing::warn!(
                                        pubsub = %self.name, topic, %error,
                                        "a peer's broadcast did not decode"
                                    );
                                    None
                                }
                            })
                            .collect();
                        decoded.push((ty, values));
                        decoded.len() - 1
                    }
                };
                let tally = sub.deliver_run(&decoded[k].1);
                delivered += tally.delivered;
                if tally.dropped > 0 {
                    self.drop_n(e, tally.dropped);
                }
                if let Some(end) = tally.end {
                    self.account(e, end);
                }
            });
        }
        self.counters
            .delivered
            .fetch_add(delivered, Ordering::Relaxed);
        // Counted last, and published with Release: whoever reads `received` (Acquire, as
        // `stats` does first) sees this run's deliveries and drops counted too.
        self.counters.received.fetch_add(n, Ordering::Release);
    }

    /// Whether it is shut down: by [`PubSub::shutdown`], or with its node (the first call
    /// to see the node shut down closes it, if its gossip task has not yet).
    pub(crate) fn is_closed(&self) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return true;
        }
        if self
            .remote
            .as_ref()
            .is_some_and(|r| r.node().is_shut_down())
        {
            self.close();
            return true;
        }
        false
    }

    pub(crate) fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let entries: Vec<Arc<Entry>> = {
            let mut reg = self.write();
            let all = reg.ids.drain().map(|(_, e)| e).collect();
            *reg = Registry::default();
            self.gauges(&reg);
            all
        };
        for e in entries {
            if let Some(hook) = lock(&e.hook).take() {
                hook.cancel();
            }
            e.sub.end();
            self.keep_drops(&e);
        }
        if let Some(remote) = &self.remote {
            remote.close();
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.close();
    }
}

/// A publish/subscribe hub: local, or across the cluster of a [`Node`].
///
/// Cheap to clone; every clone is the same pubsub. It stops when the last clone is
/// dropped, or on [`PubSub::shutdown`]. See the [crate docs](crate) for a tour.
#[derive(Clone)]
pub struct PubSub {
    core: Arc<Core>,
}

impl fmt::Debug for PubSub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PubSub")
            .field("name", &self.core.name)
            .field("clustered", &self.core.remote.is_some())
            .finish_non_exhaustive()
    }
}

impl PubSub {
    /// A pubsub of this process alone, without a node: the same API, every broadcast is
    /// local.
    pub fn local(name: &str) -> Self {
        Self {
            core: Arc::new(Core::new(name, None)),
        }
    }

    /// Starts the pubsub `name` on `node`, with default [`Options`]: broadcasts reach the
    /// subscribers of the pubsubs of the same name on every member.
    ///
    /// # Errors
    ///
    /// As [`PubSub::start_with`].
    pub async fn start(node: &Node, name: &str) -> Result<Self, StartError> {
        Self::start_with(node, Options::new(name)).await
    }

    /// Starts a pubsub on `node` with `options`.
    ///
    /// # Errors
    ///
    /// [`StartError::NameTaken`] if this node runs a pubsub of that name already,
    /// [`StartError::NodeShutDown`] if the node has shut down, [`StartError::Spawn`] if
    /// its receiving process cannot start.
    pub async fn start_with(node: &Node, options: Options) -> Result<Self, StartError> {
        if node.is_shut_down() {
            return Err(StartError::NodeShutDown(node.name().to_owned()));
        }
        let remote = Remote::new(node, &options);
        let core = Arc::new(Core::new(&options.name, Some(remote)));
        cluster::start(&core, node, &options).await?;
        Ok(Self { core })
    }

    /// What every handle shares.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn core(&self) -> &Core {
        &self.core
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Its node, unless it is [`PubSub::local`].
    pub fn node(&self) -> Option<&Node> {
        self.core.remote.as_ref().map(Remote::node)
    }

    /// Subscribes the actor at `addr` to `topic` (a name or a pattern), with the default
    /// [`BufferConfig`]: each message broadcast there is cast to it, converted to its
    /// message type `M`, with the publisher's context. The subscription follows the
    /// process across supervised restarts (its stable address) and ends when it stops for
    /// good. Subscribing twice delivers twice.
    ///
    /// # Errors
    ///
    /// As [`PubSub::subscribe_with`].
    pub fn subscribe<T, M>(&self, topic: &Topic<T>, addr: &Addr<M>) -> Result<(), SubscribeError>
    where
        T: Payload,
        M: From<T> + Send + 'static,
    {
        self.subscribe_with(topic, addr, BufferConfig::default())
    }

    /// As [`PubSub::subscribe`], with `buffer` bounding the messages sent to the actor and
    /// not yet handled by it.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Stopped`] if the process has stopped for good,
    /// [`SubscribeError::Closed`] after [`PubSub::shutdown`].
    pub fn subscribe_with<T, M>(
        &self,
        topic: &Topic<T>,
        addr: &Addr<M>,
        buffer: BufferConfig,
    ) -> Result<(), SubscribeError>
    where
        T: Payload,
        M: From<T> + Send + 'static,
    {
        self.check_open()?;
        let stopped = || SubscribeError::Stopped {
            label: addr.label().to_owned(),
        };
        if addr.is_stopped() {
            return Err(stopped());
        }
        let id = self.core.next_id.fetch_add(1, Ordering::Relaxed);
        let weak = Arc::downgrade(&self.core);
        let hook = addr
            .on_stop(move || {
                if let Some(core) = weak.upgrade() {
                    core.remove(id);
                }
            })
            .ok_or_else(stopped)?;
        let entry: Arc<Entry> = Arc::new(Entry {
            id,
            filter: topic.shared_name().clone(),
            label: addr.label().to_owned(),
            dropped: Arc::default(),
            warned: AtomicBool::new(false),
            hook: Mutex::new(Some(hook)),
            sub: ActorSub::<T, M>::new(addr.clone(), buffer),
        });
        self.core.add(entry);
        // It may have stopped between the check and the hook: then the hook ran before
        // the entry was there.
        if addr.is_stopped() {
            self.core.remove(id);
            return Err(stopped());
        }
        Ok(())
    }

    /// Subscribes async code to `topic` (a name or a pattern): the messages arrive on the
    /// returned [`Subscription`], a [`Stream`](futures::Stream), with the default
    /// [`BufferConfig`]. Dropping it unsubscribes.
    ///
    /// # Errors
    ///
    /// As [`PubSub::subscribe_stream_with`].
    pub fn subscribe_stream<T: Payload>(
        &self,
        topic: &Topic<T>,
    ) -> Result<Subscription<T>, SubscribeError> {
        self.subscribe_stream_with(topic, BufferConfig::default())
    }

    /// As [`PubSub::subscribe_stream`], with `buffer` bounding its queue.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Closed`] after [`PubSub::shutdown`].
    pub fn subscribe_stream_with<T: Payload>(
        &self,
        topic: &Topic<T>,
        buffer: BufferConfig,
    ) -> Result<Subscription<T>, SubscribeError> {
        self.check_open()?;
        let id = self.core.next_id.fetch_add(1, Ordering::Relaxed);
        let queue = StreamQueue::new(buffer);
        let dropped: Arc<DropCount> = Arc::default();
        let entry: Arc<Entry> = Arc::new(Entry {
            id,
            filter: topic.shared_name().clone(),
            label: "stream".to_owned(),
            dropped: dropped.clone(),
            warned: AtomicBool::new(false),
            hook: Mutex::new(None),
            sub: StreamSub(queue.clone()),
        });
        self.core.add(entry);
        Ok(Subscription {
            queue,
            id,
            dropped,
            core: Arc::downgrade(&self.core),
        })
    }

    fn check_open(&self) -> Result<(), SubscribeError> {
        if self.core.is_closed() {
            return Err(SubscribeError::Closed);
        }
        Ok(())
    }

    /// Ends every subscription of the actor at `addr` to `topic` (the same name or
    /// pattern it subscribed with). Returns how many there were.
    pub fn unsubscribe<T, M: Send + 'static>(&self, topic: &Topic<T>, addr: &Addr<M>) -> usize {
        let key = Some(addr.key());
        let ids: Vec<u64> = self
            .core
            .read()
            .trie
            .get(topic.name())
            .map(|list| {
                list.iter()
                    .filter(|e| e.sub.process() == key)
                    .map(|e| e.id)
                    .collect()
            })
            .unwrap_or_default();
        ids.into_iter().filter(|id| self.core.remove(*id)).count()
    }

    /// Sends `msg` to every subscriber of `topic` in the cluster: once to each other node
    /// that has a subscriber for it (serialized once), then to the subscribers here.
    /// Returns when it is queued: delivery is not confirmed, and across nodes it is at
    /// most once.
    ///
    /// # Errors
    ///
    /// [`BroadcastError::Topic`] if `topic` is a pattern, [`BroadcastError::Encode`] if
    /// `msg` cannot be serialized, [`BroadcastError::Closed`] after shutdown. A failed
    /// send to one node is counted ([`Stats::send_failed`]), not an error.
    pub fn broadcast<T: Payload>(&self, topic: &Topic<T>, msg: T) -> Result<(), BroadcastError> {
        self.publish(topic, msg, None, true)
    }

    /// As [`PubSub::broadcast`], to this node's subscribers only.
    ///
    /// # Errors
    ///
    /// As [`PubSub::broadcast`] (never [`BroadcastError::Encode`]).
    pub fn local_broadcast<T: Payload>(
        &self,
        topic: &Topic<T>,
        msg: T,
    ) -> Result<(), BroadcastError> {
        self.publish(topic, msg, None, false)
    }

    /// As [`PubSub::broadcast`], skipping the subscriber `from` (the sender, when it
    /// subscribes to the topic it publishes on).
    ///
    /// # Errors
    ///
    /// As [`PubSub::broadcast`].
    pub fn broadcast_from<T: Payload, M: Send + 'static>(
        &self,
        from: &Addr<M>,
        topic: &Topic<T>,
        msg: T,
    ) -> Result<(), BroadcastError> {
        self.publish(topic, msg, Some(from.key()), true)
    }

    /// Sends `msg` to the subscribers of `topic` on `node` only (this node's name for a
    /// local broadcast).
    ///
    /// # Errors
    ///
    /// As [`PubSub::broadcast`]; [`BroadcastError::UnknownNode`] if `node` is not a live
    /// member (or this pubsub has no node), [`BroadcastError::Remote`] if the send fails.
    pub fn direct_broadcast<T: Payload>(
        &self,
        node: &str,
        topic: &Topic<T>,
        msg: T,
    ) -> Result<(), BroadcastError> {
        let Some(remote) = &self.core.remote else {
            return Err(BroadcastError::UnknownNode(node.to_owned()));
        };
        if node == remote.node().name() {
            return self.local_broadcast(topic, msg);
        }
        self.check_publish(topic)?;
        remote.direct(&self.core, node, topic.name(), &msg)
    }

    fn check_publish<T>(&self, topic: &Topic<T>) -> Result<(), BroadcastError> {
        if topic.is_pattern() {
            return Err(TopicError::Wildcard {
                name: topic.name().to_owned(),
            }
            .into());
        }
        if self.core.is_closed() {
            return Err(BroadcastError::Closed);
        }
        Ok(())
    }

    fn publish<T: Payload>(
        &self,
        topic: &Topic<T>,
        msg: T,
        skip: Option<AddrKey>,
        everywhere: bool,
    ) -> Result<(), BroadcastError> {
        self.check_publish(topic)?;
        if everywhere {
            if let Some(remote) = &self.core.remote {
                remote.forward(&self.core, topic.name(), &msg)?;
            }
        }
        // With the publisher's span, as a cast carries it: an actor subscriber's handler
        // span nests under it.
        let ctx = Context::current().map(Context::with_current_span);
        let published = Arc::new(Published { msg, ctx });
        self.core.fan_out(topic.name(), &published, skip);
        Ok(())
    }

    /// How many subscribers a broadcast to `topic` reaches in the cluster, as this node
    /// knows now (other nodes' counts come with their interest, gossiped). For a pattern,
    /// how many subscribed with exactly that pattern.
    pub fn subscribers_count<T>(&self, topic: &Topic<T>) -> usize {
        let here = self.local_subscribers_count(topic);
        let there = self
            .core
            .remote
            .as_ref()
            .map_or(0, |r| r.count(topic.name(), topic.is_pattern()));
        here + there
    }

    /// Waits until `topic` (a name, or a pattern subscribed to as such) has at least
    /// `at_least` subscribers in the cluster, as [`PubSub::subscribers_count`] counts them,
    /// and returns their count. Interest travels between nodes: a subscription made on
    /// another node reaches this one a message's travel later, and a pubsub started just
    /// now hears its peers' subscriptions a round trip after it starts. A broadcast before
    /// then does not reach them (at most once). Wait here first when the first broadcasts
    /// matter, as a test or a start-up sequence would.
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] (with the count at the end) if they are not there within
    /// `timeout`; [`WaitError::Closed`] if the pubsub is shut down.
    pub async fn wait_for_subscribers<T>(
        &self,
        topic: &Topic<T>,
        at_least: usize,
        timeout: Duration,
    ) -> Result<usize, WaitError> {
        // A bound past what an `Instant` holds waits as long as it takes.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        loop {
            let heard = self.core.remote.as_ref().map(|r| r.heard().notified());
            let heard = async move {
                match heard {
                    Some(h) => h.await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(heard);
            if self.core.is_closed() {
                return Err(WaitError::Closed);
            }
            let seen = self.subscribers_count(topic);
            if seen >= at_least {
                return Ok(seen);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(WaitError::Timeout {
                    topic: topic.name().to_owned(),
                    wanted: at_least,
                    seen,
                });
            }
            // A peer's interest wakes it at once; local subscriptions are looked at every
            // few milliseconds.
            tokio::select! {
                () = &mut heard => {}
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// The nodes whose pubsub of this name has told this one its interest (its
    /// subscriptions, or that it has none): the peers a broadcast can reach now. Empty for
    /// a [`PubSub::local`].
    pub fn peers(&self) -> Vec<String> {
        self.core
            .remote
            .as_ref()
            .map_or_else(Vec::new, Remote::peers_heard)
    }

    /// The topics and patterns subscribed to on this node, each with its number of local
    /// subscriptions, in name order (what this node gossips as its interest).
    pub fn topics(&self) -> Vec<(String, usize)> {
        self.core
            .read()
            .filters
            .iter()
            .map(|(f, n)| (f.to_string(), *n as usize))
            .collect()
    }

    /// As [`PubSub::subscribers_count`], on this node only.
    pub fn local_subscribers_count<T>(&self, topic: &Topic<T>) -> usize {
        self.core.local_count(topic.name(), topic.is_pattern())
    }

    /// The drops of every subscription that lost messages, per subscriber and topic: the
    /// live ones, then the last [`ENDED_DROPS_KEPT`] that ended (`Drops::ended`), such as
    /// one that [`Overflow::Disconnect`](crate::Overflow::Disconnect) ended, oldest first.
    pub fn drops(&self) -> Vec<Drops> {
        let mut drops: Vec<Drops> = self
            .core
            .read()
            .ids
            .values()
            .filter_map(|e| e.drops())
            .collect();
        drops.extend(lock(&self.core.ended).iter().cloned());
        drops
    }

    /// Its counters. The same counts are recorded in the [`metrics`] facade (see
    /// `docs/pubsub.md`, "Metrics").
    pub fn stats(&self) -> Stats {
        let c = &self.core.counters;
        let get = |a: &Count| a.load(Ordering::Relaxed);
        // First, with Acquire: the deliveries of every run counted in it are counted below.
        let received = c.received.load(Ordering::Acquire);
        let remote_dropped = self.core.remote.as_ref().map_or(0, Remote::dropped);
        c.remote_dropped.absolute(remote_dropped);
        Stats {
            delivered: get(&c.delivered),
            dropped: get(&c.dropped),
            disconnected: get(&c.disconnected),
            wrong_type: get(&c.wrong_type),
            malformed: get(&c.malformed),
            received,
            sent: get(&c.sent),
            send_failed: get(&c.send_failed),
            remote_dropped,
            interest_sent: get(&c.interest_sent),
            interest_bytes: get(&c.interest_bytes),
            interest_full: get(&c.interest_full),
        }
    }

    /// Stops it: every subscription ends (streams end, actors are unsubscribed), peers
    /// forget this node's interest when it next gossips (or goes down), and broadcasts and
    /// subscriptions are refused with `Closed`. A pubsub on a node stops the same way
    /// when its node shuts down ([`Node::shutdown`], or [`Node::leave`]).
    pub fn shutdown(&self) {
        self.core.close();
    }
}
