//! Errors of sends, calls, spawns and exits.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The error an actor's callbacks return: any error, boxed. A supervisor sees it as
/// [`ExitReason::Failed`], from which the original can be downcast.
pub type ActorError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `cast` that could not be delivered; the message is handed back.
pub enum SendError<M> {
    /// The process has stopped and will not be restarted.
    Stopped(M),
    /// The process is restarting and already holds as many messages as it may
    /// (see [`ChildSpec::restart_backlog`](crate::ChildSpec::restart_backlog)).
    Backlog(M),
    /// The process's host is down for now (a sharded entity whose region is stopped or
    /// restarting): the message is refused, and the address works again once the host
    /// is back.
    Unavailable(M),
}

impl<M> SendError<M> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> M {
        match self {
            Self::Stopped(m) | Self::Backlog(m) | Self::Unavailable(m) => m,
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stopped(_) => f.write_str("Stopped(..)"),
            Self::Backlog(_) => f.write_str("Backlog(..)"),
            Self::Unavailable(_) => f.write_str("Unavailable(..)"),
        }
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stopped(_) => f.write_str(
                "the process has stopped and will not restart; look it up again or start it anew",
            ),
            Self::Backlog(_) => f.write_str(
                "the process is restarting and its restart backlog is full; retry later or raise restart_backlog",
            ),
            Self::Unavailable(_) => f.write_str(
                "the process's host is down for now (a sharded entity's region is stopped); retry once it is back",
            ),
        }
    }
}

impl<M> std::error::Error for SendError<M> {}

/// A `call` that got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The process has stopped and will not be restarted.
    #[error("the process has stopped and will not restart; look it up again or start it anew")]
    Stopped,
    /// The process is restarting and its restart backlog is full.
    #[error("the process is restarting and its restart backlog is full; retry later")]
    Backlog,
    /// The process's host is down for now (a sharded entity whose region is stopped or
    /// restarting); the address works again once it is back.
    #[error(
        "the process's host is down for now (a sharded entity's region is stopped); retry once it is back"
    )]
    Unavailable,
    /// No reply within the call's timeout.
    #[error("no reply within {0:?}; the request may still be handled")]
    Timeout(Duration),
    /// The context's deadline passed (before sending, or while waiting).
    #[error("the context's deadline passed; the request may still be handled if it was sent")]
    DeadlineExceeded,
    /// The process dropped the reply port without answering, crashed while handling the
    /// request, was killed with it in its mailbox, or stopped for good with it held.
    #[error("the process did not reply: it dropped the reply port or died handling the request")]
    NoReply,
}

impl<M> From<SendError<M>> for CallError {
    fn from(e: SendError<M>) -> Self {
        match e {
            SendError::Stopped(_) => Self::Stopped,
            SendError::Backlog(_) => Self::Backlog,
            SendError::Unavailable(_) => Self::Unavailable,
        }
    }
}

/// Why a process exited, as its supervisor sees it. Matchable, unlike ractor's boxed error.
#[derive(Debug, Clone)]
pub enum ExitReason {
    /// It stopped by itself, or was stopped with a reason; OTP's `normal` and `shutdown`.
    /// A child its supervisor shut down gracefully exits with `Normal(Some("shutdown"))`.
    Normal(Option<String>),
    /// It was killed (brutal shutdown, a shutdown timeout ran out, [`Addr::kill`]).
    ///
    /// [`Addr::kill`]: crate::Addr::kill
    Killed,
    /// A callback panicked.
    Panicked(String),
    /// A callback returned an error.
    Failed(Arc<dyn std::error::Error + Send + Sync>),
    /// It was a supervisor that gave up: its restart intensity was exceeded. OTP's
    /// supervisor exits with `shutdown` then, so this counts as a normal exit for a
    /// `Transient` parent (see [`ExitReason::is_normal`]); the [`SupervisorExit`] says why
    /// it gave up.
    Escalated(Arc<SupervisorExit>),
}

impl ExitReason {
    /// The reason a child exits with when its supervisor shuts it down gracefully
    /// (OTP's `shutdown`).
    pub(crate) fn shutdown() -> Self {
        Self::Normal(Some(SHUTDOWN.to_owned()))
    }

    /// Whether OTP would call this exit normal (`normal`, `shutdown`, `{shutdown, _}`): a
    /// `Transient` child is not restarted then. A supervisor that gave up
    /// ([`ExitReason::Escalated`]) counts, as OTP's supervisor exits with `shutdown`: a
    /// `Transient` child supervisor that gives up stays down, a `Permanent` one is
    /// restarted (and counts against its parent's intensity, so failures still climb).
    pub fn is_normal(&self) -> bool {
        matches!(self, Self::Normal(_) | Self::Escalated(_))
    }

    /// Maps a ractor supervision event's payload to a reason.
    pub(crate) fn from_failure(err: ractor::ActorProcessingErr) -> Self {
        let err = match err.downcast::<Crash>() {
            Ok(crash) => {
                return match *crash {
                    Crash::Panicked(p) => Self::Panicked(p),
                    Crash::Failed(e) => Self::Failed(Arc::from(e)),
                };
            }
            Err(err) => err,
        };
        match err.downcast::<SupervisorExit>() {
            Ok(exit) => Self::Escalated(Arc::new(*exit)),
            // Panics in ractor's own glue arrive as bare strings.
            Err(err) => Self::Failed(Arc::from(err)),
        }
    }

    /// Maps a ractor termination to a reason. ractor reports a kill as a stop whose
    /// reason is the text "killed", which a stop may also be given: [`Addr::stop`]
    /// escapes such a reason (see [`escape_stop_reason`]), so only a real kill reads as
    /// one. A termination without the state (the task was cancelled, or killed during
    /// `terminate`) is a kill too.
    ///
    /// [`Addr::stop`]: crate::Addr::stop
    pub(crate) fn from_termination(had_state: bool, reason: Option<String>) -> Self {
        match reason {
            _ if !had_state => Self::Killed,
            Some(r) if r == RACTOR_KILLED => Self::Killed,
            Some(r) => match r.strip_prefix(STOP_ESCAPE) {
                Some(unescaped) => Self::Normal(Some(unescaped.to_owned())),
                None => Self::Normal(Some(r)),
            },
            None => Self::Normal(None),
        }
    }
}

/// The reason ractor gives a killed actor's termination.
const RACTOR_KILLED: &str = "killed";

/// Marks a stop reason that would otherwise read as ractor's kill (or as escaped).
const STOP_ESCAPE: char = '\u{1b}';

/// The reason to hand ractor for a stop with `reason`: escaped if it would read as a kill
/// (or starts with the escape), so [`ExitReason::from_termination`] gives it back as it was.
pub(crate) fn escape_stop_reason(reason: String) -> String {
    if reason == RACTOR_KILLED || reason.starts_with(STOP_ESCAPE) {
        format!("{STOP_ESCAPE}{reason}")
    } else {
        reason
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Normal(None) => f.write_str("normal"),
            Self::Normal(Some(r)) => write!(f, "normal ({r})"),
            Self::Killed => f.write_str("killed"),
            Self::Panicked(p) => write!(f, "panicked: {p}"),
            Self::Failed(e) => write!(f, "failed: {e}"),
            Self::Escalated(e) => write!(f, "{e}"),
        }
    }
}

/// How a callback failed; boxed into ractor's error so supervisors can tell the causes
/// apart again.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Crash {
    #[error("panicked: {0}")]
    Panicked(String),
    #[error(transparent)]
    Failed(ActorError),
}

/// The stop reason a supervisor gives a child it shuts down gracefully.
pub(crate) const SHUTDOWN: &str = "shutdown";

/// What an [`Actor::init`](crate::Actor::init) returns to decline to start, as OTP's
/// `ignore`: `Err(Ignore.into())` (or `Err(Ignore)` from an `#[init]` hook whose error type
/// is [`ActorError`]).
///
/// No process is started. Under a supervisor the child is not running and that is not a
/// failure: a static supervisor keeps a `Permanent` or `Transient` child's spec (listed as
/// [`ChildStatus::Ignored`](crate::ChildStatus::Ignored), startable again with
/// `restart_child`) and forgets a `Temporary` one; a dynamic supervisor forgets it. The
/// child's address is stopped, and [`spawn`](crate::spawn) returns [`SpawnError::Ignored`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, thiserror::Error)]
#[error("init answered ignore: the process is not started")]
pub struct Ignore;

/// The exit of a supervisor that gave up: the reason its own parent sees.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "supervisor `{supervisor}` gave up: child `{child}` needed more than {max_restarts} restarts in {period:?} (last exit: {last_exit})"
)]
pub struct SupervisorExit {
    /// The supervisor's id.
    pub supervisor: String,
    /// The child whose exit exceeded the intensity.
    pub child: String,
    /// The configured intensity.
    pub max_restarts: u32,
    /// The configured period.
    pub period: Duration,
    /// The child's last exit.
    pub last_exit: ExitReason,
}

/// A process that failed to start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Its `init` returned an error or panicked.
    #[error("`{id}` failed to start: {reason}")]
    Init {
        /// The child id (or actor type) that failed.
        id: String,
        /// Why.
        reason: ExitReason,
    },
    /// The name asked for is taken by a live process.
    #[error("the name `{0}` is already registered; choose another or stop its owner first")]
    NameTaken(String),
    /// A child id is used twice in one supervisor.
    #[error("a child with id `{0}` already exists in this supervisor; child ids must be unique")]
    DuplicateId(String),
    /// The dynamic supervisor already has `max_children` children.
    #[error("the supervisor already has its maximum of {0} children")]
    MaxChildren(usize),
    /// A supervisor failed to start because one of its children did.
    #[error("supervisor `{supervisor}` could not start child `{child}`: {source}")]
    Child {
        /// The supervisor.
        supervisor: String,
        /// The child that failed.
        child: String,
        /// Why it failed.
        #[source]
        source: Box<SpawnError>,
    },
    /// The supervisor asked to start the child is not running.
    #[error("the supervisor is not running")]
    SupervisorStopped,
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Its `init` answered [`Ignore`]: it was not started, and that is not a failure.
    #[error("`{0}` answered ignore to its start: it is not running")]
    Ignored(String),
}

impl SpawnError {
    pub(crate) fn from_ractor(id: &str, e: ractor::SpawnErr) -> Self {
        match e {
            ractor::SpawnErr::StartupFailed(err) => match err.downcast::<SpawnError>() {
                Ok(inner) => *inner,
                Err(err) => Self::Init {
                    id: id.to_owned(),
                    reason: ExitReason::from_failure(err),
                },
            },
            ractor::SpawnErr::ActorAlreadyRegistered(name) => Self::NameTaken(name.to_string()),
            ractor::SpawnErr::ActorAlreadyStarted => Self::Init {
                id: id.to_owned(),
                reason: ExitReason::Failed(Arc::from(ActorError::from("started twice"))),
            },
        }
    }
}

/// A supervisor request that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// No child with that id.
    #[error("no child with id `{0}`; see which_children() for the ids")]
    UnknownChild(String),
    /// The child is running (OTP's `{error, running}`): `restart_child` and
    /// `delete_child` want it terminated first.
    #[error("child `{0}` is running; terminate_child it first")]
    Running(String),
    /// The child is between incarnations, its restart under way (OTP's
    /// `{error, restarting}`); terminate it first.
    #[error("child `{0}` is restarting; terminate_child it first")]
    Restarting(String),
    /// Starting a child failed.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The supervisor did not answer.
    #[error("the supervisor did not answer: {0}")]
    Call(#[from] CallError),
}
