//! foundation-pubsub's integration tests: one binary (link time on a small machine).
//!
//! - `local`: one process, [`PubSub::local`](foundation_pubsub::PubSub::local) and a
//!   single node: subscribers, patterns, context, slow subscribers, bad input, restarts.
//! - `cluster`: real node processes over real sockets (the binary re-runs itself as a
//!   node, see `cluster/harness.rs`).

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
#![allow(missing_docs, unreachable_pub)]

mod cluster;
mod local;
