//! The `examples` package's integration tests, as one test binary (one link, not one per
//! file): `cargo test -p examples --test it [filter]`.
//!
//! - `sharded`: runs the `sharded` example program as a user would.
//! - `dashboard`: renders a 3-node cluster's dashboard (`demo --serve`) in headless
//!   Chromium, before and after a node is killed (needs `apt-get install chromium`).
//! - `examples_run`: runs `chat` as two real processes that talk, then stop by SIGTERM.
//! - `kubernetes`: reads the manifests of `examples/kubernetes` and checks that they agree
//!   with what the Kubernetes discovery strategy and the node's defaults expect.

#![allow(clippy::unwrap_used, missing_docs)] // tests unwrap: a failure is the point

mod dashboard;
mod examples_run;
mod kubernetes;
mod sharded;
