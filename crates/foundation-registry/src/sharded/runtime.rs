//! The runtime of one `Sharded`: its shards, the runners that run entities with work,
//! passivation, and the region actor that its supervisor supervises.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use foundation_actors::addr::Envelope;
use foundation_actors::hosted::{self, Crash};
use foundation_actors::{Actor, ActorError, Addr, ChildSpec, Mailbox, Restart, WeakAddr};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::pool::{Pool, Step, Wake};
use super::shard::{Next, Refused, Shard};
use super::{EntityCrash, EntityKey, ShardedStats};
// Recovers from poisoning: every critical section here leaves its data whole before
// anything that can panic runs.
use crate::cluster::lock;

/// A boxed future of an entity's restored state.
pub(crate) type Restoring<'a, S> = Pin<Box<dyn Future<Output = Result<S, ActorError>> + Send + 'a>>;

/// Where passivated entities' state and their checkpoints are kept (entities that
/// implement [`Handoff`](crate::distributed::Handoff)): `sharded/checkpoint.rs`.
pub(crate) trait Keeper<K, A: Actor>: Send + Sync {
    /// Keeps `state`, exported, as `key`'s snapshot.
    fn save(&self, actor: &A, key: &K, state: A::State);
    /// Restores `key`'s entity from its snapshot, or hands `args` back if it has none.
    fn restore<'a>(
        &'a self,
        actor: &'a A,
        key: &K,
        me: &'a Addr<A::Msg>,
        args: A::Args,
    ) -> Result<Restoring<'a, A::State>, A::Args>;
    /// Snapshots kept.
    fn len(&self) -> usize;
    /// The snapshots of shard `shard`'s keys that `which` selects, encoded, to hand to
    /// its new owner (the keeper may keep its own copies).
    fn take_encoded(&self, shard: usize, which: &dyn Fn(&K) -> bool) -> Vec<(K, Vec<u8>)>;
    /// Keeps an encoded snapshot handed over by another node.
    ///
    /// # Errors
    ///
    /// The snapshot does not decode.
    fn put_encoded(&self, key: K, bytes: &[u8]) -> Result<(), postcard::Error>;
    /// What makes `checkpoint()` work in the runner of `key`'s entity (shard `shard`):
    /// its end of the call, and the snapshot type.
    fn checkpoints(
        &self,
        shard: usize,
        key: &K,
    ) -> Option<(
        Arc<dyn crate::distributed::EntityCheckpoint>,
        std::any::TypeId,
    )>;
    /// Adds the store's counters.
    fn stats(&self, stats: &mut ShardedStats);
}

/// The shard of `key` among `shards` (at least one): an xxh3 hash of the key mod the
/// count, the same on every node and build.
pub(crate) fn shard_index<K: Hash + ?Sized>(key: &K, shards: usize) -> usize {
    let mut h = KeyBytes {
        len: 0,
        inline: [0; 64],
        spilled: Vec::new(),
    };
    key.hash(&mut h);
    // The remainder is below the shard count, a `usize`.
    (h.finish() % shards.max(1) as u64) as usize
}

/// The bytes a key's `Hash` writes, hashed at once with xxh3: the value xxh3's streaming
/// hasher gives for them (one-shot and streaming xxh3 agree on the same bytes), without
/// setting up its 500-byte state per key (callgrind: about 120 instructions per `u64`
/// key that way, about 80 this way). Keys up to 64 bytes stay on the stack.
struct KeyBytes {
    len: usize,
    inline: [u8; 64],
    spilled: Vec<u8>,
}

impl Hasher for KeyBytes {
    fn write(&mut self, bytes: &[u8]) {
        if self.spilled.is_empty() {
            if let Some(to) = self.inline.get_mut(self.len..self.len + bytes.len()) {
                to.copy_from_slice(bytes);
                self.len += bytes.len();
                return;
            }
            self.spilled.extend_from_slice(&self.inline[..self.len]);
        }
        self.spilled.extend_from_slice(bytes);
    }

    fn finish(&self) -> u64 {
        if self.spilled.is_empty() {
            xxhash_rust::xxh3::xxh3_64(&self.inline[..self.len])
        } else {
            xxhash_rust::xxh3::xxh3_64(&self.spilled)
        }
    }
}

/// Which shards a node serves (in a cluster): the region opens only those when it starts.
pub(crate) type Gate = Box<dyn Fn(usize) -> bool + Send + Sync>;

/// How an entity's `init` arguments come from its key.
pub(crate) type ArgsFn<K, Args> = Arc<dyn Fn(&K) -> Args + Send + Sync>;

/// The settings a `Sharded` runs with (from its spec).
pub(crate) struct Settings<K, A: Actor> {
    pub(crate) name: Arc<str>,
    pub(crate) actor: A,
    pub(crate) args: ArgsFn<K, <A as Actor>::Args>,
    pub(crate) shards: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_entities: usize,
    pub(crate) restart: Restart,
    pub(crate) backlog: usize,
    pub(crate) keeper: Option<Box<dyn Keeper<K, A>>>,
}

type ShardOf<K, A> = Shard<K, <A as Actor>::State, Envelope<<A as Actor>::Msg>>;

/// Everything one `Sharded` shares: its handles, its entities' addresses, its runners and
/// its region actor.
pub(crate) struct Shared<K, A: Actor> {
    settings: Settings<K, A>,
    shards: Box<[Mutex<ShardOf<K, A>>]>,
    /// The runtime the region started on: runners are spawned there (a send may come from
    /// a thread outside any runtime).
    rt: OnceLock<Handle>,
    /// In a cluster: the shards this node serves (all of them without one).
    pub(crate) gate: OnceLock<Gate>,
    /// Runs (an entity with work, from start to park) queued or under way, and a
    /// notification when none is.
    runners: AtomicUsize,
    no_runner: Notify,
    /// The runner tasks' queue of runs, and the bells of those waiting for one (see
    /// `pool.rs`).
    pool: Mutex<Pool<Run<K, A>, Arc<Notify>>>,
    started: AtomicU64,
    passivated: AtomicU64,
    crashed: AtomicU64,
    init_failed: AtomicU64,
    /// The last entity crash, for [`Sharded::last_crash`](crate::sharded::Sharded::last_crash).
    last_crash: Mutex<Option<EntityCrash>>,
    dropped: AtomicU64,
    /// A message was held because the region never started (warned once).
    warned_unstarted: AtomicBool,
    clock: tokio::time::Instant,
    me: Weak<Self>,
}

impl<K: EntityKey, A: Actor> Shared<K, A> {
    pub(crate) fn new(settings: Settings<K, A>) -> Arc<Self> {
        let n = settings.shards.max(1);
        // The limit is per node; each shard takes its part, as Akka divides its active
        // entity limit over the shards.
        let per_shard = settings.max_entities.div_ceil(n).max(1);
        let per_shard_backlog = settings.backlog.div_ceil(n).max(1);
        let shards = (0..n)
            .map(|_| Mutex::new(Shard::new(per_shard, per_shard_backlog)))
            .collect();
        Arc::new_cyclic(|me| Self {
            settings,
            shards,
            rt: OnceLock::new(),
            gate: OnceLock::new(),
            runners: AtomicUsize::new(0),
            no_runner: Notify::new(),
            pool: Mutex::new(Pool::new(1)),
            started: AtomicU64::new(0),
            passivated: AtomicU64::new(0),
            crashed: AtomicU64::new(0),
            init_failed: AtomicU64::new(0),
            last_crash: Mutex::new(None),
            dropped: AtomicU64::new(0),
            warned_unstarted: AtomicBool::new(false),
            clock: tokio::time::Instant::now(),
            me: me.clone(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.settings.name
    }

    /// The name, shared (an address's label).
    pub(crate) fn label(&self) -> Arc<str> {
        self.settings.name.clone()
    }

    /// The number of shards.
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard of `key`: a hash of the key (xxh3, the same on every node and build) mod
    /// the number of shards.
    pub(crate) fn shard_of(&self, key: &K) -> usize {
        shard_index(key, self.shards.len())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The clock for a message's arrival: read only when idle entities are passivated
    /// (the one use of an entry's `last_ms`), not on every message.
    fn arrival_ms(&self) -> u64 {
        if self.settings.idle_timeout.is_some() {
            self.now_ms()
        } else {
            0
        }
    }

    /// An address of `key`'s entity (whether it runs or not).
    pub(crate) fn addr(&self, key: K) -> Addr<A::Msg> {
        Addr::hosted_with(self.settings.name.clone(), |me| {
            Box::new(EntityRoute::<K, A> {
                shared: self.me.clone(),
                key,
                me,
            })
        })
    }

    /// Queues `env` for `key`'s entity, starting a runner if it has none. `via`: the
    /// address the message was sent through, if it is one of this entity's (a runner
    /// started by the message runs the entity with it, instead of building one).
    pub(crate) fn deliver(
        &self,
        key: &K,
        env: Envelope<A::Msg>,
        via: Option<&WeakAddr<A::Msg>>,
    ) -> Result<(), Envelope<A::Msg>> {
        let i = self.shard_of(key);
        let now = self.arrival_ms();
        let delivered = lock(&self.shards[i]).deliver(key, env, now);
        match delivered {
            Ok(d) => {
                if d.run {
                    let me = via.and_then(WeakAddr::upgrade);
                    self.spawn_runner(i, key.clone(), d.hand, me);
                } else if self.rt.get().is_none() {
                    self.held_unstarted();
                }
                if let Some(k) = d.evict {
                    self.spawn_runner(i, k, None, None);
                }
                Ok(())
            }
            Err((Refused::Stopped, env)) => Err(env),
            Err((Refused::Backlog, env)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    sharded = %self.settings.name,
                    key = ?key,
                    "a message for an entity was dropped: its shard holds messages and its backlog is full"
                );
                drop(env);
                Ok(())
            }
        }
    }

    /// Asks `key`'s entity to stop (passivate) after the message in hand.
    pub(crate) fn passivate(&self, key: &K) {
        let i = self.shard_of(key);
        let run = lock(&self.shards[i]).request_stop(key);
        if run {
            self.spawn_runner(i, key.clone(), None, None);
        }
    }

    /// Runs `key`'s entity (see `shard.rs`), handing it `hand` (a message not queued,
    /// and the entity's state taken out of its entry) first; `me`, an address of the
    /// entity to run it with (else one is built). The run goes to a waiting runner task,
    /// or to a new one when none waits (see [`Pool`]).
    fn spawn_runner(&self, shard: usize, key: K, hand: Option<Hand<A>>, me: Option<Addr<A::Msg>>) {
        let Some(rt) = self.rt.get() else {
            // Runners start only once the region has started (until then the shards
            // hold their messages).
            tracing::error!(sharded = %self.settings.name, "an entity runner could not start");
            return;
        };
        self.runners.fetch_add(1, Ordering::SeqCst);
        let wake = lock(&self.pool).push(Run {
            shard,
            key,
            hand,
            me,
        });
        self.wake(rt, wake);
    }

    /// Rings a waiting runner task's bell, or spawns a task, as the pool said.
    fn wake(&self, rt: &Handle, wake: Wake<Arc<Notify>>) {
        match wake {
            Wake::None => {}
            Wake::Ring(bell) => bell.notify_one(),
            Wake::Spawn => match self.me.upgrade() {
                Some(shared) => {
                    rt.spawn(runner(shared));
                }
                // The region keeps `self` alive while it runs.
                None => {
                    tracing::error!(sharded = %self.settings.name, "an entity runner could not start");
                }
            },
        }
    }

    /// One run, watched: while it waits on something (its handler awaits), its task is
    /// not free, and the queued runs go to another (see `pool.rs`).
    async fn run_watched(self: &Arc<Self>, r: Run<K, A>) {
        let mut run = std::pin::pin!(self.run_one(r));
        let mut blocked = false;
        std::future::poll_fn(|cx| {
            let polled = run.as_mut().poll(cx);
            if polled.is_pending() && !blocked {
                blocked = true;
                let wake = lock(&self.pool).blocked();
                if let Some(rt) = self.rt.get() {
                    self.wake(rt, wake);
                }
            }
            polled
        })
        .await;
        if blocked {
            lock(&self.pool).unblocked();
        }
    }

    /// One run, in its entity's checkpoint scope when its entities keep checkpoints.
    async fn run_one(self: &Arc<Self>, r: Run<K, A>) {
        let scope = self
            .settings
            .keeper
            .as_ref()
            .and_then(|k| k.checkpoints(r.shard, &r.key));
        match scope {
            Some((entity, snapshot)) => {
                crate::distributed::entity_scope(
                    entity,
                    snapshot,
                    run(self, r.shard, r.key, r.hand, r.me),
                )
                .await;
            }
            None => run(self, r.shard, r.key, r.hand, r.me).await,
        }
    }

    /// Builds `key`'s state: from its snapshot if one is kept, else with `init`.
    async fn start_entity(&self, key: &K, me: &Addr<A::Msg>) -> Result<A::State, Crash> {
        self.started.fetch_add(1, Ordering::Relaxed);
        let args = (self.settings.args)(key);
        let args = match &self.settings.keeper {
            Some(k) => match k.restore(&self.settings.actor, key, me, args) {
                Ok(restoring) => return hosted::catch(restoring).await,
                Err(args) => args,
            },
            None => args,
        };
        hosted::init(&self.settings.actor, me, args).await
    }

    /// Lets `key`'s entity shrink as it parks ([`Actor::hibernate`], under the shard's
    /// lock); a panic there is logged and leaves the state as it is.
    fn hibernate(&self, key: &K, state: &mut A::State) {
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.settings.actor.hibernate(state);
        }));
        if done.is_err() {
            tracing::error!(sharded = %self.settings.name, key = ?key, "an entity's hibernate panicked");
        }
    }

    /// Stops `key`'s entity: keeps its snapshot if it implements `Handoff`, else runs its
    /// `terminate`.
    async fn stop_entity(&self, key: &K, me: &Addr<A::Msg>, mut state: A::State) {
        self.passivated.fetch_add(1, Ordering::Relaxed);
        match &self.settings.keeper {
            Some(k) => {
                let saved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    k.save(&self.settings.actor, key, state);
                }));
                if saved.is_err() {
                    tracing::error!(sharded = %self.settings.name, key = ?key, "an entity's export panicked; its state is lost");
                }
            }
            None => {
                if let Err(crash) = hosted::terminate(&self.settings.actor, me, &mut state).await {
                    tracing::warn!(sharded = %self.settings.name, key = ?key, %crash, "an entity's terminate failed");
                }
            }
        }
    }

    /// Handles one message of `key`'s entity, starting it first if it has no state; a
    /// crash drops the state.
    async fn handle(
        &self,
        i: usize,
        key: &K,
        me: &Addr<A::Msg>,
        state: &mut Option<A::State>,
        env: Envelope<A::Msg>,
    ) {
        if state.is_none() {
            match self.start_entity(key, me).await {
                Ok(s) => *state = Some(s),
                Err(crash) => {
                    // The message is dropped: a caller's reply port closes.
                    self.on_crash(i, key, "init", &crash);
                    return;
                }
            }
        }
        if let Some(s) = state.as_mut() {
            if let Err(crash) = hosted::handle(&self.settings.actor, me, env, s).await {
                *state = None;
                self.on_crash(i, key, "handler", &crash);
            }
        }
    }

    /// A message is held because the region has never started: said once, since a
    /// region left out of every supervisor would otherwise show only as calls that time
    /// out.
    #[cold]
    fn held_unstarted(&self) {
        if !self.warned_unstarted.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                sharded = %self.settings.name,
                "messages to entities are held until the region starts: put `Sharded::child_spec()` under a supervisor (a call waits meanwhile, then times out)"
            );
        }
    }

    fn on_crash(&self, shard: usize, key: &K, what: &'static str, crash: &Crash) {
        self.crashed.fetch_add(1, Ordering::Relaxed);
        if what == "init" {
            self.init_failed.fetch_add(1, Ordering::Relaxed);
        }
        *lock(&self.last_crash) = Some(EntityCrash {
            key: format!("{key:?}"),
            during: what,
            reason: crash.to_string(),
        });
        tracing::warn!(
            sharded = %self.settings.name,
            key = ?key,
            %crash,
            "an entity's {what} failed; it starts again on its next message"
        );
        if self.settings.restart == Restart::Temporary {
            let dropped = lock(&self.shards[shard]).drop_queue(key);
            drop(dropped);
        }
    }

    /// Passivates the entities idle for longer than the idle timeout.
    pub(crate) fn sweep(&self) {
        let Some(timeout) = self.settings.idle_timeout else {
            return;
        };
        let now = self.now_ms();
        let cutoff = now.saturating_sub(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        if cutoff == 0 {
            return;
        }
        for i in 0..self.shards.len() {
            let keys = lock(&self.shards[i]).idle_since(cutoff);
            for k in keys {
                self.spawn_runner(i, k, None, None);
            }
        }
    }

    /// The region started: runners may start, held messages are delivered.
    fn open(&self) {
        let _ = self.rt.set(Handle::current());
        let workers = self.rt.get().map_or(1, |rt| rt.metrics().num_workers());
        lock(&self.pool).open(workers);
        let now = self.now_ms();
        for i in 0..self.shards.len() {
            if self.gate.get().is_some_and(|served| !served(i)) {
                // Not served here: it goes on holding (a cluster's shard of another node).
                continue;
            }
            let keys = lock(&self.shards[i]).open(now);
            for k in keys {
                self.spawn_runner(i, k, None, None);
            }
        }
    }

    /// The region stops: every entity stops (its snapshot kept, or its `terminate` run),
    /// later messages are refused; returns once every runner has ended.
    async fn close(&self) {
        for i in 0..self.shards.len() {
            let (keys, held) = lock(&self.shards[i]).stop_all();
            drop(held);
            for k in keys {
                self.spawn_runner(i, k, None, None);
            }
        }
        loop {
            let notified = self.no_runner.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.runners.load(Ordering::SeqCst) == 0 {
                break;
            }
            notified.await;
        }
        // The runner tasks waiting for a run end (each keeps `self` alive).
        let idle = lock(&self.pool).close();
        for bell in idle {
            bell.notify_one();
        }
    }

    /// Opens shard `i` (served here from now on): its held messages are delivered in
    /// order. Before the region starts, it opens with the region.
    pub(crate) fn open_shard(&self, i: usize) {
        if self.rt.get().is_none() {
            return;
        }
        let now = self.now_ms();
        let keys = lock(&self.shards[i]).release(now);
        for k in keys {
            self.spawn_runner(i, k, None, None);
        }
    }

    /// Takes the messages shard `i` holds, in order (a holding shard goes on holding; an
    /// open one holds none).
    pub(crate) fn take_held(&self, i: usize) -> Vec<(K, Envelope<A::Msg>)> {
        lock(&self.shards[i]).take_held().into_iter().collect()
    }

    /// Makes shard `i` hold its messages (not served here).
    pub(crate) fn hold_shard(&self, i: usize) {
        lock(&self.shards[i]).hold();
    }

    /// Lets every shard hold up to the whole backlog while it is not served (a cluster:
    /// a shard in a move holds what comes for it meanwhile).
    pub(crate) fn widen_backlog(&self) {
        for s in &*self.shards {
            lock(s).set_backlog(self.settings.backlog);
        }
    }

    /// Drains shard `i` for a move: every entity handles what is queued for it, then
    /// stops (its snapshot kept, with [`ShardedSpec::handoff`](super::ShardedSpec::handoff),
    /// or its `terminate` run). Returns the keys that were active and the messages held
    /// meanwhile, in order; the shard holds from now on.
    pub(crate) async fn drain_shard(&self, i: usize) -> (Vec<K>, Vec<(K, Envelope<A::Msg>)>) {
        let (active, keys) = {
            let mut s = lock(&self.shards[i]);
            let active = s.keys();
            (active, s.drain())
        };
        for k in keys {
            self.spawn_runner(i, k, None, None);
        }
        // Runners stop their entities as their queues empty; a handler may take a while.
        while lock(&self.shards[i]).len() > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let held = lock(&self.shards[i]).end_drain();
        (active, held.into_iter().collect())
    }

    /// Parks shards `which` (their node lost the quorum): each holds its messages from
    /// now on, and every entity handles what is queued for it, then stops (its snapshot
    /// kept, or its `terminate` run). Returns once none is left; what came meanwhile
    /// stays held, in order.
    pub(crate) async fn park_shards(&self, which: &[usize]) {
        for &i in which {
            let keys = lock(&self.shards[i]).drain();
            for k in keys {
                self.spawn_runner(i, k, None, None);
            }
        }
        for &i in which {
            while lock(&self.shards[i]).len() > 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            lock(&self.shards[i]).end_park();
        }
    }

    /// Takes the snapshots kept for shard `i`'s keys, encoded.
    pub(crate) fn take_snapshots(&self, i: usize) -> Vec<(K, Vec<u8>)> {
        match &self.settings.keeper {
            Some(k) => k.take_encoded(i, &|key| self.shard_of(key) == i),
            None => Vec::new(),
        }
    }

    /// Keeps a snapshot handed over by another node (dropped if the entity is active
    /// here, or it implements no `Handoff`).
    pub(crate) fn put_snapshot(&self, key: K, bytes: &[u8]) {
        let Some(k) = &self.settings.keeper else {
            return;
        };
        if self.is_active(&key) {
            tracing::warn!(sharded = %self.settings.name, key = ?key, "a handed-over snapshot of an entity already active here is dropped");
            return;
        }
        if let Err(error) = k.put_encoded(key, bytes) {
            tracing::warn!(sharded = %self.settings.name, %error, "a handed-over snapshot does not decode; the entity starts from init");
        }
    }

    /// Starts `key`'s entity without a message (a remembered entity), if the shard is
    /// open here and it is not active.
    pub(crate) fn activate(&self, key: &K) {
        if self.rt.get().is_none() {
            return;
        }
        let i = self.shard_of(key);
        let now = self.now_ms();
        let run = lock(&self.shards[i]).activate(key, now);
        if run {
            self.spawn_runner(i, key.clone(), None, None);
        }
    }

    pub(crate) fn is_active(&self, key: &K) -> bool {
        lock(&self.shards[self.shard_of(key)]).contains(key)
    }

    /// The last entity crash here, if any.
    pub(crate) fn last_crash(&self) -> Option<EntityCrash> {
        lock(&self.last_crash).clone()
    }

    pub(crate) fn stats(&self) -> ShardedStats {
        let (mut entities, mut running) = (0, 0);
        for s in &*self.shards {
            let s = lock(s);
            entities += s.len();
            running += s.running();
        }
        let mut stats = ShardedStats {
            shards: self.shards.len(),
            entities,
            running,
            started: self.started.load(Ordering::Relaxed),
            passivated: self.passivated.load(Ordering::Relaxed),
            crashed: self.crashed.load(Ordering::Relaxed),
            init_failed: self.init_failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            snapshots: self.settings.keeper.as_ref().map_or(0, |k| k.len()),
            served: self.shards.len(),
            in_transit: 0,
            handed_off: 0,
            ..ShardedStats::default()
        };
        if let Some(k) = &self.settings.keeper {
            k.stats(&mut stats);
        }
        stats
    }

    /// The region's child spec.
    pub(crate) fn child_spec(self: Arc<Self>) -> ChildSpec<RegionMsg> {
        let name = self.settings.name.to_string();
        ChildSpec::new(name, Region(self), ())
    }
}

/// What a runner started by a delivery is handed: the message, and the entity's state
/// (`None` if it has not started).
type Hand<A> = (Envelope<<A as Actor>::Msg>, Option<<A as Actor>::State>);

/// One run of an entity, queued for a runner task.
pub(crate) struct Run<K, A: Actor> {
    shard: usize,
    key: K,
    hand: Option<Hand<A>>,
    me: Option<Addr<A::Msg>>,
}

/// A runner task (see `pool.rs`): takes the queued runs one after another, waits for
/// more or ends when there are none.
async fn runner<K: EntityKey, A: Actor>(shared: Arc<Shared<K, A>>) {
    let bell = Arc::new(Notify::new());
    loop {
        let step = lock(&shared.pool).next(&bell);
        match step {
            Step::Run(r) => {
                shared.run_watched(r).await;
                // A task that always finds a run queued yields now and then, as one task
                // per run did by ending.
                tokio::task::consume_budget().await;
            }
            Step::Wait => bell.notified().await,
            Step::End => return,
        }
    }
}

/// Runs `key`'s entity while it has work: the messages queued for it, one at a time, then
/// parks it (see `shard.rs`).
async fn run<K: EntityKey, A: Actor>(
    shared: &Arc<Shared<K, A>>,
    i: usize,
    key: K,
    hand: Option<Hand<A>>,
    me: Option<Addr<A::Msg>>,
) {
    let me = me.unwrap_or_else(|| shared.addr(key.clone()));
    let mut state = match hand {
        Some((env, handed)) => {
            let mut state = handed;
            shared.handle(i, &key, &me, &mut state, env).await;
            state
        }
        None => lock(&shared.shards[i]).take_state(&key),
    };
    loop {
        let mut evict = None;
        let step = lock(&shared.shards[i]).next_with(
            &key,
            &mut state,
            |s| shared.hibernate(&key, s),
            &mut evict,
        );
        match step {
            Next::Park => {
                if let Some(k) = evict {
                    shared.spawn_runner(i, k, None, None);
                }
                break;
            }
            Next::Start => match shared.start_entity(&key, &me).await {
                Ok(s) => state = Some(s),
                Err(crash) => shared.on_crash(i, &key, "init", &crash),
            },
            Next::Stop => {
                if let Some(s) = state.take() {
                    shared.stop_entity(&key, &me, s).await;
                }
            }
            Next::Msg(env) => shared.handle(i, &key, &me, &mut state, env).await,
        }
    }
    drop(me);
    if shared.runners.fetch_sub(1, Ordering::SeqCst) == 1 {
        shared.no_runner.notify_waiters();
    }
}

/// What an entity's address delivers to: its shard, by key.
struct EntityRoute<K, A: Actor> {
    shared: Weak<Shared<K, A>>,
    key: K,
    /// The address this route serves.
    me: WeakAddr<A::Msg>,
}

impl<K: EntityKey, A: Actor> Mailbox<A::Msg> for EntityRoute<K, A> {
    fn deliver(&self, env: Envelope<A::Msg>) -> Result<(), Envelope<A::Msg>> {
        match self.shared.upgrade() {
            Some(s) => s.deliver(&self.key, env, Some(&self.me)),
            None => Err(env),
        }
    }

    /// Gone for good only with the runtime: a refusal while its region is stopped (to be
    /// restarted) leaves the address working ([`SendError::Unavailable`]).
    ///
    /// [`SendError::Unavailable`]: foundation_actors::SendError::Unavailable
    fn is_gone(&self) -> bool {
        self.shared.strong_count() == 0
    }

    fn stop(&self) {
        if let Some(s) = self.shared.upgrade() {
            s.passivate(&self.key);
        }
    }

    fn kill(&self) {
        self.stop();
    }
}

/// The messages of a sharded region's actor (the process its supervisor supervises).
#[derive(Debug)]
#[non_exhaustive]
pub enum RegionMsg {
    /// Passivates the entities idle for longer than the idle timeout (sent by the region
    /// to itself).
    Sweep,
}

/// The region actor: one per `Sharded` on a node, supervised as any child. Its `init`
/// opens the shards, its timer sweeps idle entities, its `terminate` stops every entity.
struct Region<K, A: Actor>(Arc<Shared<K, A>>);

impl<K, A: Actor> Clone for Region<K, A> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// The region's state: its sweep timer, stopped with it.
struct Sweeper(Option<AbortHandle>);

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

impl<K: EntityKey, A: Actor> Actor for Region<K, A> {
    type Msg = RegionMsg;
    type State = Sweeper;
    type Args = ();

    async fn init(&self, me: &Addr<RegionMsg>, (): ()) -> Result<Sweeper, ActorError> {
        self.0.open();
        let timer = self.0.settings.idle_timeout.map(|t| {
            // Swept twice per timeout: an entity idle for the timeout stops within 1.5x.
            let period = (t / 2).max(Duration::from_millis(1));
            let me = me.clone();
            tokio::spawn(async move {
                let mut every =
                    tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    if me.cast(RegionMsg::Sweep).is_err() {
                        return;
                    }
                }
            })
            .abort_handle()
        });
        Ok(Sweeper(timer))
    }

    async fn handle(
        &self,
        _: &Addr<RegionMsg>,
        msg: RegionMsg,
        _: &mut Sweeper,
    ) -> Result<(), ActorError> {
        match msg {
            RegionMsg::Sweep => self.0.sweep(),
        }
        Ok(())
    }

    async fn terminate(&self, _: &Addr<RegionMsg>, _: &mut Sweeper) -> Result<(), ActorError> {
        self.0.close().await;
        Ok(())
    }
}

#[cfg(all(test, not(feature = "loom")))]
mod unit {
    use super::*;

    /// What `shard_index` computed before: xxh3's streaming hasher fed by the key's `Hash`.
    fn streamed<K: Hash + ?Sized>(key: &K, shards: usize) -> usize {
        let mut h = xxhash_rust::xxh3::Xxh3Default::new();
        key.hash(&mut h);
        (h.finish() % shards.max(1) as u64) as usize
    }

    #[test]
    fn a_keys_shard_is_the_one_xxh3s_streaming_hasher_gives() {
        for shards in [1, 37, 1_024] {
            for k in (0..2_000_u64).chain([u64::MAX, 1 << 63]) {
                assert_eq!(shard_index(&k, shards), streamed(&k, shards), "{k}");
                let s = format!("key-{k}");
                assert_eq!(shard_index(&s, shards), streamed(&s, shards), "{s}");
            }
            // Keys past the 64 bytes kept on the stack, written in one piece or several.
            for n in [60, 63, 64, 65, 200, 5_000] {
                let long = "x".repeat(n);
                assert_eq!(shard_index(&long, shards), streamed(&long, shards), "{n}");
                let parts = (n as u32, long.clone(), vec![7_u8; n], "tail");
                assert_eq!(shard_index(&parts, shards), streamed(&parts, shards), "{n}");
            }
            assert_eq!(shard_index("", shards), streamed("", shards));
            assert_eq!(shard_index(&(), shards), streamed(&(), shards));
        }
    }
}
