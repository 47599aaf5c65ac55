//! # foundation-cache (not yet built)
//!
//! Caches behind one API whose adapter is chosen by configuration, in the manner of
//! Nebulex: a local tier on `moka`, partitioned and replicated caches across the cluster,
//! and multilevel caches that combine them.
