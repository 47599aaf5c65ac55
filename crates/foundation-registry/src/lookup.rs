//! The lookups every registry answers, local or cluster-wide.

use std::borrow::Borrow;
use std::hash::Hash;

/// Name resolution, the part of a registry that callers need: the local [`Registry`] and
/// the [`ClusterRegistry`](crate::ClusterRegistry) implement it with the same meaning, so
/// code that only looks names up can take either.
///
/// Every implementation promises: an entry registered before a lookup starts (the
/// registration returned) is seen by it; an entry of a process that has stopped for
/// good is never returned once the registry has learnt of the stop.
///
/// [`Registry`]: crate::Registry
///
/// # Examples
///
/// ```
/// use foundation_registry::Lookup;
///
/// /// How many members a group has, whichever registry holds it.
/// fn group_size<L: Lookup<String>>(names: &L, group: &str) -> usize {
///     names.count_key(group)
/// }
/// ```
pub trait Lookup<K> {
    /// What a key resolves to: an [`Addr`](foundation_actors::Addr) for the local registry,
    /// a [`Location`](crate::Location) for the cluster-wide one.
    type Target;
    /// The value (metadata) each entry was registered with.
    type Value;

    /// The process registered under `key`: the holder of a unique key, the earliest
    /// entry of a group.
    fn whereis<Q>(&self, key: &Q) -> Option<Self::Target>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// Every entry under `key`, oldest first.
    fn lookup<Q>(&self, key: &Q) -> Vec<(Self::Target, Self::Value)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// How many entries are under `key`.
    fn count_key<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized;
}
