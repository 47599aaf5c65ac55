//! Caches: a `Replicated` cache (every node holds every key; a write on one node is
//! applied on all), with a node's own local cache (`app.cache(name)`) in front of it.
//!
//! Run with, in two terminals (the nodes find each other by mDNS on a LAN; see `chat` for
//! `FOUNDATION_PEERS` where multicast does not pass):
//!
//! ```text
//! cargo run -p examples --bin cache -- put greeting hello   # puts, then stays up (Ctrl-C)
//! cargo run -p examples --bin cache -- get greeting         # reads until a hit, then exits
//! ```
//!
//! Arguments are steps, run in order: `put KEY VALUE`, `get KEY` (both at once work on
//! one node: `-- put greeting hello get greeting`). A `get` reads every half second
//! until it hits (30 s at most): first the local cache, then the replicated one, whose
//! value then goes into the local cache for 10 s; then once more. So on another node
//! than the `put`'s it may print a miss while the replica arrives, then
//! `local miss, replicated hit`, then `local hit`; then both caches' hit/miss counts. A node that ran a `put` stays up,
//! holding its copy, until Ctrl-C or SIGTERM; one that only read exits.

use foundation::prelude::*;

/// How long a `get` waits for its key.
const WAIT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logs("warn");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let app = Foundation::start().await?;
    let me = app.node().name().to_owned();
    let shared: Replicated<String, String> =
        Replicated::start(app.node(), ReplicatedOptions::new("greetings")).await?;
    // A node's own cache, bounded by `cache.max_entries`: in `node_info().caches`.
    let near = app.cache::<String, String>("near")?;
    println!("cache: {me} at {}", app.node().advertised());

    let mut steps = args.iter().map(String::as_str);
    let mut stay = args.is_empty();
    while let Some(step) = steps.next() {
        match (step, steps.next()) {
            ("put", Some(key)) => {
                let value = steps.next().unwrap_or_default();
                shared
                    .put(key.to_owned(), value.to_owned(), Ttl::Default)
                    .await?;
                println!("{me}: put {key} = {value:?}");
                stay = true;
            }
            ("get", Some(key)) => get(&me, key, &near, &shared).await?,
            _ => anyhow::bail!("usage: cache [put KEY VALUE | get KEY]..."),
        }
    }

    let replicated = shared.stats();
    println!(
        "{me}: replicated: {} hits, {} misses, {} writes",
        replicated.hits, replicated.misses, replicated.writes
    );
    for c in app.node_info().caches {
        println!(
            "{me}: local `{}`: {} hits, {} misses, {} writes",
            c.name, c.hits, c.misses, c.writes
        );
    }
    if stay {
        println!("{me}: holding the cache (Ctrl-C leaves)");
        app.stopped().await;
    }
    app.shutdown().await;
    Ok(())
}

/// Reads `key` until a hit: the local cache first, then the replicated one; then once
/// more, which the local cache answers.
async fn get(
    me: &str,
    key: &str,
    near: &Local<String, String>,
    shared: &Replicated<String, String>,
) -> anyhow::Result<()> {
    let key = key.to_owned();
    let until = tokio::time::Instant::now() + WAIT;
    let (mut hits, mut misses) = (0, 0);
    while hits < 2 {
        if let Some(value) = near.get(&key).await? {
            println!("{me}: get {key}: local hit {value:?}");
            hits += 1;
        } else if let Some(value) = shared.get(&key).await? {
            println!("{me}: get {key}: local miss, replicated hit {value:?}");
            near.put(key.clone(), value, Ttl::Live(Duration::from_secs(10)))
                .await?;
            hits += 1;
        } else {
            misses += 1;
            if misses == 1 {
                println!("{me}: get {key}: local miss, replicated miss; trying again");
            }
            anyhow::ensure!(tokio::time::Instant::now() < until, "no {key} in {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}
