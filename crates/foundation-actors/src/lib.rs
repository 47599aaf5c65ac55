//! # foundation-actors
//!
//! OTP's way of building systems, on [ractor]: actors with mailboxes, supervisors with
//! OTP restart semantics, stable addresses that survive restarts, a context that travels
//! with every message, and ecosystems of workers with backpressure.
//!
//! ## A tour
//!
//! - [`Actor`]: state and a `handle` callback, as a `GenServer`. Message types need no
//!   trait impl: Foundation wraps them in its own envelope, which carries the one
//!   `ractor::Message` impl (ractor's `cluster` feature, which Foundation turns on,
//!   removes ractor's blanket impl).
//! - [`macro@actor`]: derive an actor from an `impl` block, one method per message
//!   (`#[cast]`, `#[call]`, `#[info]`, `#[init]`, `#[terminate]`), with a generated typed
//!   handle. See [`typed`].
//! - [`RemoteMessage`]: a stable wire form for messages that cross nodes, one explicit tag
//!   per variant; a variant ending in a [`ReplyPort`] is a call, answered across nodes
//!   through a [`Replier`]. See [`remote`].
//! - [`Addr`]: a stable address. [`Addr::cast`] and [`Addr::call`] reach the process
//!   across restarts; see [`addr`].
//! - [`Supervisor`], [`DynamicSupervisor`]: `OneForOne`, `OneForAll`, `RestForOne`;
//!   `Permanent`, `Transient`, `Temporary`; restart intensity with escalation; ordered
//!   start and reverse shutdown with per-child timeouts; backoff; a printable live tree.
//!   See [`supervisor`].
//! - [`Context`]: trace id, spans, request id, deadline, baggage; current while a message
//!   is handled and carried by every send made from there; read from and written to a
//!   W3C `traceparent` header at the edges. See [`context`].
//! - [`Ecosystem`]: a coordinator and N workers under one supervisor, with routing and a
//!   bounded queue. See [`ecosystem`].
//! - [`hosted`]: an [`Actor`] run without a ractor actor of its own, inside a host that
//!   keeps many of them (sharded entities), reached through [`Addr::hosted`] and a
//!   [`Mailbox`].
//!
//! ## Example
//!
//! ```
//! use foundation_actors::prelude::*;
//!
//! #[derive(Clone)]
//! struct Counter;
//! enum Msg {
//!     Add(u64),
//!     Get(ReplyPort<u64>),
//!     Crash,
//! }
//!
//! impl Actor for Counter {
//!     type Msg = Msg;
//!     type State = u64;
//!     type Args = ();
//!     async fn init(&self, _: &Addr<Msg>, _: ()) -> Result<u64, ActorError> { Ok(0) }
//!     async fn handle(&self, _: &Addr<Msg>, msg: Msg, n: &mut u64) -> Result<(), ActorError> {
//!         match msg {
//!             Msg::Add(k) => *n += k,
//!             Msg::Get(reply) => { let _ = reply.send(*n); }
//!             Msg::Crash => return Err("asked to crash".into()),
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let counter = ChildSpec::new("counter", Counter, ());
//! let addr = counter.addr();
//! let sup = Supervisor::start(SupervisorSpec::new("app", Strategy::OneForOne).child(counter)).await?;
//!
//! addr.cast(Msg::Add(2))?;
//! addr.cast(Msg::Crash)?;          // the supervisor restarts it with fresh state
//! addr.cast(Msg::Add(3))?;         // same address: reaches the new incarnation
//! assert_eq!(addr.call(Msg::Get).await?, 3);
//! sup.shutdown().await;
//! # Ok(()) }
//! ```

pub mod actor;
pub mod addr;
pub mod context;
pub mod ecosystem;
pub mod error;
pub mod hosted;
mod loom;
pub mod remote;
pub mod supervisor;
pub mod typed;

// Lets the code `#[actor]` generates name this crate as `::foundation_actors` everywhere,
// this crate's own tests included.
extern crate self as foundation_actors;

pub use foundation_macros::actor;

pub use actor::{Actor, spawn};
pub use addr::{
    Addr, AddrKey, Batch, DEFAULT_CALL_TIMEOUT, FEED_BUDGET, Feed, Mailbox, ReplyPort, StopHook,
    WeakAddr,
};
pub use context::{Context, ContextError, SpanId, TraceId, TraceparentError, TraceparentField};
pub use ecosystem::{Ecosystem, EcosystemSpec, Routing, Worker};
pub use error::{
    ActorError, CallError, ExitReason, Ignore, SendError, SpawnError, SupervisorError,
    SupervisorExit,
};
pub use remote::{RemoteMessage, Replier, WireError, WireType};
pub use supervisor::{
    Backoff, ChildCounts, ChildInfo, ChildKind, ChildSpec, ChildSpecInfo, ChildStatus,
    DEFAULT_SUPERVISOR_CALL_TIMEOUT, DynamicSupervisor, Intensity, Restart, Shutdown, Strategy,
    Supervisor, SupervisorEvent, SupervisorMsg, SupervisorSpec, TreeNode,
};
pub use typed::{Ctx, TypedActor};

/// The names an application uses most.
pub mod prelude {
    pub use crate::typed::{Ctx, TypedActor};
    pub use crate::{
        Actor, ActorError, Addr, CallError, ChildSpec, Context, DynamicSupervisor, Ecosystem,
        EcosystemSpec, ReplyPort, Restart, Routing, SendError, Shutdown, Strategy, Supervisor,
        SupervisorSpec, Worker, spawn,
    };
    pub use crate::{AddrKey, ExitReason, Ignore, SupervisorEvent};
    pub use crate::{RemoteMessage, actor};
    pub use crate::{SpawnError, SupervisorError};
}
