//! # foundation-registry (not yet built)
//!
//! Names for processes. This crate will hold the local registry (unique and duplicate
//! keys, metadata, removal when a process dies), the cluster-wide registry replicated as a
//! delta-state CRDT with a deterministic conflict rule on partition heal, an optional
//! strongly consistent mode through openraft, service discovery with load balancing, and the
//! distributed supervisor that places processes as singletons, replicas or partitions.
