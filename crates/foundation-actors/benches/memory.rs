//! Memory per idle actor (the benches' shared `Counter`, written for both): a supervised Foundation actor beside a raw ractor actor linked to
//! a parent (ractor's own supervision, the same job done by hand) and a
//! bare tokio task with an mpsc inbox, measured in the same run with a counting allocator
//! (live bytes after spawning many, divided by their number).
//!
//! Each figure is the median of three rounds, measured after the process-wide tables
//! have grown to size once. Writes `target/bench-memory.json` for `cargo xtask bench`.
//!
//! Run with: `cargo bench -p foundation-actors --bench memory`.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::alloc::System;

use foundation_actors::prelude::*;

use common::{Counter, RawCounter, RawParent};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: usize = 5_000;

/// Bytes allocated and not yet freed since the region began.
fn live(region: &Region<'_, System>) -> isize {
    let c = region.change();
    // `stats_alloc` counts a realloc's growth in `bytes_allocated` (and a shrink in
    // `bytes_deallocated`) as well as in `bytes_reallocated`: adding the latter counted
    // every realloc-grown buffer twice (a queue grown by a burst and freed since showed as
    // live).
    c.bytes_allocated as isize - c.bytes_deallocated as isize
}

/// Lets asynchronous teardown of the previous group finish before the next is measured.
async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

/// Bytes per idle child of a dynamic supervisor with `N` children.
async fn foundation_supervised(ids: &[String]) -> f64 {
    let sup = DynamicSupervisor::start("mem", None).await.unwrap();
    let region = Region::new(GLOBAL);
    let mut addrs = Vec::with_capacity(N);
    for id in ids {
        let spec = ChildSpec::new(id.clone(), Counter, ());
        addrs.push(sup.start_child(spec).await.unwrap());
    }
    // Idle: every child adopted by the supervisor, every start event handled.
    assert_eq!(sup.count_children().await.unwrap().active, N);
    settle().await;
    let bytes = live(&region) as f64 / N as f64;
    sup.shutdown().await;
    drop(addrs);
    settle().await;
    bytes
}

/// Bytes per idle raw ractor actor linked to a parent (the same job done by hand).
async fn ractor_linked() -> f64 {
    let (parent, _) = ractor::Actor::spawn(None, RawParent, ()).await.unwrap();
    let region = Region::new(GLOBAL);
    let mut refs = Vec::with_capacity(N);
    for _ in 0..N {
        let (child, _) = ractor::Actor::spawn_linked(None, RawCounter, (), parent.get_cell())
            .await
            .unwrap();
        refs.push(child);
    }
    settle().await;
    let bytes = live(&region) as f64 / N as f64;
    parent.stop_and_wait(None, None).await.unwrap();
    for child in refs {
        child.get_cell().wait(None).await.unwrap();
    }
    settle().await;
    bytes
}

/// Bytes per bare tokio task waiting on an mpsc inbox.
async fn bare_task() -> f64 {
    let region = Region::new(GLOBAL);
    let mut txs = Vec::with_capacity(N);
    for _ in 0..N {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        txs.push(tx);
    }
    settle().await;
    let bytes = live(&region) as f64 / N as f64;
    drop(txs);
    settle().await;
    bytes
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const ROUNDS: usize = 3;

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ours, raw, bare) = rt.block_on(async {
        // Grow the process-wide tables (ractor's registries, tokio's task lists) to N
        // entries first, so neither side pays their one-off growth.
        let ids: Vec<String> = (0..N).map(|i| format!("c{i}")).collect();
        ractor_linked().await;
        foundation_supervised(&ids).await;
        let (mut ours, mut raw, mut bare) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours.push(foundation_supervised(&ids).await);
            raw.push(ractor_linked().await);
            bare.push(bare_task().await);
        }
        (median(ours), median(raw), median(bare))
    });
    println!(
        "idle supervised actor: {ours:.0} B; raw ractor actor: {raw:.0} B; bare tokio task + mpsc: {bare:.0} B"
    );
    // The target directory the bench binary runs from (`<target>/release/deps/<bench>`):
    // right wherever the checkout was when it was built.
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.display().to_string()))
        .unwrap();
    let json = format!(
        "{{\"figures\":[{{\"name\":\"idle supervised actor\",\"value\":{ours:.1},\"unit\":\"B\",\"competitor\":\"raw ractor actor\",\"competitor_value\":{raw:.1}}},{{\"name\":\"bare tokio task + mpsc\",\"value\":{bare:.1},\"unit\":\"B\",\"competitor\":\"raw ractor actor\",\"competitor_value\":{raw:.1}}}]}}"
    );
    std::fs::write(format!("{target}/bench-memory.json"), json).unwrap();
}
