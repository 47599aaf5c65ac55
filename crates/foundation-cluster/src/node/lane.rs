//! Lanes: one-way connections that carry user messages between nodes, batched.
//!
//! A node sends to a peer through that peer's [`Outbox`]: senders append encoded items to
//! the current frame under a short lock, and one writer task per lane writes whole frames.
//! Many small messages sent while the writer is busy leave in one frame and one syscall.
//! The receiving side reads frames and delivers their items inline, without a hop through
//! another task.
//!
//! # Direct writes
//!
//! A call and a reply wait on the other side: the hop to the writer task (a wake-up, on
//! another thread when the sender is not on one of the runtime's workers) is on the round
//! trip's path. So when the lane is idle (nothing queued, nothing being written, and no
//! direct write in the last [`DIRECT_SPACING`]), [`Outbox::push_direct`] writes the
//! small frame to the socket itself, with one non-blocking write; what the socket does not
//! take, and everything queued meanwhile, goes to the writer task as before. The spacing
//! keeps batching where it pays: a burst of replies (an actor answering queued calls)
//! leaves its first reply at once and the rest in one frame behind it. Tells never write
//! directly (a stream of them is what batching is for), nor do lanes of low-priority
//! channels (their writing belongs on their own thread) or TLS lanes.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use super::wire::{self, FrameError, HEADER, Item};

/// A frame is sent once it holds this many bytes; later items start a new frame.
const FRAME_TARGET: usize = 64 * 1024;

/// At most this often a sender writes a frame to the socket itself (see "Direct writes").
const DIRECT_SPACING: std::time::Duration = std::time::Duration::from_micros(20);

/// The largest frame a sender writes itself; larger ones go to the writer task.
const DIRECT_MAX: usize = 4 * 1024;

/// A lane's reader and writer give their worker thread up after this many bytes (a yield),
/// even when the socket could go on: a busy lane otherwise runs until tokio's cooperative
/// budget stops it, over a hundred socket operations (megabytes, milliseconds), while a
/// small call on another channel of the same node waits for a worker.
const YIELD_EVERY: usize = 256 * 1024;

/// The first bytes of a lane, after which come frames. A ractor_cluster session starts
/// with a zero byte (the top byte of its big-endian u64 length), TLS with 0x16: the first
/// byte tells the three apart.
/// Its last byte is the wire's version, raised whenever the format changes (2: message
/// type ids, channels in the hello; 3: the lane's number in the hello, for a channel's
/// parallelism), so nodes of different versions refuse each other's
/// lanes with a reason instead of misreading them.
pub(crate) const PREAMBLE: &[u8; 4] = b"FND3";

/// Why an item could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The lane is closed: the peer went down.
    Closed,
    /// More than the pending limit is waiting to be written.
    Full,
    /// The item alone is larger than a frame may be.
    TooLarge,
}

#[derive(Debug, Default)]
struct Pending {
    /// Frames waiting to be written; each starts with `HEADER` placeholder bytes.
    frames: Vec<Vec<u8>>,
    /// Emptied frames to reuse.
    spare: Vec<Vec<u8>>,
    bytes: usize,
    closed: bool,
    /// Write what is queued, then stop (a graceful leave).
    finishing: bool,
    /// The writer task, or a sender writing directly, holds bytes it has not finished
    /// writing: nobody else writes to the socket meanwhile.
    writing: bool,
    /// What a direct write left unwritten: the writer task writes it before any frame.
    head: Vec<u8>,
    /// The lane's socket, for direct writes (none before the lane is open, after it
    /// closed, and for lanes that never write directly).
    direct: Option<Arc<std::net::TcpStream>>,
    /// When a sender last wrote directly.
    last_direct: Option<Instant>,
}

/// The sending end of a lane to one peer. Items queue here before the lane connects too.
#[derive(Debug)]
pub(crate) struct Outbox {
    pending: Mutex<Pending>,
    ready: Notify,
    /// Woken when the writer takes what is queued (room again under the limit) and when
    /// the outbox closes or finishes: senders waiting for room ([`crate::node::Node::send_wait`]).
    room: Notify,
    max_frame: usize,
    max_pending: usize,
}

impl Outbox {
    pub(crate) fn new(max_frame: usize, max_pending: usize) -> Self {
        Self {
            pending: Mutex::new(Pending::default()),
            ready: Notify::new(),
            room: Notify::new(),
            max_frame,
            max_pending,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        super::locks::lock(&self.pending)
    }

    /// Appends one item written by `put` (which must append exactly one item, or nothing
    /// and an error).
    pub(crate) fn push<E>(
        &self,
        put: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Result<(), E>, Refused> {
        self.push_with(false, false, put)
    }

    /// As [`Outbox::push`], but writes the frame to the socket at once when the lane is
    /// idle (see "Direct writes" in the module docs): for a call or a reply, which
    /// someone waits for.
    pub(crate) fn push_direct<E>(
        &self,
        put: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Result<(), E>, Refused> {
        self.push_with(true, false, put)
    }

    /// `exempt`: queued past the pending limit (a reply: see [`Outbox::push_reply`]).
    fn push_with<E>(
        &self,
        direct: bool,
        exempt: bool,
        put: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Result<(), E>, Refused> {
        let mut p = self.lock();
        if p.closed || p.finishing {
            return Err(Refused::Closed);
        }
        if !exempt && p.bytes > self.max_pending {
            return Err(Refused::Full);
        }
        let was_empty = p.frames.is_empty();
        let need_new = p.frames.last().is_none_or(|f| f.len() >= FRAME_TARGET);
        if need_new {
            let mut f = p.spare.pop().unwrap_or_default();
            f.clear();
            f.extend_from_slice(&[0; HEADER]);
            p.frames.push(f);
        }
        let Some(frame) = p.frames.last_mut() else {
            return Err(Refused::Closed);
        };
        let before = frame.len();
        if let Err(e) = put(frame) {
            return Ok(Err(e));
        }
        let mut added = frame.len() - before;
        if frame.len() - HEADER > self.max_frame {
            // Too big for the frame it joined: move it to a frame of its own if it fits.
            if added > self.max_frame {
                frame.truncate(before);
                return Err(Refused::TooLarge);
            }
            let item = frame.split_off(before);
            let mut f = Vec::with_capacity(HEADER + item.len());
            f.extend_from_slice(&[0; HEADER]);
            f.extend_from_slice(&item);
            p.frames.push(f);
            added = item.len();
        }
        p.bytes += added;
        if direct && was_empty && !p.writing && p.head.is_empty() && p.frames.len() == 1 {
            if let Some(socket) = self.direct_turn(&mut p) {
                let frame = p.frames.pop().unwrap_or_default();
                p.bytes = 0;
                p.writing = true;
                drop(p);
                self.write_direct(&socket, frame);
                return Ok(Ok(()));
            }
        }
        drop(p);
        if was_empty {
            self.ready.notify_one();
        }
        Ok(Ok(()))
    }

    /// The socket, if the lane has one for direct writes and the single frame queued may
    /// take this turn (small enough, and no direct write within [`DIRECT_SPACING`]).
    fn direct_turn(&self, p: &mut Pending) -> Option<Arc<std::net::TcpStream>> {
        let socket = p.direct.as_ref()?;
        if p.frames.first().is_none_or(|f| f.len() > DIRECT_MAX) {
            return None;
        }
        let now = Instant::now();
        if p.last_direct
            .is_some_and(|at| now.duration_since(at) < DIRECT_SPACING)
        {
            return None;
        }
        p.last_direct = Some(now);
        Some(socket.clone())
    }

    /// Writes `frame` with one non-blocking write; hands what is left to the writer task.
    fn write_direct(&self, socket: &std::net::TcpStream, mut frame: Vec<u8>) {
        let body = u32::try_from(frame.len() - HEADER).unwrap_or(u32::MAX);
        frame[..HEADER].copy_from_slice(&body.to_le_bytes());
        // Would block, or failed: the writer task writes it (and meets the failure too,
        // which closes the lane).
        let written = (&*socket).write(&frame).unwrap_or(0);
        let mut p = self.lock();
        p.writing = false;
        if written < frame.len() {
            frame.drain(..written);
            p.bytes += frame.len();
            p.head = frame;
        } else if p.spare.len() < 4 {
            frame.clear();
            p.spare.push(frame);
        }
        // The writer task waited for this write to end if anything came meanwhile, or if
        // the outbox is finishing (it writes the rest, then stops).
        let wake = !p.frames.is_empty() || !p.head.is_empty() || p.finishing;
        drop(p);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Lets senders write to `socket` directly while the lane is open; `None` once it
    /// closes (the socket closes when the writer task and every direct writer let go).
    pub(crate) fn set_direct(&self, socket: Option<std::net::TcpStream>) {
        self.lock().direct = socket.map(Arc::new);
    }

    /// Appends a plain item.
    pub(crate) fn push_item(&self, item: &Item<'_>) -> Result<(), Refused> {
        self.push::<std::convert::Infallible>(|out| {
            wire::put_item(out, item);
            Ok(())
        })
        .map(|_| ())
    }

    /// Appends a plain item, written at once if the lane is idle ([`Outbox::push_direct`]).
    #[cfg(test)]
    pub(crate) fn push_item_direct(&self, item: &Item<'_>) -> Result<(), Refused> {
        self.push_direct::<std::convert::Infallible>(|out| {
            wire::put_item(out, item);
            Ok(())
        })
        .map(|_| ())
    }

    /// Appends a reply (or a refusal) to a peer's call, written at once if the lane is
    /// idle, and queued even past the pending limit: the caller waits for it, and a reply
    /// dropped for a full outbox would leave it waiting its whole timeout for an answer
    /// that was made. Replies are bounded by the calls the peer has in flight here (each
    /// held a place in its export's queue, or was refused with an answer).
    pub(crate) fn push_reply(&self, item: &Item<'_>) -> Result<(), Refused> {
        self.push_with::<std::convert::Infallible>(true, true, |out| {
            wire::put_item(out, item);
            Ok(())
        })
        .map(|_| ())
    }

    /// Closes the outbox: later pushes fail and the writer stops after what is queued.
    pub(crate) fn close(&self) {
        let mut p = self.lock();
        p.closed = true;
        p.frames.clear();
        p.head = Vec::new();
        p.direct = None;
        drop(p);
        self.ready.notify_one();
        self.room.notify_waiters();
    }

    /// Whether a push would be refused as [`Refused::Full`] now.
    pub(crate) fn is_full(&self) -> bool {
        let p = self.lock();
        !p.closed && !p.finishing && p.bytes > self.max_pending
    }

    /// A future woken once there may be room again (or the outbox closed): enable it,
    /// check [`Outbox::is_full`], then await it.
    pub(crate) fn room(&self) -> tokio::sync::futures::Notified<'_> {
        self.room.notified()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Whether nothing waits to be written.
    pub(crate) fn is_drained(&self) -> bool {
        let p = self.lock();
        (p.frames.is_empty() && p.head.is_empty() && !p.writing) || p.closed
    }

    /// Lets the writer write what is queued, then stop; later pushes fail.
    pub(crate) fn finish(&self) {
        self.lock().finishing = true;
        self.ready.notify_one();
        self.room.notify_waiters();
    }

    /// Writes queued frames to `io` until the outbox closes or a write fails.
    pub(crate) async fn write_to<W: AsyncWrite + Unpin>(&self, io: &mut W) -> std::io::Result<()> {
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut head = Vec::new();
        loop {
            let direct_under_way = {
                let mut p = self.lock();
                if p.closed {
                    return Ok(());
                }
                if !p.writing {
                    std::mem::swap(&mut head, &mut p.head);
                    std::mem::swap(&mut batch, &mut p.frames);
                    p.bytes = 0;
                    p.writing = !batch.is_empty() || !head.is_empty();
                }
                p.writing && batch.is_empty() && head.is_empty()
            };
            if direct_under_way {
                // A sender is writing directly; it wakes this task when done if anything
                // is left.
                self.ready.notified().await;
                continue;
            }
            if !head.is_empty() {
                self.room.notify_waiters();
                io.write_all(&head).await?;
                head.clear();
                if batch.is_empty() {
                    io.flush().await?;
                    self.lock().writing = false;
                    continue;
                }
            }
            if !batch.is_empty() {
                self.room.notify_waiters();
            }
            if batch.is_empty() {
                if self.lock().finishing {
                    io.flush().await?;
                    return Ok(());
                }
                self.ready.notified().await;
                continue;
            }
            let mut since_yield = 0;
            for frame in &mut batch {
                let body = u32::try_from(frame.len() - HEADER).unwrap_or(u32::MAX);
                frame[..HEADER].copy_from_slice(&body.to_le_bytes());
                io.write_all(frame).await?;
                since_yield += frame.len();
                if since_yield >= YIELD_EVERY {
                    since_yield = 0;
                    tokio::task::yield_now().await;
                }
            }
            io.flush().await?;
            let mut p = self.lock();
            p.writing = false;
            for mut f in batch.drain(..) {
                if p.spare.len() < 4 && f.capacity() <= 4 * FRAME_TARGET {
                    f.clear();
                    p.spare.push(f);
                }
            }
        }
    }
}

/// When a peer was last heard on its inbound lane, in milliseconds since the node's epoch.
#[derive(Debug)]
pub(crate) struct Heard {
    epoch: Instant,
    ms: AtomicU64,
}

impl Heard {
    pub(crate) fn new(epoch: Instant) -> Self {
        let h = Self {
            epoch,
            ms: AtomicU64::new(0),
        };
        h.touch();
        h
    }

    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn at(&self) -> Instant {
        self.epoch + std::time::Duration::from_millis(self.ms.load(Ordering::Relaxed))
    }
}

/// Reads frames from `io` and hands each item to `on_item` until the stream ends (Ok) or
/// breaks the protocol (Err). `heard` is touched for every read that brought frames.
///
/// Reads take whatever the socket holds (up to the buffer's free room), so frames that
/// arrived together are read with one syscall, and a small frame with one instead of two
/// (header, then body). The buffer grows as a frame's bytes arrive, never much past the
/// frame (see `read_body`).
pub(crate) async fn read_frames<R: AsyncRead + Unpin>(
    io: &mut R,
    max_frame: usize,
    heard: &Heard,
    mut on_item: impl FnMut(Item<'_>),
) -> Result<(), LaneError> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
    let mut since_yield = 0;
    loop {
        // Every whole frame in the buffer.
        let mut at = 0;
        let mut want = HEADER;
        while let Some(header) = buf.get(at..at + HEADER) {
            let mut h = [0u8; HEADER];
            h.copy_from_slice(header);
            let len = wire::body_len(h, max_frame)?;
            want = HEADER + len;
            let Some(mut rest) = buf.get(at + HEADER..at + HEADER + len) else {
                break;
            };
            while !rest.is_empty() {
                on_item(wire::take_item(&mut rest)?);
            }
            at += HEADER + len;
            want = HEADER;
        }
        buf.drain(..at);
        if buf.capacity() > SHRINK_ABOVE && buf.len() <= READ_BUF {
            // A large frame has been read: its room goes back rather than staying with
            // the lane for as long as it is open (a peer's one 100 MiB message would
            // otherwise hold 100 MiB here until the lane closes).
            buf.shrink_to(READ_BUF);
        }
        since_yield += at;
        if since_yield >= YIELD_EVERY {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
        // Room for more: at least the rest of the frame begun, growing by at most what has
        // arrived of it (a peer announcing a large frame and sending little makes this side
        // allocate only about what it sent).
        let missing = want.saturating_sub(buf.len());
        let step = missing.min(buf.len().max(READ_BUF)).max(1);
        if buf.capacity() - buf.len() < step {
            buf.reserve_exact(step);
        }
        let room = buf.capacity() - buf.len();
        let got = (&mut *io)
            .take(room as u64)
            .read_buf(&mut buf)
            .await
            .map_err(LaneError::Io)?;
        if got == 0 {
            return if buf.is_empty() {
                Ok(())
            } else {
                Err(LaneError::Io(std::io::ErrorKind::UnexpectedEof.into()))
            };
        }
        heard.touch();
    }
}

/// What a lane's reader asks of the socket at least, and its buffer's first size.
const READ_BUF: usize = 16 * 1024;

/// A lane's read buffer larger than this (grown for a large frame) shrinks back to
/// [`READ_BUF`] once that frame is read: well above the frames batching makes
/// ([`FRAME_TARGET`]), so a busy lane does not reallocate.
const SHRINK_ABOVE: usize = 1 << 20;

/// Reads one frame (the lane's first, with its hello) into `buf`.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    max_frame: usize,
    buf: &mut Vec<u8>,
) -> Result<(), LaneError> {
    let mut header = [0u8; HEADER];
    io.read_exact(&mut header).await.map_err(LaneError::Io)?;
    let len = wire::body_len(header, max_frame)?;
    read_body(io, buf, len).await
}

/// The first step a frame's buffer grows by: a frame up to this size is read with one
/// allocation (none once the buffer has had one that size).
const READ_STEP: usize = 64 * 1024;

async fn read_body<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
    len: usize,
) -> Result<(), LaneError> {
    buf.clear();
    // Grow as bytes arrive, never past the frame: each step at most doubles what has
    // arrived, so a peer announcing a large frame and sending little makes this side
    // allocate only about what it sent, and a frame of `len` bytes ends in a buffer of
    // `len` (a read to the end would round it up to the next power of two: up to twice
    // the frame, per lane).
    while buf.len() < len {
        let step = (len - buf.len()).min(buf.len().max(READ_STEP));
        buf.reserve_exact(step);
        let mut chunk = (&mut *io).take(step as u64);
        let got = chunk.read_buf(buf).await.map_err(LaneError::Io)?;
        if got == 0 {
            return Err(LaneError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(())
}

/// Why a lane closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaneError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Frame(#[from] FrameError),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::*;

    fn items_of(bytes: &[u8]) -> Vec<usize> {
        // Frame body lengths in a written stream.
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            out.push(len);
            rest = &rest[4 + len..];
        }
        out
    }

    #[tokio::test]
    async fn many_items_leave_in_few_frames_and_read_back_in_order() {
        let outbox = std::sync::Arc::new(Outbox::new(wire::DEFAULT_MAX_FRAME, 1 << 30));
        for i in 0..10_000u32 {
            let name = format!("p{}", i % 3);
            let msg = i.to_le_bytes();
            outbox
                .push_item(&Item::Cast {
                    name: &name,
                    ctx: None,
                    ty: 0,
                    msg: &msg,
                })
                .unwrap();
        }
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.write_to(&mut a).await })
        };
        let heard = Heard::new(Instant::now());
        let mut seen = 0u32;
        let reader = async {
            read_frames(&mut b, wire::DEFAULT_MAX_FRAME, &heard, |item| {
                let Item::Cast { msg, .. } = item else {
                    panic!("unexpected {item:?}")
                };
                assert_eq!(u32::from_le_bytes(msg.try_into().unwrap()), seen);
                seen += 1;
                if seen == 10_000 {
                    outbox.close();
                }
            })
            .await
        };
        // The writer returns once closed; the reader then sees the stream end.
        let (r, w) = tokio::join!(reader, writer);
        r.unwrap();
        w.unwrap().unwrap();
        assert_eq!(seen, 10_000);
    }

    /// A connected pair on loopback: (the writing side as tokio's, a second handle on the
    /// same socket for direct writes, the reading side).
    async fn socket_pair() -> (
        tokio::net::TcpStream,
        std::net::TcpStream,
        tokio::net::TcpStream,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), async {
            listener.accept().await.unwrap().0
        });
        let client = client.unwrap();
        client.set_nodelay(true).unwrap();
        let std = client.into_std().unwrap();
        let direct = std.try_clone().unwrap();
        (
            tokio::net::TcpStream::from_std(std).unwrap(),
            direct,
            server,
        )
    }

    fn cast(i: u32) -> Vec<u8> {
        i.to_le_bytes().to_vec()
    }

    #[tokio::test]
    async fn a_call_on_an_idle_lane_is_written_by_its_sender_and_order_holds_with_the_writer() {
        let (mut tcp, direct, mut server) = socket_pair().await;
        let outbox = std::sync::Arc::new(Outbox::new(wire::DEFAULT_MAX_FRAME, 1 << 30));
        outbox.set_direct(Some(direct));
        // No writer task yet: the frame can only have been written by the push.
        let msg = cast(0);
        let item = Item::Cast {
            name: "n",
            ctx: None,
            ty: 0,
            msg: &msg,
        };
        outbox.push_item_direct(&item).unwrap();
        let heard = Heard::new(Instant::now());
        let mut seen = 0u32;
        let mut first = Vec::new();
        read_frame(&mut server, wire::DEFAULT_MAX_FRAME, &mut first)
            .await
            .unwrap();
        assert_eq!(wire::take_item(&mut &first[..]).unwrap(), item);
        seen += 1;
        // With the writer running, direct and queued items interleave and keep their order.
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.write_to(&mut tcp).await })
        };
        let pusher = {
            let outbox = outbox.clone();
            std::thread::spawn(move || {
                for i in 1..20_000u32 {
                    let msg = cast(i);
                    let item = Item::Cast {
                        name: "n",
                        ctx: None,
                        ty: 0,
                        msg: &msg,
                    };
                    if i % 3 == 0 {
                        outbox.push_item(&item).unwrap();
                    } else {
                        outbox.push_item_direct(&item).unwrap();
                    }
                    if i % 1000 == 0 {
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    }
                }
            })
        };
        read_frames(&mut server, wire::DEFAULT_MAX_FRAME, &heard, |item| {
            let Item::Cast { msg, .. } = item else {
                panic!("unexpected {item:?}")
            };
            assert_eq!(u32::from_le_bytes(msg.try_into().unwrap()), seen);
            seen += 1;
            if seen == 20_000 {
                outbox.close();
            }
        })
        .await
        .unwrap_or(());
        pusher.join().unwrap();
        writer.await.unwrap().unwrap();
        assert_eq!(seen, 20_000);
    }

    #[tokio::test]
    async fn what_a_direct_write_leaves_goes_first_through_the_writer() {
        use std::io::Write;
        let (mut tcp, direct, mut server) = socket_pair().await;
        // Fill the socket (the reader is not reading) with raw bytes, written around the
        // outbox, until it would block; the reader skips them first.
        let filler = [0u8; 4096];
        let mut sent = 0usize;
        loop {
            match (&direct).write(&filler) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let outbox = std::sync::Arc::new(Outbox::new(wire::DEFAULT_MAX_FRAME, 1 << 30));
        outbox.set_direct(Some(direct));
        let msg = cast(7);
        let item = Item::Cast {
            name: "n",
            ctx: None,
            ty: 0,
            msg: &msg,
        };
        // The socket takes none (or part) of it: the rest waits for the writer.
        outbox.push_item_direct(&item).unwrap();
        outbox.push_item(&item).unwrap();
        assert!(!outbox.is_drained());
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.write_to(&mut tcp).await })
        };
        let mut skip = vec![0u8; sent];
        server.read_exact(&mut skip).await.unwrap();
        let mut frame = Vec::new();
        for _ in 0..2 {
            read_frame(&mut server, wire::DEFAULT_MAX_FRAME, &mut frame)
                .await
                .unwrap();
            assert_eq!(wire::take_item(&mut &frame[..]).unwrap(), item);
        }
        outbox.close();
        writer.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_frame_is_read_into_a_buffer_of_its_size_and_a_short_one_is_an_error() {
        // Just over a power of two: a read to the end would hold 8 MiB for it.
        let len = (4 << 20) + 1000;
        let mut bytes = (len as u32).to_le_bytes().to_vec();
        bytes.extend((0..len).map(|i| i as u8));
        // Small pieces, as a socket hands them over.
        let (mut a, mut b) = tokio::io::duplex(16 * 1024);
        let send = bytes.clone();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            a.write_all(&send).await.unwrap();
        });
        let mut buf = Vec::new();
        read_frame(&mut b, wire::DEFAULT_MAX_FRAME, &mut buf)
            .await
            .unwrap();
        writer.await.unwrap();
        assert_eq!(buf, bytes[4..]);
        assert!(buf.capacity() < len + READ_STEP, "{}", buf.capacity());
        // A frame that ends early.
        let mut short = (1000u32).to_le_bytes().to_vec();
        short.extend([7u8; 10]);
        let got = read_frame(&mut &short[..], wire::DEFAULT_MAX_FRAME, &mut buf).await;
        assert!(
            matches!(got, Err(LaneError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof)
        );
    }

    #[tokio::test]
    async fn frames_stay_under_the_limit_and_an_oversized_item_is_refused() {
        let outbox = Outbox::new(1000, 1 << 30);
        let big = vec![1u8; 600];
        for _ in 0..5 {
            outbox
                .push_item(&Item::Cast {
                    name: "n",
                    ctx: None,
                    ty: 0,
                    msg: &big,
                })
                .unwrap();
        }
        let huge = vec![1u8; 2000];
        assert_eq!(
            outbox.push_item(&Item::Cast {
                name: "n",
                ctx: None,
                ty: 0,
                msg: &huge
            }),
            Err(Refused::TooLarge)
        );
        let mut out = Vec::new();
        outbox.finish();
        outbox.write_to(&mut out).await.unwrap();
        let frames = items_of(&out);
        assert_eq!(frames.len(), 5, "{frames:?}");
        assert!(frames.iter().all(|&l| l <= 1000));
    }

    #[test]
    fn a_full_or_closed_outbox_refuses_but_a_reply_is_queued_past_the_limit() {
        let outbox = Outbox::new(1 << 20, 100);
        let msg = [0u8; 200];
        let item = Item::Cast {
            name: "n",
            ctx: None,
            ty: 0,
            msg: &msg,
        };
        outbox.push_item(&item).unwrap();
        assert_eq!(outbox.push_item(&item), Err(Refused::Full));
        // A reply to a peer's call is queued past the limit: its caller waits for it.
        let reply = Item::Reply {
            id: 7,
            result: Ok(&msg),
        };
        assert_eq!(outbox.push_reply(&reply), Ok(()));
        assert_eq!(outbox.push_item(&item), Err(Refused::Full));
        outbox.close();
        assert_eq!(outbox.push_item(&item), Err(Refused::Closed));
        assert_eq!(outbox.push_reply(&reply), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn a_truncated_frame_or_item_is_an_error_and_what_came_before_is_delivered() {
        let heard = Heard::new(Instant::now());
        let mut good = Vec::new();
        wire::put_item(&mut good, &Item::Heartbeat);
        let mut bytes = u32::try_from(good.len()).unwrap().to_le_bytes().to_vec();
        bytes.extend_from_slice(&good);
        // A frame announcing 100 bytes whose sender goes after 3.
        bytes.extend_from_slice(&100u32.to_le_bytes());
        bytes.extend_from_slice(&[1, 2, 3]);
        let mut seen = 0;
        let r = read_frames(&mut &bytes[..], 1024, &heard, |_| seen += 1).await;
        assert!(
            matches!(r, Err(LaneError::Io(ref e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
            "{r:?}"
        );
        assert_eq!(seen, 1);
        // A whole frame whose item is cut short.
        let mut bytes = 2u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[1, 5]); // a cast whose name says 5 bytes and has none
        let r = read_frames(&mut &bytes[..], 1024, &heard, |_| {}).await;
        assert!(
            matches!(r, Err(LaneError::Frame(FrameError::Truncated(_)))),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_huge_announced_frame_is_refused_before_allocating() {
        let mut bytes = u32::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        let heard = Heard::new(Instant::now());
        let r = read_frames(&mut &bytes[..], 1024, &heard, |_| {}).await;
        assert!(
            matches!(r, Err(LaneError::Frame(FrameError::Oversized { .. }))),
            "{r:?}"
        );
    }
}
