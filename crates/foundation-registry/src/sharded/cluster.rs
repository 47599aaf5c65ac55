//! Sharded entities across the nodes of a cluster: which node owns a shard, and the
//! remote path a message takes to an entity whose shard another node owns.
//!
//! # Owners
//!
//! Every node that runs a `Sharded` of one name runs a [`DistributedSupervisor`] of the
//! name `$sharded/<name>`: its membership view (the nodes running it, their incarnations,
//! their roles, whether they are leaving) is the one the placement core plans children
//! with. The owner of shard `i` is `View::owners(Rendezvous, "<name>/<i>", 1, role)`: the
//! same call, over the same view, that places a singleton child, so every node that sees
//! the same members computes the same owner, and a node joining takes only the shards it
//! now scores highest on. The table of owners (one entry per shard) is computed again
//! at the end of each pass of that supervisor's loop (membership events, hellos) and,
//! as a safety net, every [`REFRESH`].
//!
//! # The remote path
//!
//! An entity's address ([`Sharded::addr`](super::Sharded::addr), typed handles) computes
//! its key's shard and that shard's owner on each send. Owned here: the message goes into
//! the local shard, as on one node. Owned by another node: the key (postcard) and the
//! message ([`RemoteMessage`]) are sent to that node's `$sharded/<name>` process over the
//! node's `default` channel, under the sender's context (it travels as with any remote
//! send, and is current in the entity's handler there). A call goes the same way, as a
//! message carrying its id; the owner answers it with a message back, and the caller's
//! port is answered from it ([`RemoteMessage::into_answer`]). Casts and calls from one
//! node to one owner take one lane of the channel, so they arrive in the order they were
//! sent, calls included.
//!
//! # Limits (this step)
//!
//! - Each node delivers what it receives into its own shards: while two nodes' views
//!   differ (a membership change propagating), an entity may run on two nodes at once
//!   for that moment, each with its own state. Moving a shard's entities when its owner
//!   changes (holding its messages meanwhile, handing the state over) is the next step.
//! - A call whose owner goes down before it answers gets no reply (the caller's timeout,
//!   or [`CallError::NoReply`](foundation_actors::CallError::NoReply) once the node is
//!   declared down); it is not retried.
//! - A shard with no eligible owner (no member offers its role) drops its messages,
//!   counted in [`ShardedStats::dropped`](super::ShardedStats::dropped).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use foundation_actors::remote::{Answer, Replier};
use foundation_actors::{Actor, ActorError, Addr, Context, RemoteMessage, hosted};
use foundation_cluster::node::Node;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::EntityKey;
use super::runtime::Shared;
use crate::ClusterRegistry;
use crate::cluster::lock;
use crate::distributed::{ChildName, DistributedSpec, DistributedSupervisor};
use crate::placement::{Load, Rendezvous, View};

/// How often the owner table is computed again without a supervisor pass.
pub(crate) const REFRESH: Duration = Duration::from_millis(250);

/// What nodes running one `Sharded` send each other.
#[derive(Debug, RemoteMessage)]
#[remote(name = "foundation.registry.Shard", crate = foundation_actors)]
pub enum ShardWire {
    /// A cast to the entity of `key` (postcard), `msg` its wire form.
    #[remote(tag = 1)]
    Cast {
        /// The shard, as the sender computed it.
        shard: u32,
        /// The key's postcard bytes.
        key: Vec<u8>,
        /// The message's wire form.
        msg: Vec<u8>,
    },
    /// A call: as a cast, answered by a [`ShardWire::Reply`] to `from` with `id`.
    #[remote(tag = 2)]
    Call {
        /// The shard, as the sender computed it.
        shard: u32,
        /// The key's postcard bytes.
        key: Vec<u8>,
        /// The message's wire form (its reply port left out).
        msg: Vec<u8>,
        /// The caller's node.
        from: String,
        /// The call's id on that node.
        id: u64,
    },
    /// The reply to call `id`: its bytes, or `None` (no reply: the port was dropped, the
    /// message did not decode).
    #[remote(tag = 3)]
    Reply {
        /// The call's id.
        id: u64,
        /// The reply's postcard bytes.
        bytes: Option<Vec<u8>>,
    },
}

/// The owner of each shard, as this node sees the cluster now.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    /// The nodes owning a shard, by index.
    nodes: Vec<Arc<str>>,
    /// Per shard, an index into `nodes`, or `u16::MAX` for no owner.
    of: Vec<u16>,
    /// The view's members and incarnations it was computed from.
    signature: Vec<(String, u64, bool)>,
}

impl Owners {
    /// The owners of `shards` shards of `name` over `view`, restricted to `role`.
    pub(crate) fn compute(name: &str, shards: usize, view: &View, role: Option<&str>) -> Self {
        let load = Load::new();
        let mut nodes: Vec<Arc<str>> = Vec::new();
        let mut of = Vec::with_capacity(shards);
        for i in 0..shards {
            let key = shard_key(name, i);
            let owner = view.owners(&Rendezvous, key.as_bytes(), 1, role, &load);
            let ix = match owner.first() {
                Some(o) => match nodes.iter().position(|n| &**n == *o) {
                    Some(ix) => ix,
                    None => {
                        nodes.push(Arc::from(*o));
                        nodes.len() - 1
                    }
                },
                None => usize::from(u16::MAX),
            };
            of.push(u16::try_from(ix).unwrap_or(u16::MAX));
        }
        Self {
            nodes,
            of,
            signature: signature(view),
        }
    }

    /// The owner of shard `i`.
    pub(crate) fn owner(&self, i: usize) -> Option<&Arc<str>> {
        self.of
            .get(i)
            .and_then(|&ix| self.nodes.get(usize::from(ix)))
    }
}

/// What the owner table depends on: the members, their incarnations and whether they
/// may take shards (roles are fixed per member for its life).
fn signature(view: &View) -> Vec<(String, u64, bool)> {
    view.iter()
        .map(|n| (n.id.clone(), n.incarnation, n.leaving))
        .collect()
}

/// The rendezvous key of shard `i` of `name`: the id a shard's distributed child has.
pub(crate) fn shard_key(name: &str, i: usize) -> String {
    format!("{name}/{i}")
}

/// A call sent to another node and not answered yet.
struct Pending {
    node: Arc<str>,
    answer: Answer,
}

/// One node's part of a `Sharded` spread over a cluster.
pub(crate) struct Cluster<K, A: Actor> {
    pub(crate) local: Arc<Shared<K, A>>,
    node: Node,
    me: Arc<str>,
    /// The process peers send to, `$sharded/<name>`.
    service: String,
    role: Option<String>,
    sup: DistributedSupervisor<ShardWire>,
    owners: RwLock<Arc<Owners>>,
    calls: Mutex<HashMap<u64, Pending>>,
    next_call: AtomicU64,
    /// Messages that could not be sent (no owner, no encoding, the owner unreachable).
    pub(crate) undelivered: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    receiver: Mutex<Option<Addr<ShardWire>>>,
    me_weak: Weak<Self>,
}

/// Why a `Sharded` could not join the cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// A `Sharded` of this name runs on this node already.
    #[error("a sharded entity type named {0} runs on this node already")]
    NameTaken(String),
    /// Its membership (a distributed supervisor and its registry) could not start.
    #[error("the sharded entity type's membership could not start: {0}")]
    Membership(String),
    /// Its process could not start.
    #[error(transparent)]
    Spawn(#[from] foundation_actors::SpawnError),
}

impl<K, A> Cluster<K, A>
where
    K: EntityKey + Serialize + DeserializeOwned,
    A: Actor,
    A::Msg: RemoteMessage,
{
    /// Joins the cluster of `node` with `local`'s entities: starts the membership and the
    /// process peers send to, and computes the owners.
    pub(crate) async fn start(
        node: &Node,
        local: Arc<Shared<K, A>>,
        role: Option<String>,
        offers: Vec<String>,
    ) -> Result<Arc<Self>, JoinError> {
        let name = local.name().to_owned();
        let scope = format!("$sharded/{name}");
        let registry: ClusterRegistry<ChildName, ShardWire> = ClusterRegistry::start(node, &scope)
            .await
            .map_err(|e| JoinError::Membership(e.to_string()))?;
        let mut spec = DistributedSpec::new(scope.clone()).sync_every(Duration::from_millis(500));
        for r in offers {
            spec = spec.role(r);
        }
        let sup = DistributedSupervisor::start(node, &registry, spec)
            .await
            .map_err(|e| JoinError::Membership(e.to_string()))?;
        let me: Arc<str> = Arc::from(node.name());
        let cluster = Arc::new_cyclic(|weak| Self {
            local,
            node: node.clone(),
            me,
            service: scope,
            role,
            sup,
            owners: RwLock::new(Arc::new(Owners::default())),
            calls: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
            undelivered: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
            receiver: Mutex::new(None),
            me_weak: weak.clone(),
        });
        cluster.refresh();
        let receiver = foundation_actors::spawn(
            Inbox {
                cluster: Arc::downgrade(&cluster),
            },
            (),
        )
        .await?;
        if node.export(&cluster.service, receiver.clone()).is_err() {
            receiver.stop(None);
            cluster.sup.shutdown().await;
            return Err(JoinError::NameTaken(name));
        }
        *lock(&cluster.receiver) = Some(receiver);
        let watcher = tokio::spawn(watch(Arc::downgrade(&cluster), cluster.sup.passes()));
        lock(&cluster.tasks).push(watcher);
        // Keep the registry alive as long as the supervisor that names into it.
        drop(registry);
        Ok(cluster)
    }

    /// Computes the owner table again if the view changed; drops the calls pending on
    /// nodes that left it (their callers get no reply at once).
    pub(crate) fn refresh(&self) {
        let view = self.sup.placement_view();
        let sig = signature(&view);
        if lock_read(&self.owners).signature == sig {
            return;
        }
        let shards = self.local.shard_count();
        let owners = Owners::compute(self.local.name(), shards, &view, self.role.as_deref());
        tracing::debug!(sharded = %self.local.name(), members = view.len(), "shard owners computed");
        *self.owners.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(owners);
        let gone: Vec<Pending> = {
            let mut calls = lock(&self.calls);
            let ids: Vec<u64> = calls
                .iter()
                .filter(|(_, p)| !view.contains(&p.node))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter().filter_map(|id| calls.remove(&id)).collect()
        };
        for p in gone {
            p.answer.answer(None);
        }
    }

    /// The owner table now.
    pub(crate) fn owners(&self) -> Arc<Owners> {
        lock_read(&self.owners).clone()
    }

    /// The node owning `key`'s shard now, as this node sees the cluster.
    pub(crate) fn owner_of(&self, key: &K) -> Option<String> {
        let i = self.local.shard_of(key);
        self.owners().owner(i).map(|o| o.to_string())
    }

    /// The nodes running this `Sharded`, as this node sees them.
    pub(crate) fn members(&self) -> Vec<String> {
        self.sup.members()
    }

    /// Delivers `env` to `key`'s entity, wherever its shard's owner is.
    fn deliver(
        &self,
        key: &K,
        env: foundation_actors::addr::Envelope<A::Msg>,
    ) -> Result<(), foundation_actors::addr::Envelope<A::Msg>> {
        let i = self.local.shard_of(key);
        let owner = self.owners().owner(i).cloned();
        match owner {
            Some(o) if o == self.me => self.local.deliver(key, env),
            Some(o) => {
                self.send_remote(&o, i, key, env);
                Ok(())
            }
            None => {
                self.undelivered.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sharded = %self.local.name(), key = ?key, shard = i, "a message for an entity was dropped: no member can own its shard");
                Ok(())
            }
        }
    }

    /// Sends `env` to `owner`'s process for `key`'s entity, under the sender's context.
    fn send_remote(
        &self,
        owner: &str,
        shard: usize,
        key: &K,
        env: foundation_actors::addr::Envelope<A::Msg>,
    ) {
        let (ctx, msg) = hosted::into_parts(env);
        let encoded = postcard::to_allocvec(key)
            .map_err(|e| e.to_string())
            .and_then(|k| msg.to_bytes().map(|m| (k, m)).map_err(|e| e.to_string()));
        let (key_bytes, msg_bytes) = match encoded {
            Ok(both) => both,
            Err(why) => {
                self.undelivered.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sharded = %self.local.name(), key = ?key, %why, "a message for an entity on another node does not encode: dropped");
                return;
            }
        };
        let shard = u32::try_from(shard).unwrap_or(u32::MAX);
        let wire = match msg.into_answer() {
            None => ShardWire::Cast {
                shard,
                key: key_bytes,
                msg: msg_bytes,
            },
            Some(answer) => {
                let id = self.next_call.fetch_add(1, Ordering::Relaxed);
                lock(&self.calls).insert(
                    id,
                    Pending {
                        node: Arc::from(owner),
                        answer,
                    },
                );
                ShardWire::Call {
                    shard,
                    key: key_bytes,
                    msg: msg_bytes,
                    from: self.me.to_string(),
                    id,
                }
            }
        };
        let call_id = match &wire {
            ShardWire::Call { id, .. } => Some(*id),
            _ => None,
        };
        let sent = match ctx {
            Some(ctx) => ctx.sync_scope(|| self.node.send(owner, &self.service, &wire)),
            None => Context::default().sync_scope(|| self.node.send(owner, &self.service, &wire)),
        };
        if let Err(error) = sent {
            self.undelivered.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(sharded = %self.local.name(), key = ?key, owner, %error, "a message for an entity on another node could not be sent");
            if let Some(id) = call_id {
                let pending = lock(&self.calls).remove(&id);
                if let Some(p) = pending {
                    p.answer.answer(None);
                }
            }
        }
    }

    /// What a peer sent to this node's process.
    fn receive(&self, wire: ShardWire) {
        match wire {
            ShardWire::Cast { key, msg, .. } => {
                let Some(key) = self.decode_key(&key) else {
                    return;
                };
                match A::Msg::from_bytes(&msg) {
                    Ok(m) => self.deliver_here(key, m),
                    Err(error) => {
                        tracing::warn!(sharded = %self.local.name(), %error, "a message from a peer for an entity does not decode: dropped");
                    }
                }
            }
            ShardWire::Call {
                key, msg, from, id, ..
            } => {
                let back = self.me_weak.clone();
                let to = from.clone();
                let replier = Replier::new(move |bytes| {
                    if let Some(c) = back.upgrade() {
                        let reply = ShardWire::Reply { id, bytes };
                        if let Err(error) = c.node.send(&to, &c.service, &reply) {
                            tracing::warn!(sharded = %c.local.name(), node = %to, %error, "the reply to a call from another node could not be sent");
                        }
                    }
                });
                let Some(key) = self.decode_key(&key) else {
                    // `replier` dropped: the caller is told there is no reply.
                    return;
                };
                match A::Msg::from_bytes_with_reply(&msg, replier) {
                    Ok(m) => self.deliver_here(key, m),
                    Err(error) => {
                        tracing::warn!(sharded = %self.local.name(), %error, node = %from, "a call from a peer for an entity does not decode: dropped");
                    }
                }
            }
            ShardWire::Reply { id, bytes } => {
                let pending = lock(&self.calls).remove(&id);
                if let Some(p) = pending {
                    p.answer.answer(bytes);
                }
            }
        }
    }

    fn decode_key(&self, bytes: &[u8]) -> Option<K> {
        match postcard::from_bytes::<K>(bytes) {
            Ok(k) => Some(k),
            Err(error) => {
                tracing::warn!(sharded = %self.local.name(), %error, "a key from a peer does not decode: its message is dropped");
                None
            }
        }
    }

    /// Delivers a message that came from a peer into the local shard, under the context
    /// current now (the sender's).
    fn deliver_here(&self, key: K, msg: A::Msg) {
        if self.local.addr(key).cast(msg).is_err() {
            tracing::warn!(sharded = %self.local.name(), "a message from a peer for an entity was refused: the region has stopped");
        }
    }

    /// Stops this node's part: its membership and its process; pending calls get no
    /// reply.
    pub(crate) async fn leave(&self) {
        if let Some(r) = lock(&self.receiver).take() {
            self.node.unexport(&self.service);
            r.stop(None);
        }
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        self.sup.shutdown().await;
        let pending: Vec<Pending> = lock(&self.calls).drain().map(|(_, p)| p).collect();
        for p in pending {
            p.answer.answer(None);
        }
    }
}

fn lock_read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Computes the owners again after each pass of the membership's loop, and every
/// [`REFRESH`].
async fn watch<K, A>(cluster: Weak<Cluster<K, A>>, mut passes: tokio::sync::watch::Receiver<u64>)
where
    K: EntityKey + Serialize + DeserializeOwned,
    A: Actor,
    A::Msg: RemoteMessage,
{
    loop {
        tokio::select! {
            r = passes.changed() => if r.is_err() { return },
            () = tokio::time::sleep(REFRESH) => {}
        }
        let Some(c) = cluster.upgrade() else { return };
        c.refresh();
    }
}

/// What an entity's address delivers to in a cluster: the owner of its shard.
pub(crate) struct ClusterRoute<K, A: Actor> {
    pub(crate) cluster: Weak<Cluster<K, A>>,
    pub(crate) key: K,
}

impl<K, A> foundation_actors::Mailbox<A::Msg> for ClusterRoute<K, A>
where
    K: EntityKey + Serialize + DeserializeOwned,
    A: Actor,
    A::Msg: RemoteMessage,
{
    fn deliver(
        &self,
        env: foundation_actors::addr::Envelope<A::Msg>,
    ) -> Result<(), foundation_actors::addr::Envelope<A::Msg>> {
        match self.cluster.upgrade() {
            Some(c) => c.deliver(&self.key, env),
            None => Err(env),
        }
    }

    fn stop(&self) {
        if let Some(c) = self.cluster.upgrade() {
            c.local.passivate(&self.key);
        }
    }

    fn kill(&self) {
        self.stop();
    }
}

/// The process peers send to (`$sharded/<name>`).
struct Inbox<K, A: Actor> {
    cluster: Weak<Cluster<K, A>>,
}

impl<K, A> Actor for Inbox<K, A>
where
    K: EntityKey + Serialize + DeserializeOwned,
    A: Actor,
    A::Msg: RemoteMessage,
{
    type Msg = ShardWire;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<ShardWire>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(
        &self,
        _: &Addr<ShardWire>,
        msg: ShardWire,
        (): &mut (),
    ) -> Result<(), ActorError> {
        if let Some(c) = self.cluster.upgrade() {
            c.receive(msg);
        }
        Ok(())
    }
}
