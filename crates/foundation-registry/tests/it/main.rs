//! foundation-registry's public-API tests, in one binary (link time is dear on 2 cores).

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
#![allow(missing_docs, unreachable_pub)]

mod actor_handoff;
mod cluster;
mod distributed;
mod errors;
mod keys;
mod modes;
mod races;
mod removal;
mod sharded;
mod sharded_cluster;
mod sharded_join;
mod sharded_net;
mod support;
mod via;
mod work;
