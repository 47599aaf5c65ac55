//! Foundation beside raw ractor, in one run: tell throughput, call round trip, supervised
//! child start, restart latency (crash to the new incarnation answering a call), and a
//! dynamic supervisor's `terminate_child` with 1,000 and with 10,000 children. The
//! workloads are in `common/mod.rs`, shared with the paired-ratio bench.
//!
//! Every measured loop runs as a task inside the tokio runtime (`iter_custom`; see
//! [`Flavor`] for which runtimes): driven from the bench thread through `block_on`, each
//! operation would pay thread wake-ups that dwarf what is measured. One criterion
//! iteration is one operation, so the reported time is per message, per call, per start or
//! per restart.
//!
//! Run with: `cargo xtask bench` (or `cargo bench -p foundation-actors --bench actors`).

#![allow(clippy::unwrap_used, missing_docs)] // a bench that fails should stop loudly

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

use common::{Call, Handle, Restart, Start, Tell, TellInContext, Terminate, Workload};

/// The runtime a group is measured on.
///
/// The headline groups run on a current-thread runtime: every operation's path is
/// measured without cross-core wake-ups, which on this 2-core machine swing results by
/// ±50 % from run to run, and raw ractor's call round trip there (~0.9 µs) matches the
/// reference figure the budgets were set against (~0.7 µs). The same groups also run on
/// a 2-worker runtime (suffix `_2w`), reported beside the headlines without budgets.
#[derive(Clone, Copy)]
enum Flavor {
    CurrentThread,
    TwoWorkers,
}

impl Flavor {
    fn runtime(self) -> Runtime {
        match self {
            Self::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            Self::TwoWorkers => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn group(self, base: &str) -> String {
        match self {
            Self::CurrentThread => base.to_owned(),
            Self::TwoWorkers => format!("{base}_2w"),
        }
    }
}

/// Runs `f(iters)` as a task on the runtime and returns the time it measured.
fn in_runtime<F, Fut>(rt: &Runtime, iters: u64, f: F) -> Duration
where
    F: FnOnce(u64) -> Fut,
    Fut: Future<Output = Duration> + Send + 'static,
{
    rt.block_on(async move { tokio::spawn(f(iters)).await.unwrap() })
}

/// Measures a workload's two sides as the group `name`.
fn compare<W: Workload>(c: &mut Criterion, flavor: Flavor, name: &str, rt: &Runtime, w: Arc<W>) {
    let mut g = c.benchmark_group(flavor.group(name));
    g.throughput(criterion::Throughput::Elements(1));
    g.bench_function("foundation", |b| {
        b.iter_custom(|n| {
            let w = w.clone();
            in_runtime(rt, n, |n| async move { w.ours(n).await })
        })
    });
    g.bench_function("ractor", |b| {
        b.iter_custom(|n| {
            let w = w.clone();
            in_runtime(rt, n, |n| async move { w.raw(n).await })
        })
    });
    g.finish();
    rt.block_on(w.teardown());
}

fn child_start(c: &mut Criterion, flavor: Flavor) {
    let rt = flavor.runtime();
    let mut g = c.benchmark_group(flavor.group("child_start"));
    g.bench_function("foundation", |b| {
        b.iter_custom(|n| in_runtime(&rt, n, Start::ours))
    });
    if let Flavor::CurrentThread = flavor {
        // With a unique id per child: what `ChildSpec::new` costs on top.
        g.bench_function("foundation_named", |b| {
            b.iter_custom(|n| in_runtime(&rt, n, Start::ours_named))
        });
        // Started by `start_child_typed`: the start awaited in place, not boxed.
        g.bench_function("foundation_typed", |b| {
            b.iter_custom(|n| in_runtime(&rt, n, Start::ours_typed))
        });
    }
    g.bench_function("ractor", |b| {
        b.iter_custom(|n| in_runtime(&rt, n, Start::raw))
    });
    g.finish();
}

/// One way of running a [`Handle`] workload.
type HandleRun = fn(Arc<Handle>, u64) -> BoxFuture<'static, Duration>;

/// A generated handle (`#[actor]`) beside a hand-written Foundation actor and raw ractor.
fn handle(c: &mut Criterion, rt: &Runtime) {
    let h = rt.block_on(Handle::setup());
    let groups: [(&str, [(&str, HandleRun); 3]); 2] = [
        (
            "handle_tell",
            [
                ("generated", |h, n| {
                    Box::pin(async move { h.generated_tell(n).await })
                }),
                ("hand_written", |h, n| {
                    Box::pin(async move { h.hand_tell(n).await })
                }),
                ("ractor", |h, n| {
                    Box::pin(async move { h.raw_tell(n).await })
                }),
            ],
        ),
        (
            "handle_call",
            [
                ("generated", |h, n| {
                    Box::pin(async move { h.generated_call(n).await })
                }),
                ("hand_written", |h, n| {
                    Box::pin(async move { h.hand_call(n).await })
                }),
                ("ractor", |h, n| {
                    Box::pin(async move { h.raw_call(n).await })
                }),
            ],
        ),
    ];
    for (group, runs) in groups {
        let mut g = c.benchmark_group(group);
        g.throughput(criterion::Throughput::Elements(1));
        for (name, run) in runs {
            g.bench_function(name, |b| {
                b.iter_custom(|n| in_runtime(rt, n, |n| run(h.clone(), n)))
            });
        }
        g.finish();
    }
    rt.block_on(h.teardown());
}

/// One termination in a dynamic supervisor holding 1,000 children, and in one holding
/// 10,000 ([`Terminate`]): the same time per termination if its cost does not grow with
/// the children held, ten times as much if it grows linearly (as it did: terminating them
/// all one by one was quadratic).
fn terminate(c: &mut Criterion, rt: &Runtime) {
    let mut g = c.benchmark_group("terminate_child");
    g.throughput(criterion::Throughput::Elements(1));
    for children in [1_000, 10_000] {
        let w = rt.block_on(Terminate::setup(children));
        g.bench_function(children.to_string(), |b| {
            b.iter_custom(|n| {
                let w = w.clone();
                in_runtime(rt, n, |n| async move { w.ours(n).await })
            })
        });
        rt.block_on(w.teardown());
    }
    g.finish();
}

fn all(c: &mut Criterion) {
    for flavor in [Flavor::CurrentThread, Flavor::TwoWorkers] {
        let rt = flavor.runtime();
        compare(c, flavor, "tell", &rt, rt.block_on(Tell::setup()));
        if let Flavor::CurrentThread = flavor {
            let tell = TellInContext(rt.block_on(Tell::setup()));
            compare(c, flavor, "tell_in_context", &rt, Arc::new(tell));
        }
        compare(c, flavor, "call", &rt, rt.block_on(Call::setup()));
        child_start(c, flavor);
        compare(c, flavor, "restart", &rt, rt.block_on(Restart::setup()));
        if let Flavor::CurrentThread = flavor {
            handle(c, &rt);
            terminate(c, &rt);
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = all
}
criterion_main!(benches);
