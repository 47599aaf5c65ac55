//! The registry's errors, one per kind of operation. Keys are shown with their `Debug`
//! form; errors of operations that take the key by value hand it back.

use std::fmt;

use foundation_actors::{Addr, CallError, SendError, SupervisorError};

/// A registration that was refused. The key is handed back ([`RegisterError::into_key`]).
#[derive(thiserror::Error)]
pub enum RegisterError<K, M> {
    /// In a unique registry, a live process holds the key already (perhaps the same one).
    #[error(
        "the key {key:?} is already registered to a live process; unregister it or look it up instead"
    )]
    AlreadyRegistered {
        /// The key asked for.
        key: K,
        /// The process that holds it (Elixir's `{:error, {:already_registered, pid}}`).
        holder: Addr<M>,
    },
    /// The process has stopped for good: it could never be removed again.
    #[error("cannot register the key {key:?}: the process has stopped for good")]
    Stopped {
        /// The key asked for.
        key: K,
    },
}

impl<K, M> RegisterError<K, M> {
    /// The key that was not registered.
    pub fn into_key(self) -> K {
        match self {
            Self::AlreadyRegistered { key, .. } | Self::Stopped { key } => key,
        }
    }
}

impl<K: fmt::Debug, M: Send + 'static> fmt::Debug for RegisterError<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyRegistered { key, holder } => f
                .debug_struct("AlreadyRegistered")
                .field("key", key)
                .field("holder", holder)
                .finish(),
            Self::Stopped { key } => f.debug_struct("Stopped").field("key", key).finish(),
        }
    }
}

/// An [`update_value`](crate::Registry::update_value) that changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The process holds no entry under the key.
    #[error("the key {key} is not registered to this process")]
    NotRegistered {
        /// The key, in its `Debug` form.
        key: String,
    },
    /// The registry has duplicate keys: which of a process's entries to update would be
    /// ambiguous (as Elixir's `Registry.update_value/3`, unique registries only).
    #[error("update_value needs a registry with unique keys")]
    NotUnique,
}

/// A [`cast`](crate::Registry::cast) by name that was not delivered; the message is handed
/// back ([`ViaCastError::into_inner`]).
#[derive(thiserror::Error)]
pub enum ViaCastError<M> {
    /// No live process is registered under the key.
    #[error("no live process is registered under the key {key}")]
    NotRegistered {
        /// The key, in its `Debug` form.
        key: String,
        /// The message.
        msg: M,
    },
    /// The process registered under the key refused it: it stopped meanwhile, or it is
    /// restarting with a full backlog.
    #[error("the process registered under the key {key} refused the message: {source}")]
    Send {
        /// The key, in its `Debug` form.
        key: String,
        /// Why, with the message.
        #[source]
        source: SendError<M>,
    },
}

impl<M> ViaCastError<M> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> M {
        match self {
            Self::NotRegistered { msg, .. } => msg,
            Self::Send { source, .. } => source.into_inner(),
        }
    }
}

impl<M> fmt::Debug for ViaCastError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRegistered { key, .. } => f
                .debug_struct("NotRegistered")
                .field("key", key)
                .finish_non_exhaustive(),
            Self::Send { key, source } => f
                .debug_struct("Send")
                .field("key", key)
                .field("source", source)
                .finish(),
        }
    }
}

/// A [`call`](crate::Registry::call) by name that got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViaCallError {
    /// No live process is registered under the key; nothing was sent.
    #[error("no live process is registered under the key {key}")]
    NotRegistered {
        /// The key, in its `Debug` form.
        key: String,
    },
    /// The process registered under the key did not reply.
    #[error("calling the process registered under the key {key}: {source}")]
    Call {
        /// The key, in its `Debug` form.
        key: String,
        /// Why.
        #[source]
        source: CallError,
    },
}

/// A start under a name ([`Registry::start_child`](crate::Registry::start_child),
/// [`Registry::spawn`](crate::Registry::spawn)) that failed.
#[derive(thiserror::Error)]
pub enum StartError<K, M> {
    /// The name could not be registered (in a unique registry, it is taken: the holder is
    /// in the error, as Elixir's `{:error, {:already_started, pid}}`). Nothing runs.
    #[error(transparent)]
    Register(RegisterError<K, M>),
    /// The process failed to start; its name is gone with it.
    #[error("the process failed to start: {0}")]
    Start(#[source] SupervisorError),
}

impl<K: fmt::Debug, M: Send + 'static> fmt::Debug for StartError<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Register(e) => f.debug_tuple("Register").field(e).finish(),
            Self::Start(e) => f.debug_tuple("Start").field(e).finish(),
        }
    }
}

impl<K, M> From<RegisterError<K, M>> for StartError<K, M> {
    fn from(e: RegisterError<K, M>) -> Self {
        Self::Register(e)
    }
}
