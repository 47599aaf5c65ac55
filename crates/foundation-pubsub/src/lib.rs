//! # foundation-pubsub
//!
//! Topics, in the manner of Phoenix.PubSub: actors and async code subscribe to a topic
//! (or a pattern of topics), and a broadcast reaches every subscriber, on this node or on
//! every node of the cluster.
//!
//! ## A tour
//!
//! - [`PubSub`]: one hub, by name. [`PubSub::start`] runs it on a
//!   [`Node`](foundation_cluster::node::Node) (several per node, by name);
//!   [`PubSub::local`] runs it without a node, with the same API.
//! - [`Topic<T>`](Topic): a topic name declared once with the type of its messages, so
//!   publishers and subscribers are checked at compile time. A topic may be a pattern:
//!   `orders.*` (one segment) or `orders.#` (any depth), matched with a trie. The type is
//!   a [`Payload`]: a [`RemoteMessage`](foundation_actors::RemoteMessage), whose wire
//!   identity (the hash of its wire name) travels with each broadcast, so that nodes
//!   built apart agree on it, and a node that reads the topic as another type refuses the
//!   message and counts it ([`Stats::wrong_type`]).
//! - Subscribers: an actor ([`PubSub::subscribe`], the message queued for its stable
//!   [`Addr`](foundation_actors::Addr), whose mailbox gets one doorbell for what gathers,
//!   see [`Feed`](foundation_actors::Feed); kept across supervised restarts and removed
//!   when it stops for good) or async code ([`PubSub::subscribe_stream`], a
//!   [`Subscription`] that is a `Stream`). Each has a bounded buffer ([`BufferConfig`]) and
//!   an [`Overflow`] policy; every loss is counted ([`PubSub::drops`], [`Stats`]).
//! - Metrics: the counters of [`Stats`] are also recorded through the [`metrics`] facade
//!   (`foundation_pubsub_*`, labelled `pubsub`; drops also by `topic`), for whatever
//!   exporter the application installs; `docs/pubsub.md` lists them.
//! - Broadcasts: [`PubSub::broadcast`] (everywhere), [`PubSub::local_broadcast`],
//!   [`PubSub::broadcast_from`] (skipping the sender), [`PubSub::direct_broadcast`] (one
//!   node). The publisher's [`Context`](foundation_actors::Context) travels with each
//!   message. [`PubSub::subscribers_count`] counts across the cluster.
//!
//! ## Across nodes
//!
//! Each node tells the others which topics and patterns it has subscribers for. A
//! broadcast is serialized once and sent once to each node with a matching subscriber (a
//! node without one receives nothing), on the node's `pubsub` channel ([`CHANNEL`]; declare
//! it on every node with [`channel_config`]: at low priority, so that a flood of broadcasts
//! and its fan-out run below calls), and fanned out there. Per publisher and topic, every subscriber sees
//! messages in publish order. Delivery across nodes is **at most once**: a node that is
//! down, or a channel that is full, misses what is sent meanwhile (counted in
//! [`Stats::send_failed`]), as does a node whose pubsub process holds its limit of
//! messages from peers ([`Options::max_queued`], counted in [`Stats::remote_dropped`]). The full story, and what to use when that is not enough, is in
//! `docs/pubsub.md`.
//!
//! ## Example
//!
//! ```
//! use foundation_actors::{Actor, ActorError, Addr, Context, RemoteMessage, spawn};
//! use foundation_pubsub::{PubSub, Topic};
//!
//! // A topic's type crosses nodes as any message does: its wire name (`Created`) is its
//! // identity there.
//! #[derive(Debug, Clone, RemoteMessage)]
//! struct Created { id: u64 }
//!
//! // An actor whose messages can be built from the topic's.
//! enum Msg { Created(Created) }
//! impl From<Created> for Msg {
//!     fn from(c: Created) -> Self { Msg::Created(c) }
//! }
//!
//! struct Mailer(tokio::sync::mpsc::UnboundedSender<(u64, Option<String>)>);
//! impl Actor for Mailer {
//!     type Msg = Msg;
//!     type State = ();
//!     type Args = ();
//!     async fn init(&self, _: &Addr<Msg>, _: ()) -> Result<(), ActorError> { Ok(()) }
//!     async fn handle(&self, _: &Addr<Msg>, Msg::Created(c): Msg, _: &mut ()) -> Result<(), ActorError> {
//!         // The publisher's context is current here.
//!         let who = Context::current().and_then(|ctx| ctx.baggage("user").map(String::from));
//!         let _ = self.0.send((c.id, who));
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pubsub = PubSub::local("app");
//! let created: Topic<Created> = Topic::new("orders.created")?;
//! let any_order: Topic<Created> = Topic::new("orders.#")?;
//!
//! let (tx, mut mails) = tokio::sync::mpsc::unbounded_channel();
//! let mailer = spawn(Mailer(tx), ()).await?;
//! pubsub.subscribe(&created, &mailer)?;
//! let mut audit = pubsub.subscribe_stream(&any_order)?;
//! assert_eq!(pubsub.subscribers_count(&created), 2);
//!
//! Context::new()
//!     .with_baggage("user", "ada")
//!     .sync_scope(|| pubsub.broadcast(&created, Created { id: 7 }))?;
//!
//! assert_eq!(mails.recv().await, Some((7, Some("ada".to_owned()))));
//! let seen = audit.recv().await.ok_or("stream ended")?;
//! assert_eq!(seen.id, 7);
//! assert_eq!(seen.context().and_then(|c| c.baggage("user")), Some("ada"));
//!
//! // A subscriber that stops for good is removed.
//! # let (tx, rx) = tokio::sync::oneshot::channel();
//! # let _hook = mailer.on_stop(move || { let _ = tx.send(()); });
//! mailer.stop(None);
//! # rx.await?;
//! assert_eq!(pubsub.subscribers_count(&created), 1);
//! # Ok(()) }
//! ```

mod buffer;
mod cluster;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod interest;
mod pubsub;
mod subscriber;
mod telemetry;
mod topic;
mod trie;

#[cfg(test)]
mod tests;

pub use buffer::{BufferConfig, Overflow};
pub use cluster::{CHANNEL, CHANNEL_MAX_PENDING, channel_config};
pub use error::{BroadcastError, StartError, SubscribeError, TopicError, WaitError};
pub use pubsub::{Drops, ENDED_DROPS_KEPT, Options, PubSub, Stats};
pub use subscriber::{Payload, Received, Subscription};
pub use telemetry::describe_metrics;
pub use topic::{MAX_SEGMENTS, MAX_TOPIC_LEN, Topic};
