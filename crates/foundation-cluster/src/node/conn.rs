//! Connections: the accept loop, telling sessions from lanes (admission), dialing a
//! session, and both directions of a lane. The event loop (`runtime.rs`) decides who is a
//! member; this module moves the bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ractor::ActorRef;
use ractor_cluster::NodeServerMessage;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::admission::{Gated, PREAUTH_FRAME, Permit, SessionStream};
use super::config::Priority;
use super::lane::{self, Heard, Outbox, PREAMBLE};
use super::priority;
use super::runtime::{Event, Shared};
use super::wire::{self, Item};

/// Backoff of the accept loop while accepting fails (out of file descriptors, say).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Accepts connections on the node's one port and tells sessions, lanes and garbage apart.
/// A connection over the caps on unauthenticated ones is closed at once (see
/// `admission.rs`); when accepting fails (out of file descriptors, say), the loop waits,
/// longer each time up to half a second, and logs once until it accepts again.
pub(crate) async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    server: ActorRef<NodeServerMessage>,
) {
    let mut backoff = Duration::ZERO;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if !backoff.is_zero() {
                    tracing::info!("accepting connections again");
                    backoff = Duration::ZERO;
                }
                let Some(permit) = shared.admission.admit(peer.ip()) else {
                    continue; // dropped: closed at once, and counted
                };
                let deadline = tokio::time::Instant::now() + shared.handshake_timeout;
                let _ = stream.set_nodelay(true);
                tokio::spawn(admit(
                    stream,
                    peer,
                    permit,
                    deadline,
                    shared.clone(),
                    server.clone(),
                ));
            }
            Err(e) => {
                shared.admission.count_accept_error();
                if backoff.is_zero() {
                    let fds = matches!(e.raw_os_error(), Some(EMFILE | ENFILE));
                    tracing::warn!(
                        error = %e,
                        out_of_descriptors = fds,
                        "accept failed; retrying with a backoff (logged once until it works again)"
                    );
                }
                backoff = (backoff * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// "Too many open files" (this process's limit) and "file table overflow" (the system's):
/// the same numbers on Linux and macOS.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

async fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    permit: Permit,
    deadline: tokio::time::Instant,
    shared: Arc<Shared>,
    server: ActorRef<NodeServerMessage>,
) {
    let timeout = shared.handshake_timeout;
    let said_nothing = |shared: &Shared| {
        shared.admission.count_timeout();
        shared.reject(
            peer.to_string(),
            format!("connected and sent nothing for {timeout:?}"),
        );
    };
    let label = peer.to_string();
    if let Some(tls) = shared.tls.clone() {
        let mut tls_stream =
            match tokio::time::timeout_at(deadline, tls.acceptor.accept(stream)).await {
                Err(_) => return said_nothing(&shared),
                Ok(Err(e)) => {
                    return shared.reject(label, format!("TLS handshake failed: {e}"));
                }
                Ok(Ok(s)) => s,
            };
        let mut first = [0u8; 1];
        match tokio::time::timeout_at(deadline, tls_stream.read_exact(&mut first)).await {
            Err(_) => return said_nothing(&shared),
            Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
        match first[0] {
            0 => {
                // ractor_cluster reads the session from its start: give the byte back.
                let (r, w) = tokio::io::split(tls_stream);
                let reader = std::io::Cursor::new(vec![0u8]).chain(r);
                if let Err(why) =
                    open_session(&shared, &server, label, Some(permit), reader, w, true)
                {
                    tracing::debug!(%peer, %why, "session not opened");
                }
            }
            b if b == PREAMBLE[0] => {
                let Some(g) = greet_lane(&mut tls_stream, peer, &shared, permit, deadline, 1).await
                else {
                    return;
                };
                // A low-priority lane moves to the low-priority thread (its socket's
                // readiness stays with this runtime's driver: the TLS stream cannot be
                // taken apart to move it).
                match priority::handle(shared.priority(g.channel)) {
                    None => read_lane(tls_stream, peer, shared, g).await,
                    Some(low) => drop(low.spawn(read_lane(tls_stream, peer, shared, g))),
                }
            }
            b => not_foundation(&shared, peer, b),
        }
        return;
    }
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Err(_) => return said_nothing(&shared),
        Ok(Ok(0) | Err(_)) => return,
        Ok(Ok(_)) => {}
    }
    match first[0] {
        // A ractor_cluster session: its frames start with a big-endian u64 length.
        0 => {
            let (r, w) = stream.into_split();
            if let Err(why) = open_session(&shared, &server, label, Some(permit), r, w, true) {
                tracing::debug!(%peer, %why, "session not opened");
            }
        }
        b if b == PREAMBLE[0] => {
            let mut stream = stream;
            let Some(g) = greet_lane(&mut stream, peer, &shared, permit, deadline, 0).await else {
                return;
            };
            match priority::handle(shared.priority(g.channel)) {
                None => read_lane(stream, peer, shared, g).await,
                // The socket moves to the low-priority runtime whole: its readiness events
                // are handled there too, not by this runtime's threads.
                Some(low) => match stream.into_std() {
                    Ok(std) => drop(low.spawn(async move {
                        match TcpStream::from_std(std) {
                            Ok(stream) => read_lane(stream, peer, shared, g).await,
                            Err(e) => lane_not_moved(&shared, peer, &e),
                        }
                    })),
                    Err(e) => lane_not_moved(&shared, peer, &e),
                },
            }
        }
        // A TLS ClientHello to a node without TLS.
        0x16 => shared.reject(
            label,
            "started a TLS handshake, but this node does not use TLS".into(),
        ),
        b => not_foundation(&shared, peer, b),
    }
}

/// Hands a session's stream to ractor_cluster, its reader behind a gate that reads at
/// most [`PREAUTH_FRAME`] bytes of a frame until the session authenticates (see
/// `admission.rs`: ractor_cluster would read a frame of up to `max_frame` whole). Its
/// slot (`permit`, inbound sessions) is held until then. The loop finds the gate by the
/// session's `label`, which ractor_cluster reports as its peer address.
fn open_session(
    shared: &Shared,
    server: &ActorRef<NodeServerMessage>,
    label: String,
    permit: Option<Permit>,
    reader: impl AsyncRead + Unpin + Send + 'static,
    writer: impl AsyncWrite + Unpin + Send + 'static,
    is_server: bool,
) -> Result<(), String> {
    let Some(gate) = shared.admission.gate(&label, permit) else {
        let why = "a session with the same address is still in its handshake";
        shared.reject(label, why.into());
        return Err(why.into());
    };
    let stream = SessionStream {
        reader: Box::new(Gated::new(reader, gate)),
        writer: Box::new(writer),
        label,
    };
    let opened = NodeServerMessage::ConnectionOpenedExternal {
        stream: Box::new(stream),
        is_server,
    };
    server
        .cast(opened)
        .map_err(|_| "the node server has stopped; connection dropped".to_owned())
}

fn not_foundation(shared: &Shared, peer: SocketAddr, b: u8) {
    shared.reject(
        peer.to_string(),
        format!("sent {b:#04x} first: not a Foundation node (garbage, or another protocol)"),
    );
}

/// An inbound lane's opening, checked: who sent it, for which lane, and its first frame
/// (from `rest` on, the items after the hello).
struct Greeted {
    node: String,
    incarnation: u64,
    channel: usize,
    lane: u64,
    /// The number of this node's hello whose token it presented.
    hello: u64,
    first: Vec<u8>,
    rest: usize,
}

/// An inbound lane's opening: check its preamble (of which `consumed` bytes were read
/// already) and its token. Until the token is checked, the lane holds its slot (`permit`),
/// must be done by `deadline`, and may make this node read at most [`PREAUTH_FRAME`] bytes
/// of its first frame (its hello). `None` once refused (and reported).
async fn greet_lane<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    shared: &Shared,
    permit: Permit,
    deadline: tokio::time::Instant,
    consumed: usize,
) -> Option<Greeted> {
    let mut buf = Vec::new();
    let greeted = tokio::time::timeout_at(deadline, async {
        let mut pre = [0u8; 4];
        stream.read_exact(&mut pre[consumed..]).await?;
        if pre[consumed..] != PREAMBLE[consumed..] {
            let why = if pre[consumed..3] == PREAMBLE[consumed..3] {
                format!(
                    "a lane of wire version {}, this node speaks {} (the nodes of a cluster must run the same Foundation version)",
                    char::from(pre[3]).escape_default(),
                    char::from(PREAMBLE[3])
                )
            } else {
                "bad preamble".to_owned()
            };
            return Err(lane::LaneError::Io(std::io::Error::other(why)));
        }
        lane::read_frame(stream, PREAUTH_FRAME, &mut buf).await
    })
    .await;
    let refuse = |why: String| {
        shared.reject(peer.to_string(), why);
        None
    };
    match greeted {
        Err(_) => {
            shared.admission.count_timeout();
            return refuse("opened a lane and did not present its hello in time".into());
        }
        Ok(Err(lane::LaneError::Frame(wire::FrameError::Oversized { len, .. }))) => {
            shared.admission.count_oversized();
            return refuse(format!(
                "opened a lane with a first frame of {len} bytes, over the {PREAUTH_FRAME} a hello may take before its token is checked"
            ));
        }
        Ok(Err(e)) => return refuse(format!("bad lane opening: {e}")),
        Ok(Ok(())) => {}
    }
    let mut rest = &buf[..];
    let (node, incarnation, channel, lane, hello) = match wire::take_item(&mut rest) {
        Ok(Item::Hello { node, channel, .. }) if shared.channel(channel).is_none() => {
            return refuse(format!(
                "lane from `{node}` for channel `{channel}`, which this node does not have (declare it with NodeConfig::channel on both nodes)"
            ));
        }
        Ok(Item::Hello {
            token,
            node,
            incarnation,
            channel,
            lane,
        }) => {
            let taken = shared
                .channel(channel)
                .and_then(|ch| Some((ch, shared.take_token(token, ch, lane)?)));
            let Some((ch, hello)) = taken else {
                return refuse(format!(
                    "lane from `{node}` with an unknown or expired token, or one it presented already for that lane"
                ));
            };
            (node.to_owned(), incarnation, ch, lane, hello)
        }
        Ok(_) => return refuse("a lane that did not start with hello".into()),
        Err(e) => return refuse(format!("bad lane hello: {e}")),
    };
    drop(permit);
    let rest = buf.len() - rest.len();
    Some(Greeted {
        node,
        incarnation,
        channel,
        lane,
        hello,
        first: buf,
        rest,
    })
}

/// A lane whose socket could not be moved to the low-priority runtime: closed (its peer
/// takes this node down and reconnects, as for any broken lane).
fn lane_not_moved(shared: &Shared, peer: SocketAddr, e: &std::io::Error) {
    shared.reject(
        peer.to_string(),
        format!("could not move a low-priority lane to its thread: {e}"),
    );
}

/// An inbound lane after its hello: deliver its frames until it ends.
async fn read_lane<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    g: Greeted,
) {
    let Greeted {
        node,
        incarnation,
        channel,
        lane,
        hello,
        first,
        rest,
    } = g;
    let heard = Arc::new(Heard::new(shared.epoch));
    let kill = Arc::new(Notify::new());
    let id = shared.next_lane.fetch_add(1, Ordering::Relaxed);
    let _open = Open::count(&shared.lanes_in);
    tracing::debug!(%node, %peer, channel, lane, "inbound lane open");
    let _ = shared.loop_tx.send(Event::LaneIn {
        node: node.clone(),
        incarnation,
        channel,
        lane,
        id,
        hello,
        heard: heard.clone(),
        kill: kill.clone(),
    });
    // Items after the hello in the first frame.
    let mut bad = None;
    let mut rest = first.get(rest..).unwrap_or_default();
    while !rest.is_empty() {
        match wire::take_item(&mut rest) {
            Ok(item) => shared.dispatch(&node, incarnation, channel, item),
            Err(e) => {
                bad = Some(e.to_string());
                break;
            }
        }
    }
    let why = match bad {
        Some(e) => Some(e),
        None => {
            let read = lane::read_frames(&mut stream, shared.max_frame, &heard, |item| {
                shared.dispatch(&node, incarnation, channel, item);
            });
            tokio::select! {
                r = read => match r {
                    // The connection ended without its end (a TLS peer's close_notify, or
                    // the rest of a frame): the peer crashed, was killed, or the network
                    // dropped it. Not a refusal: membership sees it go.
                    Err(lane::LaneError::Io(e)) if abrupt(&e) => {
                        tracing::debug!(%node, %peer, error = %e, "a lane from a peer ended abruptly");
                        None
                    }
                    r => r.err().map(|e| e.to_string()),
                },
                () = kill.notified() => None,
            }
        }
    };
    if let Some(why) = &why {
        shared.reject(format!("{node} ({peer})"), format!("lane closed: {why}"));
    }
    let _ = shared.loop_tx.send(Event::LaneInClosed {
        node,
        incarnation,
        channel,
        lane,
        id,
        why,
    });
}

/// Outbound lane number `lane` of channel `channel` to `node` at `addr`, for this node's
/// link number `link` to it: connect, present the token, write frames.
pub(super) async fn lane_out(
    shared: Arc<Shared>,
    node: String,
    link: u64,
    addr: String,
    token: u128,
    (channel, lane): (usize, u64),
    outbox: Arc<Outbox>,
) {
    let run = async {
        let tcp = tokio::time::timeout(shared.handshake_timeout, TcpStream::connect(&addr))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        tcp.set_nodelay(true)?;
        match &shared.tls {
            None => {
                // Senders on a normal-priority channel may write a frame themselves
                // while the lane is idle (see `lane.rs`, "Direct writes"), through a
                // second handle on the same socket.
                let (tcp, direct) = match shared.priority(channel) {
                    Priority::Normal => direct_handle(tcp)?,
                    Priority::Low => (tcp, None),
                };
                write_lane(
                    &shared,
                    &node,
                    &addr,
                    (token, channel, lane),
                    (&outbox, direct),
                    tcp,
                )
                .await
            }
            Some(tls) => {
                let stream = tokio::time::timeout(
                    shared.handshake_timeout,
                    tls.connector.connect(tls.server_name.clone(), tcp),
                )
                .await
                .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
                write_lane(
                    &shared,
                    &node,
                    &addr,
                    (token, channel, lane),
                    (&outbox, None),
                    stream,
                )
                .await
            }
        }
    };
    let why = run.await.err().map(|e| e.to_string());
    let _ = shared
        .loop_tx
        .send(Event::LaneOutClosed { node, link, why });
}

/// A second handle on `tcp`'s socket, for direct writes (`None` where the OS refuses one:
/// the lane then writes from its task only).
fn direct_handle(tcp: TcpStream) -> std::io::Result<(TcpStream, Option<std::net::TcpStream>)> {
    let std = tcp.into_std()?;
    let direct = std.try_clone().ok();
    Ok((TcpStream::from_std(std)?, direct))
}

/// The outbox's direct writes, until the lane's writer ends (then the socket closes once
/// the writer task and any sender writing at that moment let go of it).
struct Direct<'a>(&'a Outbox);

impl<'a> Direct<'a> {
    fn set(outbox: &'a Outbox, socket: Option<std::net::TcpStream>) -> Self {
        outbox.set_direct(socket);
        Self(outbox)
    }
}

impl Drop for Direct<'_> {
    fn drop(&mut self) {
        self.0.set_direct(None);
    }
}

async fn write_lane<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    node: &str,
    addr: &str,
    (token, channel, lane): (u128, usize, u64),
    (outbox, direct): (&Outbox, Option<std::net::TcpStream>),
    mut stream: S,
) -> std::io::Result<()> {
    let channel = shared.channels.get(channel).map_or("", |(n, _)| n.as_str());
    let mut opening = PREAMBLE.to_vec();
    opening.extend_from_slice(&[0; wire::HEADER]);
    wire::put_item(
        &mut opening,
        &Item::Hello {
            token,
            node: &shared.name,
            incarnation: shared.incarnation,
            channel,
            lane,
        },
    );
    let body = u32::try_from(opening.len() - PREAMBLE.len() - wire::HEADER).unwrap_or(u32::MAX);
    opening[PREAMBLE.len()..PREAMBLE.len() + wire::HEADER].copy_from_slice(&body.to_le_bytes());
    stream.write_all(&opening).await?;
    // Direct writes only behind the hello.
    let _direct = Direct::set(outbox, direct);
    let _open = Open::count(&shared.lanes_out);
    tracing::debug!(%node, %addr, %channel, lane, "outbound lane open");
    // The peer never writes on this lane: anything readable is its end closing (a killed
    // process), noticed at once instead of at the next write.
    let (mut rx, mut tx) = tokio::io::split(stream);
    let closed_by_peer = async {
        let mut b = [0u8; 1];
        let _ = rx.read(&mut b).await;
    };
    tokio::select! {
        r = outbox.write_to(&mut tx) => r?,
        () = closed_by_peer => return Err(std::io::Error::other("closed by the peer")),
    }
    // Leaving: let the peer read what was written before the socket closes.
    let _ = tx.shutdown().await;
    Ok(())
}

/// Counts an open lane in [`crate::node::NodeStats`] until dropped.
struct Open<'a>(&'a AtomicUsize);

impl<'a> Open<'a> {
    fn count(open: &'a AtomicUsize) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Dials a session to `addr`. Its reader is gated as an inbound session's is (without a
/// slot: this node chose to dial), so a listener there cannot make this node read a big
/// frame before the cookie handshake either.
pub(super) async fn dial(
    shared: Arc<Shared>,
    server: ActorRef<NodeServerMessage>,
    addr: String,
    timeout: Duration,
) -> Result<SocketAddr, String> {
    let go = async {
        let sa = tokio::net::lookup_host(&addr)
            .await
            .map_err(|e| format!("cannot resolve: {e}"))?
            .next()
            .ok_or_else(|| "resolves to no address".to_owned())?;
        let tcp = TcpStream::connect(sa).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        // The label is the address dialed: the loop knows its dials by it.
        let label = sa.to_string();
        match &shared.tls {
            None => {
                let (r, w) = tcp.into_split();
                open_session(&shared, &server, label, None, r, w, false)?;
            }
            Some(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                let (r, w) = tokio::io::split(stream);
                open_session(&shared, &server, label, None, r, w, false)?;
            }
        }
        Ok(sa)
    };
    tokio::time::timeout(timeout, go)
        .await
        .unwrap_or_else(|_| Err("connect timed out".to_owned()))
}

/// Whether a read error means the connection ended abruptly rather than that the peer
/// sent something wrong.
fn abrupt(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}
