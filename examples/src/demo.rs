//! The Foundation demo: a supervised ecosystem whose workers crash, are restarted, and keep
//! their queued jobs, with a request's context flowing from the edge through every hop.
//!
//! Run with: `cargo xtask demo` (or `cargo run -p examples --bin demo`).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use foundation::actors::{ChildStatus, Context, TraceId};
use foundation::prelude::*;

/// The ledger: one supervised actor that totals payments and records which traces reached it.
#[derive(Clone)]
struct Ledger;

enum LedgerMsg {
    Record(u64, ReplyPort<u64>),
    Traces(ReplyPort<BTreeSet<TraceId>>),
}

impl Actor for Ledger {
    type Msg = LedgerMsg;
    type State = (u64, BTreeSet<TraceId>);
    type Args = ();

    async fn init(&self, _: &Addr<LedgerMsg>, _: ()) -> Result<Self::State, ActorError> {
        Ok((0, BTreeSet::new()))
    }

    async fn handle(
        &self,
        _: &Addr<LedgerMsg>,
        msg: LedgerMsg,
        (total, traces): &mut Self::State,
    ) -> Result<(), ActorError> {
        match msg {
            LedgerMsg::Record(amount, reply) => {
                *total += amount;
                if let Some(ctx) = Context::current() {
                    traces.insert(ctx.trace_id());
                }
                let _ = reply.send(*total);
            }
            LedgerMsg::Traces(reply) => {
                let _ = reply.send(traces.clone());
            }
        }
        Ok(())
    }
}

/// A payment worker: every job calls the ledger; a job marked `poison` crashes it.
struct PaymentWorker {
    index: usize,
    ledger: Addr<LedgerMsg>,
}

struct Payment {
    amount: u64,
    poison: bool,
}

impl Worker for PaymentWorker {
    type Job = Payment;

    async fn handle(&mut self, job: Payment) -> Result<(), ActorError> {
        if job.poison {
            return Err(format!("worker {} hit a poisoned payment", self.index).into());
        }
        let ctx = Context::current();
        let total = self
            .ledger
            .call(|r| LedgerMsg::Record(job.amount, r))
            .await?;
        tracing::debug!(worker = self.index, trace = ?ctx.map(|c| c.trace_id()), total, "payment recorded");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_tracing();

    println!("== Foundation demo: supervision, restarts and context on one node ==\n");

    let ledger = ChildSpec::new("ledger", Ledger, ()).name("ledger");
    let ledger_addr = ledger.addr();
    let app = Supervisor::start(SupervisorSpec::new("app", Strategy::OneForOne).child(ledger))
        .await
        .context("starting the app supervisor")?;

    let eco = Ecosystem::start(
        EcosystemSpec::new("payments", 3, {
            let ledger = ledger_addr.clone();
            move |index| PaymentWorker {
                index,
                ledger: ledger.clone(),
            }
        })
        .capacity(64)
        .routing(Routing::LeastLoaded),
    )
    .await
    .context("starting the payments ecosystem")?;

    println!(
        "supervision trees at start:\n{}{}",
        app.tree().await?,
        eco.supervisor().tree().await?
    );

    // 60 requests from the edge, each under its own context; every 10th is poisoned.
    let mut edge_traces = BTreeSet::new();
    let mut expected_total = 0;
    for n in 1..=60u64 {
        let ctx = Context::new()
            .with_request_id(format!("req-{n}"))
            .with_timeout(Duration::from_secs(10));
        let poison = n % 10 == 0;
        if !poison {
            edge_traces.insert(ctx.trace_id());
            expected_total += n;
        }
        ctx.scope(eco.send(Payment { amount: n, poison }))
            .await
            .map_err(|_| anyhow::anyhow!("ecosystem stopped"))?;
    }
    eco.wait_idle(Duration::from_secs(30))
        .await
        .context("waiting for every payment to be handled")?;
    let total = ledger_addr.call(|r| LedgerMsg::Record(0, r)).await?;

    let workers = eco.workers().which_children().await?;
    let restarts: u64 = workers.iter().map(|w| w.restarts).sum();
    println!(
        "supervision trees after 60 payments (6 poisoned):\n{}{}",
        app.tree().await?,
        eco.supervisor().tree().await?
    );

    let ledger_traces = ledger_addr.call(LedgerMsg::Traces).await?;
    let reached = edge_traces.intersection(&ledger_traces).count();
    println!("worker restarts:           {restarts} (one per poisoned payment)");
    println!(
        "workers running:           {}",
        workers
            .iter()
            .filter(|w| w.status == ChildStatus::Running)
            .count()
    );
    println!(
        "ledger total:              {total} (expected {expected_total}: no queued payment was lost)"
    );
    println!(
        "traces reaching the ledger: {reached} of {} sent from the edge (edge -> worker -> ledger)",
        edge_traces.len()
    );

    eco.shutdown().await;
    app.shutdown().await;
    anyhow::ensure!(total == expected_total, "payments were lost");
    anyhow::ensure!(
        reached == edge_traces.len(),
        "some contexts did not reach the ledger"
    );
    anyhow::ensure!(restarts == 6, "expected 6 restarts, saw {restarts}");
    println!("\ndemo ok");
    Ok(())
}
