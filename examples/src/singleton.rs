//! A singleton with its state: a `ledger` that runs on one node of the cluster, started
//! by a distributed supervisor (`app.supervisor(..)`), checkpointed on every deposit.
//!
//! Run with, in three terminals (the nodes find each other by mDNS on a LAN; see `chat`
//! for `FOUNDATION_PEERS` where multicast does not pass):
//!
//! ```text
//! cargo run -p examples --bin singleton
//! ```
//!
//! Every node runs the same program: it starts its part of the supervisor, meets the
//! other nodes (3 s at most), asks for the ledger (the cluster starts one, on one node)
//! and deposits 1 into it every second. Each node prints `the ledger runs on <node>` when that changes, and the node
//! that runs it prints the balance every second:
//!
//! ```text
//! singleton: laptop-4242 at 192.168.1.10:41873 (pid 4242)
//! laptop-4242: the ledger runs on laptop-4242
//! laptop-4242: balance 17 after 17 deposits
//! ```
//!
//! Then kill that node: `kill -9 <pid>` (a crash), or Ctrl-C (a graceful leave). The
//! ledger comes back on another node, which starts printing, from the balance it had: a
//! crash restarts it from its last checkpoint once the node is declared down (3 s of
//! silence); a graceful leave hands its state over at once.

use foundation::prelude::*;
use foundation::registry::distributed::{StartChildError, checkpoint};

/// How long a deposit may wait (through a failover, a call waits for the new instance).
const WAIT: Duration = Duration::from_secs(2);

/// The ledger: its state moves with it (`handoff`) and is copied to other nodes at every
/// deposit (`checkpoint`), where a failover starts from.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(crate = "foundation::serde")]
struct Ledger {
    balance: u64,
    deposits: u64,
}

#[actor(remote = "examples.Ledger", handoff)]
impl Ledger {
    #[call(tag = 1)]
    fn deposit(&mut self, amount: u64) -> (u64, u64) {
        self.balance += amount;
        self.deposits += 1;
        if let Err(e) = checkpoint(&*self) {
            tracing::warn!(error = %e, "ledger: checkpoint failed");
        }
        (self.balance, self.deposits)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logs("warn");
    let app = Foundation::start().await?;
    let me = app.node().name().to_owned();
    let ledgers = app
        .supervisor(
            DistributedSpec::new("ledgers").handoff_kind("ledger", |(): ()| {
                (Ledger::handoff_actor(), Ledger::default())
            }),
        )
        .await?;
    println!(
        "singleton: {me} at {} (pid {})",
        app.node().advertised(),
        std::process::id()
    );

    // Meet the cluster first (3 s at most): a node that takes itself for the whole cluster
    // would start a ledger of its own, which would replace the running one.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while ledgers.members().len() < 2 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every node asks; the cluster runs one (the others are told it is started).
    let singleton = ChildPlacement::new("ledger", Placement::Singleton);
    match ledgers.start_child("ledger", &(), singleton).await {
        Ok(_) | Err(StartChildError::AlreadyStarted { .. }) => {}
        Err(e) => return Err(e.into()),
    }

    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut last_at = String::new();
    let depositing = async {
        loop {
            every.tick().await;
            let deposit = ledgers.call("ledger", |r| LedgerMsg::Deposit(1, r), WAIT);
            match deposit.await {
                Ok((balance, deposits)) => {
                    let at = ledgers.whereis("ledger").map(|l| l.node().to_owned());
                    let at = at.unwrap_or_else(|| "?".to_owned());
                    if at != last_at {
                        println!("{me}: the ledger runs on {at}");
                    }
                    if at == me {
                        println!("{me}: balance {balance} after {deposits} deposits");
                    }
                    last_at = at;
                }
                Err(e) => {
                    println!("{me}: the ledger does not answer ({e})");
                    last_at.clear();
                }
            }
        }
    };
    // Until SIGTERM or Ctrl-C; the ledger, if it runs here, is handed off at shutdown.
    tokio::select! {
        () = depositing => {}
        () = app.stopped() => {}
    }
    app.shutdown().await;
    Ok(())
}
