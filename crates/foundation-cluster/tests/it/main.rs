//! foundation-cluster's integration tests: one binary.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
#![allow(missing_docs, unreachable_pub)]

mod discovery;
mod node;
mod raft;
