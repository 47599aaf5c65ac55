//! Sharded entities across three nodes: an account per key, on the node that owns the
//! key's shard, started by its first message (Akka Cluster Sharding, Orleans' virtual
//! actors).
//!
//! Run with: `cargo run -p examples --bin sharded` (about 6 s). It starts two more
//! copies of itself as nodes `b` and `c` on loopback, then, from node `a`:
//!
//! 1. deposits into 300 accounts through their handles, wherever each lives, and shows how
//!    many each node owns;
//! 2. reads every balance back (a call, answered by the owner). The first reads wait for
//!    the shards that moved from `a` to `b` and `c` as they joined (at most 3 s: `a` hands
//!    a shard off once every member has sent it a barrier, or after 3 s);
//! 3. kills node `c` (SIGKILL) and reads the accounts it owned again: their shards open
//!    on `b` and `a` after the split-brain margin (1 s), and the calls, made with a bound
//!    longer than the takeover, are answered there. A crash keeps only what was
//!    checkpointed, and copied to another node: the accounts never call
//!    `foundation::registry::distributed::checkpoint`, but an entity drained for a move
//!    (here, the shards `a` served alone and handed to `c` as it joined) leaves its state
//!    as a checkpoint, copied to the shard's next choice. So an account whose deposit `a`
//!    took before the move comes back with its balance, and one whose deposit `c` took
//!    after it starts again from 0: how many of each depends on how fast the moves went;
//! 4. stops `b` gracefully (`Sharded::leave`, then `Node::leave`): its shards are handed
//!    off to `a` with their entities' state (`#[actor(handoff)]` and `.handoff()`), which
//!    `a` then serves alone.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use foundation::prelude::*;

/// A bank account: its messages cross nodes (`remote`, with a tag each), and its state
/// moves with its shard on a graceful move (`handoff`).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(crate = "foundation::serde")]
struct Account {
    balance: u64,
}

#[actor(remote, handoff)]
impl Account {
    #[cast(tag = 1)]
    fn deposit(&mut self, n: u64) {
        self.balance += n;
    }

    #[call(tag = 2)]
    fn balance(&self) -> u64 {
        self.balance
    }
}

const COOKIE: &str = "sharded-example-cookie";
const KEYS: u64 = 300;
/// A bound for the waits of the example: a node that does not come, a key that does not
/// answer.
const WAIT: Duration = Duration::from_secs(30);

/// Starts this node's part: the node, joined to `seed` if given, and the `accounts`
/// entities under a supervisor.
async fn start(
    name: &str,
    seed: Option<&str>,
) -> Result<(Node, Sharded<String, AccountMsg>, Supervisor), Box<dyn std::error::Error>> {
    // A 1 s silence (3 s by default): a silent node is declared down after 1 s, and a
    // node that starts takes its first 2 s (twice the silence) to meet the cluster.
    let config = NodeConfig::new(name, COOKIE)
        .listen("127.0.0.1:0".parse()?)
        .silence(Duration::from_secs(1));
    let node = Node::start(config).await?;
    if let Some(seed) = seed {
        // Join before `start_on`: a node alone takes itself for the whole cluster.
        node.connect(&seed.parse::<Peer>()?);
        node.wait_for("a", WAIT).await?;
    }
    let spec = ShardedSpec::new("accounts", Account::handoff_actor(), |_: &String| {
        Account::default()
    })
    .handoff();
    let accounts = Sharded::start_on(&node, spec).await?;
    let sup = Supervisor::start(
        SupervisorSpec::new("bank", Strategy::OneForOne).child(accounts.child_spec()),
    )
    .await?;
    Ok((node, accounts, sup))
}

#[foundation::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::var("SHARDED_EXAMPLE_NODE") {
        Ok(name) => other(&name).await,
        Err(_) => first().await,
    }
}

/// Nodes `b` and `c`: serve their shards until the parent closes stdin, then leave.
async fn other(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let seed = std::env::var("SHARDED_EXAMPLE_SEED")?;
    let (node, accounts, sup) = start(name, Some(&seed)).await?;
    println!("ready");
    std::io::stdout().flush()?;
    // Until the parent closes our stdin.
    foundation::tokio::task::spawn_blocking(|| {
        for line in std::io::stdin().lock().lines() {
            if line.is_err() {
                break;
            }
        }
    })
    .await?;
    accounts.leave().await; // hands this node's shards off first
    sup.shutdown().await;
    node.leave().await;
    Ok(())
}

/// Starts `name` as a child process, seeded with `seed`, and waits for its `ready`.
fn spawn_node(name: &str, seed: &str) -> Result<Child, Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .env("SHARDED_EXAMPLE_NODE", name)
        .env("SHARDED_EXAMPLE_SEED", seed)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("node {name} did not start: {line:?}").into());
    }
    Ok(child)
}

/// How many of the keys each node owns, as this node sees it.
fn owners(accounts: &Sharded<String, AccountMsg>) -> BTreeMap<String, usize> {
    let mut by_node = BTreeMap::new();
    for k in 0..KEYS {
        let owner = accounts
            .owner_of(&format!("acct-{k}"))
            .unwrap_or_else(|| "none".into());
        *by_node.entry(owner).or_insert(0) += 1;
    }
    by_node
}

/// Waits until `accounts` sees exactly `want` as its members.
async fn members(
    accounts: &Sharded<String, AccountMsg>,
    want: &[&str],
) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = foundation::tokio::time::Instant::now() + WAIT;
    loop {
        let mut got = accounts.members();
        got.sort();
        if got == want {
            return Ok(());
        }
        if foundation::tokio::time::Instant::now() > deadline {
            return Err(format!("members {got:?}, not {want:?}").into());
        }
        foundation::tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no shard is in a move here.
async fn settled(accounts: &Sharded<String, AccountMsg>) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = foundation::tokio::time::Instant::now() + WAIT;
    while accounts.stats().in_transit > 0 {
        if foundation::tokio::time::Instant::now() > deadline {
            return Err("shards still in a move".into());
        }
        foundation::tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn first() -> Result<(), Box<dyn std::error::Error>> {
    let started = std::time::Instant::now();
    let (node, accounts, sup) = start("a", None).await?;
    let seed = node.advertised().to_owned();
    let mut b = spawn_node("b", &seed)?;
    let mut c = spawn_node("c", &seed)?;
    members(&accounts, &["a", "b", "c"]).await?;
    // Past the join window, every shard is on its owner.
    settled(&accounts).await?;
    println!(
        "[{:>5} ms] 3 nodes run `accounts`",
        started.elapsed().as_millis()
    );

    // 1. Deposits through handles: each goes to the owner of its key's shard.
    for k in 0..KEYS {
        let acct: AccountRef = accounts.entity(format!("acct-{k}"));
        acct.deposit(k + 1).await?;
    }
    let before = owners(&accounts);
    println!(
        "[{:>5} ms] {KEYS} accounts, owned by {before:?}",
        started.elapsed().as_millis()
    );

    // 2. Every balance, read back from its owner.
    for k in 0..KEYS {
        let acct: AccountRef = accounts.entity(format!("acct-{k}"));
        assert_eq!(acct.balance().await?, k + 1);
    }
    println!(
        "[{:>5} ms] every balance read back from its owner",
        started.elapsed().as_millis()
    );

    // 3. Node c dies. Its shards open on the others; calls with a bound past the takeover
    //    (failure detection and the split-brain margin) are answered there.
    let on_c: Vec<u64> = (0..KEYS)
        .filter(|k| accounts.owner_of(&format!("acct-{k}")).as_deref() == Some("c"))
        .collect();
    c.kill()?;
    c.wait()?;
    let killed = std::time::Instant::now();
    let (mut kept, mut from_zero) = (0, 0);
    for k in &on_c {
        let acct: AccountRef = accounts.entity(format!("acct-{k}"));
        let balance = acct.addr().call_timeout(AccountMsg::Balance, WAIT).await?;
        if balance == k + 1 {
            kept += 1;
        } else {
            assert_eq!(balance, 0, "acct-{k}: a balance it never had");
            from_zero += 1;
        }
    }
    println!(
        "[{:>5} ms] c killed: its {} accounts answer again {} ms later, from {:?}; {kept} with their balance (a checkpoint copy from their move to c), {from_zero} from 0 (none)",
        started.elapsed().as_millis(),
        on_c.len(),
        killed.elapsed().as_millis(),
        owners(&accounts)
    );

    // 4. Node b leaves gracefully: its shards move to a with their entities' state.
    let mut on_b = Vec::new();
    for k in 0..KEYS {
        let key = format!("acct-{k}");
        if accounts.owner_of(&key).as_deref() == Some("b") {
            let acct: AccountRef = accounts.entity(key.clone());
            on_b.push((key, acct.balance().await?));
        }
    }
    drop(b.stdin.take()); // b's cue to leave
    b.wait()?;
    members(&accounts, &["a"]).await?;
    for (key, balance) in &on_b {
        let acct: AccountRef = accounts.entity(key.clone());
        assert_eq!(acct.balance().await?, *balance, "{key} kept its balance");
    }
    println!(
        "[{:>5} ms] b left: its {} accounts moved to a with their balances; a owns {:?}",
        started.elapsed().as_millis(),
        on_b.len(),
        owners(&accounts)
    );
    sup.shutdown().await;
    node.shutdown().await;
    Ok(())
}
