//! Multi-node tests (below).
