//! Elixir's Mix/OTP guide "KV" service, ported to Foundation: buckets of key-value pairs,
//! a registry that names them and forgets the ones that stop, a dynamic supervisor that
//! holds the buckets, and a `one_for_all` supervisor over the last two.
//!
//! Run with: `cargo run -p examples --bin kv`
//!
//! The structure is the guide's, module for type:
//!
//! ```text
//! KV.Supervisor (one_for_all)          Supervisor "KV.Supervisor"
//! ├── KV.BucketSupervisor (dynamic)    DynamicSupervisor "KV.BucketSupervisor"
//! │   └── KV.Bucket ... (temporary)    Bucket, anonymous, Restart::Temporary
//! └── KV.Registry (name: KV.Registry)  Registry "KV.Registry", named "kv.registry"
//! ```
//!
//! `main` walks through the guide's scenarios (and the assertions of its tests) and fails
//! loudly if one does not hold; the unit test at the bottom runs the same walk.
//! Comments marked "Elixir:" say where Foundation differs, and why.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, anyhow, ensure};
use foundation::actors::typed;
use foundation::prelude::*;
use tokio::sync::{broadcast, mpsc};

/// How long the walk waits for any one event before it calls the run a failure.
const PATIENCE: Duration = Duration::from_secs(10);

/// `KV.Bucket`: a map of strings, as the guide's `Agent`.
///
/// Elixir: an `Agent` is a `GenServer` whose state is changed by functions sent to it;
/// here each operation is a handler, so the messages are data (and could cross a node).
#[derive(Clone, Default)]
struct Bucket {
    map: HashMap<String, String>,
}

#[actor]
impl Bucket {
    /// The value under `key` (`KV.Bucket.get/2`).
    #[call]
    fn get(&self, key: String) -> Option<String> {
        self.map.get(&key).cloned()
    }

    /// Puts `value` under `key` (`KV.Bucket.put/3`).
    ///
    /// Elixir: `Agent.update` waits for the update; this is a cast. Messages from one
    /// sender to one process stay in order, so the sender's next `get` sees it.
    #[cast]
    fn put(&mut self, key: String, value: String) {
        self.map.insert(key, value);
    }

    /// Removes `key`, replying its value (`KV.Bucket.delete/2`).
    #[call]
    fn delete(&mut self, key: String) -> Option<String> {
        self.map.remove(&key)
    }
}

/// What the registry starts with, each time it (re)starts.
#[derive(Clone)]
struct RegistryArgs {
    /// `KV.BucketSupervisor`: where buckets are started.
    buckets: DynamicSupervisor,
    /// Told the name of each bucket the registry forgets.
    ///
    /// Elixir: the guide's tests rely on the `:DOWN` message reaching the registry before
    /// their next call to it. Here the exit reaches the registry through its supervisor's
    /// event stream and a forwarding task, with no such ordering, so the walk waits for
    /// this instead.
    forgotten: mpsc::UnboundedSender<String>,
}

/// `KV.Registry`: bucket names to buckets, forgetting a bucket when it stops.
struct Registry {
    buckets: DynamicSupervisor,
    names: HashMap<String, BucketRef>,
    /// Elixir: the guide keeps monitor refs to names; a bucket's [`AddrKey`] plays the ref.
    refs: HashMap<AddrKey, String>,
    forgotten: mpsc::UnboundedSender<String>,
}

#[actor]
impl Registry {
    /// `init/1`: an empty registry that watches the bucket supervisor.
    ///
    /// Elixir: the guide calls `Process.monitor(pid)` per bucket and handles `:DOWN`.
    /// Foundation has no monitors; a process can watch a supervisor's events instead, and
    /// every bucket is a child of this one. The watch ends with this incarnation, and the
    /// next one starts its own here.
    #[init]
    fn init(args: RegistryArgs, ctx: &Ctx<Self>) -> Self {
        ctx.watch(&args.buckets);
        Self {
            buckets: args.buckets,
            names: HashMap::new(),
            refs: HashMap::new(),
            forgotten: args.forgotten,
        }
    }

    /// The bucket named `name`, if there is one (`KV.Registry.lookup/2`).
    #[call]
    fn lookup(&self, name: String) -> Option<BucketRef> {
        self.names.get(&name).cloned()
    }

    /// The bucket named `name`, started if there is none (`KV.Registry.create/2`).
    ///
    /// Elixir: a cast in the guide's first version, a call replying the pid in its ETS
    /// chapter; a call here, so a failed start reaches the caller as an `Err` reply
    /// instead of crashing the registry.
    #[call]
    async fn create(&mut self, name: String) -> Result<BucketRef, SupervisorError> {
        if let Some(bucket) = self.names.get(&name) {
            return Ok(bucket.clone());
        }
        // Elixir: `use Agent, restart: :temporary` plus `DynamicSupervisor.start_child`.
        // `Bucket::spawn_supervised` would start a `Permanent` child, so the spec is
        // adjusted: anonymous (known by its address, as by a pid) and temporary.
        let spec =
            typed::anonymous_child_spec::<Bucket>(Bucket::default()).restart(Restart::Temporary);
        let bucket = BucketRef::from(self.buckets.start_child(spec).await?);
        // Should the bucket already have exited, its event is behind this call in the
        // mailbox and finds it in `refs`, as `:DOWN` does for a dead pid.
        self.refs.insert(bucket.addr().key(), name.clone());
        self.names.insert(name, bucket.clone());
        Ok(bucket)
    }

    /// `handle_info({:DOWN, ref, ...})`: forgets a bucket that stopped for good.
    #[info]
    fn bucket_event(&mut self, event: SupervisorEvent) {
        // Temporary children are never restarted; other events are not about an exit.
        let SupervisorEvent::ChildExited {
            key,
            restarting: false,
            ..
        } = event
        else {
            return;
        };
        if let Some(name) = self.refs.remove(&key) {
            self.names.remove(&name);
            // Nobody listening is fine: the notice is for the walk below.
            let _ = self.forgotten.send(name);
        }
    }
}

/// Waits for `fut`, or fails after [`PATIENCE`] saying what was awaited.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .map_err(|_| anyhow!("timed out waiting for {what}"))
}

/// Waits for the registry to say it forgot a bucket, and returns its name.
async fn forgotten(rx: &mut mpsc::UnboundedReceiver<String>) -> anyhow::Result<String> {
    within("the registry to forget a bucket", rx.recv())
        .await?
        .ok_or_else(|| anyhow!("the registry's notices ended"))
}

/// Waits until `events` reports that `child` was restarted.
async fn restarted(
    events: &mut broadcast::Receiver<SupervisorEvent>,
    child: &str,
) -> anyhow::Result<()> {
    within(&format!("`{child}` to restart"), async {
        loop {
            match events.recv().await {
                Ok(SupervisorEvent::ChildRestarted { child: c, .. }) if c == child => {
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => return Err(anyhow!("lost the supervisor's events: {e}")),
            }
        }
    })
    .await?
}

/// Builds the guide's tree, walks its scenarios, checks each outcome, and shuts it down.
async fn run() -> anyhow::Result<()> {
    // `KV.Supervisor`'s `init/1`: the children, in start order, and `:one_for_all`.
    let bucket_sup = DynamicSupervisor::spec("KV.BucketSupervisor", None);
    // Elixir: the guide finds `KV.BucketSupervisor` by name. A supervisor cannot be looked
    // up by name here, but its handle exists before it starts and stays valid across its
    // restarts, so the registry is given the handle.
    let buckets = DynamicSupervisor::from_handle(bucket_sup.handle());
    let (tx, mut gone) = mpsc::unbounded_channel();
    let registry_spec = typed::child_spec::<Registry>(
        "KV.Registry",
        RegistryArgs {
            buckets: buckets.clone(),
            forgotten: tx,
        },
    )
    .name("kv.registry");
    let kv = Supervisor::start(
        SupervisorSpec::new("KV.Supervisor", Strategy::OneForAll)
            .child(bucket_sup.into_child())
            .child(registry_spec),
    )
    .await
    .context("starting KV.Supervisor")?;
    println!("started:\n{}", kv.tree().await?);

    // Elixir: `name: KV.Registry` and `Process.whereis(KV.Registry)`.
    let registry = RegistryRef::whereis("kv.registry").context("kv.registry is registered")?;

    // The registry's "spawns buckets" test.
    ensure!(registry.lookup("shopping".into()).await?.is_none());
    let bucket = registry.create("shopping".into()).await??;
    let found = registry
        .lookup("shopping".into())
        .await?
        .context("shopping was just created")?;
    ensure!(found.addr().same_process(bucket.addr()));
    let again = registry.create("shopping".into()).await??;
    ensure!(
        again.addr().same_process(bucket.addr()),
        "create is idempotent"
    );
    println!("created bucket \"shopping\"");

    // The bucket's "stores values by key" test, with a timeout as `GenServer.call/3`'s.
    ensure!(bucket.get("milk".into()).await?.is_none());
    bucket.put("milk".into(), "3".into()).await?;
    let milk = bucket
        .with_timeout(Duration::from_secs(1))
        .get("milk".into())
        .await?;
    println!("put milk 3; get milk -> {milk:?}");
    ensure!(milk.as_deref() == Some("3"));
    ensure!(bucket.delete("milk".into()).await? == Some("3".into()));
    ensure!(bucket.get("milk".into()).await?.is_none());

    // The bucket's "are temporary workers" test.
    let kids = buckets.which_children().await?;
    ensure!(
        kids.len() == 1 && kids[0].restart == Restart::Temporary,
        "one temporary bucket expected, found {kids:?}"
    );

    // "removes buckets on exit": a normal stop.
    bucket.stop();
    ensure!(forgotten(&mut gone).await? == "shopping");
    ensure!(registry.lookup("shopping".into()).await?.is_none());
    println!("stopped the bucket: the registry forgot \"shopping\"");
    // "bucket can crash at any time": a put to a stopped bucket.
    // Elixir: `catch_exit KV.Bucket.put(...)`; here the send fails and hands the message back.
    match bucket.put("milk".into(), "3".into()).await {
        Err(SendError::Stopped(BucketMsg::Put(key, _))) => {
            println!("a put to the stopped bucket came back: {key}");
        }
        other => return Err(anyhow!("expected the put to be refused, got {other:?}")),
    }
    ensure!(bucket.get("milk".into()).await == Err(CallError::Stopped));

    // "removes bucket on crash": an abnormal exit.
    let bucket = registry.create("shopping".into()).await??;
    bucket.kill();
    ensure!(forgotten(&mut gone).await? == "shopping");
    ensure!(registry.lookup("shopping".into()).await?.is_none());
    ensure!(buckets.count_children().await?.active == 0);
    println!("killed the new bucket: the registry forgot \"shopping\" again");

    // The registry crashes: `:one_for_all` takes the buckets down with it, since a new
    // registry would not know them, and starts both again.
    let shopping = registry.create("shopping".into()).await??;
    shopping.put("eggs".into(), "12".into()).await?;
    let groceries = registry.create("groceries".into()).await??;
    ensure!(buckets.count_children().await?.active == 2);
    println!("two buckets:\n{}", kv.tree().await?);
    let mut events = kv.subscribe();
    registry.kill();
    restarted(&mut events, "KV.Registry").await?;
    println!(
        "killed the registry; KV.Supervisor restarted both:\n{}",
        kv.tree().await?
    );
    // Elixir: a pid taken before the crash is dead; a handle here reaches the new
    // registry, as the name does.
    ensure!(registry.lookup("shopping".into()).await?.is_none());
    ensure!(registry.lookup("groceries".into()).await?.is_none());
    let by_name = RegistryRef::whereis("kv.registry").context("still registered")?;
    ensure!(by_name.addr().same_process(registry.addr()));
    ensure!(shopping.addr().is_stopped() && groceries.addr().is_stopped());
    ensure!(shopping.get("eggs".into()).await == Err(CallError::Stopped));
    ensure!(buckets.count_children().await?.specs == 0);
    println!("the old buckets are gone and the new registry knows none");

    let fresh = registry.create("shopping".into()).await??;
    fresh.put("milk".into(), "1".into()).await?;
    ensure!(fresh.get("milk".into()).await?.as_deref() == Some("1"));
    println!("created \"shopping\" anew under the restarted tree");

    kv.shutdown().await;
    ensure!(fresh.addr().is_stopped() && registry.addr().is_stopped());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_tracing();
    println!("== KV: the Mix/OTP guide's key-value store on Foundation ==\n");
    run().await?;
    println!("\nkv ok");
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The guide's scenarios, as `main` walks them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_guides_scenarios_hold() -> anyhow::Result<()> {
        super::run().await
    }
}
