//! Remote-able messages: a stable wire form with an explicit tag per variant.
//!
//! `#[derive(RemoteMessage)]` implements [`RemoteMessage`] for an enum or a struct. Its
//! wire form is postcard, but not serde's derive of the whole type: serde numbers enum
//! variants by their position, so reordering variants would silently change what peers
//! read. Instead each variant carries the tag written on it:
//!
//! ```text
//! enum:   varint(tag) · postcard(field 1, field 2, …)
//! struct: postcard(field 1, field 2, …)
//! ```
//!
//! Fields need serde's `Serialize` and `Deserialize`; the message type itself needs
//! neither.
//!
//! # Calls
//!
//! A variant (or a struct) whose last field is a [`ReplyPort<T>`](ReplyPort) is a *call*,
//! as ractor_cluster's `#[rpc]` variants are. The port is not on the wire: the sending
//! node keeps the caller's side, and the receiving node makes a new port with a
//! [`Replier`] when it decodes the message ([`RemoteMessage::from_bytes_with_reply`]). The
//! handler answers on that port as on any local one; the reply's postcard bytes
//! ([`encode_reply`]) reach the replier's sink, to be sent back and read with
//! [`decode_reply`]. A port dropped unanswered gives the sink `None`, so the caller can
//! fail at once rather than time out.
//!
//! ```text
//! caller's node                          receiving node
//! msg.to_bytes()  ── tag · fields ──▶    M::from_bytes_with_reply(bytes, Replier::new(sink))
//!                                        addr.cast(msg); the handler does reply.send(v)
//! decode_reply(bytes) ◀── postcard(v) ── sink(Some(bytes))    (or sink(None): no reply)
//! ```
//!
//! [`RemoteMessage::CALL_TAGS`] lists the call variants' tags; [`RemoteMessage::is_call`]
//! tells a value apart. A call decoded with [`RemoteMessage::from_bytes`] is refused with
//! [`WireError::NeedsReply`]. The port's `T` needs `Serialize`, `Deserialize`, `Send` and
//! `'static`. The derive recognises a port by the last segment of its type's path,
//! `ReplyPort<T>` or `RpcReplyPort<T>` (ractor's name for the same type); write it so,
//! not through an alias of your own.
//!
//! ```
//! use foundation_actors::ReplyPort;
//! use foundation_actors::remote::{RemoteMessage, Replier, WireError, decode_reply};
//! use std::sync::mpsc;
//!
//! #[derive(Debug, RemoteMessage)]
//! enum Kv {
//!     #[remote(tag = 1)]
//!     Put(String, u64),
//!     #[remote(tag = 2)]
//!     Get { key: String, reply: ReplyPort<Option<u64>> },
//! }
//! assert_eq!(Kv::CALL_TAGS, &[2]);
//!
//! // The caller's node: the port stays here (its receiver awaits the reply).
//! let (tx, _caller_waits) = tokio::sync::oneshot::channel();
//! let bytes = Kv::Get { key: "a".into(), reply: tx.into() }.to_bytes()?;
//!
//! // The receiving node: a replier whose sink sends the reply back.
//! let (back, replies) = mpsc::channel();
//! let replier = Replier::new(move |reply| { let _ = back.send(reply); });
//! match Kv::from_bytes_with_reply(&bytes, replier)? {
//!     Kv::Get { key, reply } => { let _ = reply.send((key == "a").then_some(7)); }
//!     Kv::Put(..) => {}
//! }
//!
//! // The caller's node again.
//! let reply = replies.recv()?.expect("answered");
//! assert_eq!(decode_reply::<Option<u64>>("Option<u64>", &reply)?, Some(7));
//! assert!(matches!(Kv::from_bytes(&bytes), Err(WireError::NeedsReply { tag: Some(2), .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Local-only variants
//!
//! `#[remote(skip)]` on a variant keeps it off the wire: it has no tag, its fields need no
//! serde, and encoding it is a [`WireError::LocalOnly`]. `#[actor(remote)]` marks its
//! `#[info]` messages so (timer ticks, supervisor events).
//!
//! # Compatibility
//!
//! Peers see a variant's tag, never its name, and its fields by position, never by name.
//! So renaming a variant, renaming a field, and reordering variants all keep the bytes
//! the same: an old peer and a new one understand each other.
//!
//! A variant's fields are written in declaration order, without names, so adding,
//! removing, retyping or reordering them changes its wire form. The other side's decode
//! may then fail (truncated or trailing bytes), or may not: swap two fields of the same
//! type and each decodes as the other, silently. Give the new shape a new tag, and keep
//! the old variant while peers still send it. The same holds for a struct's fields, which have no tag to change: give the
//! new shape a new type (and a new `#[remote(name = "…")]`).
//!
//! # Type identity
//!
//! Tags say which variant a message is, not which type: a message of another type whose
//! tags happen to match would decode as the receiver's own variant. So each type's
//! identity travels too: [`RemoteMessage::WIRE_TYPE`], the [`wire_id`] hash (XXH3-64) of
//! its wire name, `#[remote(name = "…")]` or, by default, the type's Rust name without its
//! module path. foundation-cluster's node sends the hash with every message, and the
//! receiving node compares it with its process's type before decoding anything. A call
//! also carries the hash of its reply type's wire name ([`RemoteMessage::reply_type`]),
//! which the receiving node compares with its own variant's
//! ([`RemoteMessage::reply_type_of`]) before the handler runs.
//!
//! A reply type's wire name is the type written in the port, `ReplyPort<…>`, with each
//! path cut to its last segment: `ReplyPort<std::option::Option<u64>>` gives
//! `Option<u64>`, `ReplyPort<crate::api::Stats>` gives `Stats`.
//! `#[remote(tag = N, reply = "…")]` on a variant (`#[remote(reply = "…")]` on a struct)
//! pins it.
//!
//! ```
//! use foundation_actors::ReplyPort;
//! use foundation_actors::remote::{RemoteMessage, WireType};
//!
//! #[derive(RemoteMessage)]
//! #[remote(name = "kv.Command")]
//! enum Command {
//!     #[remote(tag = 1)]
//!     Put(String, u64),
//!     #[remote(tag = 2)]
//!     Get(String, ReplyPort<std::option::Option<u64>>),
//!     #[remote(tag = 3, reply = "kv.Stats")]
//!     Stats(ReplyPort<(u64, u64)>),
//! }
//!
//! assert_eq!(Command::WIRE_TYPE, WireType::named("kv.Command"));
//! let put = Command::Put("k".into(), 1).to_bytes()?;
//! assert_eq!(Command::reply_type_of(&put), None); // a cast
//! let (port, _) = tokio::sync::oneshot::channel();
//! let get = Command::Get("k".into(), port.into());
//! assert_eq!(get.reply_type(), Some(WireType::named("Option<u64>")));
//! assert_eq!(Command::reply_type_of(&get.to_bytes()?), get.reply_type());
//! let (port, _) = tokio::sync::oneshot::channel();
//! assert_eq!(Command::Stats(port.into()).reply_type(), Some(WireType::named("kv.Stats")));
//! # Ok::<(), foundation_actors::WireError>(())
//! ```
//!
//! The wire names are the contract. A type renamed or moved to another module keeps its
//! identity as long as its wire name stays: pin it with `name = "…"` (or `reply = "…"`)
//! before renaming it. Changing a wire name makes it another type to peers that still
//! use the old one. An alias is spelled otherwise than the type it stands for: a reply
//! type written through `type Answer = u64;` on one side and as `u64` on the other is two
//! types; pin one name on both.
//!
//! # Plain values
//!
//! Some standard types are remote messages of their own, each with its Rust spelling as
//! its wire name (the name a reply of that type has too): `bool`, `char`, the integers
//! of fixed width (`u8` to `u128`, `i8` to `i128`), `f32`, `f64`, `String` and
//! `Vec<u8>`, each encoded as postcard encodes it. `Arc<M>` is `M` on the wire: the same
//! wire name, tags and bytes, so a large message can be shared without a copy where it is
//! handed to several receivers (a pubsub's subscribers). A type of your own gets its
//! identity from the derive.
//!
//! ```
//! use foundation_actors::remote::{RemoteMessage, WireType};
//! use std::sync::Arc;
//!
//! assert_eq!(u64::WIRE_TYPE, WireType::named("u64"));
//! assert_eq!(u64::from_bytes(&7_u64.to_bytes()?)?, 7);
//! assert_eq!(<Arc<String>>::WIRE_TYPE, String::WIRE_TYPE);
//! # Ok::<(), foundation_actors::WireError>(())
//! ```
//!
//! # Hostile input
//!
//! Bytes from a peer are checked, not trusted: an unknown tag, truncated or malformed
//! bytes and trailing bytes each give a [`WireError`] that names the type and the tag,
//! never a panic. A string, byte string or `Vec` whose length prefix claims more than
//! the input holds is refused before anything is allocated for it. Maps and sets are
//! the exception: serde lets them preallocate up to about 1 MiB of entries whatever
//! their prefix says (a `HashMap`'s table for that is about 2 MiB), before the input
//! runs out and the decode fails.
//!
//! postcard has no depth limit. A field type that contains itself (an expression tree
//! through `Box`, a JSON-like value through `Vec`) is decoded by recursion, one level
//! per byte or so of input, and hostile input nested deep enough overflows the stack,
//! which aborts the process: no error, no panic to catch. On a tokio worker's 2 MiB
//! stack a few tens of kilobytes of nesting are enough. Keep remote messages flat, or
//! bound the size of the frames they arrive in (foundation-cluster limits frame sizes).
//!
//! # Examples
//!
//! ```
//! use foundation_actors::remote::{RemoteMessage, WireError};
//!
//! #[derive(Debug, PartialEq, RemoteMessage)]
//! enum Command {
//!     #[remote(tag = 1)]
//!     Put { key: String, value: Vec<u8> },
//!     #[remote(tag = 2)]
//!     Get(String),
//!     #[remote(tag = 7)]
//!     Ping,
//! }
//!
//! let put = Command::Put { key: "k".into(), value: vec![1, 2] };
//! let bytes = put.to_bytes()?;
//! assert_eq!(bytes[0], 1); // the tag, then the fields
//! assert_eq!(Command::from_bytes(&bytes)?, put);
//!
//! let err = Command::from_bytes(&[9]).unwrap_err();
//! assert!(matches!(err, WireError::UnknownTag { tag: 9, .. }));
//! # Ok::<(), WireError>(())
//! ```

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Wake, Waker};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
// `tokio::task::unconstrained` is deprecated for `tokio::task::coop::unconstrained` in newer
// tokio; the old path works on every tokio this workspace accepts (1.40 and up).
#[allow(deprecated)]
use tokio::task::{Unconstrained, unconstrained};

use crate::addr::ReplyPort;

pub use foundation_macros::RemoteMessage;

/// A message with a stable wire form; derive it with `#[derive(RemoteMessage)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross nodes: it has no wire form (`RemoteMessage`)",
    label = "this message type is not remote-able",
    note = "for an actor's messages, write `#[actor(remote)]` on its impl and give each cast and call a tag: `#[cast(tag = 1)]`",
    note = "for a message enum of your own, add `#[derive(RemoteMessage)]` and `#[remote(tag = N)]` on each variant"
)]
pub trait RemoteMessage: Sized + Send + 'static {
    /// The type's wire name (`#[remote(name = "…")]`, or the Rust name): how errors and
    /// peers name it.
    const TYPE_NAME: &'static str;
    /// The type's identity on the wire: [`RemoteMessage::TYPE_NAME`] and its hash
    /// ([`wire_id`]), computed at compile time. A node sends the hash with every message,
    /// and the receiving node refuses a message whose hash is not its process's type's
    /// before decoding it (see [Type identity](self#type-identity)).
    ///
    /// Keep the default: a value that does not hash [`RemoteMessage::TYPE_NAME`] makes
    /// errors name a type that peers do not see.
    const WIRE_TYPE: WireType = WireType::named(Self::TYPE_NAME);
    /// Every tag this type knows, in declaration order (empty for a struct). Local-only
    /// variants (`#[remote(skip)]`) have none.
    const TAGS: &'static [u32];
    /// The tags of the call variants (those carrying a reply port), in declaration order.
    ///
    /// A struct has no tag; a struct that carries a reply port lists the single tag `0`
    /// here, standing for its one shape, so that `CALL_TAGS.is_empty()` tells whether any
    /// value of the type is a call. [`RemoteMessage::is_call`] applies this convention.
    ///
    /// The default, for a hand-written impl, is no calls.
    const CALL_TAGS: &'static [u32] = &[];

    /// This value's tag (`None` for a struct, and for a local-only variant).
    fn tag(&self) -> Option<u32>;

    /// Whether this value is a call: it carries a reply port, and its receiver answers
    /// through the [`Replier`] it is decoded with.
    ///
    /// The default reads [`RemoteMessage::tag`] and [`RemoteMessage::CALL_TAGS`]; the
    /// derive generates an exact answer (a local-only variant is never a call).
    fn is_call(&self) -> bool {
        match self.tag() {
            Some(tag) => Self::CALL_TAGS.contains(&tag),
            None => !Self::CALL_TAGS.is_empty(),
        }
    }

    /// This value's reply type, if it is a call: the wire name of `T` in its
    /// `ReplyPort<T>` (see [Type identity](self#type-identity)), and `None` for anything
    /// else.
    ///
    /// The default, for a hand-written impl without calls, is `None`. A hand-written impl
    /// with calls gives this and [`RemoteMessage::reply_type_of`] too: a node refuses a
    /// call whose caller expects no reply type to a handler that answers one.
    fn reply_type(&self) -> Option<WireType> {
        None
    }

    /// The reply type of the call whose wire form is `bytes`, read from its tag alone
    /// (the fields are not decoded): what this type's handler of that call answers.
    /// `None` if the bytes are not a call of this type (a cast, an unknown tag, bytes
    /// without a tag).
    ///
    /// A receiving node compares it with the reply type the caller expects before it
    /// decodes the call, so a handler never answers a caller that cannot read the answer.
    ///
    /// The default, for a hand-written impl without calls, is `None`.
    fn reply_type_of(bytes: &[u8]) -> Option<WireType> {
        let _ = bytes;
        None
    }

    /// Appends the wire form to `out`. A call's reply port is not part of it: the peer
    /// that decodes the message makes a new one with a [`Replier`].
    ///
    /// # Errors
    ///
    /// [`WireError::Encode`] if a field's `Serialize` impl fails, [`WireError::LocalOnly`]
    /// for a variant that has no wire form. `out` is then as it was (the same length and
    /// bytes), so a batch of messages in one buffer survives one that cannot be encoded.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError>;

    /// Reads a value from exactly `bytes`, for a message that expects no reply (a cast).
    ///
    /// # Errors
    ///
    /// [`WireError::UnknownTag`], [`WireError::Malformed`] or [`WireError::TrailingBytes`];
    /// [`WireError::NeedsReply`] if the bytes are a call variant, which needs a reply port
    /// ([`RemoteMessage::from_bytes_with_reply`]).
    fn from_bytes(bytes: &[u8]) -> Result<Self, WireError>;

    /// Reads a value from exactly `bytes`, answering through `reply` if it is a call.
    ///
    /// A call variant's reply port is `reply.port()`: what the handler sends on it reaches
    /// `reply`'s sink as bytes. Any other value, and bytes that do not decode, drop
    /// `reply`, so its sink gets `None` (no reply) at once.
    ///
    /// The default, for a hand-written impl without calls, drops `reply` and calls
    /// [`RemoteMessage::from_bytes`].
    ///
    /// # Errors
    ///
    /// As [`RemoteMessage::from_bytes`], but never [`WireError::NeedsReply`].
    fn from_bytes_with_reply(bytes: &[u8], reply: Replier) -> Result<Self, WireError> {
        drop(reply);
        Self::from_bytes(bytes)
    }

    /// Takes a call's reply port out of this value, as an [`Answer`]: what answers the
    /// local caller with the reply's wire form once a remote handler has sent it (the
    /// bytes a [`Replier`]'s sink got). `None` for a value that is not a call.
    ///
    /// A host that forwards a message it received locally to another node (a sharded
    /// entity whose shard lives there) encodes it ([`RemoteMessage::encode`], which leaves
    /// the port out), then takes its port with this, and answers it when the reply comes
    /// back.
    ///
    /// The default, for a hand-written impl without calls, is `None`; the derive
    /// generates it for every call variant.
    ///
    /// # Examples
    ///
    /// ```
    /// use foundation_actors::ReplyPort;
    /// use foundation_actors::remote::{RemoteMessage, Replier};
    ///
    /// #[derive(Debug, RemoteMessage)]
    /// enum Kv {
    ///     #[remote(tag = 1)]
    ///     Get(String, ReplyPort<u64>),
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (tx, caller) = tokio::sync::oneshot::channel();
    /// let local = Kv::Get("a".into(), tx.into());
    /// let bytes = local.to_bytes()?;
    /// let answer = local.into_answer().ok_or("a call has an answer")?;
    ///
    /// // The other node handles it, and its replier's sink gets the reply's bytes.
    /// let (back, reply) = std::sync::mpsc::channel();
    /// let Kv::Get(_, port) = Kv::from_bytes_with_reply(&bytes, Replier::new(move |b| { let _ = back.send(b); }))?;
    /// let _ = port.send(7);
    ///
    /// answer.answer(reply.recv()?);
    /// assert_eq!(caller.await?, 7);
    /// # Ok(()) }
    /// ```
    fn into_answer(self) -> Option<Answer> {
        None
    }

    /// The wire form in a new buffer.
    ///
    /// # Errors
    ///
    /// As [`RemoteMessage::encode`].
    fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// A type's identity on the wire: its wire name, and the hash of that name ([`wire_id`])
/// that peers compare before decoding.
///
/// [`RemoteMessage::WIRE_TYPE`] is a message type's; [`RemoteMessage::reply_type`] a
/// call's reply type's. [`WireType::named`] is a `const fn`, so both are computed at
/// compile time, never per message.
///
/// # Examples
///
/// ```
/// use foundation_actors::remote::{RemoteMessage, WireType, wire_id};
///
/// #[derive(RemoteMessage)]
/// #[remote(name = "kv.Command")]
/// enum Command {
///     #[remote(tag = 1)]
///     Ping,
/// }
///
/// assert_eq!(Command::WIRE_TYPE.name(), "kv.Command");
/// assert_eq!(Command::WIRE_TYPE.id(), wire_id("kv.Command"));
/// assert_eq!(Command::WIRE_TYPE, WireType::named("kv.Command"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WireType {
    name: &'static str,
    id: u64,
}

impl WireType {
    /// The identity of the wire name `name`.
    pub const fn named(name: &'static str) -> Self {
        Self {
            name,
            id: wire_id(name),
        }
    }

    /// The wire name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The wire name's hash: what travels.
    pub const fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Display for WireType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The hash peers compare for a wire name: XXH3-64, seed 0, of its UTF-8 bytes.
///
/// It depends on the name alone, so it is the same in every build, on every platform and
/// in every version of Foundation (a test pins it to fixed values): a type keeps its
/// identity as long as its wire name stays the same, wherever its Rust definition moves.
pub const fn wire_id(name: &str) -> u64 {
    xxhash_rust::const_xxh3::xxh3_64(name.as_bytes())
}

/// A call's reply port, taken out of its message by [`RemoteMessage::into_answer`]: it
/// answers the caller from the reply's wire form.
pub struct Answer {
    answer: Box<dyn FnOnce(Option<Vec<u8>>) + Send>,
}

impl Answer {
    /// An answer that hands the reply's bytes (or `None`) to `f`.
    pub fn new(f: impl FnOnce(Option<Vec<u8>>) + Send + 'static) -> Self {
        Self {
            answer: Box::new(f),
        }
    }

    /// Answers the caller with the reply `bytes` (postcard, as [`encode_reply`] writes
    /// them). `None`, or bytes that do not decode as the reply type (logged), drop the
    /// port unanswered: the caller gets no reply at once.
    pub fn answer(self, bytes: Option<Vec<u8>>) {
        (self.answer)(bytes);
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer").finish_non_exhaustive()
    }
}

/// The sink a [`Replier`] hands its one reply to.
type Sink = Box<dyn FnOnce(Option<Vec<u8>>) + Send>;

/// Where the reply to one remote call goes: the receiving side of a call decodes the
/// message with [`RemoteMessage::from_bytes_with_reply`] and a `Replier`, and the handler
/// answers on an ordinary [`ReplyPort`].
///
/// The sink given to [`Replier::new`] runs exactly once: with `Some(bytes)`, the reply
/// encoded with [`encode_reply`], or with `None` when there is no reply — the port was
/// dropped unanswered (the handler failed, or the message was dropped with its
/// process), the reply could not be encoded (logged with `tracing::warn!`), the message
/// decoded was not a call, or the `Replier` itself was dropped unused.
///
/// The sink runs on the thread that answers — inside the handler's `reply.send(..)`, or
/// where the port is dropped — so it must be quick and must not block or panic: hand the
/// bytes to a channel (an unbounded `send`, a `try_send`) and return.
///
/// No task is spawned and no runtime is needed: the port is a tokio oneshot whose
/// receiving end is polled once with a waker of our own, and the sender's `send` (or
/// drop) wakes it, which forwards the outcome to the sink. A port leaked with
/// `mem::forget` never answers, as a leaked local port never does.
///
/// # Examples
///
/// ```
/// use foundation_actors::remote::{Replier, decode_reply};
/// use std::sync::mpsc;
///
/// let (tx, rx) = mpsc::channel();
/// let port = Replier::new(move |bytes| { let _ = tx.send(bytes); }).port::<u64>();
/// port.send(42).expect("the replier is waiting");
/// let bytes = rx.recv()?.expect("a reply");
/// assert_eq!(decode_reply::<u64>("u64", &bytes)?, 42);
///
/// let (tx, rx) = mpsc::channel();
/// drop(Replier::new(move |bytes| { let _ = tx.send(bytes); }).port::<u64>());
/// assert_eq!(rx.recv()?, None); // dropped unanswered: no reply
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Replier {
    /// `None` once given to a port.
    sink: Option<Sink>,
}

impl Replier {
    /// A replier that hands the reply (or `None`) to `send`, once.
    pub fn new(send: impl FnOnce(Option<Vec<u8>>) + Send + 'static) -> Self {
        Self {
            sink: Some(Box::new(send)),
        }
    }

    /// A reply port for the handler: the postcard bytes of the `T` sent on it go to the
    /// sink, and a port dropped unanswered gives it `None`.
    pub fn port<T: Serialize + Send + 'static>(mut self) -> ReplyPort<T> {
        let (tx, rx) = oneshot::channel();
        if let Some(sink) = self.sink.take() {
            Forward::start(rx, sink);
        }
        ReplyPort::from(tx)
    }
}

impl Drop for Replier {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            sink(None);
        }
    }
}

impl fmt::Debug for Replier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replier").finish_non_exhaustive()
    }
}

/// Carries a oneshot's outcome to a sink without a task: the waker registered on the
/// receiver is this value, and the sender wakes it when it sends or is dropped.
struct Forward<T> {
    /// Taken when the outcome is in: the sink runs once.
    pending: Mutex<Option<(Unconstrained<oneshot::Receiver<T>>, Sink)>>,
}

impl<T: Serialize + Send + 'static> Forward<T> {
    fn start(rx: oneshot::Receiver<T>, sink: Sink) {
        // The receiver is polled without tokio's cooperative budget: a task whose budget is
        // spent would get `Pending` without the waker being registered, and be woken to
        // poll again instead of the sender waking us.
        let this = Arc::new(Self {
            pending: Mutex::new(Some((unconstrained(rx), sink))),
        });
        this.poll();
    }

    /// Polls the receiver with this value as its waker, and forwards the outcome if it
    /// is in.
    ///
    /// Polls happen once here before the sender is handed out, then from the sender's
    /// wake, which tokio's oneshot gives once, when the outcome is in: never two at a
    /// time, so the lock is never contended, and never taken again from inside a poll.
    fn poll(self: &Arc<Self>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some((rx, _)) = pending.as_mut() else {
            return; // forwarded already
        };
        let waker = Waker::from(Arc::clone(self));
        let Poll::Ready(outcome) = Pin::new(rx).poll(&mut std::task::Context::from_waker(&waker))
        else {
            return; // registered: the sender wakes us
        };
        let Some((rx, sink)) = pending.take() else {
            return;
        };
        drop(pending);
        // The receiver is dropped here, not kept until the sender's side lets go of this
        // waker: it holds the channel, which holds the waker, which holds it.
        drop(rx);
        let bytes = match outcome {
            Ok(reply) => match encode_reply(std::any::type_name::<T>(), &reply) {
                Ok(bytes) => Some(bytes),
                Err(error) => {
                    tracing::warn!(%error, "a remote call's reply could not be encoded; the caller gets no reply");
                    None
                }
            },
            Err(_) => None, // dropped unanswered
        };
        sink(bytes);
    }
}

impl<T: Serialize + Send + 'static> Wake for Forward<T> {
    fn wake(self: Arc<Self>) {
        self.poll();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.poll();
    }
}

/// The wire form of a call's reply: its postcard bytes.
///
/// # Errors
///
/// [`WireError::Encode`], naming `type_name`, if the reply's `Serialize` impl fails.
pub fn encode_reply<T: Serialize + ?Sized>(
    type_name: &'static str,
    reply: &T,
) -> Result<Vec<u8>, WireError> {
    postcard::to_allocvec(reply).map_err(|source| WireError::Encode {
        type_name,
        tag: None,
        source,
    })
}

/// Reads a call's reply from exactly `bytes` (written by [`encode_reply`], or by a
/// [`Replier`]'s port); `type_name` names the reply type in errors.
///
/// # Errors
///
/// [`WireError::Malformed`] or [`WireError::TrailingBytes`], naming `type_name`.
pub fn decode_reply<T: DeserializeOwned>(
    type_name: &'static str,
    bytes: &[u8],
) -> Result<T, WireError> {
    __private::take(bytes, type_name, None)
}

/// Why a remote message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The tag is not one this type knows: the peer runs another version of it.
    #[error(
        "unknown wire tag {tag} for `{type_name}` (known: {known:?}): the peer runs a version of this message type that this node does not know"
    )]
    UnknownTag {
        /// The type's wire name.
        type_name: &'static str,
        /// The tag read.
        tag: u32,
        /// The tags this node knows.
        known: &'static [u32],
    },
    /// The bytes end early or do not match the fields' types, or an enum's input does not
    /// start with a tag.
    #[error("malformed `{type_name}`{}: {}", tag_suffix(*tag), malformed(*in_tag, source))]
    Malformed {
        /// The type's wire name.
        type_name: &'static str,
        /// The variant's tag, if it was read.
        tag: Option<u32>,
        /// Whether the tag itself could not be read: the input is empty, or does not start
        /// with a `u32` varint. `tag` is then `None`.
        in_tag: bool,
        /// What postcard found.
        #[source]
        source: postcard::Error,
    },
    /// A whole value was read and bytes were left over.
    #[error("{} left over after a `{type_name}`{}", byte_count(*extra), tag_suffix(*tag))]
    TrailingBytes {
        /// The type's wire name.
        type_name: &'static str,
        /// The variant's tag.
        tag: Option<u32>,
        /// How many bytes were left.
        extra: usize,
    },
    /// A field's `Serialize` impl failed (or a reply's, for [`encode_reply`]).
    #[error("could not encode `{type_name}`{}: {source}", tag_suffix(*tag))]
    Encode {
        /// The type's wire name (the reply type's name, for a reply).
        type_name: &'static str,
        /// The variant's tag.
        tag: Option<u32>,
        /// What postcard reported.
        #[source]
        source: postcard::Error,
    },
    /// The bytes are a call, which needs a reply port, and were decoded with
    /// [`RemoteMessage::from_bytes`]: a call arrived as a cast.
    #[error(
        "`{type_name}`{} is a call: it needs a reply port, so decode it with `from_bytes_with_reply` (a call arrived as a cast)",
        tag_suffix(*tag)
    )]
    NeedsReply {
        /// The type's wire name.
        type_name: &'static str,
        /// The variant's tag (`None` for a struct).
        tag: Option<u32>,
    },
    /// The variant is local only (`#[remote(skip)]`, or an `#[info]` message of an
    /// `#[actor(remote)]`): it has no wire form.
    #[error(
        "`{type_name}::{variant}` is local only: it has no wire tag and cannot be sent to a peer"
    )]
    LocalOnly {
        /// The type's wire name.
        type_name: &'static str,
        /// The variant's Rust name.
        variant: &'static str,
    },
}

fn tag_suffix(tag: Option<u32>) -> String {
    tag.map(|t| format!(" (tag {t})")).unwrap_or_default()
}

fn byte_count(n: usize) -> String {
    if n == 1 {
        "1 byte".to_owned()
    } else {
        format!("{n} bytes")
    }
}

/// What was wrong, in this crate's words where postcard's would mislead: its text for a
/// bad varint asks whether "the usize" is "too big for this platform".
fn malformed(in_tag: bool, source: &postcard::Error) -> String {
    use postcard::Error::{DeserializeBadVarint, DeserializeUnexpectedEnd};
    match (in_tag, source) {
        (true, DeserializeBadVarint) => "the wire tag is not a valid u32 varint".to_owned(),
        (true, DeserializeUnexpectedEnd) => "the input ends before the wire tag does".to_owned(),
        (false, DeserializeBadVarint) => {
            "a varint (an integer field or a length prefix) is too long for its type".to_owned()
        }
        _ => source.to_string(),
    }
}

/// A type a remote message's fields may have: anything serde can write and read back.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross the wire: fields of a remote message must implement serde's `Serialize` and `Deserialize`",
    label = "this field's type is not serializable",
    note = "derive them on the type: `#[derive(serde::Serialize, serde::Deserialize)]`, or use a type that has them"
)]
pub trait WireField: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> WireField for T {}

/// A type a remote call may reply: serde can write and read it, and it can cross tasks.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the reply of a remote call: it must implement serde's `Serialize` and `Deserialize`, and be `Send + 'static`",
    label = "this reply type cannot cross the wire",
    note = "derive them on the type: `#[derive(serde::Serialize, serde::Deserialize)]`, or use a type that has them"
)]
pub trait WireReply: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> WireReply for T {}

/// Support for the generated code; not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::{Replier, WireError, WireField, WireReply};
    use crate::addr::ReplyPort;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// Compile-time check that a field type can cross the wire.
    pub const fn assert_field<T: WireField>() {}

    /// Appends a tag: an unsigned LEB128 varint, as postcard writes a `u32`.
    pub fn put_tag(out: &mut Vec<u8>, mut tag: u32) {
        while tag >= 0x80 {
            out.push((tag & 0x7f) as u8 | 0x80);
            tag >>= 7;
        }
        out.push(tag as u8);
    }

    /// Runs a generated encoder and, if it fails, truncates `out` back to where it
    /// started: what it appended before the failing field goes, what was there stays.
    #[inline]
    pub fn encode<M>(
        msg: &M,
        out: &mut Vec<u8>,
        codec: fn(&M, &mut Vec<u8>) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        let start = out.len();
        let result = codec(msg, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Appends a field; on an error, what it appended stays for [`encode`] to truncate.
    #[inline]
    pub fn put<F: Serialize + ?Sized>(
        out: &mut Vec<u8>,
        field: &F,
        type_name: &'static str,
        tag: Option<u32>,
    ) -> Result<(), WireError> {
        match postcard::to_extend(field, Tail(out)) {
            Ok(_) => Ok(()),
            Err(source) => Err(WireError::Encode {
                type_name,
                tag,
                source,
            }),
        }
    }

    /// Appends to a borrowed buffer. `postcard::to_extend` takes its writer by value and
    /// drops it on an error: a `Vec` moved in would take the caller's bytes with it.
    struct Tail<'a>(&'a mut Vec<u8>);

    impl Extend<u8> for Tail<'_> {
        #[inline]
        fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
            self.0.extend(bytes);
        }
    }

    /// Reads the tag at the front.
    pub fn take_tag<'a>(
        bytes: &'a [u8],
        type_name: &'static str,
    ) -> Result<(u32, &'a [u8]), WireError> {
        postcard::take_from_bytes::<u32>(bytes).map_err(|source| WireError::Malformed {
            type_name,
            tag: None,
            in_tag: true,
            source,
        })
    }

    /// Reads the fields (a tuple) from exactly `bytes`.
    pub fn take<F: DeserializeOwned>(
        bytes: &[u8],
        type_name: &'static str,
        tag: Option<u32>,
    ) -> Result<F, WireError> {
        match postcard::take_from_bytes::<F>(bytes) {
            Ok((fields, [])) => Ok(fields),
            Ok((_, rest)) => Err(WireError::TrailingBytes {
                type_name,
                tag,
                extra: rest.len(),
            }),
            Err(source) => Err(WireError::Malformed {
                type_name,
                tag,
                in_tag: false,
                source,
            }),
        }
    }

    /// Compile-time check that a reply type can cross the wire.
    pub const fn assert_reply<T: WireReply>() {}

    /// A call variant's reply port: from the replier, or, without one, the error that
    /// says the call arrived as a cast.
    #[inline]
    pub fn port<T: WireReply>(
        reply: Option<Replier>,
        type_name: &'static str,
        tag: Option<u32>,
    ) -> Result<ReplyPort<T>, WireError> {
        match reply {
            Some(reply) => Ok(reply.port()),
            None => Err(WireError::NeedsReply { type_name, tag }),
        }
    }

    /// The [`Answer`](super::Answer) of a call variant's port: decodes the reply's bytes
    /// as `T` and sends it on the port.
    pub fn answer<T: WireReply>(port: ReplyPort<T>, type_name: &'static str) -> super::Answer {
        super::Answer::new(move |bytes| {
            let Some(bytes) = bytes else { return };
            match super::decode_reply::<T>(type_name, &bytes) {
                Ok(reply) => {
                    let _ = port.send(reply);
                }
                Err(error) => {
                    tracing::warn!(%error, "a forwarded call's reply does not decode; the caller gets no reply");
                }
            }
        })
    }

    /// The error for encoding a local-only variant.
    pub fn local_only(type_name: &'static str, variant: &'static str) -> WireError {
        WireError::LocalOnly { type_name, variant }
    }

    /// The error for a tag no variant has.
    pub fn unknown_tag(type_name: &'static str, tag: u32, known: &'static [u32]) -> WireError {
        WireError::UnknownTag {
            type_name,
            tag,
            known,
        }
    }
}

/// [`RemoteMessage`] for standard types, each under its Rust spelling as its wire name
/// (see [Plain values](self#plain-values)).
macro_rules! plain_remote_message {
    ($($ty:ty => $name:literal),* $(,)?) => {$(
        impl RemoteMessage for $ty {
            const TYPE_NAME: &'static str = $name;
            const TAGS: &'static [u32] = &[];

            fn tag(&self) -> Option<u32> {
                None
            }

            fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
                __private::encode(self, out, |m, out| {
                    __private::put(out, m, Self::TYPE_NAME, None)
                })
            }

            fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
                __private::take(bytes, Self::TYPE_NAME, None)
            }
        }
    )*};
}

plain_remote_message!(
    bool => "bool",
    char => "char",
    u8 => "u8",
    u16 => "u16",
    u32 => "u32",
    u64 => "u64",
    u128 => "u128",
    i8 => "i8",
    i16 => "i16",
    i32 => "i32",
    i64 => "i64",
    i128 => "i128",
    f32 => "f32",
    f64 => "f64",
    String => "String",
    Vec<u8> => "Vec<u8>",
);

/// `Arc<M>` is `M` on the wire: its wire name, tags and bytes.
impl<M: RemoteMessage + Sync> RemoteMessage for Arc<M> {
    const TYPE_NAME: &'static str = M::TYPE_NAME;
    const WIRE_TYPE: WireType = M::WIRE_TYPE;
    const TAGS: &'static [u32] = M::TAGS;
    const CALL_TAGS: &'static [u32] = M::CALL_TAGS;

    fn tag(&self) -> Option<u32> {
        (**self).tag()
    }

    fn is_call(&self) -> bool {
        (**self).is_call()
    }

    fn reply_type(&self) -> Option<WireType> {
        (**self).reply_type()
    }

    fn reply_type_of(bytes: &[u8]) -> Option<WireType> {
        M::reply_type_of(bytes)
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        (**self).encode(out)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        M::from_bytes(bytes).map(Arc::new)
    }

    fn from_bytes_with_reply(bytes: &[u8], reply: Replier) -> Result<Self, WireError> {
        M::from_bytes_with_reply(bytes, reply).map(Arc::new)
    }
}

/// Implements [`RemoteMessage`] for a newtype around one serde value, with no variants to
/// tag: the wire form of the internal messages of Foundation's own layers (a registry's
/// sync, a supervisor's records, a pubsub's broadcasts). Support for those crates; not a
/// stable API.
#[doc(hidden)]
#[macro_export]
macro_rules! __newtype_remote_message {
    ($name:ident $(<$($g:ident: $bound:path),+>)?, $type_name:literal) => {
        impl$(<$($g: $bound),+>)? $crate::RemoteMessage for $name$(<$($g),+>)? {
            const TYPE_NAME: &'static str = $type_name;
            const TAGS: &'static [u32] = &[];

            fn tag(&self) -> Option<u32> {
                None
            }

            fn encode(&self, out: &mut Vec<u8>) -> Result<(), $crate::WireError> {
                $crate::remote::__private::encode(self, out, |m, out| {
                    $crate::remote::__private::put(out, &m.0, Self::TYPE_NAME, None)
                })
            }

            fn from_bytes(bytes: &[u8]) -> Result<Self, $crate::WireError> {
                $crate::remote::__private::take(bytes, Self::TYPE_NAME, None).map(Self)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::__private::{put_tag, take_tag};
    use super::{WireType, wire_id};

    /// Peers built from other versions compare these hashes: they must never change.
    #[test]
    fn wire_ids_are_fixed_xxh3_values() {
        let fixed = [
            // Computed with the reference implementation (python-xxhash's
            // `xxh3_64_intdigest`), not with the crate under test.
            ("", 0x2d06_8005_38d3_94c2),
            ("test.Probe", 0xa66d_869c_0dfa_60a8),
            ("u64", 0xa248_1493_b936_2ff3),
            ("Option<u64>", 0x2406_6470_0913_0417),
            ("String", 0x826f_81d3_512e_3e7b),
        ];
        for (name, id) in fixed {
            assert_eq!(wire_id(name), id, "{name:?}: {:#018x}", wire_id(name));
            assert_eq!(WireType::named(name).id(), id);
            assert_eq!(WireType::named(name).name(), name);
        }
        // Computed at compile time.
        const ID: u64 = wire_id("test.Probe");
        assert_eq!(ID, wire_id("test.Probe"));
        // The const hash is the run-time one.
        for name in ["", "a", "test.Probe", &"x".repeat(300)] {
            assert_eq!(wire_id(name), xxhash_rust::xxh3::xxh3_64(name.as_bytes()));
        }
    }

    #[test]
    fn plain_values_are_remote_messages_under_their_rust_names() {
        use super::RemoteMessage;
        use std::sync::Arc;
        assert_eq!(u64::WIRE_TYPE.id(), 0xa248_1493_b936_2ff3);
        assert_eq!(String::WIRE_TYPE.id(), 0x826f_81d3_512e_3e7b);
        assert_eq!(<Vec<u8>>::WIRE_TYPE, WireType::named("Vec<u8>"));
        assert_eq!(<Arc<u64>>::WIRE_TYPE, u64::WIRE_TYPE);
        // postcard's bytes, and back.
        let bytes = 300_u64.to_bytes().expect("encodes");
        assert_eq!(bytes, postcard::to_stdvec(&300_u64).expect("encodes"));
        assert_eq!(u64::from_bytes(&bytes).expect("decodes"), 300);
        let s = Arc::new("hé".to_owned());
        assert_eq!(
            *<Arc<String>>::from_bytes(&s.to_bytes().expect("encodes")).expect("decodes"),
            *s
        );
        assert!(
            u8::from_bytes(&[1, 2]).is_err(),
            "trailing bytes are refused"
        );
        assert!(bool::from_bytes(&[]).is_err());
    }

    #[test]
    fn tags_are_postcard_varints() {
        for tag in [0, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut ours = Vec::new();
            put_tag(&mut ours, tag);
            let theirs = postcard::to_allocvec(&tag).expect("a u32 encodes");
            assert_eq!(ours, theirs, "tag {tag}");
            assert_eq!(take_tag(&ours, "T").expect("reads back"), (tag, &[][..]));
        }
    }
}
