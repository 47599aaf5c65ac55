//! The `Local` adapter: a cache in this process, on moka (see [`Local`]).

mod builder;
mod cache;
pub(crate) mod flight;
mod slot;

pub use builder::LocalBuilder;
pub use cache::Local;
