//! Why a shared state (or a replicated cache) did not start.

/// Why [`Shared::start`](crate::Shared::start) (or
/// [`Replicated::start`](crate::Replicated::start)) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A shared state or replicated cache of this name already runs on this node.
    #[error("a shared state named `{0}` already runs on this node")]
    NameTaken(String),
    /// Its process could not be spawned.
    #[error("the shared state's process did not start: {0}")]
    Spawn(#[from] foundation_actors::SpawnError),
    /// The local cache underneath was refused (a replicated cache's default TTL).
    #[error("invalid TTL: {0}")]
    InvalidTtl(#[from] crate::TtlError),
}
