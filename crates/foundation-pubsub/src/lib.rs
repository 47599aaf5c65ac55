//! # foundation-pubsub (not yet built)
//!
//! Topics. This crate will hold local and cluster-wide publish/subscribe in the manner of
//! Phoenix.PubSub: one forward per node, then local fan-out, with topic patterns.
