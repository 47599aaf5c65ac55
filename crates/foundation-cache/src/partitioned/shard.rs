//! A node's shard of a partitioned cache: the entries it holds (as owner or as backup),
//! the process other nodes call, the claims of the cluster-wide single flight, and the
//! task that follows membership and moves entries to their new owners.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Duration;

use foundation_actors::{Actor, ActorError, Addr, ReplyPort};
use foundation_cluster::node::{ClusterEvent, Node};
use foundation_cluster::ring::HashRing;
use futures::StreamExt;
use tokio::sync::broadcast;

use super::wire::{Answer, Bytes, Claimed, Copied, Op, Outcome, ShardMsg};
use crate::api::Cache;
use crate::local::Local;
use crate::ttl::{Ttl, TtlLeft};

/// Locks striped by key: writes to one key are applied one at a time, whether they come
/// from this node (the fast path) or from the shard process, so that `put_new`, `replace`,
/// `take` and the swap behind `incr` are atomic. Reads take no lock.
const STRIPES: usize = 64;

/// Entries per `Copy` message when entries move after a membership change.
const MOVE_BATCH: usize = 256;

/// The most claims and waiting callers this node holds for the computations it
/// coordinates as owner (each holds a key and a reply port; peers' claims make them).
/// Past it a new claim is answered `Compute` without being recorded: the caller computes
/// on its own (no single flight for it) and is never left waiting.
#[cfg(not(test))]
const MAX_WAITING: usize = 100_000;
#[cfg(test)]
const MAX_WAITING: usize = 4;

/// One pending cluster-wide computation at its key's owner.
struct Claim {
    /// The node that computes.
    node: String,
    /// Callers on other nodes (and on the computing node's other flights) waiting for it.
    waiters: Vec<ReplyPort<Claimed>>,
}

/// The node side of one partitioned cache, shared by the handles and the shard process.
pub(crate) struct Core {
    pub(crate) node: Node,
    /// `$cache/<name>`: the shard process's exported name, the same on every node.
    pub(crate) service: String,
    /// Backups per key.
    pub(crate) replicas: usize,
    /// The entries held here: keys this node owns and keys it backs up.
    pub(crate) store: Local<Bytes, Bytes>,
    locks: Box<[Mutex<()>]>,
    claims: Mutex<HashMap<Bytes, Claim>>,
    /// The ring over this node and the members that are up, as of the last membership
    /// change (rebuilding it costs 128 hashes per node: not done per operation).
    ring: RwLock<Arc<HashRing<String>>>,
    /// Entries moved to other nodes after membership changes, and received so.
    pub(crate) moved_out: std::sync::atomic::AtomicU64,
    /// The longest key a peer's request may carry (the cache's `max_key_bytes`).
    max_key_bytes: usize,
    /// Claims plus their waiters held in `claims` (bounded by [`MAX_WAITING`]).
    waiting: std::sync::atomic::AtomicUsize,
    /// Peers' requests refused (a key over the limit) or served without single flight
    /// (a claim past [`MAX_WAITING`]).
    pub(crate) refused: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What an entry's TTL is to a copy: the time it has left (an idle entry's copy lives
/// its whole idle time from now, as a plain TTL).
fn ttl_of(left: Option<TtlLeft>) -> Ttl {
    match left {
        Some(TtlLeft::After(d)) => Ttl::Live(d.max(Duration::from_millis(1))),
        _ => Ttl::Never,
    }
}

impl Core {
    pub(crate) fn new(
        node: Node,
        service: String,
        replicas: usize,
        store: Local<Bytes, Bytes>,
        max_key_bytes: usize,
    ) -> Self {
        let ring = Arc::new(node.ring());
        Self {
            node,
            service,
            replicas,
            store,
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            claims: Mutex::new(HashMap::new()),
            ring: RwLock::new(ring),
            moved_out: std::sync::atomic::AtomicU64::new(0),
            max_key_bytes,
            waiting: std::sync::atomic::AtomicUsize::new(0),
            refused: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Claims and waiting callers held here now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a peer's key is over the limit (counted as refused if so).
    fn too_long(&self, key: &[u8]) -> bool {
        let over = key.len() > self.max_key_bytes;
        if over {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        over
    }

    pub(crate) fn ring(&self) -> Arc<HashRing<String>> {
        Arc::clone(&self.ring.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The owner of `key` and its backups, the owner first.
    pub(crate) fn owners(&self, key: &[u8]) -> Vec<String> {
        let ring = self.ring();
        if self.replicas == 0 {
            return ring.owner(key).cloned().into_iter().collect();
        }
        ring.owners(key, 1 + self.replicas)
            .into_iter()
            .cloned()
            .collect()
    }

    /// The owner of `key` (this node when the ring is empty: never, as it holds this
    /// node).
    pub(crate) fn owner(&self, key: &[u8]) -> String {
        let ring = self.ring();
        ring.owner(key)
            .cloned()
            .unwrap_or_else(|| self.node.name().to_owned())
    }

    fn stripe(&self, key: &[u8]) -> MutexGuard<'_, ()> {
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        lock(&self.locks[(h as usize) % STRIPES])
    }

    /// The value under `key` here.
    pub(crate) fn get(&self, key: &Bytes) -> Option<Bytes> {
        now(self.store.get(key)).ok().flatten()
    }

    /// Applies `op` here if this node owns its key under its ring now, and sends the
    /// entry's new state to the key's backups; else gives `op` back with the key's owner
    /// (the caller routed it by a ring that has changed since).
    ///
    /// The ownership check and the write are under the key's stripe, and a ring change
    /// waits for every stripe once before it lists what to move ([`Core::rebalance`]): a
    /// write is either checked against the new ring, or done before the list is taken and
    /// moved with it. None lands on a node that no longer owns its key and stays there.
    pub(crate) fn apply(&self, op: Op) -> Result<Answer, (Op, String)> {
        let Some(key) = op.key() else {
            return Ok(self.apply_here(op));
        };
        let _g = self.stripe(key);
        let ring = self.ring();
        let me = self.node.name();
        match ring.owner(key) {
            Some(owner) if owner != me => {
                let owner = owner.clone();
                Err((op, owner))
            }
            _ => Ok(self.apply_here(op)),
        }
    }

    /// Applies `op` here (a key's op with its stripe held by [`Core::apply`]).
    fn apply_here(&self, op: Op) -> Answer {
        match op {
            Op::Put(key, value, ttl) => {
                match now(self.store.put(key.clone(), value.clone(), ttl)) {
                    Ok(()) => {
                        self.back_up(&key, Some((value, ttl)));
                        Answer::Done
                    }
                    Err(e) => Answer::Refused(e.to_string()),
                }
            }
            Op::PutNew(key, value, ttl) => {
                match now(self.store.put_new(key.clone(), value.clone(), ttl)) {
                    Ok(wrote) => {
                        if wrote {
                            self.back_up(&key, Some((value, ttl)));
                        }
                        Answer::Bool(wrote)
                    }
                    Err(e) => Answer::Refused(e.to_string()),
                }
            }
            Op::Replace(key, value, ttl) => {
                match now(self.store.replace(key.clone(), value.clone(), ttl)) {
                    Ok(wrote) => {
                        if wrote {
                            self.back_up(&key, Some((value, ttl)));
                        }
                        Answer::Bool(wrote)
                    }
                    Err(e) => Answer::Refused(e.to_string()),
                }
            }
            Op::Swap {
                key,
                expected,
                new,
                ttl,
            } => {
                let current = self.get(&key);
                if current != expected {
                    return Answer::Bool(false);
                }
                // An existing counter keeps its deadline, as with the local adapter.
                let ttl = match current {
                    Some(_) => ttl_of(now(self.store.ttl(&key)).ok().flatten()),
                    None => ttl,
                };
                match now(self.store.put(key.clone(), new.clone(), ttl)) {
                    Ok(()) => {
                        self.back_up(&key, Some((new, ttl)));
                        Answer::Bool(true)
                    }
                    Err(e) => Answer::Refused(e.to_string()),
                }
            }
            Op::Delete(key) => {
                let _ = now(self.store.delete(&key));
                self.back_up(&key, None);
                Answer::Done
            }
            Op::Take(key) => {
                let value = now(self.store.take(&key)).ok().flatten();
                if value.is_some() {
                    self.back_up(&key, None);
                }
                Answer::Value(value)
            }
            Op::Contains(key) => Answer::Bool(now(self.store.contains(&key)).unwrap_or(false)),
            Op::Ttl(key) => Answer::Left(now(self.store.ttl(&key)).ok().flatten()),
            Op::Expire(key, ttl) => match now(self.store.expire(&key, ttl)) {
                Ok(true) => {
                    if let Some(value) = self.get(&key) {
                        self.back_up(&key, Some((value, ttl)));
                    }
                    Answer::Bool(true)
                }
                Ok(false) => Answer::Bool(false),
                Err(e) => Answer::Refused(e.to_string()),
            },
            Op::Touch(key) => {
                let touched = now(self.store.touch(&key)).unwrap_or(false);
                if touched {
                    if let Some(value) = self.get(&key) {
                        let ttl = ttl_of(now(self.store.ttl(&key)).ok().flatten());
                        self.back_up(&key, Some((value, ttl)));
                    }
                }
                Answer::Bool(touched)
            }
            Op::Len => Answer::Count(self.owned().len() as u64),
            Op::Clear => {
                let _ = now(self.store.clear());
                Answer::Done
            }
            Op::Page { skip, limit } => {
                let skip = usize::try_from(skip).unwrap_or(usize::MAX);
                let page = self
                    .owned()
                    .into_iter()
                    .skip(skip)
                    .take(limit as usize)
                    .collect();
                Answer::Page(page)
            }
        }
    }

    /// The entries this node owns (as primary), in key order so that pages are stable
    /// while nothing is written.
    fn owned(&self) -> Vec<(Bytes, Bytes)> {
        let ring = self.ring();
        let me = self.node.name();
        let mut owned: BTreeMap<Bytes, Bytes> = BTreeMap::new();
        let mut entries = self.store.stream();
        while let Some(Some(Ok((key, value)))) = futures::FutureExt::now_or_never(entries.next()) {
            if ring.owner(&key).is_some_and(|o| o == me) {
                owned.insert(key, value);
            }
        }
        owned.into_iter().collect()
    }

    /// Sends `key`'s new state to its backups (the owners after this one).
    fn back_up(&self, key: &Bytes, value: Option<(Bytes, Ttl)>) {
        if self.replicas == 0 {
            return;
        }
        let me = self.node.name();
        let owners = self.owners(key);
        let copy = ShardMsg::Copy(vec![Copied {
            key: key.clone(),
            value,
            if_absent: false,
        }]);
        for backup in owners.iter().filter(|o| o.as_str() != me) {
            if let Err(error) = self.node.send(backup, &self.service, &copy) {
                tracing::debug!(cache = %self.service, backup, %error, "a backup copy was not sent");
            }
        }
    }

    /// Copies from another node.
    pub(crate) fn copy(&self, items: Vec<Copied>) {
        for item in items {
            let _g = self.stripe(&item.key);
            match item.value {
                Some((value, ttl)) if item.if_absent => {
                    let _ = now(self.store.put_new(item.key, value, ttl));
                }
                Some((value, ttl)) => {
                    let _ = now(self.store.put(item.key, value, ttl));
                }
                None => {
                    let _ = now(self.store.delete(&item.key));
                }
            }
        }
    }

    /// `node` missed `key` in `get_or_compute`.
    pub(crate) fn claim(&self, key: Bytes, node: String, port: ReplyPort<Claimed>) {
        let mut claims = lock(&self.claims);
        // Under the claims' lock: a fulfilment writes the value and ends the claim under
        // it, so a claim never misses a value just computed.
        if let Some(value) = self.get(&key) {
            drop(claims);
            let _ = port.send(Claimed::Value(value));
            return;
        }
        use std::sync::atomic::Ordering::Relaxed;
        if self.waiting.load(Relaxed) >= MAX_WAITING {
            // Full: this caller computes on its own; its outcome, reported, is stored
            // (there is no claim to end) and no one waits on it.
            drop(claims);
            self.refused.fetch_add(1, Relaxed);
            tracing::debug!(cache = %self.service, node, "claims past the bound: computed without single flight");
            let _ = port.send(Claimed::Compute);
            return;
        }
        self.waiting.fetch_add(1, Relaxed);
        match claims.get_mut(&key) {
            Some(claim) => claim.waiters.push(port),
            None => {
                claims.insert(
                    key,
                    Claim {
                        node,
                        waiters: Vec::new(),
                    },
                );
                drop(claims);
                let _ = port.send(Claimed::Compute);
            }
        }
    }

    /// `claim` left the table: its count and its waiters' leave the bound.
    fn ended(&self, claim: &Claim) {
        self.waiting.fetch_sub(
            1 + claim.waiters.len(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// `node` reports the outcome of the computation of `key`.
    pub(crate) fn fulfill(&self, key: Bytes, node: &str, outcome: Outcome) {
        let mut claims = lock(&self.claims);
        let claim = match claims.get(&key) {
            Some(c) if c.node == node => claims.remove(&key),
            _ => None,
        };
        if let Some(c) = &claim {
            self.ended(c);
        }
        let answer = match outcome {
            Outcome::Value(value, ttl) => {
                // Stored even without a claim (this node restarted meanwhile): it is a
                // value computed for the key.
                match self.apply(Op::Put(key, value.clone(), ttl)) {
                    Ok(Answer::Refused(why)) => {
                        tracing::debug!(cache = %self.service, node, why, "a computed value was refused");
                    }
                    Ok(_) => {}
                    // The key moved meanwhile: the value goes to its owner, unless it holds
                    // one already (a newer write).
                    Err((Op::Put(key, moved, ttl), owner)) => {
                        let copy = ShardMsg::Copy(vec![Copied {
                            key,
                            value: Some((moved, ttl)),
                            if_absent: true,
                        }]);
                        if let Err(error) = self.node.send(&owner, &self.service, &copy) {
                            tracing::debug!(cache = %self.service, owner, %error, "a computed value was not passed on");
                        }
                    }
                    Err(_) => {} // `apply` gives back the op it was given
                }
                Claimed::Value(value)
            }
            Outcome::Failed(failure) => Claimed::Failed {
                node: node.to_owned(),
                failure,
            },
            Outcome::Abandoned => Claimed::Retry,
        };
        drop(claims);
        for waiter in claim.map(|c| c.waiters).unwrap_or_default() {
            let _ = waiter.send(answer.clone());
        }
    }

    /// `node` is gone: the computations it ran will not be reported; their waiters claim
    /// again (one of them computes).
    fn node_down(&self, node: &str) {
        let gone: Vec<Claim> = {
            let mut claims = lock(&self.claims);
            let keys: Vec<Bytes> = claims
                .iter()
                .filter(|(_, c)| c.node == node)
                .map(|(k, _)| k.clone())
                .collect();
            let gone: Vec<Claim> = keys.into_iter().filter_map(|k| claims.remove(&k)).collect();
            for c in &gone {
                self.ended(c);
            }
            gone
        };
        for claim in gone {
            for waiter in claim.waiters {
                let _ = waiter.send(Claimed::Retry);
            }
        }
    }

    /// The ring changed from `old` to `new`: each entry held here goes to the nodes that
    /// own or back it up under `new` and did not under `old` (sent by the first node of
    /// its old owners still up, so once), and leaves this node if it is none of them.
    async fn rebalance(&self, old: &HashRing<String>, new: &HashRing<String>) {
        // Every write that checked its key's owner against the old ring holds its stripe
        // until it is written: once each stripe has been free, all of them are in the
        // store, and later ones see the new ring (see `apply`).
        for stripe in &*self.locks {
            drop(lock(stripe));
        }
        let me = self.node.name();
        let n = 1 + self.replicas;
        let live = |node: &String| new.nodes().binary_search(node).is_ok();
        let mut out: HashMap<String, Vec<Copied>> = HashMap::new();
        let mut leave = Vec::new();
        let mut entries: Vec<(Bytes, Bytes)> = Vec::new();
        {
            let mut s = self.store.stream();
            while let Some(Some(Ok(e))) = futures::FutureExt::now_or_never(s.next()) {
                entries.push(e);
            }
        }
        for (key, value) in entries {
            let before: Vec<&String> = old.owners(&key, n);
            let after: Vec<&String> = new.owners(&key, n);
            let sender = before.iter().find(|o| live(o)).copied();
            let sends = match sender {
                Some(s) => s == me,
                // No old owner is left: whoever holds it passes it on.
                None => true,
            };
            if sends {
                let ttl = ttl_of(now(self.store.ttl(&key)).ok().flatten());
                for target in after
                    .iter()
                    .filter(|a| !before.contains(a) && a.as_str() != me)
                {
                    out.entry((*target).clone()).or_default().push(Copied {
                        key: key.clone(),
                        value: Some((value.clone(), ttl)),
                        if_absent: true,
                    });
                }
            }
            if !after.iter().any(|a| a.as_str() == me) {
                leave.push(key);
            }
        }
        for (target, items) in out {
            for chunk in items.chunks(MOVE_BATCH) {
                let sent = chunk.len() as u64;
                match self
                    .node
                    .send_wait(&target, &self.service, &ShardMsg::Copy(chunk.to_vec()))
                    .await
                {
                    Ok(()) => {
                        self.moved_out
                            .fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(error) => {
                        tracing::debug!(cache = %self.service, target, %error, "entries not moved");
                        break;
                    }
                }
            }
        }
        for key in leave {
            let _g = self.stripe(&key);
            // Only if it is still not ours: the ring may have changed again meanwhile.
            let ours = self.owners(&key).iter().any(|o| o == me);
            if !ours {
                let _ = now(self.store.delete(&key));
            }
        }
    }
}

/// The output of a local cache's future. The local adapter's futures (all but
/// `get_or_compute`, not used here) are values ready at their first poll, so this returns
/// at the first.
fn now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// The process other nodes call: applies their requests to the shard, one at a time.
pub(crate) struct Server {
    pub(crate) core: Weak<Core>,
}

impl Actor for Server {
    type Msg = ShardMsg;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<ShardMsg>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(
        &self,
        _: &Addr<ShardMsg>,
        msg: ShardMsg,
        (): &mut (),
    ) -> Result<(), ActorError> {
        if let Some(core) = self.core.upgrade() {
            serve(&core, msg);
        }
        Ok(())
    }
}

/// Applies one request to the shard, as its process does (the fuzz targets call it too).
pub(crate) fn serve(core: &Core, msg: ShardMsg) {
    // A peer of this version checks its keys first: a key over the limit comes from
    // a peer configured otherwise, or a hostile one. It is not stored or waited on.
    match msg {
        ShardMsg::Get(key, port) => {
            let value = if core.too_long(&key) {
                None
            } else {
                core.get(&key)
            };
            let _ = port.send(value);
        }
        ShardMsg::Op(op, port) => {
            let answer = match op.key() {
                Some(key) if core.too_long(key) => Answer::Refused(format!(
                    "a key of {} bytes is over this node's limit of {} bytes (its `max_key_bytes`)",
                    key.len(),
                    core.max_key_bytes
                )),
                _ => core
                    .apply(op)
                    .unwrap_or_else(|(_, owner)| Answer::NotOwner(owner)),
            };
            let _ = port.send(answer);
        }
        ShardMsg::Copy(mut items) => {
            items.retain(|item| !core.too_long(&item.key));
            core.copy(items);
        }
        // Dropping the port answers the caller: no reply.
        ShardMsg::Claim(key, _, _) if core.too_long(&key) => {}
        ShardMsg::Claim(key, node, port) => core.claim(key, node, port),
        ShardMsg::Fulfill(key, _, _) if core.too_long(&key) => {}
        ShardMsg::Fulfill(key, node, outcome) => core.fulfill(key, &node, outcome),
    }
}

/// Follows membership: on every change of the ring, moves entries to their new owners;
/// on a node's death, releases the computations it ran. Ends with the cache.
pub(crate) async fn follow(core: Weak<Core>, mut events: broadcast::Receiver<ClusterEvent>) {
    loop {
        let down = match events.recv().await {
            Ok(ClusterEvent::NodeDown { member, .. }) => Some(member.id),
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => None,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(core) = core.upgrade() else { return };
        if let Some(gone) = &down {
            core.node_down(gone);
        }
        let new = Arc::new(core.node.ring());
        let old = core.ring();
        if old.nodes() == new.nodes() {
            continue;
        }
        *core.ring.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&new);
        core.rebalance(&old, &new).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foundation_cluster::node::NodeConfig;

    fn port() -> (ReplyPort<Claimed>, tokio::sync::oneshot::Receiver<Claimed>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (ReplyPort::from(tx), rx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn claims_past_the_bound_compute_unrecorded_and_long_keys_are_refused() {
        let listen = "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"));
        let node = Node::start(NodeConfig::new("bound", "cookie").listen(listen))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let store = Local::builder()
            .max_entries(100)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let core = Core::new(node.clone(), "$cache/t".into(), 0, store, 8);
        // Three keys claimed, one of them waited on by a second caller: four held.
        let mut answers = Vec::new();
        for key in [1u8, 2, 3, 1] {
            let (p, rx) = port();
            core.claim(vec![key], "peer".into(), p);
            answers.push(rx);
        }
        assert_eq!(core.waiting(), MAX_WAITING);
        let (p, rx) = port();
        core.claim(vec![9], "peer".into(), p);
        assert_eq!(rx.await.ok(), Some(Claimed::Compute));
        assert_eq!(core.refused.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(lock(&core.claims).len(), 3, "the fifth was not recorded");
        // Its outcome is stored all the same.
        core.fulfill(vec![9], "peer", Outcome::Value(vec![7], Ttl::Never));
        assert_eq!(core.get(&vec![9]), Some(vec![7]));
        // Key 1's computation ends: its claim and its waiter leave the bound.
        core.fulfill(vec![1], "peer", Outcome::Value(vec![1], Ttl::Never));
        assert_eq!(core.waiting(), 2);
        core.node_down("peer");
        assert_eq!(core.waiting(), 0);
        assert!(lock(&core.claims).is_empty());
        assert!(core.too_long(&[0; 9]));
        assert!(!core.too_long(&[0; 8]));
        assert_eq!(core.refused.load(std::sync::atomic::Ordering::Relaxed), 2);
        drop(answers);
        node.shutdown().await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_for_a_key_another_node_owns_now_is_given_back_with_the_owner() {
        let listen = "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"));
        let node = Node::start(NodeConfig::new("own", "cookie").listen(listen))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let store = Local::builder()
            .max_entries(100)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let core = Core::new(node.clone(), "$cache/t".into(), 0, store, 64);
        // Alone, the node owns every key.
        assert_eq!(
            core.apply(Op::Put(vec![1], vec![1], Ttl::Never)),
            Ok(Answer::Done)
        );
        // The ring changes (as `follow` does): a key another node owns now is not
        // written here; the op comes back with the owner, whose name a peer gets.
        let ring = HashRing::new(["other".to_owned(), "own".to_owned()]);
        let theirs = (0u8..=255)
            .map(|k| vec![k])
            .find(|k| ring.owner(k).is_some_and(|o| o == "other"))
            .unwrap_or_else(|| panic!("no key of other's"));
        let mine = (0u8..=255)
            .map(|k| vec![k])
            .find(|k| ring.owner(k).is_some_and(|o| o == "own"))
            .unwrap_or_else(|| panic!("no key of own's"));
        *core.ring.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ring);
        let put = Op::Put(theirs.clone(), vec![2], Ttl::Never);
        assert_eq!(core.apply(put.clone()), Err((put, "other".to_owned())));
        assert_eq!(core.get(&theirs), None);
        let (tx, rx) = tokio::sync::oneshot::channel();
        serve(
            &core,
            ShardMsg::Op(Op::Delete(theirs.clone()), ReplyPort::from(tx)),
        );
        assert_eq!(rx.await.ok(), Some(Answer::NotOwner("other".into())));
        // Its own keys are written as before.
        assert_eq!(
            core.apply(Op::Put(mine.clone(), vec![3], Ttl::Never)),
            Ok(Answer::Done)
        );
        assert_eq!(core.get(&mine), Some(vec![3]));
        node.shutdown().await;
    }
}
