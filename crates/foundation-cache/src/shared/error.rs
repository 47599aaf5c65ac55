//! Why a shared state (or a replicated cache) did not start: the crate's
//! [`StartError`](crate::StartError), shared by every cluster cache.

pub use crate::error::StartError;
