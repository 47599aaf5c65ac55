//! Sharded entities: memory per idle entity, beside a raw ractor actor per entity, and
//! casts to many active entities per second, beside raw ractor actors.
//!
//! Memory is counted by a counting allocator: live bytes after activating `N` entities
//! (one message each) and letting them go idle, divided by `N`, with the process-wide
//! tables grown beforehand. The entity is an `#[actor]` counter whose state is one `u64`
//! (8 bytes); a hand-written actor with the same state is measured too. Writes
//! `target/bench-sharded.json` for `cargo xtask bench`.
//!
//! Also, in the same run: the first message to an inactive entity (activation and
//! delivery) beside a raw ractor spawn plus one cast; the shards that move when a 4th node
//! joins 3 (1,024 shards, the owners every node computes); and a cast and a call to an
//! entity whose shard another node process owns, beside a plain remote send and call to a
//! process exported on that node (this binary re-run as node `b`).
//!
//! And the memory figure as the OS sees it: the resident set's growth (`VmRSS`)
//! per entity over 1,000,000 `#[actor]` entities activated once and left idle (and as many
//! hand-written ones), beside the
//! same per raw ractor actor (10,000) and per bare tokio task waiting forever (1,000,000),
//! each counted in a fresh process of its own (this binary re-run with
//! `SHARDED_RSS=<entities|plain|raw|tasks>:<n>`), so that no memory freed by an earlier
//! measurement is reused by a later one. `SHARDED_RSS_N` sets the entities and tasks.
//!
//! Run with: `cargo bench -p foundation-registry --bench sharded` (`SHARDED_N=1000000`
//! for a million entities in the allocator's count; 100,000 by default).

#![allow(clippy::unwrap_used, missing_docs)]

use std::alloc::System;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{Node, NodeConfig};
use foundation_registry::placement::{Load, NodeInfo, Rendezvous, View};
use foundation_testkit::{Child, commands, say};

use foundation_actors::prelude::*;
use foundation_registry::sharded::{Sharded, ShardedSpec};
use ractor::RpcReplyPort;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Raw ractor actors measured (each costs ~9.5 KB: fewer of them).
const RAW_N: usize = 10_000;
/// Entities that receive the throughput run's messages.
const HOT: u64 = 10_000;
/// Messages of the throughput run.
const MESSAGES: u64 = 1_000_000;

/// Bytes allocated and not yet freed since the region began.
fn live(region: &Region<'_, System>) -> isize {
    let c = region.change();
    // `stats_alloc` counts a realloc's growth in `bytes_allocated` (and a shrink in
    // `bytes_deallocated`) as well as in `bytes_reallocated`: adding the latter counted
    // every realloc-grown buffer twice (a queue grown by a burst and freed since showed as
    // live).
    c.bytes_allocated as isize - c.bytes_deallocated as isize
}

/// A counter entity written with `#[actor]`: its state is one `u64`.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    n: u64,
}

#[actor(vis = pub)]
impl Tally {
    #[cast]
    fn add(&mut self, k: u64) {
        self.n += k;
    }

    #[call]
    fn get(&self) -> u64 {
        self.n
    }
}

/// The same counter written by hand (its state does not keep its address).
#[derive(Clone)]
struct Plain;

enum PlainMsg {
    Add(u64),
}

impl Actor for Plain {
    type Msg = PlainMsg;
    type State = u64;
    type Args = ();
    async fn init(&self, _: &Addr<PlainMsg>, (): ()) -> Result<u64, ActorError> {
        Ok(0)
    }
    async fn handle(
        &self,
        _: &Addr<PlainMsg>,
        msg: PlainMsg,
        n: &mut u64,
    ) -> Result<(), ActorError> {
        match msg {
            PlainMsg::Add(k) => *n += k,
        }
        Ok(())
    }
}

/// Waits until no entity of `s` has a runner and `n` have started.
async fn settled<M: Send + 'static>(s: &Sharded<u64, M>, n: u64) {
    loop {
        let st = s.stats();
        if st.running == 0 && st.started >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Bytes per idle `#[actor]` entity, `n` of them.
async fn typed_entities(round: usize, n: u64) -> f64 {
    let s: Sharded<u64, TallyMsg> = Sharded::new(ShardedSpec::new(
        format!("tally-{round}"),
        Tally::actor(),
        |_: &u64| Tally::default(),
    ));
    let sup = Supervisor::start(
        SupervisorSpec::new(format!("mem-{round}"), Strategy::OneForOne).child(s.child_spec()),
    )
    .await
    .unwrap();
    let region = Region::new(GLOBAL);
    for k in 0..n {
        s.entity::<TallyRef>(k).add(1).await.unwrap();
    }
    settled(&s, n).await;
    let bytes = live(&region) as f64 / n as f64;
    assert_eq!(s.stats().entities as u64, n);
    sup.shutdown().await;
    bytes
}

/// Bytes per idle hand-written entity, `n` of them.
async fn plain_entities(round: usize, n: u64) -> f64 {
    let s: Sharded<u64, PlainMsg> = Sharded::new(ShardedSpec::new(
        format!("plain-{round}"),
        Plain,
        |_: &u64| (),
    ));
    let sup = Supervisor::start(
        SupervisorSpec::new(format!("pmem-{round}"), Strategy::OneForOne).child(s.child_spec()),
    )
    .await
    .unwrap();
    let region = Region::new(GLOBAL);
    for k in 0..n {
        s.addr(k).cast(PlainMsg::Add(1)).unwrap();
    }
    settled(&s, n).await;
    let bytes = live(&region) as f64 / n as f64;
    sup.shutdown().await;
    bytes
}

enum RawMsg {
    Add(u64),
    Get(RpcReplyPort<u64>),
}
impl ractor::Message for RawMsg {}

struct RawCounter;

impl ractor::Actor for RawCounter {
    type Msg = RawMsg;
    type State = u64;
    type Arguments = ();
    async fn pre_start(
        &self,
        _: ractor::ActorRef<RawMsg>,
        (): (),
    ) -> Result<u64, ractor::ActorProcessingErr> {
        Ok(0)
    }
    async fn handle(
        &self,
        _: ractor::ActorRef<RawMsg>,
        msg: RawMsg,
        n: &mut u64,
    ) -> Result<(), ractor::ActorProcessingErr> {
        match msg {
            RawMsg::Add(k) => *n += k,
            RawMsg::Get(r) => {
                let _ = r.send(*n);
            }
        }
        Ok(())
    }
}

async fn raw_actors(n: usize) -> (f64, Vec<ractor::ActorRef<RawMsg>>) {
    let region = Region::new(GLOBAL);
    let mut refs = Vec::with_capacity(n);
    for _ in 0..n {
        let (a, _) = ractor::Actor::spawn(None, RawCounter, ()).await.unwrap();
        a.send_message(RawMsg::Add(1)).unwrap();
        refs.push(a);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    (live(&region) as f64 / n as f64, refs)
}

/// `SHARDED_RSS=<entities|plain|raw|tasks>:<n>`: this process measures one resident-set figure
/// (see the module docs) and prints it as `rss <bytes per one>`.
const RSS_ENV: &str = "SHARDED_RSS";

/// This process's resident set in bytes (`VmRSS` of `/proc/self/status`, Linux).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap();
    kb * 1024
}

/// Resident-set growth per one of `n`: `#[actor]` entities activated once each and left
/// idle, raw ractor actors sent one message each, or bare tokio tasks parked for good.
async fn rss_per(what: &str, n: u64) -> f64 {
    match what {
        "entities" => {
            let spec = ShardedSpec::new("rss", Tally::actor(), |_: &u64| Tally::default());
            rss_per_entity(spec, n, || TallyMsg::Add(1)).await
        }
        "plain" => {
            let spec = ShardedSpec::new("rss-plain", Plain, |_: &u64| ());
            rss_per_entity(spec, n, || PlainMsg::Add(1)).await
        }
        "raw" => {
            RAW_HANDLED.store(0, Ordering::Relaxed);
            let before = rss();
            let mut refs = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let (a, _) = ractor::Actor::spawn(None, RawCounted, ()).await.unwrap();
                a.send_message(RawMsg::Add(1)).unwrap();
                refs.push(a);
            }
            until(&RAW_HANDLED, n).await;
            let per = rss().saturating_sub(before) as f64 / n as f64;
            stop_raw(refs).await;
            per
        }
        "tasks" => {
            let started = std::sync::Arc::new(AtomicU64::new(0));
            let before = rss();
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let started = started.clone();
                    tokio::spawn(async move {
                        started.fetch_add(1, Ordering::Relaxed);
                        std::future::pending::<()>().await;
                    })
                })
                .collect();
            while started.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let per = rss().saturating_sub(before) as f64 / n as f64;
            for t in tasks {
                t.abort();
            }
            per
        }
        other => panic!("{RSS_ENV}: unknown {other}"),
    }
}

/// Resident-set growth per entity of `spec`, `n` of them activated once each by a cast of
/// `add()` and left idle, after 1,000 others warmed the runtime and the runner tasks.
async fn rss_per_entity<A: Actor>(
    spec: ShardedSpec<u64, A>,
    n: u64,
    add: impl Fn() -> A::Msg,
) -> f64 {
    // Room for every one of them in every shard (the default limit, divided among the
    // shards, would passivate some in the fuller shards).
    let sharded = Sharded::new(spec.max_entities(usize::try_from(n).unwrap() * 4));
    let sup = Supervisor::start(
        SupervisorSpec::new("rss", Strategy::OneForOne).child(sharded.child_spec()),
    )
    .await
    .unwrap();
    for k in 0..1_000 {
        sharded.addr(u64::MAX - k).cast(add()).unwrap();
    }
    settled(&sharded, 1_000).await;
    let before = rss();
    for k in 0..n {
        sharded.addr(k).cast(add()).unwrap();
    }
    settled(&sharded, n + 1_000).await;
    let per = rss().saturating_sub(before) as f64 / n as f64;
    assert_eq!(sharded.stats().entities as u64, n + 1_000);
    sup.shutdown().await;
    per
}

/// The resident-set figure `what` for `n`, measured by a fresh process (this binary).
fn rss_in_child(what: &str, n: u64) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(RSS_ENV, format!("{what}:{n}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("rss "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// The bench's runtime: two workers, as this machine has two cores.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Casts per second to `HOT` active entities (round robin), until all are handled.
async fn entity_throughput() -> f64 {
    let s: Sharded<u64, TallyMsg> =
        Sharded::new(ShardedSpec::new("tally-hot", Tally::actor(), |_: &u64| {
            Tally::default()
        }));
    let sup =
        Supervisor::start(SupervisorSpec::new("hot", Strategy::OneForOne).child(s.child_spec()))
            .await
            .unwrap();
    let handles: Vec<TallyRef> = (0..HOT).map(|k| s.entity(k)).collect();
    for h in &handles {
        h.add(0).await.unwrap();
    }
    settled(&s, HOT).await;
    let start = Instant::now();
    for i in 0..MESSAGES {
        handles[(i % HOT) as usize].add(1).await.unwrap();
    }
    for h in &handles {
        h.get().await.unwrap();
    }
    let rate = MESSAGES as f64 / start.elapsed().as_secs_f64();
    sup.shutdown().await;
    rate
}

/// The same with raw ractor actors.
async fn raw_throughput(refs: &[ractor::ActorRef<RawMsg>]) -> f64 {
    let n = refs.len() as u64;
    let start = Instant::now();
    for i in 0..MESSAGES {
        refs[(i % n) as usize].send_message(RawMsg::Add(1)).unwrap();
    }
    for r in refs {
        r.call(RawMsg::Get, None).await.unwrap();
    }
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

/// Messages handled by [`Counted`] entities and [`RawCounted`] actors.
static HANDLED: Handled = Handled::new();
static RAW_HANDLED: Handled = Handled::new();

/// A count of handled messages, and a wake-up for whoever waits for it to reach a target:
/// the waiter sleeps instead of spinning, so it does not take a core from the workers
/// that run the messages (on 2 cores, a spinning waiter held one of them for the whole
/// of a row whose sends return before the messages are handled).
struct Handled {
    n: AtomicU64,
    target: AtomicU64,
    done: tokio::sync::Notify,
}

impl Handled {
    const fn new() -> Self {
        Self {
            n: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            done: tokio::sync::Notify::const_new(),
        }
    }

    /// Counts `k` more (`SeqCst` whatever `_o` says: against the waiter's target).
    fn fetch_add(&self, k: u64, _o: Ordering) {
        let now = self.n.fetch_add(k, Ordering::SeqCst) + k;
        if now == self.target.load(Ordering::SeqCst) {
            self.done.notify_one();
        }
    }

    fn store(&self, v: u64, o: Ordering) {
        self.n.store(v, o);
    }
}

/// An entity that counts the messages it handles, in [`HANDLED`].
#[derive(Clone)]
struct Counted;

impl Actor for Counted {
    type Msg = u64;
    type State = ();
    type Args = ();
    async fn init(&self, _: &Addr<u64>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(&self, _: &Addr<u64>, _: u64, (): &mut ()) -> Result<(), ActorError> {
        HANDLED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

struct RawCounted;

impl ractor::Actor for RawCounted {
    type Msg = RawMsg;
    type State = ();
    type Arguments = ();
    async fn pre_start(
        &self,
        _: ractor::ActorRef<RawMsg>,
        (): (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
    async fn handle(
        &self,
        _: ractor::ActorRef<RawMsg>,
        _: RawMsg,
        (): &mut (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        RAW_HANDLED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Waits until `counter` reaches `n` (set no lower than it is now).
async fn until(counter: &Handled, n: u64) {
    counter.target.store(n, Ordering::SeqCst);
    loop {
        let done = counter.done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        if counter.n.load(Ordering::SeqCst) >= n {
            counter.target.store(u64::MAX, Ordering::SeqCst);
            return;
        }
        done.await;
    }
}

/// Activations measured per round.
const ACTIVATIONS: u64 = 10_000;

/// ns per first message to an inactive entity (its activation and the message handled).
async fn activation(round: usize) -> f64 {
    let s: Sharded<u64, u64> = Sharded::new(ShardedSpec::new(
        format!("act-{round}"),
        Counted,
        |_: &u64| (),
    ));
    let sup = Supervisor::start(
        SupervisorSpec::new(format!("act-{round}"), Strategy::OneForOne).child(s.child_spec()),
    )
    .await
    .unwrap();
    HANDLED.store(0, Ordering::Relaxed);
    let start = Instant::now();
    for k in 0..ACTIVATIONS {
        s.addr(k).cast(1).unwrap();
    }
    until(&HANDLED, ACTIVATIONS).await;
    let ns = start.elapsed().as_nanos() as f64 / ACTIVATIONS as f64;
    sup.shutdown().await;
    ns
}

/// Stops raw actors and waits until every one has stopped: a stop is asynchronous, and
/// 10,000 actors still stopping would take the CPU from whatever is measured next.
async fn stop_raw(refs: Vec<ractor::ActorRef<RawMsg>>) {
    for r in &refs {
        r.stop(None);
    }
    for r in refs {
        r.wait(None).await.unwrap();
    }
}

/// ns per raw ractor spawn plus one cast, handled.
async fn raw_activation() -> f64 {
    RAW_HANDLED.store(0, Ordering::Relaxed);
    let mut refs = Vec::with_capacity(ACTIVATIONS as usize);
    let start = Instant::now();
    for _ in 0..ACTIVATIONS {
        let (a, _) = ractor::Actor::spawn(None, RawCounted, ()).await.unwrap();
        a.send_message(RawMsg::Add(1)).unwrap();
        refs.push(a);
    }
    until(&RAW_HANDLED, ACTIVATIONS).await;
    let ns = start.elapsed().as_nanos() as f64 / ACTIVATIONS as f64;
    stop_raw(refs).await;
    ns
}

/// Shards (of 1,024) whose owner changes when node `d` joins `a`, `b`, `c`, for the
/// `Sharded` named `name`: the owner table every node computes (`View::owners` over
/// rendezvous, key `<name>/<shard>`).
fn shards_moved_on_join(name: &str) -> usize {
    let owners = |names: &[&str]| -> Vec<String> {
        let view: View = names.iter().map(|n| NodeInfo::new(*n, 1)).collect();
        (0..1_024)
            .map(|i| {
                let key = format!("{name}/{i}");
                view.owners(&Rendezvous, key.as_bytes(), 1, None, &Load::new())[0].to_owned()
            })
            .collect()
    };
    let three = owners(&["a", "b", "c"]);
    let four = owners(&["a", "b", "c", "d"]);
    three.iter().zip(&four).filter(|(x, y)| x != y).count()
}

/// A remote-able counter entity, and a plain exported process of the same messages.
#[derive(Debug, RemoteMessage)]
#[remote(name = "bench.Remote")]
enum RemoteMsg {
    #[remote(tag = 1)]
    Add(u64),
    #[remote(tag = 2)]
    Get(ReplyPort<u64>),
}

#[derive(Clone)]
struct RemoteCounter;

impl Actor for RemoteCounter {
    type Msg = RemoteMsg;
    type State = u64;
    type Args = ();
    async fn init(&self, _: &Addr<RemoteMsg>, (): ()) -> Result<u64, ActorError> {
        Ok(0)
    }
    async fn handle(
        &self,
        _: &Addr<RemoteMsg>,
        msg: RemoteMsg,
        n: &mut u64,
    ) -> Result<(), ActorError> {
        match msg {
            RemoteMsg::Add(k) => *n += k,
            RemoteMsg::Get(port) => {
                let _ = port.send(*n);
            }
        }
        Ok(())
    }
}

async fn remote_node(name: &str) -> (Node, Sharded<u64, RemoteMsg>, Supervisor) {
    let node = Node::start(NodeConfig::new(name, "bench").listen("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let s: Sharded<u64, RemoteMsg> = Sharded::start_on(
        &node,
        ShardedSpec::new("remote", RemoteCounter, |_: &u64| ()),
    )
    .await
    .unwrap();
    let sup =
        Supervisor::start(SupervisorSpec::new("remote", Strategy::OneForOne).child(s.child_spec()))
            .await
            .unwrap();
    (node, s, sup)
}

/// Node `b` (this binary re-run): the entities' other node, and a plain process `sink`.
async fn child() {
    let name = std::env::var("FOUNDATION_TEST_NODE_NAME").unwrap();
    let seed = std::env::var("FOUNDATION_TEST_NODE_SEEDS").unwrap();
    let (node, s, sup) = remote_node(&name).await;
    let sink = spawn(RemoteCounter, ()).await.unwrap();
    node.export("sink", sink).unwrap();
    say(&format!("ready {name} {}", node.advertised()));
    node.connect(&seed.parse::<Peer>().unwrap());
    let mut lines = commands();
    while let Some(line) = lines.recv().await {
        if line == "exit" {
            break;
        }
    }
    s.leave().await;
    sup.shutdown().await;
    node.shutdown().await;
}

/// Messages per round of the remote casts.
const REMOTE_CASTS: u64 = 20_000;
/// Calls per round of the remote calls.
const REMOTE_CALLS: u64 = 2_000;

/// (ns per cast, ns per call) to entities owned by `b`; and the same to `b`'s `sink`
/// through the node's remote send and call.
async fn remote(node: &Node, s: &Sharded<u64, RemoteMsg>) -> ((f64, f64), (f64, f64)) {
    let keys: Vec<u64> = (0..100_000u64)
        .filter(|k| s.owner_of(k).as_deref() == Some("b"))
        .take(1_000)
        .collect();
    let addrs: Vec<Addr<RemoteMsg>> = keys.iter().map(|&k| s.addr(k)).collect();
    // Casts in batches of 200, each followed by a call through the same lane: a node's
    // remote sends have no backpressure (a full outbox, or the peer's limit of queued
    // messages, drops them), so the batch paces the flood.
    let t = Instant::now();
    for i in 0..REMOTE_CASTS {
        let a = &addrs[(i % addrs.len() as u64) as usize];
        a.cast(RemoteMsg::Add(1)).unwrap();
        if i % 200 == 199 {
            a.call_timeout(RemoteMsg::Get, Duration::from_secs(60))
                .await
                .unwrap();
        }
    }
    let cast = t.elapsed().as_nanos() as f64 / REMOTE_CASTS as f64;
    let t = Instant::now();
    for i in 0..REMOTE_CALLS {
        addrs[(i % addrs.len() as u64) as usize]
            .call(RemoteMsg::Get)
            .await
            .unwrap();
    }
    let call = t.elapsed().as_nanos() as f64 / REMOTE_CALLS as f64;

    let t = Instant::now();
    for i in 0..REMOTE_CASTS {
        while node.send("b", "sink", &RemoteMsg::Add(1)).is_err() {
            tokio::task::yield_now().await;
        }
        if i % 200 == 199 {
            node.call("b", "sink", RemoteMsg::Get, Duration::from_secs(60))
                .await
                .unwrap();
        }
    }
    // The outbox may still be full: the call waits its turn.
    while node
        .call("b", "sink", RemoteMsg::Get, Duration::from_secs(120))
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let raw_cast = t.elapsed().as_nanos() as f64 / REMOTE_CASTS as f64;
    let t = Instant::now();
    for _ in 0..REMOTE_CALLS {
        node.call("b", "sink", RemoteMsg::Get, Duration::from_secs(30))
            .await
            .unwrap();
    }
    let raw_call = t.elapsed().as_nanos() as f64 / REMOTE_CALLS as f64;
    ((cast, call), (raw_cast, raw_call))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `SHARDED_ONE=<side>:<n>`: only `n` operations of one side, between [`cg_begin`] and
/// [`cg_end`], for an instruction count per operation under `valgrind --tool=callgrind
/// --zero-before=sharded::cg_begin --dump-before=sharded::cg_end`. Sides: `act` (first
/// messages to inactive entities), `raw` (raw ractor spawn + cast), `hot` (casts to 1,000
/// active entities, round robin), `rawhot` (casts to 1,000 raw ractor actors), `remote`
/// and `noderemote` (casts to entities owned by node `b`, or to `b`'s plain process, paced
/// as in [`remote`]; for the receiving side, compare the child's totals for two `n`).
const ONE_ENV: &str = "SHARDED_ONE";

#[inline(never)]
fn cg_begin() {
    std::hint::black_box(());
}

#[inline(never)]
fn cg_end() {
    std::hint::black_box(1);
}

async fn one(side: &str, n: u64) {
    match side {
        "act" => {
            let s: Sharded<u64, u64> =
                Sharded::new(ShardedSpec::new("cg-act", Counted, |_: &u64| ()));
            let sup = Supervisor::start(
                SupervisorSpec::new("cg-act", Strategy::OneForOne).child(s.child_spec()),
            )
            .await
            .unwrap();
            // Warm the allocator and the runtime with other keys.
            for k in 0..1_000 {
                s.addr(u64::MAX - k).cast(1).unwrap();
            }
            until(&HANDLED, 1_000).await;
            HANDLED.store(0, Ordering::Relaxed);
            cg_begin();
            for k in 0..n {
                s.addr(k).cast(1).unwrap();
            }
            until(&HANDLED, n).await;
            cg_end();
            sup.shutdown().await;
        }
        "raw" => {
            let mut refs = Vec::with_capacity(n as usize + 1_000);
            for _ in 0..1_000 {
                let (a, _) = ractor::Actor::spawn(None, RawCounted, ()).await.unwrap();
                a.send_message(RawMsg::Add(1)).unwrap();
                refs.push(a);
            }
            until(&RAW_HANDLED, 1_000).await;
            RAW_HANDLED.store(0, Ordering::Relaxed);
            cg_begin();
            for _ in 0..n {
                let (a, _) = ractor::Actor::spawn(None, RawCounted, ()).await.unwrap();
                a.send_message(RawMsg::Add(1)).unwrap();
                refs.push(a);
            }
            until(&RAW_HANDLED, n).await;
            cg_end();
            for r in refs {
                r.stop(None);
            }
        }
        "hot" => {
            let s: Sharded<u64, TallyMsg> =
                Sharded::new(ShardedSpec::new("cg-hot", Tally::actor(), |_: &u64| {
                    Tally::default()
                }));
            let sup = Supervisor::start(
                SupervisorSpec::new("cg-hot", Strategy::OneForOne).child(s.child_spec()),
            )
            .await
            .unwrap();
            let handles: Vec<TallyRef> = (0..1_000).map(|k| s.entity(k)).collect();
            for h in &handles {
                h.add(0).await.unwrap();
            }
            settled(&s, 1_000).await;
            cg_begin();
            for i in 0..n {
                handles[(i % 1_000) as usize].add(1).await.unwrap();
            }
            for h in &handles {
                h.get().await.unwrap();
            }
            cg_end();
            sup.shutdown().await;
        }
        "rawhot" => {
            let (_, refs) = raw_actors(1_000).await;
            cg_begin();
            for i in 0..n {
                refs[(i % 1_000) as usize]
                    .send_message(RawMsg::Add(1))
                    .unwrap();
            }
            for r in &refs {
                r.call(RawMsg::Get, None).await.unwrap();
            }
            cg_end();
            for r in refs {
                r.stop(None);
            }
        }
        "remote" | "noderemote" => {
            let (node, s, sup) = remote_node("a").await;
            let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
            cmd.env("FOUNDATION_BENCH_CHILD", "1");
            let mut b = Child::run(cmd, "b", &[("SEEDS", node.advertised())]);
            while s.members().len() < 2 || s.stats().in_transit > 0 || s.stats().served == 1_024 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let keys: Vec<u64> = (0..100_000u64)
                .filter(|k| s.owner_of(k).as_deref() == Some("b"))
                .take(1_000)
                .collect();
            let addrs: Vec<Addr<RemoteMsg>> = keys.iter().map(|&k| s.addr(k)).collect();
            let entities = side == "remote";
            cg_begin();
            for i in 0..n {
                if entities {
                    let a = &addrs[(i % addrs.len() as u64) as usize];
                    a.cast(RemoteMsg::Add(1)).unwrap();
                    if i % 200 == 199 {
                        a.call_timeout(RemoteMsg::Get, Duration::from_secs(60))
                            .await
                            .unwrap();
                    }
                } else {
                    while node.send("b", "sink", &RemoteMsg::Add(1)).is_err() {
                        tokio::task::yield_now().await;
                    }
                    if i % 200 == 199 {
                        node.call("b", "sink", RemoteMsg::Get, Duration::from_secs(60))
                            .await
                            .unwrap();
                    }
                }
            }
            cg_end();
            b.tell("exit");
            s.leave().await;
            sup.shutdown().await;
            node.shutdown().await;
        }
        other => panic!("{ONE_ENV}: unknown side {other}"),
    }
}

/// `SHARDED_PAIRED=<act|hot|remote>:<rounds>`: only one row and its competitor, in
/// alternating rounds in this process; prints each round and the median ratio (ours over
/// theirs: time for `act` and `remote`, rate for `hot`, so above 1 is better there).
const PAIRED_ENV: &str = "SHARDED_PAIRED";

async fn paired(row: &str, rounds: usize) {
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    match row {
        "act" => {
            for r in 0..rounds {
                let ours = activation(r).await;
                let theirs = raw_activation().await;
                println!("round {r}: first message {ours:.0} ns, raw spawn + cast {theirs:.0} ns");
                pairs.push((ours, theirs));
            }
        }
        "hot" => {
            let (_, refs) = raw_actors(RAW_N).await;
            for r in 0..rounds {
                let ours = entity_throughput().await;
                let theirs = raw_throughput(&refs).await;
                println!(
                    "round {r}: {:.0} k msg/s to active entities, {:.0} k msg/s to raw actors",
                    ours / 1e3,
                    theirs / 1e3
                );
                pairs.push((ours, theirs));
            }
            stop_raw(refs).await;
        }
        "remote" => {
            let (node, s, sup) = remote_node("a").await;
            let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
            cmd.env("FOUNDATION_BENCH_CHILD", "1");
            let mut b = Child::run(cmd, "b", &[("SEEDS", node.advertised())]);
            while s.members().len() < 2 || s.stats().in_transit > 0 || s.stats().served == 1_024 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            for r in 0..rounds {
                let ((cast, call), (raw_cast, raw_call)) = remote(&node, &s).await;
                println!(
                    "round {r}: cast {cast:.0} ns/msg (node send {raw_cast:.0}), call {call:.0} ns (node call {raw_call:.0})"
                );
                pairs.push((cast, raw_cast));
            }
            println!("casts dropped: {}", s.stats().dropped);
            b.tell("exit");
            s.leave().await;
            sup.shutdown().await;
            node.shutdown().await;
        }
        other => panic!("{PAIRED_ENV}: unknown row {other}"),
    }
    let ratios: Vec<f64> = pairs.iter().map(|(a, b)| a / b).collect();
    println!(
        "{row}: median ours {:.0}, theirs {:.0}, median ratio {:.2} (rounds {:?})",
        median(pairs.iter().map(|p| p.0).collect()),
        median(pairs.iter().map(|p| p.1).collect()),
        median(ratios.clone()),
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>()
    );
}

fn main() {
    if let Ok(spec) = std::env::var(RSS_ENV) {
        let (what, n) = spec.split_once(':').expect("<what>:<n>");
        let n: u64 = n.parse().unwrap();
        let per = runtime().block_on(rss_per(what, n));
        println!("rss {per:.1}");
        return;
    }
    if let Ok(spec) = std::env::var(ONE_ENV) {
        if std::env::var("FOUNDATION_BENCH_CHILD").is_err() {
            let (side, n) = spec.split_once(':').expect("<side>:<n>");
            let n: u64 = n.parse().unwrap();
            let rt = runtime();
            rt.block_on(one(side, n));
            return;
        }
    }
    if let Ok(spec) = std::env::var(PAIRED_ENV) {
        if std::env::var("FOUNDATION_BENCH_CHILD").is_err() {
            let (row, rounds) = spec.split_once(':').expect("<row>:<rounds>");
            let rounds: usize = rounds.parse().unwrap();
            let rt = runtime();
            rt.block_on(paired(row, rounds));
            return;
        }
    }
    if std::env::var("FOUNDATION_BENCH_CHILD").is_ok() {
        let rt = runtime();
        rt.block_on(child());
        return;
    }
    let n: u64 = std::env::var("SHARDED_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // The resident set's growth, each in a process of its own.
    let rss_n: u64 = std::env::var("SHARDED_RSS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rss_entity = rss_in_child("entities", rss_n);
    let rss_plain = rss_in_child("plain", rss_n);
    let rss_raw = rss_in_child("raw", RAW_N as u64);
    let rss_task = rss_in_child("tasks", rss_n);
    println!(
        "resident set per one: {rss_n} idle #[actor] entities {rss_entity:.0} B, hand-written {rss_plain:.0} B, {RAW_N} raw ractor actors {rss_raw:.0} B, {rss_n} bare tokio tasks {rss_task:.0} B"
    );
    let rt = runtime();
    let (typed, plain, raw, ours_rate, raw_rate) = rt.block_on(async {
        // Grow the process-wide tables once.
        typed_entities(0, n).await;
        let typed = typed_entities(1, n).await;
        let plain = plain_entities(1, n).await;
        let (raw, refs) = raw_actors(RAW_N).await;
        let ours_rate = entity_throughput().await;
        let raw_rate = raw_throughput(&refs).await;
        stop_raw(refs).await;
        (typed, plain, raw, ours_rate, raw_rate)
    });
    // Activation beside a raw spawn and cast: alternated, 5 rounds, the median ratio's.
    let rounds: Vec<(f64, f64)> = rt.block_on(async {
        let mut rounds = Vec::new();
        for r in 0..5 {
            let ours = activation(r).await;
            let theirs = raw_activation().await;
            rounds.push((ours, theirs));
        }
        rounds
    });
    let mut by_ratio = rounds.clone();
    by_ratio.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
    let (act, raw_act) = by_ratio[by_ratio.len() / 2];
    println!(
        "first message to an inactive entity: {act:.0} ns; raw ractor spawn + cast: {raw_act:.0} ns (ratio {:.2}; rounds {:?})",
        act / raw_act,
        rounds
            .iter()
            .map(|(a, b)| format!("{:.2}", a / b))
            .collect::<Vec<_>>()
    );
    // Rendezvous moves each shard with probability 1/4 on such a join: the count for one
    // name is binomial (256 ± 14). The figure is the mean over 100 names, with the range.
    let counts: Vec<usize> = (0..100)
        .map(|i| shards_moved_on_join(&format!("sharded-{i}")))
        .collect();
    let moved_pct = counts.iter().sum::<usize>() as f64 / counts.len() as f64 * 100.0 / 1_024.0;
    println!(
        "shards moved when a 4th node joins 3: mean {moved_pct:.1}% of 1024 over 100 names (min {}, max {}; `books` of the tests: {}, `ledger`: {})",
        counts.iter().min().unwrap(),
        counts.iter().max().unwrap(),
        shards_moved_on_join("books"),
        shards_moved_on_join("ledger"),
    );
    // An entity on another node process.
    let (node, s, sup) = rt.block_on(remote_node("a"));
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.env("FOUNDATION_BENCH_CHILD", "1");
    let mut b = Child::run(cmd, "b", &[("SEEDS", node.advertised())]);
    let (cast, call, raw_cast, raw_call) = rt.block_on(async {
        while s.members().len() < 2 || s.stats().in_transit > 0 || s.stats().served == 1_024 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut casts = Vec::new();
        let mut calls = Vec::new();
        let mut raw_casts = Vec::new();
        let mut raw_calls = Vec::new();
        for _ in 0..3 {
            let ((c, k), (rc, rk)) = remote(&node, &s).await;
            casts.push(c);
            calls.push(k);
            raw_casts.push(rc);
            raw_calls.push(rk);
        }
        (
            median(casts),
            median(calls),
            median(raw_casts),
            median(raw_calls),
        )
    });
    let dropped = s.stats().dropped;
    b.tell("exit");
    rt.block_on(async {
        s.leave().await;
        sup.shutdown().await;
        node.shutdown().await;
    });
    println!(
        "to an entity on another node: cast {cast:.0} ns/msg (node send {raw_cast:.0}), call {call:.0} ns (node call {raw_call:.0}); casts not sent (outbox full): {dropped}"
    );
    let state = std::mem::size_of::<Tally>() as f64;
    println!(
        "{n} idle sharded entities: #[actor] {typed:.0} B each (state {state:.0} B), hand-written {plain:.0} B; raw ractor actor: {raw:.0} B"
    );
    println!(
        "casts to {HOT} active entities: {:.0} k msg/s; to {HOT} raw ractor actors: {:.0} k msg/s",
        ours_rate / 1e3,
        raw_rate / 1e3
    );
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.display().to_string()))
        .unwrap();
    let json = format!(
        "{{\"figures\":[\
{{\"name\":\"idle sharded entity\",\"value\":{typed:.1},\"unit\":\"B\",\"competitor\":\"its state (one u64)\",\"competitor_value\":{state:.1}}},\
{{\"name\":\"idle sharded entity, resident set, 1M entities\",\"value\":{rss_entity:.1},\"unit\":\"B\",\"competitor\":\"its state (one u64)\",\"competitor_value\":{state:.1}}},\
{{\"name\":\"idle sharded entity, hand-written actor, resident set, 1M entities\",\"value\":{rss_plain:.1},\"unit\":\"B\",\"competitor\":\"its state (one u64)\",\"competitor_value\":8.0}},\
{{\"name\":\"raw ractor actor, resident set\",\"value\":{rss_raw:.1},\"unit\":\"B\",\"competitor\":\"bare tokio task, resident set\",\"competitor_value\":{rss_task:.1}}},\
{{\"name\":\"idle sharded entity, hand-written actor\",\"value\":{plain:.1},\"unit\":\"B\",\"competitor\":\"raw ractor actor\",\"competitor_value\":{raw:.1}}},\
{{\"name\":\"casts to 10k active sharded entities\",\"value\":{:.1},\"unit\":\"k msg/s\",\"competitor\":\"raw ractor actors\",\"competitor_value\":{:.1}}},\
{{\"name\":\"first message to an inactive sharded entity\",\"value\":{act:.1},\"unit\":\"ns\",\"competitor\":\"raw ractor spawn + one cast\",\"competitor_value\":{raw_act:.1}}},\
{{\"name\":\"shards moved when a 4th node joins 3\",\"value\":{moved_pct:.1},\"unit\":\"% of 1,024\",\"competitor\":\"ideal\",\"competitor_value\":25.0}},\
{{\"name\":\"cast to a sharded entity on another node\",\"value\":{cast:.1},\"unit\":\"ns/msg\",\"competitor\":\"node remote send\",\"competitor_value\":{raw_cast:.1}}},\
{{\"name\":\"call to a sharded entity on another node\",\"value\":{call:.1},\"unit\":\"ns\",\"competitor\":\"node remote call\",\"competitor_value\":{raw_call:.1}}}]}}",
        ours_rate / 1e3,
        raw_rate / 1e3
    );
    std::fs::write(format!("{target}/bench-sharded.json"), json).unwrap();
}
