//! Paired ratios: Foundation against raw ractor, alternating short runs of each.
//!
//! Criterion measures each side in its own window of seconds; on a shared 2-core machine a
//! slow spell that lands on one window moves the ratio by tens of percent. Here each round
//! runs one chunk of ours and one of raw ractor back to back (the order swapped every
//! round) and takes their ratio; the figure is the median of the rounds' ratios, so drifts
//! longer than a round cancel. The workloads are criterion's (`common/mod.rs`), on the
//! same current-thread runtime.
//!
//! Writes `target/bench-paired.json` for `cargo xtask bench`.
//!
//! Run with: `cargo bench -p foundation-actors --bench paired`.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::future::Future;
use std::time::Duration;

use common::{Call, Handle, Restart, Start, Tell, Workload};

const ROUNDS: usize = 21;

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

/// Runs `rounds` pairs of `ours(n)` and `raw(n)` and summarises them.
async fn pair<A, B, FA, FB>(group: &'static str, n: u64, ours: FA, raw: FB) -> Paired
where
    FA: Fn(u64) -> A,
    FB: Fn(u64) -> B,
    A: Future<Output = Duration>,
    B: Future<Output = Duration>,
{
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
    Paired {
        group,
        ours_ns: median(a),
        ractor_ns: median(b),
        ratio: median(r),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt.block_on(async {
        tokio::spawn(async {
            let mut out = Vec::new();
            let tell = Tell::setup().await;
            out.push(pair("tell", 20_000, |n| tell.ours(n), |n| tell.raw(n)).await);
            tell.teardown().await;
            let call = Call::setup().await;
            out.push(pair("call", 5_000, |n| call.ours(n), |n| call.raw(n)).await);
            call.teardown().await;
            out.push(pair("child_start", 1_000, Start::ours, Start::raw).await);
            out.push(pair("child_start_named", 1_000, Start::ours_named, Start::raw).await);
            let h = Handle::setup().await;
            let handle = &h;
            out.push(
                pair(
                    "handle_tell",
                    20_000,
                    |n| handle.generated_tell(n),
                    |n| handle.raw_tell(n),
                )
                .await,
            );
            out.push(
                pair(
                    "handle_call",
                    5_000,
                    |n| handle.generated_call(n),
                    |n| handle.raw_call(n),
                )
                .await,
            );
            out.push(
                pair(
                    "handle_tell_vs_hand",
                    20_000,
                    |n| handle.generated_tell(n),
                    |n| handle.hand_tell(n),
                )
                .await,
            );
            out.push(
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
            out.push(pair("restart", 500, |n| restart.ours(n), |n| restart.raw(n)).await);
            restart.teardown().await;
            out
        })
        .await
        .unwrap()
    });
    let mut json = String::from("{\"pairs\":[");
    for (i, p) in results.iter().enumerate() {
        println!(
            "{:<12} ours {:>9.1} ns  ractor {:>9.1} ns  paired ratio {:.3} (median of {ROUNDS})",
            p.group, p.ours_ns, p.ractor_ns, p.ratio
        );
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            "{{\"group\":\"{}\",\"ours_ns\":{:.1},\"ractor_ns\":{:.1},\"ratio\":{:.4},\"rounds\":{ROUNDS}}}",
            p.group, p.ours_ns, p.ractor_ns, p.ratio
        ));
    }
    json.push_str("]}");
    // The target directory the bench binary runs from (`<target>/release/deps/<bench>`):
    // right wherever the checkout was when it was built.
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.display().to_string()))
        .unwrap();
    std::fs::write(format!("{target}/bench-paired.json"), json).unwrap();
}
