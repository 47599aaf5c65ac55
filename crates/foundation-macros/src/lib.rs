//! # foundation-macros (not yet built)
//!
//! Procedural macros for Foundation: `#[actor]` to derive an actor, its message enum and a
//! typed handle from an `impl` block, and derives for remote-able messages with stable wire
//! tags.
