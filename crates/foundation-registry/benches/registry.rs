//! The local registry's lookup beside a plain `DashMap<String, u64>` lookup and
//! foundation-actors' process-wide name table (`Addr::whereis`), in one run, over the same
//! 1,000 names of live processes, cycled through so that each lookup hashes a new key.
//!
//! - `registry_lookup/foundation`: [`Registry::whereis`], the name-resolution path: finds
//!   the entry, skips it if its process has stopped, and hands out a clone of its `Addr`
//!   (dropped within the iteration).
//! - `registry_lookup/foundation_lookup`: [`Registry::lookup`], which also copies the value
//!   and allocates its result vector (Elixir's `Registry.lookup/2`).
//! - `registry_lookup/dashmap`: `DashMap::get` and a copy of the `u64`, with the default
//!   (SipHash) hasher: the competitor of the `cargo xtask bench` headline.
//! - `registry_lookup/dashmap_foldhash`: the same with the registry's own hasher (seeded
//!   foldhash), to show what the registry adds over its map: finding a live entry (a read
//!   of the process's state) and cloning its `Addr` (two reference counts, up and down).
//! - `registry_lookup/actors_whereis`: `Addr::whereis` over a global `RwLock<HashMap>`.
//!
//! Run with: `cargo xtask bench` (or `cargo bench -p foundation-registry --bench registry`).

#![allow(clippy::unwrap_used, missing_docs)] // a bench that fails should stop loudly

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dashmap::DashMap;
use foundation_actors::{Actor, ActorError, Addr, spawn};
use foundation_registry::{Mode, Registry};

const NAMES: usize = 1_000;

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

fn lookup(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let names: Vec<String> = (0..NAMES).map(|i| format!("session-{i:05}")).collect();
    let registry: Registry<String, (), u32> = Registry::new(Mode::Unique);
    let map: DashMap<String, u64> = DashMap::new();
    let map_foldhash: DashMap<String, u64, foldhash::fast::RandomState> = DashMap::default();
    let addrs: Vec<Addr<()>> = rt.block_on(async {
        let mut addrs = Vec::with_capacity(NAMES);
        for (i, name) in names.iter().enumerate() {
            let addr = spawn(Idle, ()).await.unwrap();
            registry.register(name.clone(), &addr, i as u32).unwrap();
            map.insert(name.clone(), i as u64);
            map_foldhash.insert(name.clone(), i as u64);
            addr.register(name).unwrap();
            addrs.push(addr);
        }
        addrs
    });

    let mut group = c.benchmark_group("registry_lookup");
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % NAMES;
        names[i].as_str()
    };
    group.bench_function("foundation", |b| {
        b.iter(|| black_box(registry.whereis(black_box(next()))))
    });
    group.bench_function("foundation_lookup", |b| {
        b.iter(|| black_box(registry.lookup(black_box(next()))))
    });
    group.bench_function("dashmap", |b| {
        b.iter(|| black_box(map.get(black_box(next())).map(|v| *v)))
    });
    group.bench_function("dashmap_foldhash", |b| {
        b.iter(|| black_box(map_foldhash.get(black_box(next())).map(|v| *v)))
    });
    group.bench_function("actors_whereis", |b| {
        b.iter(|| black_box(Addr::<()>::whereis(black_box(next()))))
    });
    group.finish();

    for addr in &addrs {
        addr.stop(None);
    }
}

criterion_group!(benches, lookup);
criterion_main!(benches);
