//! Planned moves (handoff), held messages and checkpoints: the supervisor loop's part of
//! them. The protocol is in `PROTOCOL.md` ("Handoff"); the child's side is `handoff.rs`.
//!
//! A move of child `id` from node A (the old) to node B (the new), driven by A's loop:
//!
//! 1. **Hold.** A holds its own sends to `id` and asks every peer to (`Hold`); each peer
//!    starts holding, then answers `Held` on the channel its messages to the child take,
//!    so every message it sent before is ahead of the answer.
//! 2. **Cut.** When every peer has answered (or is gone, or the wait is over), A takes the
//!    child's name back, drains the instance (it handles what is in its mailbox, then
//!    gives its state instead of running `terminate`) and sends the state to B (`State`).
//! 3. **Take over.** B starts the instance from the state, registers its name, records
//!    itself as the instance (and A's slot as empty, in one record) and tells everyone
//!    `Moved`: each node sends what it held, in order, to there.
//!
//! B refusing (`Refused`), B lost, or no answer in time: A starts the instance again
//! from the state it has, and tells everyone `Moved` to itself.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use foundation_actors::{Addr, RemoteMessage};
use foundation_cluster::node::{CONTROL, DEFAULT};
use tokio::sync::Notify;

use super::Fence;
use super::core::{Inner, LocalChild, State};
use super::handoff::{Gate, Seed, Sink};
use super::table::Stamp;
use super::wire::{DsupMsg, Wire};
use super::{ChildName, DistributedEvent};
use crate::cluster::{Location, lock};
use crate::placement::{Load, StartCause};

/// How many messages one node holds for one moving child; past it, a cast by id fails.
pub(crate) const HOLD_LIMIT: usize = 65_536;

/// A move away from this node, in progress.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) to: String,
    /// Peers whose `Held` has not come yet.
    waiting: BTreeSet<String>,
    /// When the hold (then the take-over) is given up on.
    deadline: Instant,
    /// The `migrate` request: its node and number.
    req: Option<(String, u64)>,
    /// The state, once sent: kept to start again here if B does not take over.
    sent: Option<(Stamp, Seed)>,
}

/// Messages held for moving children, and where moved children answer until the
/// registry here says so too.
pub(crate) struct Routes<M> {
    holds: HashMap<String, Hold<M>>,
    redirects: HashMap<String, (Location<M>, Instant)>,
}

impl<M> Default for Routes<M> {
    fn default() -> Self {
        Self {
            holds: HashMap::new(),
            redirects: HashMap::new(),
        }
    }
}

struct Hold<M> {
    /// The node the child moves away from.
    from: String,
    until: Instant,
    queue: VecDeque<M>,
}

/// A checkpoint this node keeps (its own children's and replicas of others').
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) created: Stamp,
    pub(crate) seed: Seed,
}

/// Checkpoints made here, waiting to be replicated (only the newest of each child).
#[derive(Default)]
pub(crate) struct CkptOut {
    pending: std::sync::Mutex<HashMap<String, (Stamp, Seed)>>,
    notify: Notify,
}

impl CkptOut {
    pub(crate) fn push(&self, id: String, created: Stamp, seed: Seed) {
        lock(&self.pending).insert(id, (created, seed));
        self.notify.notify_one();
    }
}

/// Replicates the checkpoints made on this node, newest first per child.
pub(crate) async fn replicate<M: RemoteMessage>(
    weak: std::sync::Weak<Inner<M>>,
    out: Arc<CkptOut>,
) {
    loop {
        out.notify.notified().await;
        let batch: Vec<(String, (Stamp, Seed))> = lock(&out.pending).drain().collect();
        let Some(inner) = weak.upgrade() else { return };
        for (id, (created, seed)) in batch {
            inner.store_checkpoint(&id, &created, &seed);
            inner.send_checkpoint(&id, &created, &seed);
        }
    }
}

impl<M: RemoteMessage> Inner<M> {
    /// The sink of a local instance's checkpoints.
    pub(crate) fn sink(&self, id: &str, created: &Stamp) -> Sink {
        let out = self.ckpt_out.clone();
        let (id, created) = (id.to_owned(), created.clone());
        Arc::new(move |seq, bytes| {
            out.push(id.clone(), created.clone(), Seed { seq, bytes });
        })
    }

    /// Keeps a checkpoint if it is newer than the one kept.
    pub(crate) fn store_checkpoint(&self, id: &str, created: &Stamp, seed: &Seed) {
        let mut all = lock(&self.checkpoints);
        let newer = all.get(id).is_none_or(|s| {
            s.created < *created || (s.created == *created && s.seed.seq < seed.seq)
        });
        if newer {
            all.insert(
                id.to_owned(),
                Stored {
                    created: created.clone(),
                    seed: seed.clone(),
                },
            );
        }
    }

    /// The checkpoint kept here for the child of record `created`.
    pub(crate) fn checkpoint_for(&self, id: &str, created: &Stamp) -> Option<Seed> {
        lock(&self.checkpoints)
            .get(id)
            .filter(|s| s.created == *created)
            .map(|s| s.seed.clone())
    }

    /// Sends a checkpoint to the `checkpoint_replicas` nodes after this one in the
    /// child's order of preference: the one a failover picks holds it while views agree.
    fn send_checkpoint(&self, id: &str, created: &Stamp, seed: &Seed) {
        let k = self.spec.checkpoint_replicas;
        if k == 0 {
            return;
        }
        let targets: Vec<String> = {
            let st = lock(&self.state);
            let role = st.table.live(id).and_then(|r| r.spec.placement().role);
            let view = self.view(&st);
            view.owners(
                &*self.spec.distribution,
                id.as_bytes(),
                k + 1,
                role.as_deref(),
                &Load::new(),
            )
            .into_iter()
            .filter(|n| *n != self.me)
            .take(k)
            .map(str::to_owned)
            .collect()
        };
        for peer in targets {
            let msg = DsupMsg(Wire::Checkpoint {
                id: id.to_owned(),
                created: created.clone(),
                seq: seed.seq,
                bytes: seed.bytes.to_vec(),
            });
            if let Err(e) = self.node.send_on(DEFAULT, &peer, &self.service, &msg) {
                tracing::warn!(supervisor = %self.spec.name, child = id, peer, error = %e, "checkpoint not replicated");
            }
        }
    }

    /// Drops the checkpoints of children that are gone (removed, replaced by a newer
    /// start of the same id, or unknown here).
    pub(crate) fn prune_checkpoints(&self, st: &State) {
        lock(&self.checkpoints)
            .retain(|id, s| st.table.live(id).is_some_and(|r| r.created == s.created));
    }

    // --- held messages -----------------------------------------------------------------

    /// Sends `msg` to child `id`, or holds it while the child moves.
    pub(crate) fn route_cast(&self, id: &str, msg: M) -> Result<(), crate::cluster::CastError<M>> {
        // One lock over the check and the send: a `Hold` handled meanwhile answers
        // `Held` only after this message is queued for the old node.
        let mut routes = lock(&self.routes);
        if let Some(hold) = routes.holds.get_mut(id) {
            if hold.queue.len() >= HOLD_LIMIT {
                return Err(crate::cluster::CastError::NotDelivered {
                    name: id.to_owned(),
                    msg,
                });
            }
            hold.queue.push_back(msg);
            return Ok(());
        }
        match self.route(&mut routes, id) {
            Some(at) => crate::cluster::cast_at(&self.node, &at, msg, || id.to_owned()),
            None => Err(crate::cluster::CastError::NoSuchName {
                name: id.to_owned(),
                msg,
            }),
        }
    }

    /// Whether sends to `id` are held here now.
    pub(crate) fn holding(&self, id: &str) -> bool {
        lock(&self.routes).holds.contains_key(id)
    }

    /// Where child `id` answers: a moved child's new place until the registry here says
    /// so, else the registry's answer.
    pub(crate) fn locate(&self, id: &str) -> Option<Location<M>> {
        let mut routes = lock(&self.routes);
        self.route(&mut routes, id)
    }

    fn route(&self, routes: &mut Routes<M>, id: &str) -> Option<Location<M>> {
        let found = self.resolve(id, false);
        if let Some((at, until)) = routes.redirects.get(id) {
            let agreed = found.as_ref().is_some_and(|f| f.node() == at.node());
            if agreed || *until < Instant::now() {
                routes.redirects.remove(id);
            } else {
                return Some(at.clone());
            }
        }
        found
    }

    /// Starts holding sends to `id` (it moves away from `from`).
    fn hold(&self, routes: &mut Routes<M>, id: &str, from: &str) {
        routes.redirects.remove(id);
        routes.holds.entry(id.to_owned()).or_insert_with(|| Hold {
            from: from.to_owned(),
            until: Instant::now() + self.spec.start_timeout,
            queue: VecDeque::new(),
        });
    }

    /// Stops holding sends to `id`: what was held goes, in order, to `to` (a redirect
    /// until the registry here agrees), or to wherever the registry says.
    fn release(&self, id: &str, to: Option<Location<M>>) {
        let mut routes = lock(&self.routes);
        let held = routes.holds.remove(id);
        if let Some(at) = &to {
            routes.redirects.insert(
                id.to_owned(),
                (at.clone(), Instant::now() + self.spec.start_timeout),
            );
        }
        let Some(held) = held else {
            return;
        };
        let at = to.or_else(|| self.route(&mut routes, id));
        tracing::debug!(supervisor = %self.spec.name, child = id, held = held.queue.len(), to = ?at.as_ref().map(|a| a.node().to_owned()), "releasing held messages");
        let mut lost = 0_usize;
        for msg in held.queue {
            let sent = match &at {
                Some(at) => crate::cluster::cast_at(&self.node, at, msg, || id.to_owned()).is_ok(),
                None => false,
            };
            if !sent {
                lost += 1;
            }
        }
        drop(routes);
        if lost > 0 {
            tracing::warn!(supervisor = %self.spec.name, child = id, lost, "messages held during a move were not delivered");
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// Releases holds whose move took too long, or whose old node is gone (a graceful
    /// bye, or down) and whose child answers elsewhere by now: a `Moved` may still be on
    /// its way from the new node, so a hold is not released while the registry here has
    /// nowhere else to send to.
    fn expire_holds(&self) {
        let now = Instant::now();
        let peers: BTreeSet<String> = lock(&self.state).peers.keys().cloned().collect();
        let candidates: Vec<(String, String, Instant)> = lock(&self.routes)
            .holds
            .iter()
            .map(|(id, h)| (id.clone(), h.from.clone(), h.until))
            .collect();
        for (id, from, until) in candidates {
            let gone = from != self.me && !peers.contains(&from);
            let elsewhere = gone && self.resolve(&id, false).is_some_and(|at| at.node() != from);
            if until < now || elsewhere {
                tracing::warn!(supervisor = %self.spec.name, child = %id, "a move did not finish: held messages go where the registry says");
                self.release(&id, None);
            }
        }
    }

    // --- moves -------------------------------------------------------------------------

    /// Whether child `id`'s instance here can be handed over (a handoff kind, one
    /// instance, running here, not moving already).
    pub(crate) fn can_hand_off(&self, st: &State, id: &str) -> Result<(), String> {
        let Some(record) = st.table.live(id) else {
            return Err("no such child".to_owned());
        };
        if record.spec.per_node() {
            return Err("a per-node child does not move".to_owned());
        }
        if !self.spec.handoff.contains(&record.spec.kind) {
            return Err(format!("kind {:?} does not hand off", record.spec.kind));
        }
        if st.out.contains_key(id) {
            return Err("it is moving already".to_owned());
        }
        if !lock(&self.local).contains_key(id) {
            return Err(format!("it does not run on node {}", self.me));
        }
        Ok(())
    }

    /// Begins moving child `id` from here to `to`.
    pub(crate) async fn hand_off(&self, id: &str, to: &str, req: Option<(String, u64)>) {
        let checked = {
            let st = lock(&self.state);
            self.can_hand_off(&st, id).and_then(|()| {
                if to == self.me || !st.peers.contains_key(to) {
                    Err(format!("node {to} does not run this supervisor"))
                } else {
                    Ok(st.peers.keys().cloned().collect::<BTreeSet<String>>())
                }
            })
        };
        let waiting = match checked {
            Ok(waiting) => waiting,
            Err(why) => {
                self.fail_migration(req.as_ref(), why);
                return;
            }
        };
        // This node's own sends are held from now on (the routes' lock before the
        // state's, as everywhere).
        {
            let mut routes = lock(&self.routes);
            self.hold(&mut routes, id, &self.me);
        }
        for peer in &waiting {
            self.send_to(
                CONTROL,
                peer,
                Wire::Hold {
                    id: id.to_owned(),
                    from: self.me.clone(),
                },
            );
        }
        let ready = waiting.is_empty();
        {
            let mut st = lock(&self.state);
            let deadline = Instant::now() + self.spec.start_timeout;
            st.out.insert(
                id.to_owned(),
                Out {
                    to: to.to_owned(),
                    waiting,
                    deadline,
                    req,
                    sent: None,
                },
            );
            st.wake = Some(st.wake.map_or(deadline, |w| w.min(deadline)));
        }
        tracing::info!(supervisor = %self.spec.name, child = id, to, "handing off");
        if ready {
            self.cut(id).await;
        }
    }

    /// Every message sent before the hold is in the instance's mailbox: drain it, take
    /// its state, send the state on.
    async fn cut(&self, id: &str) {
        let (to, req) = {
            let st = lock(&self.state);
            match st.out.get(id) {
                Some(out) if out.sent.is_none() => (out.to.clone(), out.req.clone()),
                _ => return,
            }
        };
        let Some(child) = lock(&self.local).remove(id) else {
            lock(&self.state).out.remove(id);
            self.release(id, None);
            return;
        };
        let LocalChild {
            sup,
            addr,
            watcher,
            gate,
            created,
            ..
        } = child;
        watcher.abort();
        self.registry.unregister(&self.name_of(id));
        let state = drain(&addr, &gate, self.spec.start_timeout).await;
        sup.shutdown().await;
        let seq = gate.seq() + 1;
        match state {
            Ok(bytes) => {
                let seed = Seed {
                    seq,
                    bytes: Arc::new(bytes),
                };
                let deadline = Instant::now() + self.spec.start_timeout;
                {
                    let mut st = lock(&self.state);
                    if let Some(out) = st.out.get_mut(id) {
                        out.sent = Some((created.clone(), seed.clone()));
                        out.deadline = deadline;
                    }
                    st.wake = Some(st.wake.map_or(deadline, |w| w.min(deadline)));
                }
                // Stopped (drained, its supervisor shut down) before its state leaves.
                self.emit(DistributedEvent::Stopped {
                    child: id.to_owned(),
                    reason: format!("handed off to node {to}"),
                });
                let sent = self.send_to(
                    CONTROL,
                    &to,
                    Wire::State {
                        id: id.to_owned(),
                        created,
                        from: self.me.clone(),
                        seq,
                        bytes: seed.bytes.to_vec(),
                        req,
                    },
                );
                if sent {
                    tracing::info!(supervisor = %self.spec.name, child = id, to, "state handed off");
                } else {
                    // Not even queued (the node went, or the state is larger than a
                    // frame): no point waiting for a take-over.
                    self.recover(id, &format!("the state could not be sent to node {to}"))
                        .await;
                }
            }
            Err(why) => {
                tracing::warn!(supervisor = %self.spec.name, child = id, error = %why, "no state to hand off: starting again here");
                self.recover(id, &why).await;
            }
        }
    }

    /// The move failed: start the instance here again, from the state taken (or the last
    /// checkpoint), and release the holds to it.
    async fn recover(&self, id: &str, why: &str) {
        let out = lock(&self.state).out.remove(id);
        let Some(out) = out else { return };
        self.fail_migration(out.req.as_ref(), why.to_owned());
        if let Some((created, seed)) = &out.sent {
            self.store_checkpoint(id, created, seed);
        }
        if let Some(at) = self.take_over(id, None).await {
            self.moved(id, &at);
        } else {
            self.release(id, None);
        }
    }

    /// Tells the node where `migrate` was called that the move failed.
    fn fail_migration(&self, req: Option<&(String, u64)>, why: String) {
        let Some((node, n)) = req else { return };
        if *node == self.me {
            lock(&self.failed_moves).insert(*n, why);
            self.changed.send_modify(|c| *c += 1);
        } else {
            self.send_to(CONTROL, node, Wire::MigrateFailed { req: *n, why });
        }
    }

    /// Starts child `id` here (from `seed`, else its checkpoint), registers its name
    /// (waiting for the old holder's to go) and records it, clearing `from`'s slot in
    /// the same record. Returns its export name.
    async fn take_over(&self, id: &str, from: Option<(&str, Seed)>) -> Option<String> {
        let record = lock(&self.state).table.live(id).cloned()?;
        let seed = match &from {
            Some((_, seed)) => Some(seed.clone()),
            None => self.checkpoint_for(id, &record.created),
        };
        if let Some(seed) = &seed {
            self.store_checkpoint(id, &record.created, seed);
        }
        self.stop_local(id, "replaced by a handed-over instance")
            .await;
        let cause = match &from {
            Some((node, _)) => StartCause::HandOff {
                from: (*node).to_owned(),
            },
            None => StartCause::Restart,
        };
        // Strict mode: the old holder gives its lease back as it stops; until that write
        // is through, the grant waits (up to the start timeout).
        let fence = Fence::default();
        let until = tokio::time::Instant::now() + self.spec.start_timeout;
        let started = loop {
            match self.spawn_instance(id, &record, seed.clone(), &fence).await {
                Ok(Some(started)) => break Ok(started),
                Ok(None) if tokio::time::Instant::now() < until => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Ok(None) => break Err("the lease is still held elsewhere".to_owned()),
                Err(why) => break Err(why),
            }
        };
        let (sup, addr, events, gate) = match started {
            Ok(started) => started,
            Err(why) => {
                tracing::warn!(supervisor = %self.spec.name, child = id, error = %why, "handed-over child failed to start");
                self.emit(DistributedEvent::StartFailed {
                    child: id.to_owned(),
                    error: why,
                });
                return None;
            }
        };
        let name = ChildName::unique(id);
        let deadline = tokio::time::Instant::now() + self.spec.start_timeout;
        let mut names = self.registry.subscribe();
        loop {
            match self.registry.register_keeping(name.clone(), &addr, ()) {
                Ok(()) => break,
                Err(crate::cluster::RegisterError::Taken { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    // The old holder's name has not gone here yet: it goes with its
                    // unregistration (ahead of the state on the same channel).
                    tokio::select! {
                        _ = names.recv() => {}
                        () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(supervisor = %self.spec.name, child = id, error = %e, "handed-over child's name not registered");
                    sup.shutdown().await;
                    if let Some(token) = fence.token() {
                        self.release_lease(id, token);
                    }
                    return None;
                }
            }
        }
        let export = self
            .registry
            .whereis(&name)
            .map(|l| l.export_name().to_owned())?;
        self.install(id, &record, sup, addr, events, gate, fence);
        {
            let mut st = lock(&self.state);
            let mut recs = Vec::new();
            recs.extend(st.table.write_slot(id, &self.me, |s, at| {
                s.instance = Some(self.incarnation);
                s.started = Some(at.clone());
            }));
            if let Some((node, _)) = &from {
                recs.extend(st.table.write_slot(id, node, |s, _| s.instance = None));
            }
            let last = recs.pop();
            self.broadcast(&st, last.into_iter().collect());
        }
        self.emit(DistributedEvent::Started {
            child: id.to_owned(),
            cause,
        });
        Some(export)
    }

    /// Child `id` answers here as `export`: everyone (this node too) releases its holds.
    fn moved(&self, id: &str, export: &str) {
        let peers: Vec<String> = lock(&self.state).peers.keys().cloned().collect();
        for peer in peers {
            self.send_to(
                CONTROL,
                &peer,
                Wire::Moved {
                    id: id.to_owned(),
                    node: self.me.clone(),
                    export: export.to_owned(),
                },
            );
        }
        let here = self.registry.whereis(&ChildName::unique(id));
        self.release(id, here);
    }

    /// Sends a handoff message; whether it was queued.
    fn send_to(&self, channel: &str, peer: &str, wire: Wire) -> bool {
        match self
            .node
            .send_on(channel, peer, &self.service, &DsupMsg(wire))
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(supervisor = %self.spec.name, peer, error = %e, "handoff message not sent");
                false
            }
        }
    }

    /// A handoff or checkpoint message from a peer.
    pub(crate) async fn on_move(&self, wire: Wire) {
        match wire {
            Wire::Migrate { id, to, from, req } => {
                self.hand_off(&id, &to, Some((from, req))).await;
            }
            Wire::MigrateFailed { req, why } => {
                lock(&self.failed_moves).insert(req, why);
                self.changed.send_modify(|c| *c += 1);
            }
            Wire::Hold { id, from } => {
                tracing::debug!(supervisor = %self.spec.name, child = %id, from, "holding");
                let mut routes = lock(&self.routes);
                self.hold(&mut routes, &id, &from);
                // On the channel this node's casts take, under the lock they take: every
                // cast sent to the old node before is ahead of this answer.
                self.send_to(
                    DEFAULT,
                    &from,
                    Wire::Held {
                        id,
                        from: self.me.clone(),
                    },
                );
            }
            Wire::Held { id, from } => {
                let ready = {
                    let mut st = lock(&self.state);
                    match st.out.get_mut(&id) {
                        Some(out) if out.sent.is_none() => {
                            out.waiting.remove(&from);
                            out.waiting.is_empty()
                        }
                        _ => false,
                    }
                };
                if ready {
                    self.cut(&id).await;
                }
            }
            Wire::State {
                id,
                created,
                from,
                seq,
                bytes,
                req,
            } => {
                let current = lock(&self.state)
                    .table
                    .live(&id)
                    .is_some_and(|r| r.created == created);
                let seed = Seed {
                    seq,
                    bytes: Arc::new(bytes),
                };
                let export = if current {
                    self.take_over(&id, Some((&from, seed.clone()))).await
                } else {
                    None
                };
                match export {
                    Some(export) => {
                        self.moved(&id, &export);
                        // Replicated as a checkpoint: a crash from here on starts from it.
                        self.ckpt_out.push(id.clone(), created, seed);
                        tracing::info!(supervisor = %self.spec.name, child = %id, from, "took over");
                    }
                    None => {
                        // `req` is the old node's to answer: it starts the child again.
                        let _ = req;
                        self.send_to(
                            CONTROL,
                            &from,
                            Wire::Refused {
                                id,
                                from: self.me.clone(),
                                why: "could not start it".to_owned(),
                            },
                        );
                    }
                }
            }
            Wire::Refused { id, from, why } => {
                let ours = lock(&self.state)
                    .out
                    .get(&id)
                    .is_some_and(|o| o.to == from && o.sent.is_some());
                if ours {
                    self.recover(&id, &format!("node {from} refused: {why}"))
                        .await;
                }
            }
            Wire::Moved { id, node, export } => {
                let done = {
                    let mut st = lock(&self.state);
                    let done = st.out.get(&id).is_some_and(|o| o.to == node);
                    if done {
                        st.out.remove(&id);
                    }
                    done
                };
                if done {
                    tracing::info!(supervisor = %self.spec.name, child = %id, to = %node, "handed off");
                }
                let at = Location {
                    node: node.as_str().into(),
                    export: export.as_str().into(),
                    local: None,
                };
                self.release(&id, Some(at));
            }
            Wire::Checkpoint {
                id,
                created,
                seq,
                bytes,
            } => {
                let seed = Seed {
                    seq,
                    bytes: Arc::new(bytes),
                };
                self.store_checkpoint(&id, &created, &seed);
            }
            Wire::Leaving { from } => {
                lock(&self.state).leavers.insert(from);
            }
            _ => {}
        }
    }

    /// Moves in progress: those whose peers have all answered (or are gone) are cut;
    /// those that took too long, or whose new node is gone, are started here again.
    pub(crate) async fn drive_moves(&self) {
        self.expire_holds();
        let now = Instant::now();
        let (cuts, failed) = {
            let mut st = lock(&self.state);
            let peers: BTreeSet<String> = st.peers.keys().cloned().collect();
            let mut cuts = Vec::new();
            let mut failed = Vec::new();
            for (id, out) in &mut st.out {
                match &out.sent {
                    None => {
                        out.waiting.retain(|p| peers.contains(p));
                        if out.waiting.is_empty() || out.deadline <= now {
                            cuts.push(id.clone());
                        }
                    }
                    Some(_) if out.deadline <= now || !peers.contains(&out.to) => {
                        failed.push(id.clone());
                    }
                    Some(_) => {}
                }
            }
            (cuts, failed)
        };
        for id in cuts {
            self.cut(&id).await;
        }
        for id in failed {
            self.recover(&id, "the new node did not take over in time")
                .await;
        }
    }

    /// Sets up the hand-over of a local instance's slot, for a new instance.
    pub(crate) fn new_gate(&self, id: &str, created: &Stamp, seed: Option<Seed>) -> Arc<Gate> {
        Gate::new(seed, self.sink(id, created))
    }

    /// A request number for `migrate`.
    pub(crate) fn next_req(&self) -> u64 {
        self.next_req.fetch_add(1, Ordering::Relaxed)
    }
}

/// Drains the instance behind `addr`: it handles what is queued, then gives its state
/// through `gate`.
async fn drain<M: Send + 'static>(
    addr: &Addr<M>,
    gate: &Gate,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, String> {
    if !gate.attached() {
        return Err("not a handoff child".to_owned());
    }
    let rx = gate.capture();
    let Some(cell) = addr.actor_cell() else {
        gate.cancel_capture();
        return Err("the instance is not running".to_owned());
    };
    if cell.drain().is_err() {
        gate.cancel_capture();
        return Err("the instance stopped".to_owned());
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err("the instance ended without its state".to_owned()),
        Err(_) => {
            gate.cancel_capture();
            Err(format!("the instance did not drain within {timeout:?}"))
        }
    }
}
