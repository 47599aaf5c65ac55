//! # Foundation
//!
//! Erlang/OTP's way of building systems, in Rust: supervised process ecosystems on one
//! machine, extended across a cluster. This is the crate an application depends on.
//!
//! It re-exports Foundation's layers, so an application needs no other Foundation crate:
//!
//! | module | crate | what | cargo feature |
//! |---|---|---|---|
//! | [`actors`] | `foundation-actors` | actors, OTP supervisors with stable addresses, a context that travels with every message, ecosystems of workers with backpressure | always |
//! | `cluster` | `foundation-cluster` | nodes, discovery, membership and failure detection, remote send/call by name, hash ring | `cluster` (default) |
//! | `registry` | `foundation-registry` | local, cluster-wide and strongly consistent names, service discovery; the distributed supervisor (`registry::distributed`: singletons, replicas, handoff, split-brain policies) and its placement core (`registry::placement`); sharded entities (`registry::sharded`: Akka-style sharding, an entity per key started by its first message, passivated when idle, moved with its shard; a million idle entities in about 300 MB); work across the cluster (`registry::work`: cluster-wide ecosystems, map-reduce) | `registry` (default; turns on `raft`) |
//! | `pubsub` | `foundation-pubsub` | topics and patterns, broadcast to subscribers here or on every node | `pubsub` (default) |
//! | `cache` | `foundation-cache` | caches behind one API (local on moka, partitioned, replicated, near cache), replicated state as delta CRDTs (`Shared`), `#[cached]` | `cache` (default) |
//! | `cluster::raft` | `foundation-cluster` | consensus groups over openraft | `raft` (on with `registry`) |
//! | `cluster::discovery::Kubernetes` | `foundation-cluster` | discovery through the Kubernetes API | `kubernetes` (on; kube and k8s-openapi are a quarter of a clean build: turn it off where Kubernetes is not used) |
//!
//! It also re-exports what the examples need from other crates: [`tokio`] (with
//! [`main`](macro@main) for `#[tokio::main]`) and [`serde`], and puts the everyday names
//! in the [`prelude`], [`Duration`](std::time::Duration) included.
//!
//! ## Message types
//!
//! Foundation runs on ractor with its `cluster` feature on, which removes ractor's
//! blanket `Message` impl. Foundation wraps every message in its own envelope, so **your
//! message types need no trait impl at all**: any `Send + 'static` type will do. Messages
//! that cross nodes derive [`RemoteMessage`](actors::RemoteMessage), with an explicit wire
//! tag per variant.
//!
//! ## Example
//!
//! An actor derived with [`actor`](macro@actors::actor): state, and one method per
//! message, as a `GenServer`. The macro generates the message enum, a typed handle
//! (`GreeterRef`) and the spawn functions.
//!
//! ```
//! use foundation::prelude::*;
//!
//! #[derive(Clone, Default)]
//! struct Greeter { greeted: u64 }
//!
//! #[actor]
//! impl Greeter {
//!     #[call]
//!     fn greet(&mut self, who: String) -> String {
//!         self.greeted += 1;
//!         format!("hello, {who}")
//!     }
//!
//!     #[call]
//!     fn greeted(&self) -> u64 { self.greeted }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let greeter = Greeter::child_spec(Greeter::default()).name("greeter");
//! let sup = Supervisor::start(SupervisorSpec::new("app", Strategy::OneForOne).child(greeter)).await?;
//! let greeter = GreeterRef::whereis("greeter").expect("registered");
//! assert_eq!(greeter.greet("world".into()).await?, "hello, world");
//! assert_eq!(greeter.greeted().await?, 1);
//! sup.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Actors can also be written by hand, implementing [`Actor`](actors::Actor) with an
//! explicit message enum: see [`actors`].

// The `main` macro names this crate `::foundation`, in its own doc tests too.
extern crate self as foundation;

pub use foundation_actors as actors;
#[cfg(feature = "cache")]
pub use foundation_cache as cache;
#[cfg(feature = "cluster")]
pub use foundation_cluster as cluster;
#[cfg(feature = "pubsub")]
pub use foundation_pubsub as pubsub;
#[cfg(feature = "registry")]
pub use foundation_registry as registry;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "runtime")]
pub use runtime::Foundation;

/// `#[tokio::main]` for an application that depends on this crate only.
///
/// ```
/// use foundation::prelude::*;
///
/// #[foundation::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let sup = DynamicSupervisor::start("app", None).await?;
///     sup.shutdown().await;
///     Ok(())
/// }
/// ```
pub use foundation_macros::main;

/// tokio, the runtime Foundation runs on (`foundation::tokio::spawn`, `::time`, `::sync`).
pub use tokio;

/// serde, for the types a remote message carries. Its derives are in the [`prelude`]; an
/// application that does not depend on serde itself tells them where serde is:
///
/// ```
/// use foundation::prelude::*;
///
/// #[derive(Serialize, Deserialize)]
/// #[serde(crate = "foundation::serde")]
/// struct Order { id: u64 }
/// ```
pub use serde;

/// The names an application uses most.
///
/// With the `registry` feature, that includes the distributed supervisor's (Horde's
/// DynamicSupervisor, Akka's cluster singleton): a singleton declared on every node needs
/// no other import.
///
/// ```
/// use foundation::prelude::*;
///
/// #[derive(Clone, Default)]
/// struct Counter { total: u64 }
///
/// #[actor(remote)]
/// impl Counter {
///     #[cast(tag = 1)] fn add(&mut self, n: u64) { self.total += n }
///     #[call(tag = 2)] fn total(&self) -> u64 { self.total }
/// }
///
/// # #[foundation::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let node = Node::start(NodeConfig::new("a", "cookie").listen("127.0.0.1:0".parse()?)).await?;
/// let names: ClusterRegistry<ChildName, CounterMsg> = ClusterRegistry::start(&node, "counters").await?;
/// let spec = DistributedSpec::new("counters")
///     .kind("counter", |total: u64| Counter::child_spec(Counter { total }));
/// let sup = DistributedSupervisor::start(&node, &names, spec).await?;
/// sup.start_child("counter", &0_u64, ChildPlacement::new("hits", Placement::Singleton)).await?;
/// sup.cast("hits", CounterMsg::Add(2))?;
/// assert_eq!(sup.call("hits", CounterMsg::Total, Duration::from_secs(5)).await?, 2);
/// # sup.shutdown().await;
/// # node.shutdown().await;
/// # Ok(()) }
/// ```
pub mod prelude {
    pub use foundation_actors::prelude::*;
    pub use serde::{Deserialize, Serialize};
    pub use std::time::Duration;

    #[cfg(feature = "runtime")]
    pub use crate::runtime::{ClusterInfo, Discovery, Foundation, Profile};
    #[cfg(feature = "cache")]
    pub use foundation_cache::{
        Cache, Local, Multilevel, Partitioned, Replicated, ReplicatedOptions, Ttl,
    };
    #[cfg(feature = "cluster")]
    pub use foundation_cluster::{
        discovery::Peer,
        membership::{DownReason, Member},
        node::{ClusterEvent, Node, NodeConfig, RemoteError},
    };
    #[cfg(feature = "pubsub")]
    pub use foundation_pubsub::{PubSub, Topic};
    #[cfg(feature = "registry")]
    pub use foundation_registry::{
        ClusterRegistry, Mode, Registry,
        distributed::{ChildName, DistributedSpec, DistributedSupervisor, StartChildError},
        placement::{ChildPlacement, Placement},
        sharded::{CastError, EntityCrash, JoinError, Sharded, ShardedSpec, ShardedStats},
        work::{ClusterEcosystem, WorkSpec},
    };
}

/// The guides' code blocks, compiled (and run, where they are whole programs) as doc tests
/// by `cargo test --doc` (a step of `cargo xtask test`): a page that shows code that no
/// longer compiles fails the check. Blocks that are not Rust say so (```sh, ```toml,
/// ```text); fragments hide their set-up in `# ` lines.
#[cfg(doctest)]
mod pages {
    #[doc = include_str!("../../../README.md")]
    struct Readme;
    #[doc = include_str!("../../../docs/cluster.md")]
    struct Cluster;
    #[doc = include_str!("../../../docs/genserver.md")]
    struct GenServer;
    #[doc = include_str!("../../../docs/macros.md")]
    struct Macros;
    #[doc = include_str!("../../../docs/registry.md")]
    struct Registry;
    #[doc = include_str!("../../../docs/supervision.md")]
    struct Supervision;
    #[doc = include_str!("../../../docs/benchmarks.md")]
    struct Benchmarks;
    #[doc = include_str!("../../../docs/placement.md")]
    struct Placement;
    #[doc = include_str!("../../../docs/pubsub.md")]
    struct PubSub;
    #[doc = include_str!("../../../docs/porting.md")]
    struct Porting;
    #[doc = include_str!("../../../docs/cache.md")]
    struct CachePage;
    #[doc = include_str!("../../../docs/configuration.md")]
    struct Configuration;
    #[doc = include_str!("../../../docs/getting-started.md")]
    struct GettingStarted;
    #[doc = include_str!("../../../docs/production.md")]
    struct Production;
    #[doc = include_str!("../../../docs/observability.md")]
    struct Observability;
    #[doc = include_str!("../../../docs/troubleshooting.md")]
    struct Troubleshooting;
}

#[cfg(test)]
mod tests {
    /// A new page in docs/ is checked too: it must be listed in `pages` above.
    #[test]
    fn every_page_of_the_docs_is_a_doc_test() {
        let lib = include_str!("lib.rs");
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");
        let (mut missing, mut seen) = (Vec::new(), 0);
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let listed = format!("include_str!(\"../../../docs/{name}\")");
            if name.ends_with(".md") {
                seen += 1;
                if !lib.contains(&listed) {
                    missing.push(name);
                }
            }
        }
        assert!(seen > 0, "no pages found in {dir}");
        assert!(
            missing.is_empty(),
            "docs not doc-tested (add them to `pages`): {missing:?}"
        );
        assert!(lib.contains("include_str!(\"../../../README.md\")"));
    }
}
