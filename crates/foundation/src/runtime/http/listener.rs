//! The endpoint's listener: a cap on connections (in all and per client address), and an
//! idle limit on each, so that clients that open connections and send nothing, or trickle
//! a request, cannot take the probes' place. (axum's own listener has neither: hyper
//! has no header deadline without a timer.)

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// Connections open at once, in all.
pub(crate) const MAX_CONNECTIONS: usize = 512;
/// Connections open at once from one client address.
pub(crate) const MAX_PER_CLIENT: usize = 64;
/// A connection on which nothing is read or written for this long is closed. (A request
/// trickled a byte at a time within it is held; the per-client cap bounds what such a
/// client takes.)
pub(crate) const IDLE: Duration = Duration::from_secs(30);

/// Open connections, in all and per client address.
#[derive(Default)]
struct Open {
    all: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// A [`TcpListener`] that closes at once a connection over either cap.
pub(crate) struct Guarded {
    listener: TcpListener,
    open: Arc<Mutex<Open>>,
    refused: metrics::Counter,
}

impl Guarded {
    /// Guards `listener`, counting refusals under `node`'s label.
    pub(crate) fn new(listener: TcpListener, node: &str) -> Self {
        Self {
            listener,
            open: Arc::default(),
            refused: metrics::counter!(super::names::HTTP_REFUSED, "node" => node.to_owned()),
        }
    }

    /// Counts a connection from `ip` in, if both caps allow it.
    fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = open.per_client.get(&ip).copied().unwrap_or(0);
        if open.all >= MAX_CONNECTIONS || mine >= MAX_PER_CLIENT {
            return None;
        }
        open.all += 1;
        open.per_client.insert(ip, mine + 1);
        Some(Slot {
            open: self.open.clone(),
            ip,
        })
    }
}

/// A connection's place under the caps, given back when it closes.
struct Slot {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.all = open.all.saturating_sub(1);
        if let Some(n) = open.per_client.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_client.remove(&self.ip);
            }
        }
    }
}

impl axum::serve::Listener for Guarded {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        let mut backoff = Duration::from_millis(5);
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most often: wait, longer each time.
                    tracing::debug!(error = %e, "foundation: HTTP accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            backoff = Duration::from_millis(5);
            match self.admit(peer.ip()) {
                Some(slot) => {
                    let _ = stream.set_nodelay(true);
                    return (Conn::new(stream, slot), peer);
                }
                None => {
                    self.refused.increment(1);
                    tracing::debug!(%peer, "foundation: HTTP connection over the cap closed");
                    drop(stream);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An admitted connection: closed with [`io::ErrorKind::TimedOut`] when nothing is read
/// from it or written to it for [`IDLE`] while the server waits for bytes.
pub(crate) struct Conn {
    stream: TcpStream,
    idle: Pin<Box<Sleep>>,
    _slot: Slot,
}

impl Conn {
    fn new(stream: TcpStream, slot: Slot) -> Self {
        Self {
            stream,
            idle: Box::pin(tokio::time::sleep(IDLE)),
            _slot: slot,
        }
    }
}

impl Conn {
    /// Bytes written count as activity too: hyper reads on while a response is made or
    /// written, and a long answer to a slow reader must not be cut at the idle limit.
    fn wrote(&mut self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.idle.as_mut().reset(Instant::now() + IDLE);
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.idle.as_mut().reset(Instant::now() + IDLE);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within the idle limit",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, data);
        self.wrote(&written);
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
