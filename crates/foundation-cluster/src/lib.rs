//! # foundation-cluster
//!
//! A Foundation node: one OS process that joins a cluster. Nodes find each other
//! ([`discovery`]: static seeds, mDNS, Kubernetes, DNS, chosen from the environment),
//! authenticate with a cookie (and TLS if configured) over ractor_cluster sessions, notice
//! when a peer goes away ([`membership`]: a closed connection at once, silence after 3 s
//! by default, graceful leaves, restarts), agree on owners of keys ([`ring`]), send each
//! other messages by name, with the sender's context ([`node`]), and run consensus groups
//! for what must never have two answers (`raft`, feature `raft`, on by default).
//!
//! The guide is `docs/cluster.md`.
//!
//! # Examples
//!
//! One node exports a process and calls it by name; from another node the call is the same
//! with that node's name. (Nodes are processes: ractor's registries are process-wide, so
//! the crate's tests start one process per node.)
//!
//! ```
//! use std::time::Duration;
//! use foundation_actors::{Actor, ActorError, Addr, Context, RemoteMessage, ReplyPort, spawn};
//! use foundation_cluster::node::{Node, NodeConfig};
//!
//! #[derive(Debug, RemoteMessage)]
//! enum Greeter {
//!     #[remote(tag = 1)]
//!     Greet(String, ReplyPort<String>),
//! }
//!
//! struct Greeting;
//! impl Actor for Greeting {
//!     type Msg = Greeter;
//!     type State = ();
//!     type Args = ();
//!     async fn init(&self, _: &Addr<Greeter>, (): ()) -> Result<(), ActorError> { Ok(()) }
//!     async fn handle(&self, _: &Addr<Greeter>, msg: Greeter, (): &mut ()) -> Result<(), ActorError> {
//!         let Greeter::Greet(name, port) = msg;
//!         let req = Context::current().and_then(|c| c.request_id().map(str::to_owned));
//!         let _ = port.send(format!("hello {name} ({})", req.unwrap_or_default()));
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::new("a", "cookie").listen("127.0.0.1:0".parse()?)).await?;
//! node.export("greeter", spawn(Greeting, ()).await?)?;
//!
//! let ctx = Context::new().with_request_id("req-1");
//! let call = node.call("a", "greeter", |port| Greeter::Greet("ada".into(), port), Duration::from_secs(5));
//! assert_eq!(ctx.scope(call).await?, "hello ada (req-1)");
//! node.shutdown().await;
//! # Ok(()) }
//! ```

pub mod discovery;
pub mod membership;
pub mod node;
#[cfg(feature = "raft")]
pub mod raft;
pub mod ring;

/// Entry points for the fuzz targets in the repository's `fuzz/` directory, behind the
/// feature `fuzzing` (off by default). **Not an API**: these may change or go at any
/// time, and no application should turn the feature on.
///
/// Each function takes bytes as a peer could send them, runs the decode the node runs on
/// them through the node's own functions, and returns whether they were accepted. None may
/// panic, whatever the bytes: a panic is a bug the fuzzers are there to find.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::node::fuzzing::{agent, items, lane};
    #[cfg(feature = "raft")]
    pub use crate::raft::fuzzing::raft;

    /// Seed inputs for the targets, made with the node's own encoders: (target, bytes).
    pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let mut seeds = crate::node::fuzzing::seeds();
        #[cfg(feature = "raft")]
        seeds.extend(crate::raft::fuzzing::seeds());
        seeds
    }
}
