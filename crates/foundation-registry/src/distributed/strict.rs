//! Strict mode: a singleton held under a lease of a [`ConsistentRegistry`], with the
//! lease's fencing token handed to the child.
//!
//! # Why the quorum timing is not enough
//!
//! The split-brain timing (the loser stops within the silence limit, the winner waits the
//! silence limit plus a margin) assumes that a node's clock and its code run: a node
//! paused longer than the margin (a GC-like stall, a stopped VM, `SIGSTOP`) does neither,
//! and its instance, once resumed, runs on beside the one the others started meanwhile
//! until it hears of it. In strict mode an instance starts only once this node holds the
//! child's lease in the consensus group; the group grants it to another node only after
//! the lease ran out by the group's clock; and every grant carries a fencing token larger
//! than all before. A paused instance may still *run* after its lease went to another
//! node, but whatever it writes carries the old token, and a store that keeps the largest
//! token seen refuses it. At most one instance's writes are accepted at a time, however
//! long a node is paused.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foundation_actors::{Addr, RemoteMessage};
use tokio::sync::broadcast;

use super::ChildName;
use crate::consistent::{ConsistentError, ConsistentRegistry, LeaseEvent};

/// The fencing token of the lease a strict singleton's instance runs under, as the child
/// sees it: give it to [`DistributedSpec::kind_fenced`](super::DistributedSpec::kind_fenced)'s
/// factory's child and pass [`Fence::token`] with every write to a store that refuses a
/// token smaller than the largest it has seen.
///
/// Cheap to clone; every clone reads the same token. The token is set before the child's
/// `init` runs and cleared when the lease is lost (so a child that checks it before each
/// write stops writing soon after); a child paused past its lease cannot see the loss in
/// time, which is what the store's check is for.
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<AtomicU64>);

impl Fence {
    /// The lease's fencing token, or `None` when the instance holds no lease: not in
    /// strict mode, not a singleton, or the lease was lost.
    pub fn token(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            token => Some(token),
        }
    }

    pub(crate) fn set(&self, token: u64) {
        self.0.store(token, Ordering::Release);
    }

    pub(crate) fn clear(&self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Strict mode's settings ([`DistributedSpec::strict`]).
pub(crate) struct Strict<M> {
    /// Holds the leases: `unique(id)` per strict singleton.
    pub(crate) leases: Box<dyn Leases<M>>,
    /// The longest an acquisition may hold up the supervisor's loop.
    pub(crate) acquire_timeout: Duration,
}

/// The future a [`Leases`] method returns.
pub(crate) type LeaseFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What strict mode needs of the [`ConsistentRegistry`], behind a trait object: the spec
/// puts no `RemoteMessage` bound on its message type where strict mode is not used.
pub(crate) trait Leases<M>: Send + Sync {
    /// Takes the lease of child `id` for `addr`; its fencing token.
    fn acquire<'a>(
        &'a self,
        id: &str,
        addr: &'a Addr<M>,
    ) -> LeaseFuture<'a, Result<u64, ConsistentError>>;
    /// Gives the lease of child `id` granted with `token` back, if this node still holds
    /// that grant. The future owns what it needs: it runs in a task of its own, so no
    /// release (a Raft write, long without a quorum) holds up the supervisor's loop.
    fn release(&self, id: &str, token: u64) -> LeaseFuture<'static, ()>;
    /// This node's lost leases.
    fn subscribe(&self) -> broadcast::Receiver<LeaseEvent<ChildName>>;
}

impl<M: RemoteMessage> Leases<M> for ConsistentRegistry<ChildName, M> {
    fn acquire<'a>(
        &'a self,
        id: &str,
        addr: &'a Addr<M>,
    ) -> LeaseFuture<'a, Result<u64, ConsistentError>> {
        let key = ChildName::unique(id);
        Box::pin(async move { self.register(key, addr, ()).await.map(|l| l.token) })
    }

    fn release(&self, id: &str, token: u64) -> LeaseFuture<'static, ()> {
        let (registry, key) = (self.clone(), ChildName::unique(id));
        Box::pin(async move { registry.release_grant(&key, token).await })
    }

    fn subscribe(&self) -> broadcast::Receiver<LeaseEvent<ChildName>> {
        ConsistentRegistry::subscribe(self)
    }
}

#[cfg(test)]
mod tests {
    use super::Fence;

    #[test]
    fn a_fence_reads_what_was_set_in_every_clone_and_none_once_cleared() {
        let fence = Fence::default();
        let seen_by_child = fence.clone();
        assert_eq!(seen_by_child.token(), None);
        fence.set(7);
        assert_eq!(seen_by_child.token(), Some(7));
        fence.clear();
        assert_eq!(seen_by_child.token(), None);
    }
}
