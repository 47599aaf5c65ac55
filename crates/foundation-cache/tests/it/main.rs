//! foundation-cache's integration tests: the local adapter (`local`), single flight
//! (`single_flight`), the CRDTs' merge laws (`crdt_laws`) and their convergence over a
//! network that drops, reorders and duplicates (`crdt_net`), and the replicated cache and
//! shared states across real node processes (`cluster`), the replicated adapter on one
//! node, metrics and `#[cached]` (`replicated`).

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
#![allow(missing_docs, unreachable_pub)]

mod cluster;
mod crdt_laws;
mod crdt_net;
mod local;
mod replicated;
mod single_flight;
mod support;
