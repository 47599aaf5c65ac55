//! Admission: what a connection may cost the node before it has proved itself.
//!
//! A connection is *unauthenticated* until a lane presents a token this node issued, or a
//! session completes ractor_cluster's cookie handshake. Anyone who reaches the port can
//! open one, so what each may cost is bounded, and what is refused is counted
//! ([`NodeStats`]):
//!
//! - **How many**: at most `max_unauthenticated` at once (64 by default), and at most
//!   `max_unauthenticated_per_ip` from one IP address (16), so one client cannot take every
//!   slot and keep a restarted peer out. A connection over either cap is closed as soon as
//!   it is accepted: no task, no event, one log line per episode, a count.
//! - **How long**: the handshake deadline (`handshake_timeout`, 5 s) runs from the accept,
//!   across the TLS handshake, the first byte and the hello or cookie exchange.
//! - **How much memory**: [`PREAUTH_FRAME`] bytes of a frame. A lane's first frame is its
//!   hello (a few dozen bytes); a larger one is refused from its header, before any of its
//!   body is read. A session is read by ractor_cluster, which reads each frame whole (up
//!   to the node's `max_frame`, before authentication as after) and cannot be given a
//!   smaller limit until the handshake ends. So its reader is fronted by [`Gated`], which
//!   follows ractor_cluster's framing (a big-endian `u64` length, then the body) and,
//!   while the session is unauthenticated, holds a frame announced larger than
//!   [`PREAUTH_FRAME`] before a byte of its body is read: until the session authenticates,
//!   or until the deadline closes it; likewise once a session has sent [`PREAUTH_BYTES`]
//!   in all (a flood of small frames). Held rather than refused: the node hears of the
//!   authentication through ractor_cluster's events, possibly after the peer's first
//!   frames (which may be large, the agent's hello with a member list) have arrived.
//!
//! Outbound sessions (this node's dials) are gated the same way, without a slot: a
//! listener at a dialed address must not feed this node a big frame either.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use futures::task::AtomicWaker;
use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, ReadBuf};

use super::locks::lock;

/// The most bytes of one frame a connection may make the node read before it has
/// authenticated. A lane's hello and ractor_cluster's handshake messages are a few
/// hundred bytes at most (a node name is at most 255).
pub(crate) const PREAUTH_FRAME: usize = 4 * 1024;

/// The most bytes in all a session may make the node read before it has authenticated:
/// ractor_cluster's whole handshake is a few frames of a few hundred bytes.
pub(crate) const PREAUTH_BYTES: u64 = 64 * 1024;

/// Why an unauthenticated session's reader is holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// At a frame announced this long, over [`PREAUTH_FRAME`].
    Frame(u64),
    /// After [`PREAUTH_BYTES`] in all.
    Bytes,
}

/// ractor_cluster's frame header: a big-endian `u64` body length.
const SESSION_HEADER: usize = 8;

/// What a node has refused at its door, and what it holds for connections that have not
/// authenticated yet ([`crate::node::Node::stats`]). Counts are since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Connections accepted that have not authenticated yet, now.
    pub unauthenticated: usize,
    /// Connections closed as soon as accepted: the node already held its maximum of
    /// unauthenticated connections, in all or from that IP address.
    pub over_cap: u64,
    /// Connections closed because they did not authenticate within the handshake
    /// deadline (silent, slow, or stalled in the TLS or cookie handshake).
    pub handshake_timeouts: u64,
    /// Connections closed because they announced a frame larger than a handshake needs,
    /// or sent more than a handshake does, before authenticating (a lane's refused at
    /// once, a session's at its deadline).
    pub oversized_preauth: u64,
    /// Times accepting a connection failed (out of file descriptors, say); the node
    /// waits a little, longer each time, and tries again.
    pub accept_errors: u64,
    /// Messages from other nodes dropped because the process they were for held its limit
    /// of unhandled remote messages ([`crate::node::NodeConfig::max_remote_queued`]).
    pub remote_dropped: u64,
    /// Calls from other nodes refused with [`crate::node::RemoteError::Overloaded`] for the
    /// same reason.
    pub remote_refused: u64,
    /// Messages and calls from other nodes (and this one) refused because the process they
    /// were for takes another message type, or answers the call with another reply type
    /// than its caller expects (see [`crate::node::RemoteError::WrongType`]). Each is also
    /// logged, with the process's type and the hash of the one sent.
    pub wrong_type: u64,
    /// Lanes (one-way connections carrying messages) from peers to this node, open now:
    /// per peer, one per lane of each channel both know ([`crate::node::ChannelConfig::parallelism`]
    /// of the peer's side).
    pub lanes_in: usize,
    /// Lanes from this node to peers, connected now.
    pub lanes_out: usize,
    /// Messages and calls that arrived from other nodes (delivered, dropped or refused).
    pub messages_in: u64,
    /// Messages and calls this node queued to other nodes (replies not counted).
    pub messages_out: u64,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: FxHashMap<IpAddr, usize>,
}

/// The node's door: the caps on unauthenticated connections, their counters, and the
/// gates of sessions still in their handshake.
#[derive(Debug)]
pub(crate) struct Admission {
    max: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
    /// Set while connections are being refused for the cap: the warning is logged once
    /// per episode, not once per connection.
    capped: AtomicBool,
    over_cap: AtomicU64,
    timeouts: AtomicU64,
    oversized: AtomicU64,
    accept_errors: AtomicU64,
    /// Sessions not yet authenticated, by the peer label given to ractor_cluster.
    gates: Mutex<FxHashMap<String, Weak<Gate>>>,
}

/// One unauthenticated connection's slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = lock(&self.admission.open);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    pub(crate) fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_ip,
            open: Mutex::default(),
            capped: AtomicBool::new(false),
            over_cap: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            oversized: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            gates: Mutex::default(),
        })
    }

    /// A slot for a connection just accepted from `ip`, or `None` (counted) if the node
    /// holds its maximum of unauthenticated connections, in all or from `ip`.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Permit> {
        let mut open = lock(&self.open);
        let from_ip = open.by_ip.get(&ip).copied().unwrap_or(0);
        if open.total >= self.max || from_ip >= self.max_per_ip {
            let total = open.total;
            drop(open);
            self.over_cap.fetch_add(1, Ordering::Relaxed);
            if !self.capped.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    %ip,
                    unauthenticated = total,
                    from_this_ip = from_ip,
                    max = self.max,
                    max_per_ip = self.max_per_ip,
                    "refusing connections: too many have not authenticated yet (counted in the node's stats; logged once until one is admitted again)"
                );
            }
            return None;
        }
        open.total += 1;
        *open.by_ip.entry(ip).or_insert(0) += 1;
        drop(open);
        self.capped.store(false, Ordering::Relaxed);
        Some(Permit {
            admission: self.clone(),
            ip,
        })
    }

    /// A gate for the session about to be handed to ractor_cluster as `label`, holding
    /// its slot (if inbound) until it authenticates. `None` if a session with that label
    /// is still in its handshake (the label is how the loop finds the gate again).
    pub(crate) fn gate(&self, label: &str, permit: Option<Permit>) -> Option<Arc<Gate>> {
        let mut gates = lock(&self.gates);
        if gates.get(label).is_some_and(|g| g.strong_count() > 0) {
            return None;
        }
        if gates.len() >= 2 * self.max {
            // Sessions that ended before the loop heard of them.
            gates.retain(|_, g| g.strong_count() > 0);
        }
        let gate = Arc::new(Gate {
            open: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            held_frame: AtomicU64::new(0),
            held_bytes: AtomicBool::new(false),
            permit: Mutex::new(permit),
            accepted: Instant::now(),
        });
        gates.insert(label.to_owned(), Arc::downgrade(&gate));
        Some(gate)
    }

    fn find(&self, label: &str) -> Option<Arc<Gate>> {
        lock(&self.gates).get(label).and_then(Weak::upgrade)
    }

    /// When the session `label` was accepted (its handshake deadline runs from then).
    pub(crate) fn accepted(&self, label: &str) -> Option<Instant> {
        self.find(label).map(|g| g.accepted)
    }

    /// The session `label` has authenticated: its frames are no longer limited, and its
    /// slot is free.
    pub(crate) fn authenticated(&self, label: &str) {
        if let Some(g) = lock(&self.gates).remove(label).and_then(|g| g.upgrade()) {
            g.open();
        }
    }

    /// The session `label` ended.
    pub(crate) fn forget(&self, label: &str) {
        lock(&self.gates).remove(label);
    }

    /// Why the reader of the unauthenticated session `label` is holding, if it is.
    pub(crate) fn holding(&self, label: &str) -> Option<Held> {
        let gate = self.find(label)?;
        match gate.held_frame.load(Ordering::Relaxed) {
            0 => gate
                .held_bytes
                .load(Ordering::Relaxed)
                .then_some(Held::Bytes),
            len => Some(Held::Frame(len)),
        }
    }

    pub(crate) fn count_timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_oversized(&self) {
        self.oversized.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> NodeStats {
        NodeStats {
            unauthenticated: lock(&self.open).total,
            over_cap: self.over_cap.load(Ordering::Relaxed),
            handshake_timeouts: self.timeouts.load(Ordering::Relaxed),
            oversized_preauth: self.oversized.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
            remote_dropped: 0,
            remote_refused: 0,
            wrong_type: 0,
            lanes_in: 0,
            lanes_out: 0,
            messages_in: 0,
            messages_out: 0,
        }
    }
}

/// Whether a session has authenticated, shared by its [`Gated`] reader and the loop.
#[derive(Debug)]
pub(crate) struct Gate {
    open: AtomicBool,
    waker: AtomicWaker,
    /// The length of the frame the reader holds at, 0 if none.
    held_frame: AtomicU64,
    /// The reader holds after [`PREAUTH_BYTES`].
    held_bytes: AtomicBool,
    permit: Mutex<Option<Permit>>,
    accepted: Instant,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::Release);
        lock(&self.permit).take();
        self.waker.wake();
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

/// A session's reader as ractor_cluster gets it: it follows the session's framing and,
/// until the gate opens, reads no body of a frame announced larger than
/// [`PREAUTH_FRAME`] and nothing after [`PREAUTH_BYTES`]. Dropped with the session, it
/// frees the session's slot.
pub(crate) struct Gated<R> {
    inner: R,
    gate: Arc<Gate>,
    header: [u8; SESSION_HEADER],
    have: usize,
    /// Body bytes of the current frame not read yet.
    body_left: u64,
    /// The current frame is larger than [`PREAUTH_FRAME`].
    big: bool,
    /// Bytes read in all (counted while the gate is closed).
    read: u64,
}

impl<R> Gated<R> {
    pub(crate) fn new(inner: R, gate: Arc<Gate>) -> Self {
        Self {
            inner,
            gate,
            header: [0; SESSION_HEADER],
            have: 0,
            body_left: 0,
            big: false,
            read: 0,
        }
    }

    /// Follows the framing over bytes just read.
    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = usize::try_from(self.body_left).map_or(bytes.len(), |l| l.min(bytes.len()));
                self.body_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (SESSION_HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == SESSION_HEADER {
                self.have = 0;
                self.body_left = u64::from_be_bytes(self.header);
                self.big = self.body_left > PREAUTH_FRAME as u64;
            }
        }
    }
}

impl<R> std::fmt::Debug for Gated<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gated")
            .field("open", &self.gate.is_open())
            .field("body_left", &self.body_left)
            .finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Gated<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let open = this.gate.is_open();
        if !open {
            let big = this.big && this.body_left > 0;
            if big || this.read >= PREAUTH_BYTES {
                this.gate.waker.register(cx.waker());
                if !this.gate.is_open() {
                    let gate = &this.gate;
                    let first = if big {
                        gate.held_frame.swap(this.body_left, Ordering::Relaxed) == 0
                    } else {
                        !gate.held_bytes.swap(true, Ordering::Relaxed)
                    };
                    if first {
                        tracing::debug!(
                            frame = big.then_some(this.body_left),
                            read = this.read,
                            "an unauthenticated session sent more than a handshake needs: held until it authenticates"
                        );
                    }
                    return Poll::Pending;
                }
            }
        }
        this.gate.held_frame.store(0, Ordering::Relaxed);
        this.gate.held_bytes.store(false, Ordering::Relaxed);
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if !open {
            this.read += new.len() as u64;
        }
        this.scan(new);
        Poll::Ready(Ok(()))
    }
}

/// A session's two halves and its label, as ractor_cluster takes an external stream.
pub(crate) struct SessionStream {
    pub(crate) reader: ractor_cluster::BoxRead,
    pub(crate) writer: ractor_cluster::BoxWrite,
    pub(crate) label: String,
}

impl ractor_cluster::ClusterBidiStream for SessionStream {
    fn split(self: Box<Self>) -> (ractor_cluster::BoxRead, ractor_cluster::BoxWrite) {
        (self.reader, self.writer)
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.label.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::*;
    use futures::FutureExt;
    use tokio::io::AsyncReadExt;

    fn frame(len: usize) -> Vec<u8> {
        let mut f = (len as u64).to_be_bytes().to_vec();
        f.extend(std::iter::repeat_n(7u8, len));
        f
    }

    #[test]
    fn the_caps_hold_in_all_and_per_address_and_slots_come_back() {
        let a = Admission::new(3, 2);
        let one: IpAddr = [127, 0, 0, 1].into();
        let two: IpAddr = [127, 0, 0, 2].into();
        let p1 = a.admit(one).unwrap();
        let _p2 = a.admit(one).unwrap();
        assert!(a.admit(one).is_none(), "a third from one address");
        let _p3 = a.admit(two).unwrap();
        assert!(a.admit(two).is_none(), "a fourth in all");
        assert_eq!(a.stats().over_cap, 2);
        assert_eq!(a.stats().unauthenticated, 3);
        drop(p1);
        assert!(a.admit(one).is_some());
    }

    #[tokio::test]
    async fn a_big_frame_is_held_until_the_session_authenticates() {
        let a = Admission::new(4, 4);
        let permit = a.admit([127, 0, 0, 1].into());
        let gate = a.gate("peer", permit).unwrap();
        let mut bytes = frame(100);
        bytes.extend(frame(PREAUTH_FRAME + 1));
        let mut r = Gated::new(std::io::Cursor::new(bytes), gate);
        // Small frames pass.
        assert_eq!(r.read_u64().await.unwrap(), 100);
        let mut body = vec![0u8; 100];
        r.read_exact(&mut body).await.unwrap();
        // The big one's header passes, its body does not, until the gate opens.
        assert_eq!(r.read_u64().await.unwrap(), PREAUTH_FRAME as u64 + 1);
        let mut first = [0u8; 1];
        // An in-memory reader: a read not held would complete at its first poll.
        let held = r.read(&mut first).now_or_never();
        assert!(held.is_none(), "read a body byte before authentication");
        assert_eq!(
            a.holding("peer"),
            Some(Held::Frame(PREAUTH_FRAME as u64 + 1))
        );
        assert_eq!(a.stats().unauthenticated, 1);
        a.authenticated("peer");
        assert_eq!(
            a.stats().unauthenticated,
            0,
            "the slot is free once authenticated"
        );
        let mut body = vec![0u8; PREAUTH_FRAME + 1];
        r.read_exact(&mut body).await.unwrap();
        assert!(body.iter().all(|b| *b == 7));
    }

    #[tokio::test]
    async fn small_frames_are_read_up_to_a_budget_until_the_session_authenticates() {
        let a = Admission::new(4, 4);
        let gate = a.gate("peer", None).unwrap();
        let frames = usize::try_from(PREAUTH_BYTES).unwrap() / 108 + 10;
        let bytes: Vec<u8> = (0..frames).flat_map(|_| frame(100)).collect();
        let mut r = Gated::new(std::io::Cursor::new(bytes), gate);
        let mut read = 0;
        let mut body = [0u8; 100];
        // An in-memory reader: a read not held completes at its first poll.
        let held = loop {
            let next = async {
                let len = r.read_u64().await.unwrap();
                assert_eq!(len, 100);
                r.read_exact(&mut body).await.unwrap();
            }
            .now_or_never();
            if next.is_none() {
                break read;
            }
            read += 1;
        };
        assert!(
            held * 108 <= usize::try_from(PREAUTH_BYTES).unwrap() + 108,
            "{held}"
        );
        assert_eq!(a.holding("peer"), Some(Held::Bytes));
        a.authenticated("peer");
        // The rest reads once authenticated.
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert_eq!(held * 108 + rest.len(), frames * 108);
    }

    #[test]
    fn a_label_in_its_handshake_is_not_given_twice_and_a_dropped_gate_frees_its_slot() {
        let a = Admission::new(4, 4);
        let gate = a.gate("peer", a.admit([127, 0, 0, 1].into())).unwrap();
        assert!(a.gate("peer", None).is_none());
        drop(gate);
        assert_eq!(a.stats().unauthenticated, 0);
        assert!(a.gate("peer", None).is_some());
    }
}
