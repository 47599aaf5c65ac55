//! Paired ratios: Foundation against raw ractor, alternating short runs of each.
//!
//! Criterion measures each side in its own window of seconds; on a shared 2-core machine a
//! slow spell that lands on one window moves the ratio by tens of percent. Here each round
//! runs one chunk of ours and one of raw ractor back to back (the order swapped every
//! round) and takes their ratio; a process's figure is the median of its rounds' ratios,
//! so drifts longer than a round cancel. The workloads are criterion's (`common/mod.rs`),
//! on the same current-thread runtime.
//!
//! Within one process the rounds agree to about ±0.5 %, but processes differ by up to
//! ±3 %: where the allocator and the loader put things (heap and stack addresses, code
//! alignment) changes per process, and with it cache and branch-predictor behaviour. So
//! the bench runs [`PROCESSES`] processes of itself and reports, per comparison, the
//! median of their figures, with every process's figure beside it.
//!
//! Writes `target/bench-paired.json` for `cargo xtask bench`.
//!
//! Run with: `cargo bench -p foundation-actors --bench paired` (with
//! `FOUNDATION_PAIRED_GROUPS=child_start,child_start_typed`, only those comparisons).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::future::Future;
use std::time::Duration;

use common::{Call, Handle, Restart, Start, Tell, Workload};

const ROUNDS: usize = 21;

/// One process's figures for one comparison: ours (ns), raw ractor's (ns), their ratio.
type Reading = (f64, f64, f64);

/// How many processes of this bench are run; each measures every comparison.
const PROCESSES: usize = 5;

/// Set in the processes this bench starts: run the comparisons once and print them.
const CHILD_ENV: &str = "FOUNDATION_PAIRED_CHILD";

/// One comparison's result: median per-operation times and the median paired ratio.
struct Paired {
    group: &'static str,
    ours_ns: f64,
    ractor_ns: f64,
    ratio: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `FOUNDATION_PAIRED_GROUPS=<group>,<group>,...`: run only these comparisons.
const GROUPS_ENV: &str = "FOUNDATION_PAIRED_GROUPS";

/// Runs `rounds` pairs of `ours(n)` and `raw(n)` and summarises them; `None` if
/// [`GROUPS_ENV`] leaves `group` out.
async fn pair<A, B, FA, FB>(group: &'static str, n: u64, ours: FA, raw: FB) -> Option<Paired>
where
    FA: Fn(u64) -> A,
    FB: Fn(u64) -> B,
    A: Future<Output = Duration>,
    B: Future<Output = Duration>,
{
    if let Ok(groups) = std::env::var(GROUPS_ENV) {
        if !groups.split(',').any(|g| g == group) {
            return None;
        }
    }
    // One untimed pair to warm caches and allocator.
    ours(n).await;
    raw(n).await;
    let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (x, y) = if round % 2 == 0 {
            let x = ours(n).await;
            (x, raw(n).await)
        } else {
            let y = raw(n).await;
            (ours(n).await, y)
        };
        let per_op = |d: Duration| d.as_nanos() as f64 / n as f64;
        a.push(per_op(x));
        b.push(per_op(y));
        r.push(per_op(x) / per_op(y));
    }
    Some(Paired {
        group,
        ours_ns: median(a),
        ractor_ns: median(b),
        ratio: median(r),
    })
}

/// `FOUNDATION_PAIRED_ONE=<ours|typed|raw>:<n>`: only `n` child starts of one side (a
/// dynamic supervisor's `start_child` of an anonymous spec, the same by
/// `start_child_typed`, or raw `spawn_linked`), between
/// `cg_begin` and `cg_end`, for an instruction count per start under
/// `valgrind --tool=callgrind`.
const ONE_ENV: &str = "FOUNDATION_PAIRED_ONE";

/// Where the starts of `FOUNDATION_PAIRED_ONE` begin and end, for callgrind's
/// `--zero-before=paired::cg_begin --dump-before=paired::cg_end`.
#[inline(never)]
fn cg_begin() {
    std::hint::black_box(());
}

#[inline(never)]
fn cg_end() {
    std::hint::black_box(1);
}

fn main() {
    if let Ok(one) = std::env::var(ONE_ENV) {
        let (side, n) = one.split_once(':').expect("<ours|typed|raw>:<n>");
        let n: u64 = n.parse().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            match side {
                "ours" | "typed" => {
                    let sup = foundation_actors::DynamicSupervisor::start("cg", None)
                        .await
                        .unwrap();
                    let typed = side == "typed";
                    cg_begin();
                    for _ in 0..n {
                        let spec = foundation_actors::ChildSpec::anonymous(common::Counter, ());
                        if typed {
                            sup.start_child_typed::<common::Counter>(spec)
                                .await
                                .unwrap();
                        } else {
                            sup.start_child(spec).await.unwrap();
                        }
                    }
                    cg_end();
                    sup.shutdown().await;
                }
                _ => {
                    let (parent, _) = ractor::Actor::spawn(None, common::RawParent, ())
                        .await
                        .unwrap();
                    let mut children = Vec::with_capacity(n as usize);
                    cg_begin();
                    for _ in 0..n {
                        let (child, _) = ractor::Actor::spawn_linked(
                            None,
                            common::RawCounter,
                            (),
                            parent.get_cell(),
                        )
                        .await
                        .unwrap();
                        children.push(child);
                    }
                    cg_end();
                    parent.stop_and_wait(None, None).await.unwrap();
                }
            }
        });
        return;
    }
    if std::env::var_os(CHILD_ENV).is_some() {
        for p in measure() {
            println!("pair {} {} {} {}", p.group, p.ours_ns, p.ractor_ns, p.ratio);
        }
        return;
    }
    let exe = std::env::current_exe().unwrap();
    // Per comparison, in order of first appearance: each process's reading.
    let mut runs: Vec<(String, Vec<Reading>)> = Vec::new();
    for _ in 0..PROCESSES {
        let out = std::process::Command::new(&exe)
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "a paired-bench process failed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let ["pair", group, ours, ractor, ratio] = f[..] else {
                continue;
            };
            let reading = (
                ours.parse().unwrap(),
                ractor.parse().unwrap(),
                ratio.parse().unwrap(),
            );
            match runs.iter_mut().find(|(g, _)| g == group) {
                Some((_, v)) => v.push(reading),
                None => runs.push((group.to_owned(), vec![reading])),
            }
        }
    }
    let mut json = String::from("{\"pairs\":[");
    for (i, (group, readings)) in runs.iter().enumerate() {
        let ours = median(readings.iter().map(|r| r.0).collect());
        let ractor = median(readings.iter().map(|r| r.1).collect());
        let ratio = median(readings.iter().map(|r| r.2).collect());
        let each: Vec<String> = readings.iter().map(|r| format!("{:.3}", r.2)).collect();
        println!(
            "{group:<20} ours {ours:>9.1} ns  ractor {ractor:>9.1} ns  paired ratio {ratio:.3} \
             (median of {PROCESSES} processes: {}; each the median of {ROUNDS} rounds)",
            each.join(" ")
        );
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            "{{\"group\":\"{group}\",\"ours_ns\":{ours:.1},\"ractor_ns\":{ractor:.1},\"ratio\":{ratio:.4},\"rounds\":{ROUNDS},\"processes\":{PROCESSES},\"process_ratios\":[{}]}}",
            each.join(",")
        ));
    }
    json.push_str("]}");
    // The target directory the bench binary runs from (`<target>/release/deps/<bench>`):
    // right wherever the checkout was when it was built.
    let target = exe
        .ancestors()
        .nth(3)
        .map(|t| t.display().to_string())
        .unwrap();
    std::fs::write(format!("{target}/bench-paired.json"), json).unwrap();
}

/// Runs every comparison once, in this process.
fn measure() -> Vec<Paired> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::spawn(async {
            let mut out = Vec::new();
            let tell = Tell::setup().await;
            out.extend(pair("tell", 20_000, |n| tell.ours(n), |n| tell.raw(n)).await);
            out.extend(
                pair(
                    "tell_in_context",
                    20_000,
                    |n| tell.ours_in_context(n),
                    |n| tell.raw(n),
                )
                .await,
            );
            tell.teardown().await;
            let call = Call::setup().await;
            out.extend(pair("call", 5_000, |n| call.ours(n), |n| call.raw(n)).await);
            call.teardown().await;
            out.extend(pair("child_start", 1_000, Start::ours, Start::raw).await);
            out.extend(pair("child_start_named", 1_000, Start::ours_named, Start::raw).await);
            out.extend(pair("child_start_typed", 1_000, Start::ours_typed, Start::raw).await);
            let h = Handle::setup().await;
            let handle = &h;
            out.extend(
                pair(
                    "handle_tell",
                    20_000,
                    |n| handle.generated_tell(n),
                    |n| handle.raw_tell(n),
                )
                .await,
            );
            out.extend(
                pair(
                    "handle_call",
                    5_000,
                    |n| handle.generated_call(n),
                    |n| handle.raw_call(n),
                )
                .await,
            );
            out.extend(
                pair(
                    "handle_tell_vs_hand",
                    20_000,
                    |n| handle.generated_tell(n),
                    |n| handle.hand_tell(n),
                )
                .await,
            );
            out.extend(
                pair(
                    "handle_call_vs_hand",
                    5_000,
                    |n| handle.generated_call(n),
                    |n| handle.hand_call(n),
                )
                .await,
            );
            h.teardown().await;
            let restart = Restart::setup().await;
            out.extend(pair("restart", 500, |n| restart.ours(n), |n| restart.raw(n)).await);
            restart.teardown().await;
            out
        })
        .await
        .unwrap()
    })
}
