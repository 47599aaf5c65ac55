//! The local registry: names for the processes of this node.
//!
//! A [`Registry`] maps keys to processes ([`Addr`]s), each entry with a value (metadata),
//! as Elixir's `Registry`. An application may hold any number of independent registries,
//! each with its own key, message and value types and its own [`Mode`].
//!
//! # Modes
//!
//! - [`Mode::Unique`]: a key names at most one process. [`Registry::register`] fails with
//!   [`RegisterError::AlreadyRegistered`], naming the holder, if a live process holds it.
//!   Of two registrations of one key racing each other, exactly one wins.
//! - [`Mode::Duplicate`]: a key names a group, in registration order; a process may be in
//!   it more than once. [`Registry::dispatch`] and [`Registry::cast_all`] reach every
//!   member.
//!
//! # Removal when a process stops
//!
//! A process's entries go when it stops for good (see
//! [`foundation_actors::addr`](foundation_actors::addr#stopped-for-good)): a supervised
//! process that restarts keeps its address, and keeps its names. The registry learns of
//! the stop through [`Addr::on_stop`], at the moment it happens, and drops every entry of
//! the process then: no entry of a dead process stays behind, whether or not anyone looks
//! it up. Lookups also skip an entry whose process is seen stopped, so no lookup returns a
//! process that [`Addr::is_stopped`] says has stopped, and a unique key whose holder has
//! stopped is free to register at once.
//!
//! A child that a static supervisor terminated and later brings back with `restart_child`
//! has lost its names, as an Erlang process's would: register it again.
//!
//! # Consistency
//!
//! A registration is visible to every lookup, on every thread, once `register` returns
//! (Horde's users meet lookups that miss a name just registered: not here). Lookups take a
//! read lock on one shard of the key map, never block each other, and do not allocate
//! ([`Registry::whereis`]) or allocate only their result.
//!
//! # Via: naming a process through a registry
//!
//! Elixir's `{:via, Registry, {registry, key}}` names a process at start and sends to it
//! by name. Here [`Registry::start_child`] registers a child spec's address and starts it
//! under a supervisor (the name is there before the child runs, and stays across its
//! restarts), [`Registry::spawn`] does the same without a supervisor, and
//! [`Registry::cast`], [`Registry::call`] send to whatever process holds a name.
//!
//! # Keys
//!
//! Any `Hash + Eq + Clone + Debug + Send + Sync` type: strings, integers, tuples, your own
//! enums. Lookups borrow, as `HashMap`'s do (`&str` for a `String` key). Errors show keys
//! by their `Debug` form. Keys need not be `Serialize` here; the cluster-wide registry,
//! which ships keys to other nodes, will require it of its own keys.
//!
//! # Callbacks and locks
//!
//! Functions given to [`Registry::dispatch`], [`Registry::select`],
//! [`Registry::lookup_match`] and [`Registry::count_match`] run on copies, with nothing
//! locked: they may send and use the registry. [`Registry::update_value`]'s and
//! [`Registry::unregister_match`]'s run while the key is locked, so that updates do not
//! interleave: they must not use the registry.
//!
//! [`Addr`]: foundation_actors::Addr
//! [`Addr::on_stop`]: foundation_actors::Addr::on_stop
//! [`Addr::is_stopped`]: foundation_actors::Addr::is_stopped

mod bucket;
mod error;
mod registry;
mod via;

pub use error::{RegisterError, StartError, UpdateError, ViaCallError, ViaCastError};
pub use registry::{Mode, Registry};
