//! # foundation-pubsub
//!
//! Topics, in the manner of Phoenix.PubSub: subscribe actors or async code to a topic (or
//! a pattern of topics), broadcast to every subscriber on this node or in the cluster.
//!
//! TODO crate tour.

mod buffer;
mod cluster;
mod error;
mod pubsub;
mod subscriber;
mod topic;
mod trie;

pub use buffer::{BufferConfig, Overflow};
pub use cluster::CHANNEL;
pub use error::{BroadcastError, StartError, SubscribeError, TopicError};
pub use pubsub::{Drops, Options, PubSub, Stats};
pub use subscriber::{Payload, Received, Subscription};
pub use topic::{MAX_SEGMENTS, MAX_TOPIC_LEN, Topic};
