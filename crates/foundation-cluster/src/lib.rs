//! # foundation-cluster (being built)
//!
//! A Foundation node: one OS process that joins a cluster. This crate will hold the
//! `ractor_cluster` session layer (cookie authentication, optional TLS), the discovery
//! strategies (static seeds, mDNS, Kubernetes, DNS, auto-detection), membership with
//! heartbeat failure detection and reconnect, the consistent-hash ring over live members,
//! the node router that sends and calls user processes by name on other nodes with their
//! context, and the openraft group used for strongly consistent state.
//!
//! Built so far, as plain state without I/O (the node's event loop, to come, drives
//! them): [`ring`], the consistent-hash ring over live members, and [`membership`], the
//! membership view with failure detection by silence and incarnations; and
//! [`discovery`]: the choice of strategy from the environment, and the strategies (static
//! seeds, mDNS, DNS, Kubernetes) that report the peers they see.

pub mod discovery;
pub mod membership;
pub mod node;
pub mod ring;
