//! # foundation-registry
//!
//! Names for processes:
//!
//! - the [local registry](local), Elixir's `Registry` on Foundation's stable addresses;
//! - the [cluster-wide registry](cluster), Horde.Registry on Foundation nodes: every node
//!   holds every name, changes are sent at once, names go with their process or node, and
//!   a name registered on both sides of a partition has one winner once it heals;
//! - [service discovery and routing](services) on top of it;
//! - the [replica], the cluster-wide name table as plain state, which the cluster registry
//!   drives.
//!
//! - [strongly consistent names](consistent): leases granted by a Raft group, with fencing
//!   tokens, for names that must never have two holders.
//!
//! - the [placement core](placement): where distributed children run (singletons,
//!   replicas, pinned), when they move (rebalancing, handoff, failover, restart intensity
//!   across moves) and which side of a partition keeps them (split-brain policies), as
//!   plain logic without I/O. The guide is `docs/placement.md`.
//!
//! - the [distributed supervisor](distributed): Horde's DynamicSupervisor on Foundation
//!   nodes, carrying the placement core's plans out (children as kinds plus arguments,
//!   records replicated among its nodes, local OTP supervision, names in the cluster
//!   registry, failover after the quorum's wait), with handoff of a child's state and
//!   the messages held meanwhile on planned moves (`migrate`, rebalance, graceful
//!   shutdown), and checkpoints replicated to `k` nodes for crashes and node deaths.
//!
//! - [sharded entities](sharded): Akka Cluster Sharding's and Orleans' virtual actors:
//!   one light entity per key (state plus a small queue inside its shard, a few hundred
//!   bytes while idle), started by its first message, passivated when idle or least
//!   recently used, with the same actors, handles and context as any process; across a
//!   cluster, shards placed by rendezvous over the live members and moved, with their
//!   messages and their entities' snapshots, when their owner changes; entity
//!   checkpoints replicated to the shard's next owners, from which a dead node's
//!   entities restart.
//!
//! - [work across the cluster](work): an ecosystem whose workers run on every node (a
//!   coordinator singleton, one bounded queue per node, jobs to the least-loaded node,
//!   a dead node's jobs sent again), and map-reduce over it.
//!
//! The guides are `docs/registry.md` and `docs/placement.md`.
//!
//! ## A tour
//!
//! - [`Registry`]: keys to processes, each entry with a value; [`Mode::Unique`] names or
//!   [`Mode::Duplicate`] groups; entries go when their process stops for good, and stay
//!   across its restarts. See [`local`].
//! - Lookups: [`Registry::whereis`], [`Registry::lookup`], [`Registry::keys`],
//!   [`Registry::count_key`], [`Registry::select`]; the [`Lookup`] trait is the part the
//!   [`ClusterRegistry`] shares.
//! - Via: [`Registry::start_child`] and [`Registry::spawn`] start a process under a name;
//!   [`Registry::cast`], [`Registry::call`] reach it by name; [`Registry::dispatch`] and
//!   [`Registry::cast_all`] reach a group.
//!
//! ## Example
//!
//! ```
//! use foundation_actors::prelude::*;
//! use foundation_registry::{Mode, Registry};
//!
//! #[derive(Clone)]
//! struct Session;
//! enum Msg {
//!     Say(String),
//!     Heard(ReplyPort<Vec<String>>),
//! }
//!
//! impl Actor for Session {
//!     type Msg = Msg;
//!     type State = Vec<String>;
//!     type Args = ();
//!     async fn init(&self, _: &Addr<Msg>, _: ()) -> Result<Vec<String>, ActorError> { Ok(vec![]) }
//!     async fn handle(&self, _: &Addr<Msg>, msg: Msg, heard: &mut Vec<String>) -> Result<(), ActorError> {
//!         match msg {
//!             Msg::Say(s) => heard.push(s),
//!             Msg::Heard(reply) => { let _ = reply.send(heard.clone()); }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Sessions by user name, each with the user's region as its value.
//! let sessions: Registry<String, Msg, &'static str> = Registry::new(Mode::Unique);
//! let sup = DynamicSupervisor::start("sessions", None).await?;
//!
//! let spec = ChildSpec::new("alice", Session, ()).restart(Restart::Temporary);
//! sessions.start_child(sup.handle(), "alice".into(), "eu", spec).await?;
//!
//! // By name, at once.
//! sessions.cast("alice", Msg::Say("hello".into()))?;
//! assert_eq!(sessions.call("alice", Msg::Heard).await?, ["hello"]);
//! assert_eq!(sessions.lookup("alice")[0].1, "eu");
//!
//! // A second "alice" is refused, and the error names the holder.
//! let again = ChildSpec::new("alice-2", Session, ()).restart(Restart::Temporary);
//! assert!(sessions.start_child(sup.handle(), "alice".into(), "us", again).await.is_err());
//!
//! // When the session ends for good, its name goes with it.
//! let alice = sessions.whereis("alice").ok_or("no alice")?;
//! sup.terminate_child_by_addr(&alice).await?;
//! assert!(sessions.whereis("alice").is_none());
//! sup.shutdown().await;
//! # Ok(()) }
//! ```

pub mod cluster;
pub mod consistent;
pub mod distributed;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod local;
mod lookup;
pub mod placement;
pub mod replica;
pub mod services;
pub mod sharded;
pub mod work;

pub use cluster::{ClusterRegistry, Location, OnConflict, RegistryEvent};
pub use distributed::{DistributedSpec, DistributedSupervisor};

pub use local::{
    Mode, RegisterError, Registry, StartError, UpdateError, ViaCallError, ViaCastError,
};
pub use lookup::Lookup;
