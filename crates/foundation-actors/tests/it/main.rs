//! foundation-actors' public-API tests, in one binary (link time is dear on 2 cores).

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod batch;
mod context;
mod ecosystem;
mod feed;
mod remote;
mod stop_hook;
mod supervision;
mod support;
mod typed;
