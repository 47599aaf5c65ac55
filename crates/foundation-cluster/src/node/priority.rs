//! The thread that runs the lanes of low-priority channels ([`Priority::Low`]).
//!
//! A flood on a channel keeps its lanes busy: on the sender, the writer copying frames into
//! the socket; on the receiver, the reader decoding and delivering them. On a machine with
//! few cores those tasks take the cores that a small call on another channel needs, and
//! tokio's cooperative yields do not help once the OS is the one choosing which thread
//! runs: a call's reply then waits for a time slice (milliseconds). So the lanes of a
//! low-priority channel run on a runtime of their own, one worker thread that the OS ranks
//! below the application's (nice 19 on Linux, a per-thread setting there): the flood gets
//! what the node leaves, and a woken thread on a call's path preempts it at once.
//!
//! One runtime per process (a node is a process), started on first use and never stopped:
//! its thread sleeps when no low-priority lane is open. A lane's socket opened on the
//! node's runtime is moved to this one (`TcpStream::into_std` / `from_std`), so its
//! readiness events too are handled on the low-priority thread.

use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};

use super::config::Priority;

/// The nice value of the low-priority thread (the lowest priority there is).
#[cfg(target_os = "linux")]
const NICE: i32 = 19;

static LOW: OnceLock<Option<Runtime>> = OnceLock::new();

/// Where a lane of a channel of `priority` runs: `None` for the node's own runtime.
pub(crate) fn handle(priority: Priority) -> Option<Handle> {
    match priority {
        Priority::Normal => None,
        Priority::Low => low(),
    }
}

/// The low-priority runtime, started now if it is not yet; `None` if it cannot be
/// (no thread could be spawned): its lanes then run on the node's runtime.
fn low() -> Option<Handle> {
    LOW.get_or_init(|| {
        let built = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fnd-low-lanes")
            .on_thread_start(lower_this_thread)
            .enable_all()
            .build();
        match built {
            Ok(rt) => Some(rt),
            Err(e) => {
                tracing::error!(error = %e, "could not start the thread for low-priority channels; their lanes run at normal priority");
                None
            }
        }
    })
    .as_ref()
    .map(|rt| rt.handle().clone())
}

/// Lowers the calling thread's priority (on Linux the nice value is per thread).
fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
            tracing::warn!(error = %e, "could not lower the priority of the low-priority lanes' thread");
        }
    }
}

/// Runs `future` on the thread of the low-priority channels' lanes, which the OS ranks
/// below the application's threads (nice 19 on Linux): for the producer of a bulk
/// transfer on a [`Priority::Low`] channel, whose own work (building and encoding each
/// message) would otherwise compete at normal priority with everything else the node
/// does. It shares that one thread with the lanes: give it work that waits (a producer
/// held by [`crate::node::Node::send_on_wait`]), not work that blocks. See
/// `docs/cluster.md`, "Channel priority".
///
/// # Panics
///
/// Only where the low-priority thread could not be started (then the future runs on the
/// current runtime, as [`tokio::spawn`] would) and this is called outside a Tokio
/// runtime.
///
/// # Examples
///
/// ```
/// # #[tokio::main] async fn main() {
/// let answer = foundation_cluster::node::spawn_low_priority(async { 6 * 7 });
/// assert_eq!(answer.await.unwrap(), 42);
/// # }
/// ```
pub fn spawn_low_priority<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match low() {
        Some(h) => h.spawn(future),
        None => tokio::spawn(future),
    }
}

/// Spawns `lane` where a lane of `priority` runs.
pub(crate) fn spawn<F>(priority: Priority, lane: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    match handle(priority) {
        Some(h) => drop(h.spawn(lane)),
        None => drop(tokio::spawn(lane)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::*;

    #[tokio::test]
    async fn low_priority_lanes_run_on_a_thread_of_their_own_that_the_os_ranks_lower() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn(Priority::Low, async move {
            let name = std::thread::current().name().map(str::to_owned);
            #[cfg(target_os = "linux")]
            let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
            #[cfg(not(target_os = "linux"))]
            let nice: std::io::Result<i32> = Ok(19);
            let _ = tx.send((name, nice.ok()));
        });
        let (name, nice) = rx.await.unwrap();
        assert_eq!(name.as_deref(), Some("fnd-low-lanes"));
        assert_eq!(nice, Some(19));
        // Normal-priority lanes run on the caller's runtime.
        assert!(handle(Priority::Normal).is_none());
        // So does what the application runs there, on the same thread.
        let on = spawn_low_priority(async { std::thread::current().name().map(str::to_owned) });
        assert_eq!(on.await.unwrap().as_deref(), Some("fnd-low-lanes"));
    }
}
