//! The replication loop: the registry's state on one node, the message replicas exchange,
//! and the process and tasks that feed it.
//!
//! # Locking
//!
//! All of a node's changes happen under one mutex (`Inner::state`): local registrations,
//! what peers send, members coming and going. The replica, the read-only mirror that
//! lookups use, the events and the sends to peers are all updated inside it, so every peer
//! receives one origin's deltas in the order they were numbered (sends to one peer are
//! queued in order on one lane), and the mirror never disagrees with the replica for
//! longer than the lock is held. No user code runs under the lock. Processes stopped by
//! the conflict policy are stopped after it is released.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use dashmap::DashMap;
use foundation_actors::{Actor, ActorError, Addr, RemoteMessage, StopHook};
use foundation_cluster::node::{CONTROL, ClusterEvent, Node};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::{Key, Location, OnConflict, RegisterError, RegistryEvent, Value};
use crate::replica::{Delta, Event, Op, Replica, Snapshot};

/// A registration as replicated: the user's value, and the number under which the origin
/// exports the process (so peers can reach it by name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Held<V> {
    pub(crate) id: u64,
    pub(crate) value: V,
}

/// What replicas of one scope send each other.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Wire<K, V> {
    /// One change of its origin.
    Delta(Delta<K, Held<V>>),
    /// Everything its origin holds.
    Snapshot(Snapshot<K, Held<V>>),
    /// "Send me your snapshot."
    Want {
        /// Who asks.
        from: String,
    },
    /// "I am at change `seq` of incarnation `incarnation`": a peer that has less asks for
    /// a snapshot, so a lost last delta is made up for.
    Digest {
        /// The origin.
        origin: String,
        /// Which start of it.
        incarnation: u64,
        /// Its last change.
        seq: u64,
    },
}

/// The replication process's message: a [`Wire`] message with its wire form.
#[derive(Debug)]
pub(crate) struct SyncMsg<K, V>(pub(crate) Wire<K, V>);

foundation_actors::__newtype_remote_message!(SyncMsg<K: Key, V: Value>, "foundation.registry.Sync");

/// A registration made on this node.
pub(crate) struct Own<M> {
    pub(crate) addr: Addr<M>,
    pub(crate) id: u64,
    pub(crate) hook: Option<StopHook>,
    /// What happens to it if it loses a name conflict.
    pub(crate) on_conflict: OnConflict,
}

/// What a lookup finds: where the winner is, and its value.
pub(crate) struct Found<M, V> {
    pub(crate) location: Location<M>,
    pub(crate) id: u64,
    pub(crate) value: V,
}

pub(crate) struct State<K, M, V> {
    pub(crate) replica: Replica<K, Held<V>>,
    /// The members this node replicates with.
    pub(crate) peers: HashSet<String>,
    pub(crate) own: HashMap<K, Own<M>>,
    next_id: u64,
    pub(crate) closed: bool,
}

/// Told of every change of the mirror, under the lock: the key, and its new winner (or
/// none). Service discovery keeps its per-service index with it.
pub(crate) type Watch<K, M, V> = Box<dyn Fn(&K, Option<&Arc<Found<M, V>>>) + Send + Sync>;

pub(crate) struct Inner<K: Key, M: RemoteMessage, V: Value> {
    pub(crate) node: Node,
    pub(crate) me: Arc<str>,
    /// The name the replication process is exported as: `$registry/<scope>`.
    pub(crate) service: String,
    pub(crate) on_conflict: OnConflict,
    pub(crate) state: Mutex<State<K, M, V>>,
    /// The winners, for lookups without the lock.
    pub(crate) mirror: DashMap<K, Arc<Found<M, V>>, foldhash::fast::RandomState>,
    pub(crate) events: broadcast::Sender<RegistryEvent<K>>,
    pub(crate) syncer: Mutex<Option<Addr<SyncMsg<K, V>>>>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    watch: Option<Watch<K, M, V>>,
}

/// Takes a mutex, whether or not a panic poisoned it: every change under these locks
/// leaves the state whole before anything that could panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Processes to stop once the lock is released, with the reason they are given.
type Stops<M> = Vec<(Addr<M>, String)>;

impl<K: Key, M: RemoteMessage, V: Value> Inner<K, M, V> {
    pub(crate) fn new(
        node: &Node,
        scope: &str,
        on_conflict: OnConflict,
        events: usize,
        watch: Option<Watch<K, M, V>>,
    ) -> Self {
        Self {
            node: node.clone(),
            me: Arc::from(node.name()),
            service: format!("$registry/{scope}"),
            on_conflict,
            state: Mutex::new(State {
                replica: Replica::new(node.name(), node.incarnation()),
                peers: HashSet::new(),
                own: HashMap::new(),
                next_id: 0,
                closed: false,
            }),
            mirror: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            events: broadcast::channel(events.max(1)).0,
            syncer: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            watch,
        }
    }

    fn export_name(&self, id: u64) -> String {
        format!("{}/{id}", self.service)
    }

    /// Sends `msg` to every peer. A peer that is gone, or has no registry of this scope
    /// yet, misses it; the digests and snapshots make up for it.
    fn broadcast(&self, st: &State<K, M, V>, msg: &SyncMsg<K, V>) {
        for peer in &st.peers {
            self.send(peer, msg);
        }
    }

    fn send(&self, peer: &str, msg: &SyncMsg<K, V>) {
        // Replication is the node's own traffic: it rides `control`, never behind user sends.
        if let Err(e) = self.node.send_on(CONTROL, peer, &self.service, msg) {
            tracing::debug!(peer, service = %self.service, error = %e, "registry sync not sent");
        }
    }

    /// Registers `addr` under `key` here and tells every peer; if it loses a name
    /// conflict, `on_conflict` says what happens to `addr` (else the registry's policy).
    pub(crate) fn register(
        self: &Arc<Self>,
        key: K,
        addr: &Addr<M>,
        value: V,
        on_conflict: Option<OnConflict>,
    ) -> Result<(), RegisterError> {
        let name = || format!("{key:?}");
        let mut st = lock(&self.state);
        if st.closed {
            return Err(RegisterError::Closed { name: name() });
        }
        if let Some(holder) = st.replica.winner(&key) {
            return Err(RegisterError::Taken {
                name: name(),
                holder: holder.node,
            });
        }
        st.next_id += 1;
        let id = st.next_id;
        let weak = Arc::downgrade(self);
        let on_stop_key = key.clone();
        let Some(hook) = addr.on_stop(move || {
            if let Some(inner) = weak.upgrade() {
                inner.stopped(&on_stop_key, id);
            }
        }) else {
            return Err(RegisterError::Stopped { name: name() });
        };
        if let Err(e) = self.node.export(&self.export_name(id), addr.clone()) {
            // Only a user export under the reserved prefix can collide.
            hook.cancel();
            tracing::warn!(error = %e, "registry export refused");
            return Err(RegisterError::Taken {
                name: name(),
                holder: self.me.to_string(),
            });
        }
        let delta = match st.replica.register(key.clone(), Held { id, value }) {
            Ok(delta) => delta,
            Err(crate::replica::ReplicaError::Taken { holder }) => {
                hook.cancel();
                self.node.unexport(&self.export_name(id));
                return Err(RegisterError::Taken {
                    name: name(),
                    holder,
                });
            }
        };
        st.own.insert(
            key.clone(),
            Own {
                addr: addr.clone(),
                id,
                hook: Some(hook),
                on_conflict: on_conflict.unwrap_or(self.on_conflict),
            },
        );
        self.broadcast(&st, &SyncMsg(Wire::Delta(delta)));
        self.refresh(&st, &key);
        Ok(())
    }

    /// Removes this node's registration of `key`; `true` if there was one.
    pub(crate) fn unregister(&self, key: &K) -> bool {
        let mut st = lock(&self.state);
        let Some(mut own) = st.own.remove(key) else {
            return false;
        };
        if let Some(hook) = own.hook.take() {
            hook.cancel();
        }
        self.drop_own(&mut st, key, own.id);
        true
    }

    /// Replaces the value of this node's registration of `key`; `false` if there is none.
    pub(crate) fn update(&self, key: &K, value: V) -> bool {
        let mut st = lock(&self.state);
        let Some(id) = st.own.get(key).map(|o| o.id) else {
            return false;
        };
        let Some(delta) = st.replica.update(key, Held { id, value }) else {
            return false;
        };
        self.broadcast(&st, &SyncMsg(Wire::Delta(delta)));
        self.refresh(&st, key);
        true
    }

    /// The registered process `key`/`id` stopped for good.
    fn stopped(&self, key: &K, id: u64) {
        let mut st = lock(&self.state);
        if st.own.get(key).is_some_and(|o| o.id == id) {
            st.own.remove(key);
            self.drop_own(&mut st, key, id);
        }
    }

    /// Takes back an own registration (already out of `own`): the export, the replica's
    /// entry (telling the peers), the mirror.
    fn drop_own(&self, st: &mut State<K, M, V>, key: &K, id: u64) {
        self.node.unexport(&self.export_name(id));
        if let Some(delta) = st.replica.unregister(key) {
            self.broadcast(st, &SyncMsg(Wire::Delta(delta)));
        }
        self.refresh(st, key);
    }

    /// Brings the mirror's entry for `key` in line with the replica, and reports a change
    /// of holder.
    fn refresh(&self, st: &State<K, M, V>, key: &K) {
        let winner = st.replica.winner(key);
        let now = winner.as_ref().map(|w| (w.node.clone(), w.value.id));
        let before = self
            .mirror
            .get(key)
            .map(|f| (f.location.node.clone(), f.id));
        let same = match (&before, &now) {
            (Some((n, i)), Some((node, id))) => **n == **node && *i == *id,
            (None, None) => true,
            _ => false,
        };
        match winner {
            None => {
                if self.mirror.remove(key).is_some() {
                    if let Some(watch) = &self.watch {
                        watch(key, None);
                    }
                }
            }
            Some(w) => {
                let local = (*w.node == *self.me)
                    .then(|| st.own.get(key).map(|o| o.addr.clone()))
                    .flatten();
                let node: Arc<str> = match &before {
                    Some((n, _)) if **n == *w.node => n.clone(),
                    _ if w.node == *self.me => self.me.clone(),
                    _ => Arc::from(w.node.as_str()),
                };
                let found = Found {
                    location: Location {
                        node,
                        export: Arc::from(self.export_name(w.value.id)),
                        local,
                    },
                    id: w.value.id,
                    value: w.value.value,
                };
                let found = Arc::new(found);
                if let Some(watch) = &self.watch {
                    watch(key, Some(&found));
                }
                self.mirror.insert(key.clone(), found);
            }
        }
        if !same {
            let event = match now {
                Some((node, _)) => RegistryEvent::Registered {
                    key: key.clone(),
                    node,
                },
                None => RegistryEvent::Unregistered { key: key.clone() },
            };
            let _ = self.events.send(event);
        }
    }

    /// What a peer's registry sent.
    pub(crate) fn receive(&self, msg: Wire<K, V>) {
        let mut stops = Stops::new();
        {
            let mut st = lock(&self.state);
            if st.closed {
                return;
            }
            match msg {
                Wire::Delta(delta) => {
                    if !st.peers.contains(&delta.origin) {
                        return;
                    }
                    let key = match &delta.op {
                        Op::Put { key, .. } | Op::Remove { key } => key.clone(),
                    };
                    let events = st.replica.apply(delta);
                    self.refresh(&st, &key);
                    self.handle(&mut st, events, &mut stops);
                }
                Wire::Snapshot(snap) => {
                    if !st.peers.contains(&snap.origin) {
                        return;
                    }
                    let mut keys = st.replica.keys_of(&snap.origin);
                    keys.extend(snap.entries.iter().map(|(k, _, _)| k.clone()));
                    let events = st.replica.apply_snapshot(snap);
                    for key in &keys {
                        self.refresh(&st, key);
                    }
                    self.handle(&mut st, events, &mut stops);
                }
                Wire::Want { from } => {
                    if st.peers.contains(&from) {
                        self.send(&from, &SyncMsg(Wire::Snapshot(st.replica.snapshot())));
                    }
                }
                Wire::Digest {
                    origin,
                    incarnation,
                    seq,
                } => {
                    if st.peers.contains(&origin) && st.replica.is_behind(&origin, incarnation, seq)
                    {
                        self.want(&origin);
                    }
                }
            }
        }
        self.stop_all(stops);
    }

    fn want(&self, origin: &str) {
        self.send(
            origin,
            &SyncMsg(Wire::Want {
                from: self.me.to_string(),
            }),
        );
    }

    /// Acts on what the replica reported.
    fn handle(&self, st: &mut State<K, M, V>, events: Vec<Event<K>>, stops: &mut Stops<M>) {
        for event in events {
            match event {
                Event::NeedSnapshot { origin } => self.want(&origin),
                Event::Lost { key, winner } => {
                    tracing::info!(key = ?key, winner, "registration lost a name conflict");
                    let Some(mut own) = st.own.remove(&key) else {
                        continue;
                    };
                    if let Some(hook) = own.hook.take() {
                        hook.cancel();
                    }
                    self.drop_own(st, &key, own.id);
                    if own.on_conflict == OnConflict::Stop {
                        let why = format!("name conflict: {key:?} is kept by node `{winner}`");
                        stops.push((own.addr, why));
                    }
                    let _ = self.events.send(RegistryEvent::Lost { key, winner });
                }
            }
        }
    }

    fn stop_all(&self, stops: Stops<M>) {
        for (addr, why) in stops {
            addr.stop(Some(why));
        }
    }

    /// `peer` is up: replicate with it, and trade snapshots.
    pub(crate) fn peer_up(&self, peer: &str) {
        if *peer == *self.me {
            return;
        }
        let mut st = lock(&self.state);
        if st.closed {
            return;
        }
        st.peers.insert(peer.to_owned());
        self.send(peer, &SyncMsg(Wire::Snapshot(st.replica.snapshot())));
        self.want(peer);
    }

    /// `peer` is down: its names go.
    pub(crate) fn peer_down(&self, peer: &str) {
        let mut st = lock(&self.state);
        if !st.peers.remove(peer) {
            return;
        }
        let keys = st.replica.keys_of(peer);
        st.replica.node_down(peer);
        for key in &keys {
            self.refresh(&st, key);
        }
    }

    /// Tells every peer how far this node's changes go.
    pub(crate) fn digest(&self) {
        let st = lock(&self.state);
        let Some((incarnation, seq)) = st.replica.progress(&self.me) else {
            return;
        };
        self.broadcast(
            &st,
            &SyncMsg(Wire::Digest {
                origin: self.me.to_string(),
                incarnation,
                seq,
            }),
        );
    }

    /// Brings the peer set in line with the node's members (after events were missed).
    pub(crate) fn resync(&self) {
        let up: HashSet<String> = self
            .node
            .members()
            .into_iter()
            .filter(|m| m.status == foundation_cluster::membership::Status::Up)
            .map(|m| m.id)
            .collect();
        let known = lock(&self.state).peers.clone();
        for gone in known.difference(&up) {
            self.peer_down(gone);
        }
        for new in up.difference(&known) {
            self.peer_up(new);
        }
    }

    /// Follows the node's membership.
    pub(crate) async fn follow(weak: Weak<Self>, mut events: broadcast::Receiver<ClusterEvent>) {
        loop {
            let event = events.recv().await;
            let Some(inner) = weak.upgrade() else {
                return;
            };
            match event {
                Ok(ClusterEvent::NodeUp(member)) => inner.peer_up(&member.id),
                Ok(ClusterEvent::NodeDown { member, .. }) => inner.peer_down(&member.id),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => inner.resync(),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Stops replicating: this node's names are taken back everywhere, its exports and
    /// tasks go.
    pub(crate) fn close(&self) {
        let mut st = lock(&self.state);
        if st.closed {
            return;
        }
        let own: Vec<(K, Own<M>)> = st.own.drain().collect();
        for (key, mut o) in own {
            if let Some(hook) = o.hook.take() {
                hook.cancel();
            }
            self.drop_own(&mut st, &key, o.id);
        }
        st.closed = true;
        drop(st);
        // Only a registry that got its scope exported has a syncer to take back.
        if let Some(syncer) = lock(&self.syncer).take() {
            self.node.unexport(&self.service);
            syncer.stop(None);
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl<K, M, V> Drop for Inner<K, M, V>
where
    K: Key,
    M: RemoteMessage,
    V: Value,
{
    /// The last handle is gone: as [`Inner::close`].
    fn drop(&mut self) {
        self.close();
    }
}

/// The process peers' registries send to: it hands what they send to the shared state.
pub(crate) struct Syncer<K: Key, M: RemoteMessage, V: Value> {
    pub(crate) inner: Weak<Inner<K, M, V>>,
}

impl<K: Key, M: RemoteMessage, V: Value> Actor for Syncer<K, M, V> {
    type Msg = SyncMsg<K, V>;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<Self::Msg>, _: ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(
        &self,
        _: &Addr<Self::Msg>,
        msg: Self::Msg,
        _: &mut (),
    ) -> Result<(), ActorError> {
        if let Some(inner) = self.inner.upgrade() {
            inner.receive(msg.0);
        }
        Ok(())
    }
}
