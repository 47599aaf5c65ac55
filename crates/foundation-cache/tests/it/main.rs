//! foundation-cache's integration tests: the local adapter (`local`), single flight
//! (`single_flight`), the CRDTs' merge laws (`crdt_laws`) and their convergence over a
//! network that drops, reorders and duplicates (`crdt_net`), the partitioned and near caches
//! across real node processes (`cluster`) and on one node (`partitioned`), the replicated
//! cache and shared states across real node processes (`cluster_shared`), the replicated
//! adapter on one node, metrics and `#[cached]` (`replicated`).

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
#![allow(missing_docs, unreachable_pub)]

mod cluster;
mod cluster_shared;
mod crdt_laws;
mod crdt_net;
mod local;
mod partitioned;
mod replicated;
mod single_flight;
mod support;
