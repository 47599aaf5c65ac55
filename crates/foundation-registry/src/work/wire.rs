//! What the nodes of a cluster-wide ecosystem send each other, on the node's `default`
//! channel, to the receiver each exports as `$work/<name>` (and to the coordinator,
//! through the ecosystem's distributed supervisor, by the child id `coordinator`).

use serde::{Deserialize, Serialize};

/// One node's line of the coordinator's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Line {
    pub(crate) node: String,
    /// Workers the coordinator gives it.
    pub(crate) workers: u32,
    /// Its last reported load: jobs queued or in its workers' hands.
    pub(crate) load: u32,
    /// Which start of the node's part reported it (random per start), so that a part
    /// started again after a `Bye` is told apart from the one that left.
    pub(crate) part: u64,
}

/// One message of a cluster-wide ecosystem.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Wire {
    /// A job (one item, `reduce: None`) or a chunk of a map-reduce run, from node `from`,
    /// which keeps it until `Done`.
    Job {
        ticket: u64,
        from: String,
        kind: String,
        reduce: Option<String>,
        items: Vec<Vec<u8>>,
    },
    /// Job `ticket` ran on `node`: its encoded output, or why it failed; `load` is the
    /// node's load after it.
    Done {
        ticket: u64,
        node: String,
        outcome: Result<Vec<u8>, String>,
        load: u32,
    },
    /// Job `ticket` was refused by `node`: its queue is full (or it runs no workers).
    Nack {
        ticket: u64,
        node: String,
        load: u32,
    },
    /// To the coordinator: a node's roles, load and the largest worker total it saw in a
    /// table (so a coordinator that failed over keeps replacing lost workers).
    Report {
        node: String,
        part: u64,
        roles: Vec<String>,
        load: u32,
        peak: u32,
    },
    /// From the coordinator to every node: workers and loads per node, and the worker
    /// total it keeps (`respawn_lost_workers`).
    Table { lines: Vec<Line>, peak: u32 },
    /// "This node's part of the ecosystem shut down": what it took is re-queued.
    Bye { node: String, part: u64 },
}

/// The ecosystem's message: a [`Wire`] message with its wire form.
#[derive(Debug)]
pub(crate) struct WorkMsg(pub(crate) Wire);

foundation_actors::__newtype_remote_message!(WorkMsg, "foundation.registry.Work");
