//! Processes reachable from other nodes by name.
//!
//! Each item names its message type (a hash of its wire name) and, for a call, the reply
//! type its caller expects. Both are compared with the process's before anything is
//! decoded: a message of another type whose tags happen to match would otherwise decode
//! as one of the process's own variants and run its handler.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use foundation_actors::remote::WireType;
use foundation_actors::{Addr, AddrKey, Context, RemoteMessage};

use super::locks::lock;
use super::wire::{Answer, NOT_A_CALL, Refusal};

/// Where a call's answer goes: the reply's bytes, or why there is none.
pub(crate) type ReplyTo = Box<dyn FnOnce(Answer) + Send>;

/// The reply type named when one side's message is not a call.
pub(crate) const NO_REPLY_TYPE: &str = "no reply (not a call)";

/// How one exported process takes messages from other nodes
/// ([`crate::node::Node::export_with`]).
///
/// # Examples
///
/// ```
/// use foundation_cluster::node::ExportConfig;
/// // A process that may hold 100 unhandled messages from other nodes, whatever the
/// // node's default (`NodeConfig::max_remote_queued`).
/// let config = ExportConfig::new().max_queued(100);
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportConfig {
    pub(crate) max_queued: Option<usize>,
}

impl ExportConfig {
    /// The node's defaults.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many messages from other nodes the process may have been delivered and not yet
    /// handled; past it a tell is dropped and a call refused `Overloaded`, both counted in
    /// its [`ExportStats`] and the node's [`crate::node::NodeStats`]. Default: the node's
    /// [`crate::node::NodeConfig::max_remote_queued`].
    #[must_use]
    pub fn max_queued(mut self, messages: usize) -> Self {
        self.max_queued = Some(messages);
        self
    }
}

/// One exported process's counters ([`crate::node::Node::export_stats`]), since it was
/// exported under its name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportStats {
    /// Messages from other nodes delivered to it and not handled yet, now.
    pub queued: usize,
    /// Its limit of those ([`ExportConfig::max_queued`]).
    pub max_queued: usize,
    /// Tells from other nodes dropped because it held its limit (also in
    /// [`crate::node::NodeStats::remote_dropped`]).
    pub dropped: u64,
    /// Calls from other nodes refused `Overloaded` for the same reason (also in
    /// [`crate::node::NodeStats::remote_refused`]).
    pub refused: u64,
}

/// One named process's mailbox, as [`crate::node::Node::mailboxes`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mailbox {
    /// The name it is exported or registered under.
    pub name: String,
    /// Messages waiting for it, from this node and others, not taken by its handler yet,
    /// now ([`foundation_actors::Addr::queued`]).
    pub queued: usize,
    /// The messages from other nodes delivered to it and not handled yet, the one its
    /// handler is running included (so it may be one more than `queued`; and a process
    /// hosted by another, as a sharded region's inbox, has no `queued` of its own); 0 for
    /// a process that is not exported.
    pub from_peers: usize,
    /// Its limit of messages from other nodes ([`ExportConfig::max_queued`]); 0 for a
    /// process that is not exported.
    pub max_queued: usize,
}

/// What the named processes of a node hold, read at once
/// ([`crate::node::Node::mailboxes`]): every process exported on the node (registered
/// in a cluster-wide registry, a distributed child) and every name registered in this
/// process with [`foundation_actors::Addr::register`] (a supervised child's
/// `ChildSpec::name`). Anonymous processes are not listed: give a process a name to
/// see it here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mailboxes {
    /// Named processes running (each counted once, however many names it has).
    pub processes: usize,
    /// Messages waiting for them, all together.
    pub queued: usize,
    /// The most any one of them has waiting.
    pub max: usize,
    /// Messages from other nodes delivered to the exported ones and not handled yet, all
    /// together.
    pub from_peers: usize,
    /// The deepest of them, deepest first (then by name), as many as asked; only those
    /// that hold something.
    pub deepest: Vec<Mailbox>,
}

/// One process's counts, for [`Mailboxes::of`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Depths {
    /// All its messages waiting.
    pub(crate) queued: usize,
    /// Those from other nodes, and their limit.
    pub(crate) from_peers: usize,
    pub(crate) max_queued: usize,
}

impl Mailboxes {
    /// Sums `processes` (name, counts) and keeps the `deepest` deepest: a name is copied
    /// only for those that hold something, so an idle node costs no allocation.
    pub(crate) fn of<'a>(
        processes: impl Iterator<Item = (&'a str, Depths)>,
        deepest: usize,
    ) -> Self {
        let mut all = Self::default();
        let mut held: Vec<(&str, Depths)> = Vec::new();
        for (name, d) in processes {
            all.processes += 1;
            all.queued += d.queued;
            all.max = all.max.max(d.queued);
            all.from_peers += d.from_peers;
            if (d.queued > 0 || d.from_peers > 0) && deepest > 0 {
                held.push((name, d));
            }
        }
        held.sort_unstable_by(|a, b| {
            (b.1.queued, b.1.from_peers)
                .cmp(&(a.1.queued, a.1.from_peers))
                .then(a.0.cmp(b.0))
        });
        all.deepest = held
            .into_iter()
            .take(deepest)
            .map(|(name, d)| Mailbox {
                name: name.to_owned(),
                queued: d.queued,
                from_peers: d.from_peers,
                max_queued: d.max_queued,
            })
            .collect();
        all
    }
}

/// [`Mailboxes`] of the exported processes (name, identity, messages waiting, counts from
/// peers) and the processes named in this OS process (name, identity, messages waiting).
/// A process is counted once, under its first exported name (its messages from peers,
/// counted per export, added up), else under its first local name.
pub(crate) fn gather<'a, K: Eq + std::hash::Hash + Copy>(
    exported: impl Iterator<Item = (&'a str, K, usize, ExportStats)>,
    named: Vec<(String, K, usize)>,
    deepest: usize,
) -> Mailboxes {
    use std::collections::hash_map::Entry;
    let mut seen: rustc_hash::FxHashMap<K, usize> = rustc_hash::FxHashMap::default();
    let mut all: Vec<(std::borrow::Cow<'a, str>, Depths)> = Vec::new();
    for (name, key, queued, peers) in exported {
        match seen.entry(key) {
            Entry::Occupied(at) => {
                if let Some((_, d)) = all.get_mut(*at.get()) {
                    d.from_peers += peers.queued;
                    d.max_queued += peers.max_queued;
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(all.len());
                all.push((
                    name.into(),
                    Depths {
                        queued,
                        from_peers: peers.queued,
                        max_queued: peers.max_queued,
                    },
                ));
            }
        }
    }
    for (name, key, queued) in named {
        if let Entry::Vacant(slot) = seen.entry(key) {
            slot.insert(all.len());
            all.push((
                name.into(),
                Depths {
                    queued,
                    ..Depths::default()
                },
            ));
        }
    }
    Mailboxes::of(all.iter().map(|(n, d)| (n.as_ref(), *d)), deepest)
}

/// An exported process, with the count of messages from other nodes it holds unhandled.
#[derive(Clone)]
pub(crate) struct Export {
    pub(crate) inbox: Arc<dyn Inbox>,
    pub(crate) queued: Arc<Queued>,
}

impl Export {
    pub(crate) fn new(inbox: Arc<dyn Inbox>, limit: usize) -> Self {
        Self {
            inbox,
            queued: Arc::new(Queued::new(limit)),
        }
    }
}

/// How many messages from other nodes one process has been delivered and has not handled
/// yet, and how many it may: each holds a [`Delivery`] until its handler is done. With
/// what was turned away for the limit.
#[derive(Debug)]
pub(crate) struct Queued {
    count: AtomicUsize,
    limit: usize,
    dropped: AtomicU64,
    refused: AtomicU64,
}

impl Queued {
    fn new(limit: usize) -> Self {
        Self {
            count: AtomicUsize::new(0),
            limit,
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// A permit for one more delivery, or `None` if the process holds its limit already.
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<Delivery> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Delivery(self.clone()))
    }

    /// Counts a tell dropped for the limit.
    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a call refused for the limit.
    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> ExportStats {
        ExportStats {
            queued: self.count.load(Ordering::Acquire),
            max_queued: self.limit,
            dropped: self.dropped.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// How many are held now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// One delivered message's place in its process's [`Queued`] count, given back when it
/// is dropped: after the message's handler has finished, or with the message if it is
/// never handled.
#[derive(Debug)]
pub(crate) struct Delivery(Arc<Queued>);

impl Drop for Delivery {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A process that can take messages as bytes: an [`Addr`] whose message type has a wire
/// form. A message from another node comes with its [`Delivery`], held until handled.
pub(crate) trait Inbox: Send + Sync {
    /// The process's message type.
    fn wire_type(&self) -> WireType;

    /// The reply type of the process's handler of the call `msg` is, from its tag.
    fn reply_type_of(&self, msg: &[u8]) -> Option<WireType>;

    /// Delivers a message of type `ty`.
    ///
    /// # Errors
    ///
    /// [`Refusal::WrongType`] (before decoding), [`Refusal::BadMessage`],
    /// [`Refusal::Stopped`].
    fn cast(
        &self,
        ty: u64,
        msg: &[u8],
        ctx: Option<Context>,
        held: Option<Delivery>,
    ) -> Result<(), Refusal>;

    /// Delivers a call of type `ty` whose caller expects a reply of type `reply_ty`; its
    /// answer goes to `reply`, exactly once.
    ///
    /// # Errors
    ///
    /// Why it was not delivered, once `reply` has been told: [`Refusal::WrongType`] and
    /// [`Refusal::WrongReplyType`] (before decoding), [`Refusal::BadMessage`],
    /// [`Refusal::Stopped`].
    fn call(
        &self,
        ty: u64,
        reply_ty: u64,
        msg: &[u8],
        ctx: Option<Context>,
        held: Option<Delivery>,
        reply: ReplyTo,
    ) -> Result<(), Refusal>;

    /// Whether the process has stopped for good.
    fn is_stopped(&self) -> bool;

    /// The process's identity ([`Addr::key`]).
    fn key(&self) -> AddrKey;

    /// Its messages waiting now ([`Addr::queued`]).
    fn queued(&self) -> usize;
}

impl<M: RemoteMessage> Inbox for Addr<M> {
    fn is_stopped(&self) -> bool {
        Addr::is_stopped(self)
    }

    fn key(&self) -> AddrKey {
        Addr::key(self)
    }

    fn queued(&self) -> usize {
        Addr::queued(self)
    }

    fn wire_type(&self) -> WireType {
        M::WIRE_TYPE
    }

    fn reply_type_of(&self, msg: &[u8]) -> Option<WireType> {
        M::reply_type_of(msg)
    }

    fn cast(
        &self,
        ty: u64,
        msg: &[u8],
        ctx: Option<Context>,
        held: Option<Delivery>,
    ) -> Result<(), Refusal> {
        if ty != M::WIRE_TYPE.id() {
            return Err(Refusal::WrongType);
        }
        let msg = M::from_bytes(msg).map_err(|e| {
            tracing::warn!(error = %e, "dropped a message from another node that does not decode");
            Refusal::BadMessage
        })?;
        deliver(self, msg, ctx, held)
    }

    fn call(
        &self,
        ty: u64,
        reply_ty: u64,
        msg: &[u8],
        ctx: Option<Context>,
        held: Option<Delivery>,
        reply: ReplyTo,
    ) -> Result<(), Refusal> {
        if ty != M::WIRE_TYPE.id() {
            reply(Err((Refusal::WrongType, M::TYPE_NAME.to_owned())));
            return Err(Refusal::WrongType);
        }
        // Read from the tag alone: the handler that would answer is not reached.
        let answers = M::reply_type_of(msg);
        if let Some(answers) = answers.filter(|t| t.id() != reply_ty) {
            reply(Err((Refusal::WrongReplyType, answers.name().to_owned())));
            return Err(Refusal::WrongReplyType);
        }
        // The reply goes out once: the handler's answer, or `NoReply` when it drops the
        // port, or, when the request never reaches a handler, the reason. A port dropped
        // while decoding or delivering fails says nothing: the reason follows.
        let once = Arc::new(Mutex::new(Once {
            reply: Some(reply),
            delivered: false,
            dropped: false,
        }));
        let port_side = once.clone();
        let target = self.clone();
        let replier = foundation_actors::remote::Replier::new(move |bytes: Option<Vec<u8>>| {
            let mut o = lock(&port_side);
            match bytes {
                Some(bytes) => o.send(Ok(bytes)),
                None if o.delivered => o.send(Err((unanswered(&target), String::new()))),
                None => o.dropped = true,
            }
        });
        let outcome = match M::from_bytes_with_reply(msg, replier) {
            // The caller expects a reply and this side's variant is not a call (the tag
            // had no reply type): its handler would never answer.
            Ok(msg) if answers.is_none() && reply_ty != NOT_A_CALL && !msg.is_call() => {
                Err((Refusal::WrongReplyType, NO_REPLY_TYPE))
            }
            Ok(msg) => deliver(self, msg, ctx, held).map_err(|r| (r, "")),
            Err(e) => {
                tracing::warn!(error = %e, "refused a call from another node that does not decode");
                Err((Refusal::BadMessage, ""))
            }
        };
        let mut o = lock(&once);
        match outcome {
            Ok(()) => {
                o.delivered = true;
                if o.dropped {
                    o.send(Err((unanswered(self), String::new())));
                }
                Ok(())
            }
            Err((r, theirs)) => {
                o.send(Err((r, theirs.to_owned())));
                Err(r)
            }
        }
    }
}

struct Once {
    reply: Option<ReplyTo>,
    delivered: bool,
    dropped: bool,
}

impl Once {
    fn send(&mut self, r: Answer) {
        if let Some(reply) = self.reply.take() {
            reply(r);
        }
    }
}

/// Why a delivered call's port was dropped unanswered: `Stopped` when it went with the
/// mailbox of a process that stopped (a call right after `stop()`: the process is gone, not
/// silent), `NoReply` when the handler dropped it.
fn unanswered<M: Send + 'static>(addr: &Addr<M>) -> Refusal {
    if stopping(addr) {
        Refusal::Stopped
    } else {
        Refusal::NoReply
    }
}

/// Whether the process has stopped for good or its incarnation is stopping (its mailbox,
/// and the ports in it, are being dropped).
fn stopping<M: Send + 'static>(addr: &Addr<M>) -> bool {
    use ractor::ActorStatus;
    addr.is_stopped()
        || addr
            .actor_cell()
            .is_some_and(|c| matches!(c.get_status(), ActorStatus::Stopping | ActorStatus::Stopped))
}

fn deliver<M: Send + 'static>(
    addr: &Addr<M>,
    msg: M,
    ctx: Option<Context>,
    held: Option<Delivery>,
) -> Result<(), Refusal> {
    let sent = match (held, ctx) {
        (Some(held), ctx) => addr.cast_holding(ctx, msg, held),
        (None, Some(ctx)) => addr.cast_with(ctx, msg),
        (None, None) => addr.cast(msg),
    };
    sent.map_err(|_| Refusal::Stopped)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::*;

    fn queued(limit: usize) -> Arc<Queued> {
        Arc::new(Queued::new(limit))
    }

    #[test]
    fn mailboxes_sum_every_process_and_list_the_deepest_first() {
        let d = |queued, from_peers| Depths {
            queued,
            from_peers,
            max_queued: 10,
        };
        let processes = [
            ("idle", d(0, 0)),
            ("b", d(3, 1)),
            ("a", d(3, 1)),
            ("deep", d(7, 0)),
            ("one", d(1, 1)),
            // Its one message from a peer is in hand: none waits, but it is listed.
            ("busy", d(0, 1)),
        ];
        let m = Mailboxes::of(processes.iter().map(|(n, s)| (*n, *s)), 3);
        assert_eq!((m.processes, m.queued, m.max, m.from_peers), (6, 14, 7, 4));
        let deepest: Vec<(&str, usize, usize)> = m
            .deepest
            .iter()
            .map(|b| (b.name.as_str(), b.queued, b.from_peers))
            .collect();
        assert_eq!(deepest, [("deep", 7, 0), ("a", 3, 1), ("b", 3, 1)]);
        // Asking for none still sums them; an idle node lists none.
        let m = Mailboxes::of(processes.iter().map(|(n, s)| (*n, *s)), 0);
        assert_eq!((m.queued, m.max, m.deepest.len()), (14, 7, 0));
        let idle = Mailboxes::of([("idle", d(0, 0))].into_iter(), 3);
        assert_eq!((idle.processes, idle.queued, idle.deepest.len()), (1, 0, 0));
    }

    #[test]
    fn a_process_with_many_names_is_one_mailbox() {
        let peers = |queued, max_queued| ExportStats {
            queued,
            max_queued,
            ..ExportStats::default()
        };
        // Process 1 is exported twice and named locally too; 2 is named locally only.
        let exported = [
            ("one", 1_u32, 5, peers(2, 10)),
            ("also-one", 1, 5, peers(1, 10)),
        ];
        let named = vec![("local-one".to_owned(), 1, 5), ("two".to_owned(), 2, 3)];
        let m = gather(exported.into_iter(), named, 5);
        assert_eq!((m.processes, m.queued, m.max, m.from_peers), (2, 8, 5, 3));
        let deepest: Vec<(&str, usize, usize, usize)> = m
            .deepest
            .iter()
            .map(|b| (b.name.as_str(), b.queued, b.from_peers, b.max_queued))
            .collect();
        assert_eq!(deepest, [("one", 5, 3, 20), ("two", 3, 0, 0)]);
    }

    #[test]
    fn permits_are_counted_up_to_the_limit_and_given_back_on_drop() {
        let q = queued(2);
        let a = q.try_take().unwrap();
        let b = q.try_take().unwrap();
        assert_eq!(q.held(), 2);
        assert!(q.try_take().is_none(), "a third over a limit of two");
        drop(a);
        assert_eq!(q.held(), 1);
        let c = q.try_take().unwrap();
        drop((b, c));
        assert_eq!(q.held(), 0);
        assert!(queued(0).try_take().is_none());
    }

    #[test]
    fn permits_taken_from_many_threads_never_exceed_the_limit() {
        let q = queued(50);
        let held: Vec<Vec<Delivery>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..100).filter_map(|_| q.try_take()).collect::<Vec<_>>()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(held.iter().map(Vec::len).sum::<usize>(), 50);
        assert_eq!(q.held(), 50);
        drop(held);
        assert_eq!(q.held(), 0);
    }

    /// Says it started, then waits to be let go.
    struct Slow;

    type Step = (
        tokio::sync::oneshot::Sender<()>,
        tokio::sync::oneshot::Receiver<()>,
    );

    impl foundation_actors::Actor for Slow {
        type Msg = Step;
        type State = ();
        type Args = ();

        async fn init(&self, _: &Addr<Step>, (): ()) -> Result<(), foundation_actors::ActorError> {
            Ok(())
        }

        async fn handle(
            &self,
            _: &Addr<Step>,
            (started, go): Step,
            (): &mut (),
        ) -> Result<(), foundation_actors::ActorError> {
            let _ = started.send(());
            let _ = go.await;
            Ok(())
        }
    }

    fn step() -> (
        Step,
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel();
        ((started_tx, go_rx), started_rx, go_tx)
    }

    #[tokio::test]
    async fn a_delivered_message_holds_its_permit_until_its_handler_is_done() {
        let q = queued(10);
        let addr = foundation_actors::spawn(Slow, ()).await.unwrap();
        let (m1, started1, go1) = step();
        let (m2, started2, go2) = step();
        let (m3, started3, _go3) = step();
        deliver(&addr, m1, None, q.try_take()).unwrap();
        deliver(&addr, m2, Some(Context::new()), q.try_take()).unwrap();
        started1.await.unwrap();
        assert_eq!(q.held(), 2, "one in its handler, one in the mailbox");
        go1.send(()).unwrap();
        // The second's handler runs only after the first's is done and dropped.
        started2.await.unwrap();
        assert_eq!(q.held(), 1);
        go2.send(()).unwrap();
        deliver(&addr, m3, None, None).unwrap();
        started3.await.unwrap();
        assert_eq!(q.held(), 0);
        addr.stop(None);
    }
}
