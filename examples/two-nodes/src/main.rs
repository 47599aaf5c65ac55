//! A new user's first cluster: two nodes, each calling a process on the other by name.
//! Its `Cargo.toml` has one dependency, `foundation`.
//!
//! Run with: `cargo run -p two-nodes` (it starts a second copy of itself as the other node;
//! `RUST_LOG` does nothing here, as no tracing subscriber is installed).
//!
//! - `first` starts a node on a free loopback port and exports a counter.
//! - It starts `second`, configured as a deployment would be, from the environment:
//!   `FOUNDATION_NODE_NAME`, `FOUNDATION_COOKIE`, `FOUNDATION_LISTEN` and
//!   `FOUNDATION_PEERS` (the seed: `first`'s address).
//! - Each waits for the other with `wait_for`, adds to the other's counter and reads it.
//! - `first` leaves; `second` sees it go and exits.

use std::io::BufRead;
use std::process::{Command, Stdio};

use foundation::prelude::*;
use foundation::tokio::sync::broadcast::error::RecvError;

/// A counter other nodes can reach: `#[actor(remote)]` gives its messages a wire form.
#[derive(Clone, Default)]
struct Counter {
    total: u64,
}

#[actor(remote)]
impl Counter {
    #[cast(tag = 1)]
    fn add(&mut self, n: u64) {
        self.total += n;
    }

    #[call(tag = 2)]
    fn total(&self) -> u64 {
        self.total
    }
}

const COOKIE: &str = "two-nodes-demo-cookie";
const WAIT: Duration = Duration::from_secs(30);

#[foundation::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var("FOUNDATION_NODE_NAME").as_deref() == Ok("second") {
        second().await
    } else {
        first().await
    }
}

async fn first() -> Result<(), Box<dyn std::error::Error>> {
    let config = NodeConfig::new("first", COOKIE).listen("127.0.0.1:0".parse()?);
    let node = Node::start(config).await?;
    let counter = Counter::spawn(Counter::default()).await?;
    node.export("counter", counter.addr())?;

    // The other node: this program again, configured from its environment.
    let mut child = Command::new(std::env::current_exe()?)
        .env("FOUNDATION_NODE_NAME", "second")
        .env("FOUNDATION_COOKIE", COOKIE)
        .env("FOUNDATION_LISTEN", "127.0.0.1:0")
        .env("FOUNDATION_PEERS", node.advertised())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (said_tx, said_rx) = foundation::tokio::sync::oneshot::channel();
    let forward = std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        let _ = said_tx.send(line);
        for line in lines.map_while(Result::ok) {
            println!("{line}");
        }
    });

    let second = node.wait_for("second", WAIT).await?;
    println!("first: {} is up at {}", second.id, second.addr);
    node.send("second", "counter", &CounterMsg::Add(2))?;
    let n: u64 = node
        .call("second", "counter", CounterMsg::Total, WAIT)
        .await?;
    println!("first: second counts {n}");

    // `second` says what it read from this node's counter.
    let said = foundation::tokio::time::timeout(WAIT, said_rx).await??;
    println!("{said}");
    println!("first: my counter says {}", counter.total().await?);

    node.leave().await;
    let status = child.wait()?;
    let _ = forward.join();
    if !status.success() {
        return Err(format!("second exited with {status}").into());
    }
    Ok(())
}

async fn second() -> Result<(), Box<dyn std::error::Error>> {
    let env = |k: &str| std::env::var(k).ok();
    let node = Node::start(NodeConfig::from_env(env)?).await?;
    let counter = Counter::spawn(Counter::default()).await?;
    node.export("counter", counter.addr())?;
    let mut events = node.subscribe();
    node.discover_from_env(env)?; // FOUNDATION_PEERS: a static seed

    node.wait_for("first", WAIT).await?;
    node.send("first", "counter", &CounterMsg::Add(40))?;
    // Messages from one node to one process arrive in order: the add came first.
    let n: u64 = node
        .call("first", "counter", CounterMsg::Total, WAIT)
        .await?;
    println!("second: first counts {n}");

    // Stay until `first` is done with this node's counter and goes.
    loop {
        match events.recv().await {
            Ok(ClusterEvent::NodeDown { member, reason }) if member.id == "first" => {
                println!("second: first is down ({reason:?})");
                break;
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    node.shutdown().await;
    Ok(())
}
