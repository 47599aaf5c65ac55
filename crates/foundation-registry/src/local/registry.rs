//! The registry: a map from keys to entries, and an index from processes to their keys.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::{Entry as MapEntry, OccupiedEntry, VacantEntry};
use foundation_actors::{Addr, AddrKey, StopHook};

use super::bucket::{Bucket, Entry};
use super::error::{RegisterError, UpdateError};

/// Whether a key names one process or a group, as Elixir's `keys: :unique | :duplicate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// At most one process per key: registering a key that a live process holds fails
    /// with [`RegisterError::AlreadyRegistered`].
    Unique,
    /// Any number of entries per key, even several of one process: a key names a group,
    /// in registration order.
    Duplicate,
}

/// A local registry of processes whose messages are `M`, by key `K`, each entry with a
/// value `V` (metadata). A cheap handle: clones share one registry.
///
/// See the [module docs](super) for its guarantees.
///
/// # Examples
///
/// ```
/// use foundation_registry::{Mode, Registry};
/// # use foundation_actors::{Actor, ActorError, Addr, spawn};
/// # struct Idle;
/// # impl Actor for Idle { type Msg = (); type State = (); type Args = ();
/// #   async fn init(&self, _: &Addr<()>, _: ()) -> Result<(), ActorError> { Ok(()) }
/// #   async fn handle(&self, _: &Addr<()>, _: (), _: &mut ()) -> Result<(), ActorError> { Ok(()) } }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let rooms: Registry<String, (), u32> = Registry::new(Mode::Duplicate);
/// let alice = spawn(Idle, ()).await?;
/// let bob = spawn(Idle, ()).await?;
/// rooms.register("lobby".to_string(), &alice, 1)?;
/// rooms.register("lobby".to_string(), &bob, 2)?;
/// assert_eq!(rooms.count_key("lobby"), 2);
/// assert_eq!(rooms.lookup("lobby")[1].1, 2);
/// # Ok(()) }
/// ```
pub struct Registry<K, M, V = ()> {
    inner: Arc<Inner<K, M, V>>,
}

impl<K, M, V> Clone for Registry<K, M, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K, M, V> fmt::Debug for Registry<K, M, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("mode", &self.inner.mode)
            .field("entries", &self.inner.len.load(Ordering::Relaxed))
            .field("processes", &self.inner.by_proc.len())
            .finish()
    }
}

/// The shared state.
///
/// # Locking
///
/// Every change to a process's entries is made while its `by_proc` shard is locked for
/// writing (by holding its map entry), and `by_key` shards are taken only inside that, one
/// at a time; lookups take one `by_key` shard for reading. A stop hook is added or
/// cancelled inside a `by_proc` lock (taking the address's own lock), and runs after the
/// address has released its lock. So locks are always taken in the order `by_proc`, then
/// `by_key` or the address, and never the other way round. No user code runs under a lock
/// except [`Registry::update_value`]'s function.
pub(super) struct Inner<K, M, V> {
    mode: Mode,
    /// Seeded foldhash rather than SipHash: lookups are the hot path, and foldhash costs
    /// about a third on short keys while keeping a per-map secret seed (it is hashbrown's
    /// default hasher).
    by_key: DashMap<K, Bucket<M, V>, foldhash::fast::RandomState>,
    by_proc: DashMap<AddrKey, Proc<K>>,
    /// Entries in `by_key`.
    len: AtomicUsize,
    /// Tells apart successive lives of one process in `by_proc` (see `process_stopped`).
    next_token: AtomicU64,
}

/// A process with entries in this registry: its keys (with how many entries it has under
/// each), and the hook that removes them when it stops.
///
/// The counts may overstate: a unique key held by a process that has stopped, but whose
/// hook has not run yet, can be taken over by another (see `Inner::insert`). Removal
/// therefore always checks whose entry it removes.
struct Proc<K> {
    token: u64,
    hook: Option<StopHook>,
    keys: HashMap<K, usize>,
}

impl<K> Drop for Proc<K> {
    fn drop(&mut self) {
        // A process forgotten while alive (its last key unregistered, or the registry
        // dropped) must not keep a callback in its address. After a stop this finds the
        // callback gone already, which is fine.
        if let Some(hook) = self.hook.take() {
            hook.cancel();
        }
    }
}

/// Where a registration will record its key in `by_proc`: a process known already, or a
/// new one with its freshly added stop hook.
enum ProcSlot<'a, K> {
    Known(OccupiedEntry<'a, AddrKey, Proc<K>>),
    New(VacantEntry<'a, AddrKey, Proc<K>>, Proc<K>),
}

impl<K, M, V> Registry<K, M, V>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    M: Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty registry with the given key mode.
    pub fn new(mode: Mode) -> Self {
        Self {
            inner: Arc::new(Inner {
                mode,
                by_key: DashMap::with_hasher(foldhash::fast::RandomState::default()),
                by_proc: DashMap::new(),
                len: AtomicUsize::new(0),
                next_token: AtomicU64::new(0),
            }),
        }
    }

    /// An empty registry with unique keys.
    pub fn unique() -> Self {
        Self::new(Mode::Unique)
    }

    /// An empty registry with duplicate keys (groups).
    pub fn duplicate() -> Self {
        Self::new(Mode::Duplicate)
    }

    /// Its key mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// Registers `addr` under `key` with `value`, as Elixir's `Registry.register/3` (with
    /// the process given explicitly). The entry is visible to every lookup once this
    /// returns, and is removed when the process stops for good (not when it restarts).
    ///
    /// In a [`Mode::Duplicate`] registry every call adds an entry, even for a process
    /// already registered under the key.
    ///
    /// # Errors
    ///
    /// [`RegisterError::AlreadyRegistered`] in a unique registry if a live process holds
    /// `key` (even `addr` itself); [`RegisterError::Stopped`] if `addr` has stopped for
    /// good. Either way the key is handed back and nothing changes.
    pub fn register(&self, key: K, addr: &Addr<M>, value: V) -> Result<(), RegisterError<K, M>> {
        let inner = &self.inner;
        if addr.is_stopped() {
            return Err(RegisterError::Stopped { key });
        }
        let pk = addr.key();
        let proc = match inner.by_proc.entry(pk) {
            MapEntry::Occupied(o) => ProcSlot::Known(o),
            MapEntry::Vacant(v) => match inner.watch(addr) {
                Some(p) => ProcSlot::New(v, p),
                None => return Err(RegisterError::Stopped { key }),
            },
        };
        // On an error a new `Proc` is dropped here, cancelling its hook.
        let key = inner.insert(
            key,
            Entry {
                addr: addr.clone(),
                value,
            },
        )?;
        match proc {
            ProcSlot::Known(mut o) => *o.get_mut().keys.entry(key).or_insert(0) += 1,
            ProcSlot::New(v, mut p) => {
                p.keys.insert(key, 1);
                v.insert(p);
            }
        }
        Ok(())
    }

    /// Removes every entry of `addr` under `key` (Elixir's `Registry.unregister/2`, for a
    /// given process). Returns how many were removed.
    pub fn unregister<Q>(&self, key: &Q, addr: &Addr<M>) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.unregister_where(key, addr.key(), |_| true)
    }

    /// Removes the entries of `addr` under `key` whose value satisfies `pred` (Elixir's
    /// `Registry.unregister_match/4`). Returns how many were removed.
    ///
    /// `pred` runs while the key is locked: it must not use this registry.
    pub fn unregister_match<Q>(
        &self,
        key: &Q,
        addr: &Addr<M>,
        pred: impl FnMut(&V) -> bool,
    ) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.unregister_where(key, addr.key(), pred)
    }

    /// The process registered under `key`: in a unique registry the one holder, in a
    /// duplicate one the earliest registered entry still there. Never a process that has
    /// stopped for good. The fast path of name resolution: no allocation.
    pub fn whereis<Q>(&self, key: &Q) -> Option<Addr<M>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let bucket = self.inner.by_key.get(key)?;
        bucket
            .entries()
            .iter()
            .find(|e| !e.addr.is_stopped())
            .map(|e| e.addr.clone())
    }

    /// The entries under `key`, `(process, value)`, oldest first (Elixir's
    /// `Registry.lookup/2`); empty if there are none. Processes that have stopped for
    /// good are left out.
    pub fn lookup<Q>(&self, key: &Q) -> Vec<(Addr<M>, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.snapshot(key)
    }

    /// The entries under `key` whose value satisfies `pred` (Elixir's `Registry.match/3`,
    /// with a predicate for the pattern). `pred` runs on a copy, with nothing locked.
    pub fn lookup_match<Q>(&self, key: &Q, mut pred: impl FnMut(&V) -> bool) -> Vec<(Addr<M>, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.inner.snapshot(key);
        entries.retain(|(_, v)| pred(v));
        entries
    }

    /// The values `addr` is registered with under `key` (Elixir's `Registry.values/3`):
    /// at most one in a unique registry.
    pub fn values<Q>(&self, key: &Q, addr: &Addr<M>) -> Vec<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let pk = addr.key();
        self.inner.by_key.get(key).map_or_else(Vec::new, |b| {
            b.entries()
                .iter()
                .filter(|e| e.addr.key() == pk)
                .map(|e| e.value.clone())
                .collect()
        })
    }

    /// The keys `addr` is registered under (Elixir's `Registry.keys/2`), in no particular
    /// order; in a duplicate registry a key appears once per entry.
    pub fn keys(&self, addr: &Addr<M>) -> Vec<K> {
        let pk = addr.key();
        let Some(proc) = self.inner.by_proc.get(&pk) else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for key in proc.keys.keys() {
            // The counts may overstate (see `Proc`): ask the bucket.
            let n = self.inner.by_key.get(key).map_or(0, |b| {
                b.entries().iter().filter(|e| e.addr.key() == pk).count()
            });
            keys.extend(std::iter::repeat_n(key, n).cloned());
        }
        keys
    }

    /// How many entries the registry holds (Elixir's `Registry.count/1`). It may still
    /// count, for a moment, those of a process whose stop is being processed.
    pub fn count(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Whether the registry holds no entry.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// How many live entries are under `key`: 0 or 1 in a unique registry, the size of the
    /// group in a duplicate one.
    pub fn count_key<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.by_key.get(key).map_or(0, |b| {
            b.entries().iter().filter(|e| !e.addr.is_stopped()).count()
        })
    }

    /// How many live entries under `key` have a value satisfying `pred` (Elixir's
    /// `Registry.count_match/3`). `pred` runs on a copy, with nothing locked.
    pub fn count_match<Q>(&self, key: &Q, mut pred: impl FnMut(&V) -> bool) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner
            .snapshot(key)
            .iter()
            .filter(|(_, v)| pred(v))
            .count()
    }

    /// Every live entry, as `(key, process, value)`, for which `pred` holds (Elixir's
    /// `Registry.select/2`, with a predicate for the match spec). Not a snapshot of one
    /// instant: the registry is read a part at a time while others may change it. `pred`
    /// runs on copies, with nothing locked; the cost is a copy of every entry.
    pub fn select(&self, mut pred: impl FnMut(&K, &Addr<M>, &V) -> bool) -> Vec<(K, Addr<M>, V)> {
        let mut all = Vec::new();
        for bucket in self.inner.by_key.iter() {
            for e in bucket.entries() {
                if !e.addr.is_stopped() {
                    all.push((bucket.key().clone(), e.addr.clone(), e.value.clone()));
                }
            }
        }
        all.retain(|(k, a, v)| pred(k, a, v));
        all
    }

    /// Replaces the value `addr` is registered with under `key` by `f(old)`, and returns
    /// `(new, old)` (Elixir's `Registry.update_value/3`, for a given process).
    ///
    /// `f` runs while the key is locked, so updates of one key do not interleave: it must
    /// not use this registry.
    ///
    /// # Errors
    ///
    /// [`UpdateError::NotUnique`] in a duplicate registry; [`UpdateError::NotRegistered`] if
    /// `addr` holds no entry under `key`.
    pub fn update_value<Q>(
        &self,
        key: &Q,
        addr: &Addr<M>,
        f: impl FnOnce(&V) -> V,
    ) -> Result<(V, V), UpdateError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + fmt::Debug + ?Sized,
    {
        if self.inner.mode == Mode::Duplicate {
            return Err(UpdateError::NotUnique);
        }
        let pk = addr.key();
        let not_registered = || UpdateError::NotRegistered {
            key: format!("{key:?}"),
        };
        let mut bucket = self.inner.by_key.get_mut(key).ok_or_else(not_registered)?;
        let entry = bucket
            .entries_mut()
            .iter_mut()
            .find(|e| e.addr.key() == pk)
            .ok_or_else(not_registered)?;
        let new = f(&entry.value);
        let old = std::mem::replace(&mut entry.value, new.clone());
        Ok((new, old))
    }

    /// Calls `f` with the live entries under `key`, oldest first, if there are any (Elixir's
    /// `Registry.dispatch/3`): the way to reach every member of a group. Returns how many
    /// entries `f` was given (0: it was not called).
    ///
    /// `f` gets a copy, with nothing locked: it may send, and use the registry.
    pub fn dispatch<Q>(&self, key: &Q, f: impl FnOnce(&[(Addr<M>, V)])) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.inner.snapshot(key);
        if !entries.is_empty() {
            f(&entries);
        }
        entries.len()
    }
}

impl<K, M, V> Inner<K, M, V>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    M: Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A new `by_proc` record for `addr`, with a hook that removes its entries when it
    /// stops; `None` if it has stopped already.
    fn watch(self: &Arc<Self>, addr: &Addr<M>) -> Option<Proc<K>> {
        let pk = addr.key();
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        // Weak: the hook lives in the address, which must not keep the registry alive.
        let weak = Arc::downgrade(self);
        let hook = addr.on_stop(move || {
            if let Some(inner) = weak.upgrade() {
                inner.process_stopped(pk, token);
            }
        })?;
        Some(Proc {
            token,
            hook: Some(hook),
            keys: HashMap::new(),
        })
    }

    /// Adds `entry` under `key`, by the mode's rule; returns a copy of the key for the
    /// process index.
    fn insert(&self, key: K, entry: Entry<M, V>) -> Result<K, RegisterError<K, M>> {
        match self.by_key.entry(key) {
            MapEntry::Vacant(v) => {
                let key = v.key().clone();
                v.insert(Bucket::One(entry));
                self.len.fetch_add(1, Ordering::Relaxed);
                Ok(key)
            }
            MapEntry::Occupied(mut o) => {
                if self.mode == Mode::Duplicate {
                    o.get_mut().push(entry);
                    self.len.fetch_add(1, Ordering::Relaxed);
                    return Ok(o.key().clone());
                }
                let live = o.get().entries().iter().find(|e| !e.addr.is_stopped());
                if let Some(holder) = live {
                    let holder = holder.addr.clone();
                    return Err(RegisterError::AlreadyRegistered {
                        key: o.into_key(),
                        holder,
                    });
                }
                // The holder has stopped for good and its hook is about to remove it: take
                // the key over now, so that a key whose holder is seen stopped is free. The
                // hook removes only the holder's own entries, so it will leave this one.
                let replaced = o.insert(Bucket::One(entry));
                self.len.fetch_add(1, Ordering::Relaxed);
                self.len.fetch_sub(replaced.len(), Ordering::Relaxed);
                Ok(o.key().clone())
            }
        }
    }

    /// Removes the entries of process `pk` under `key` whose value satisfies `pred`.
    fn unregister_where<Q>(&self, key: &Q, pk: AddrKey, pred: impl FnMut(&V) -> bool) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let MapEntry::Occupied(mut proc) = self.by_proc.entry(pk) else {
            return 0;
        };
        let removed = self.remove_entries(key, pk, pred);
        if removed == 0 {
            return 0;
        }
        let p = proc.get_mut();
        match p.keys.get_mut(key) {
            Some(n) if *n > removed => *n -= removed,
            Some(_) => {
                p.keys.remove(key);
            }
            None => {}
        }
        if p.keys.is_empty() {
            // Dropping the record cancels its stop hook.
            proc.remove();
        }
        removed
    }

    /// Removes from `key`'s bucket the entries of process `pk` that satisfy `pred`, and the
    /// bucket if it is left empty. The caller holds `pk`'s `by_proc` entry.
    fn remove_entries<Q>(&self, key: &Q, pk: AddrKey, pred: impl FnMut(&V) -> bool) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut removed = 0;
        // The removed bucket (if any) is dropped after the shard is unlocked.
        let _gone = self.by_key.remove_if_mut(key, |_, bucket| {
            removed = bucket.remove(pk, pred);
            bucket.is_empty()
        });
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// The stop hook of process `pk`: removes all its entries. `token` tells whether the
    /// record is still the one the hook was added with (a static supervisor may bring a
    /// stopped child back, and it may register again under a new record).
    fn process_stopped(&self, pk: AddrKey, token: u64) {
        let MapEntry::Occupied(proc) = self.by_proc.entry(pk) else {
            return;
        };
        if proc.get().token != token {
            return;
        }
        for key in proc.get().keys.keys() {
            self.remove_entries(key, pk, |_| true);
        }
        proc.remove();
    }

    /// Copies of the live entries under `key`.
    fn snapshot<Q>(&self, key: &Q) -> Vec<(Addr<M>, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.by_key.get(key).map_or_else(Vec::new, |b| {
            b.entries()
                .iter()
                .filter(|e| !e.addr.is_stopped())
                .map(Entry::to_pair)
                .collect()
        })
    }
}

impl<K, M, V> crate::Lookup<K> for Registry<K, M, V>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    M: Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    type Target = Addr<M>;
    type Value = V;

    fn whereis<Q>(&self, key: &Q) -> Option<Addr<M>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        Registry::whereis(self, key)
    }

    fn lookup<Q>(&self, key: &Q) -> Vec<(Addr<M>, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        Registry::lookup(self, key)
    }

    fn count_key<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        Registry::count_key(self, key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::*;
    use foundation_actors::{Actor, ActorError, ChildSpec};

    #[derive(Clone)]
    struct Idle;

    impl Actor for Idle {
        type Msg = ();
        type State = ();
        type Args = ();
        async fn init(&self, _: &Addr<()>, _: ()) -> Result<(), ActorError> {
            Ok(())
        }
        async fn handle(&self, _: &Addr<()>, _: (), _: &mut ()) -> Result<(), ActorError> {
            Ok(())
        }
    }

    /// Every stop hook the registry has added and not cancelled holds a weak reference to
    /// it: the weak count is the number of hooks alive.
    fn hooks<K, M, V>(r: &Registry<K, M, V>) -> usize {
        Arc::weak_count(&r.inner)
    }

    #[test]
    fn one_hook_per_process_and_none_once_it_has_no_entry() {
        let names: Registry<u32, ()> = Registry::duplicate();
        let (a, b) = (
            ChildSpec::new("a", Idle, ()).addr(),
            ChildSpec::new("b", Idle, ()).addr(),
        );
        for round in 0..1_000 {
            names.register(round % 3, &a, ()).unwrap();
            assert_eq!(names.unregister(&(round % 3), &a), 1);
        }
        assert_eq!(hooks(&names), 0);
        assert!(names.inner.by_proc.is_empty() && names.inner.by_key.is_empty());

        for k in 0..10 {
            names.register(k, &a, ()).unwrap();
            names.register(k, &a, ()).unwrap();
            names.register(k, &b, ()).unwrap();
        }
        assert_eq!(hooks(&names), 2);
        assert_eq!(names.count(), 30);
        for k in 0..10 {
            names.unregister(&k, &a);
        }
        assert_eq!(hooks(&names), 1);
        assert_eq!(names.keys(&b).len(), 10);
    }

    #[test]
    fn a_refused_registration_keeps_no_hook() {
        let names: Registry<u32, ()> = Registry::unique();
        let (a, b) = (
            ChildSpec::new("a", Idle, ()).addr(),
            ChildSpec::new("b", Idle, ()).addr(),
        );
        names.register(1, &a, ()).unwrap();
        for _ in 0..100 {
            assert!(names.register(1, &b, ()).is_err());
        }
        assert_eq!(hooks(&names), 1);
        assert!(names.keys(&b).is_empty());
    }

    #[test]
    fn handles_are_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Registry<String, u32, ()>>();
        check::<Registry<u64, String, Vec<u8>>>();
    }

    #[test]
    fn a_panicking_predicate_changes_nothing() {
        let groups: Registry<u32, (), u32> = Registry::duplicate();
        let a = ChildSpec::new("a", Idle, ()).addr();
        for v in 0..3 {
            groups.register(1, &a, v).unwrap();
        }
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            groups.unregister_match(&1, &a, |v| if *v == 2 { panic!("no") } else { true })
        }));
        assert!(caught.is_err());
        assert_eq!(groups.count(), 3);
        assert_eq!(groups.count_key(&1), 3);
        assert_eq!(groups.keys(&a).len(), 3);
        assert_eq!(groups.unregister_match(&1, &a, |v| *v != 1), 2);
        assert_eq!(groups.values(&1, &a), [1]);
        assert_eq!(hooks(&groups), 1);
    }
}
