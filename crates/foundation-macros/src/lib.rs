//! # foundation-macros
//!
//! Foundation's procedural macros, used through `foundation-actors` (or the `foundation`
//! facade), which re-exports them:
//!
//! - [`macro@actor`]: an actor written as its state plus one method per message, as a
//!   `GenServer` is: the message enum, the dispatch, a typed handle and spawn functions
//!   are generated.
//! - [`macro@main`]: `#[tokio::main]` through the facade's re-export of tokio.
//! - [`macro@cached`]: cache-aside on an async function (re-exported by
//!   `foundation-cache`).
//! - [`macro@RemoteMessage`]: a stable wire form for a message type, with an explicit tag
//!   per variant; a variant ending in a reply port is a call.
//!
//! The generated code names the runtime crate as `::foundation_actors`, or as
//! `::foundation::actors` when the application depends on the facade only (found in the
//! caller's `Cargo.toml`); `crate = path` overrides it.
//!
//! ## Example
//!
//! ```
//! use foundation_actors::prelude::*;
//!
//! #[derive(Clone, Default)]
//! struct Counter { total: u64 }
//!
//! #[actor]
//! impl Counter {
//!     #[cast]
//!     fn add(&mut self, n: u64) { self.total += n }
//!     #[call]
//!     fn total(&self) -> u64 { self.total }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let c = Counter::spawn(Counter::default()).await?;
//! c.add(5).await?;
//! assert_eq!(c.total().await?, 5);
//! # Ok(()) }
//! ```
//!
//! ## What `#[actor]` generates
//!
//! For the `Counter` above (`cargo expand` shows the same, with full paths):
//!
//! ```text
//! impl Counter { /* your methods, unchanged but for the handler attributes */ }
//!
//! /// The messages of `Counter`: one variant per handler.
//! pub enum CounterMsg {
//!     Add(u64),                       // #[cast] fn add(&mut self, n: u64)
//!     Total(ReplyPort<u64>),          // #[call] fn total(&self) -> u64
//! }
//! impl Debug for CounterMsg { .. }    // variant names only: no bounds on your types
//!
//! /// A typed handle: cheap to clone, valid across restarts.
//! #[derive(Clone, Debug)]
//! pub struct CounterRef { addr: Addr<CounterMsg>, timeout: Duration }
//! impl CounterRef {
//!     async fn add(&self, n: u64) -> Result<(), SendError<CounterMsg>>   // cast
//!     async fn total(&self) -> Result<u64, CallError>                    // call
//!     fn with_timeout(&self, d: Duration) -> Self
//!     fn whereis(name: &str) -> Option<Self>
//!     fn register(&self, name: &str) -> Result<(), SpawnError>
//!     fn addr(&self) -> &Addr<CounterMsg>
//!     fn stop(&self)
//!     fn kill(&self)
//!     fn is_running(&self) -> bool
//! }
//! impl From<Addr<CounterMsg>> for CounterRef
//!
//! impl Counter {
//!     async fn spawn(args: Counter) -> Result<CounterRef, SpawnError>
//!     async fn spawn_supervised(sup: &impl AsRef<Supervisor>, args: Counter)
//!         -> Result<CounterRef, SupervisorError>
//!     fn child_spec(args: Counter) -> ChildSpec<CounterMsg>   // id "Counter"
//! }
//!
//! impl TypedActor for Counter {
//!     type Msg = CounterMsg;
//!     type Args = Counter;            // the #[init] hook's argument type, if there is one
//!     type Ref = CounterRef;
//!     const NAME: &'static str = "Counter";
//!     fn actor() -> impl Actor<Msg = CounterMsg, Args = Counter> + Clone { __CounterActor }
//! }
//!
//! struct __CounterActor;              // runs it: an ordinary foundation-actors `Actor`
//! impl Actor for __CounterActor {
//!     type Msg = CounterMsg;
//!     type State = Running<Counter>;  // your state and its `Ctx`
//!     type Args = Counter;
//!     async fn init(&self, me: &Addr<CounterMsg>, args: Counter) -> Result<Running<Counter>, ActorError> {
//!         let owned = __private::ctx::<Counter>(me);
//!         let ctx = &owned;
//!         let state: Result<Counter, ActorError> = { Ok(args) };   // or your #[init] hook
//!         let state = state?;
//!         Ok(__private::running(state, owned))
//!     }
//!     async fn handle(&self, _: &Addr<CounterMsg>, msg: CounterMsg, running: &mut Running<Counter>)
//!         -> Result<(), ActorError>
//!     {
//!         let (this, ctx) = __private::parts(running);
//!         match msg {
//!             CounterMsg::Add(n) => HandlerResult::into_result(this.add(n)),
//!             CounterMsg::Total(reply) => {
//!                 let _ = reply.send(this.total());
//!                 Ok(())
//!             }
//!         }
//!     }
//! }
//! ```
//!
//! The dispatch is one `async fn` with one `match`, as a hand-written actor has: supervisors,
//! stable addresses, the context and deadlines all apply unchanged, and a cast is
//! `Addr::cast`, a call `Addr::call_timeout`, so a handle costs what a hand-written actor
//! costs.

mod actor;
mod cached;
mod krate;
mod remote;

use proc_macro::TokenStream;
use syn::{DeriveInput, ItemFn, ItemImpl, parse_macro_input};

/// Derives an actor from an inherent `impl` block of its state type.
///
/// # Handlers
///
/// | attribute | signature | becomes |
/// |---|---|---|
/// | `#[cast]` | `fn name(&mut self, a: A, …)` returning `()` or `Result<(), E>` | `handle.name(a, …)`: a cast; an `Err` crashes the actor |
/// | `#[call]` | `fn name(&self, a: A, …) -> R` | `handle.name(a, …) -> Result<R, CallError>`: a call replying `R` |
/// | `#[call]` | `fn name(&mut self, a: A, …, reply: ReplyPort<R>)` | the same call, answered later with `reply.send(r)` (`GenServer.reply`) |
/// | `#[info]` | `fn name(&mut self, msg: T)` | a message from timers, watchers or `addr.cast(T.into())` (`handle_info`) |
/// | `#[init]` | `fn name(args: A) -> Result<Self, E>` (or `-> Self`) | builds the state from `A` on each (re)start (`init/1`) |
/// | `#[terminate]` | `fn name(&mut self)` | runs on a graceful stop (`terminate/2`) |
/// | `#[restored]` | `fn name(&mut self)` | with `#[actor(handoff)]`: runs after the state was restored from a snapshot, instead of `#[init]` (re-arm timers, re-subscribe) |
///
/// Any of them may be `async`, take `&self` or `&mut self`, and take `ctx: &Ctx<Self>` as
/// their last parameter (the process's own handle, timers, `watch`, `stop`). Methods
/// without an attribute stay plain methods. Without `#[init]`, the state itself is the
/// argument of `spawn`.
///
/// # Options
///
/// `#[actor(vis = pub, handle = Name, message = Name, crate = path)]`: the generated items'
/// visibility (`pub` by default: a `pub` actor type needs its enum and handle `pub`; `vis = pub(crate)` narrows them), the handle's and the enum's names (`CounterRef`,
/// `CounterMsg` by default) and the path to `foundation-actors`.
///
/// `#[actor(handoff)]`: the state moves with the process (see [Handoff](#handoff)).
///
/// # Handoff
///
/// `#[actor(handoff)]` makes the type its own snapshot for `foundation-registry`'s
/// `distributed::Handoff`: a sharded entity moved to another node or passivated, or a
/// distributed supervisor's child moved by `migrate`, a rebalance or a graceful shutdown,
/// starts again from its last state instead of from `#[init]`. The type must implement
/// serde's `Serialize` and `Deserialize` (an error at `handoff` otherwise); a
/// `#[serde(skip)]` field comes back as its `Default`. The macro adds
///
/// ```text
/// impl Counter {
///     fn handoff_actor() -> impl Handoff<Msg = CounterMsg, Args = ..., Snapshot = Counter> + Clone
/// }
/// ```
///
/// the actor to give `ShardedSpec::new(name, Counter::handoff_actor(), args)` with
/// `.handoff()`, or to return from a `DistributedSpec::handoff_kind` factory. Its `export`
/// gives the state (the old incarnation's `#[terminate]` does not run, its timers are
/// cancelled), its `restore` builds a new context, as a start does, and runs the optional
/// `#[restored]` hook, which may take `ctx: &Ctx<Self>`, be `async` and return a `Result`
/// (an `Err` fails the start, as `#[init]`'s would; the `#[init]` argument is not used on
/// a restore). A handler checkpoints with
/// `foundation_registry::distributed::checkpoint(self)`. The registry is reached as
/// `foundation_registry`, or `foundation::registry` for an application that depends on the
/// facade only; an actor without `handoff` needs only `foundation-actors`.
///
/// ```
/// use foundation_actors::prelude::*;
/// use foundation_registry::distributed::checkpoint;
/// use foundation_registry::sharded::{Sharded, ShardedSpec};
/// use serde::{Deserialize, Serialize};
/// use std::time::Duration;
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Counter { total: u64, restores: u32 }
///
/// #[actor(handoff)]
/// impl Counter {
///     #[init]
///     fn start() -> Self { Self::default() }
///
///     #[cast]
///     fn add(&mut self, n: u64) { self.total += n }
///
///     /// Replicated to other nodes: a start after a crash begins here.
///     #[call]
///     fn save(&self) -> bool { checkpoint(self).is_ok() }
///
///     #[call]
///     fn total(&self) -> (u64, u32) { (self.total, self.restores) }
///
///     /// On the new incarnation, after a move or a passivation.
///     #[restored]
///     fn back(&mut self) { self.restores += 1 }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spec = ShardedSpec::new("counters", Counter::handoff_actor(), |_: &u64| ())
///     .idle_timeout(Duration::from_millis(50))
///     .handoff();
/// let counters = Sharded::new(spec);
/// let sup = Supervisor::start(
///     SupervisorSpec::new("app", Strategy::OneForOne).child(counters.child_spec()),
/// )
/// .await?;
/// let c: CounterRef = counters.entity(7);
/// c.add(5).await?;
/// assert!(c.save().await?);
/// while counters.is_active(&7) {
///     tokio::time::sleep(Duration::from_millis(10)).await; // passivated when idle
/// }
/// assert_eq!(c.total().await?, (5, 1)); // restored from its snapshot
/// sup.shutdown().await;
/// # Ok(()) }
/// ```
///
/// # Remote actors
///
/// `#[actor(remote)]` (or `#[actor(remote = "wire.Name")]`; the enum's Rust name by
/// default) also derives [`RemoteMessage`](macro@RemoteMessage) on the message enum, so its
/// messages can cross nodes. Every `#[cast]` and `#[call]` then takes a wire tag of its
/// own, `#[cast(tag = 1)]`, `#[call(tag = 2)]`: the tag, not the handler's name, is what
/// peers see. A `#[call]` variant carries its reply port last, so it is a call on the wire
/// too. `#[info]` messages stay local (`#[remote(skip)]`: they have no tag, and encoding
/// one is a `WireError::LocalOnly`). Parameters and replies need serde's `Serialize` and
/// `Deserialize`; a type without them is an error at that parameter or return type.
///
/// ```
/// use foundation_actors::prelude::*;
///
/// #[derive(Clone, Default)]
/// struct Counter { total: u64 }
///
/// #[actor(remote = "demo.Counter")]
/// impl Counter {
///     #[cast(tag = 1)]
///     fn add(&mut self, n: u64) { self.total += n }
///     #[call(tag = 2)]
///     fn total(&self) -> u64 { self.total }
/// }
///
/// assert_eq!(CounterMsg::TAGS, &[1, 2]);
/// assert_eq!(CounterMsg::CALL_TAGS, &[2]);
/// ```
#[proc_macro_attribute]
pub fn actor(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as ItemImpl);
    actor::expand(attr.into(), item).into()
}

/// Derives `RemoteMessage`: a stable postcard wire form.
///
/// Every enum variant needs `#[remote(tag = N)]`; the tag, not the name or position,
/// identifies it on the wire. `#[remote(name = "…")]` on the type sets its wire name
/// (the Rust name by default), whose hash (`RemoteMessage::WIRE_TYPE`) travels with each
/// message so that a peer refuses a message of another type before decoding it. Fields
/// need serde's `Serialize` and `Deserialize`.
///
/// A variant (or struct) whose last field is a `ReplyPort<T>` (or ractor's
/// `RpcReplyPort<T>`) is a call: the port is not encoded, and the receiving side makes one
/// with `RemoteMessage::from_bytes_with_reply`. One port per variant, last; `T` needs
/// serde's traits, `Send` and `'static`. The reply type's wire name
/// (`RemoteMessage::reply_type`) is `T` as written, each path cut to its last segment;
/// `#[remote(tag = N, reply = "…")]` (on a struct, `#[remote(reply = "…")]`) pins it.
/// `#[remote(skip)]` on a variant keeps it local: no tag, no serde needed, and encoding it
/// is an error.
#[proc_macro_derive(RemoteMessage, attributes(remote))]
pub fn derive_remote_message(item: TokenStream) -> TokenStream {
    let input = parse_macro_input!(item as DeriveInput);
    remote::expand(input).into()
}

/// Runs an `async fn main` on a multi-threaded tokio runtime: `#[tokio::main]` for an
/// application that depends on the `foundation` facade only (it re-exports tokio).
/// Arguments are tokio's (`flavor = "current_thread"`, `worker_threads = 2`).
///
/// ```ignore
/// use foundation::prelude::*;
///
/// #[foundation::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let sup = DynamicSupervisor::start("app", None).await?;
///     sup.shutdown().await;
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    let facade = krate::facade_path();
    let tokio = format!("{}::tokio", facade.to_string().replace(' ', ""));
    let attr = proc_macro2::TokenStream::from(attr);
    let sep = if attr.is_empty() {
        quote::quote!()
    } else {
        quote::quote!(,)
    };
    let item = proc_macro2::TokenStream::from(item);
    quote::quote!(
        #[#facade::tokio::main(#attr #sep crate = #tokio)]
        #item
    )
    .into()
}

/// Cache-aside on an `async fn` returning `Result<V, E>`: the value under the key is
/// returned if the cache holds it; otherwise the body runs and an `Ok` value is written to
/// the cache before it is returned. An `Err` is returned as it is and caches nothing.
///
/// Arguments: `cache = <expr>` (required: anything that implements
/// `foundation_cache::Cache<K, V>`, borrowed), `key = <expr>` (by default the argument, or
/// a tuple of the arguments, cloned), `ttl = <expr>` (a `Ttl`, or a `Duration`; by default
/// `Ttl::Default`). It expands to a call to `foundation_cache::cached`, whose docs say how
/// cache errors are treated (logged; the body's value is still returned).
///
/// ```ignore
/// use std::sync::LazyLock;
/// use std::time::Duration;
/// use foundation_cache::{Local, cached};
///
/// static USERS: LazyLock<Local<u64, String>> =
///     LazyLock::new(|| Local::builder().max_entries(10_000).build().expect("a valid TTL"));
///
/// #[cached(cache = *USERS, key = id, ttl = Duration::from_secs(60))]
/// async fn user_name(id: u64) -> Result<String, std::io::Error> {
///     Ok(format!("user {id}")) // a database, in life
/// }
/// ```
#[proc_macro_attribute]
pub fn cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as ItemFn);
    cached::expand(attr.into(), item).into()
}
