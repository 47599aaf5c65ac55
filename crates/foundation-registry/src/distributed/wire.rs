//! What a distributed supervisor's nodes send each other, on the node's `control` channel,
//! to the process each exports as `$dsup/<name>`.

use foundation_actors::{Actor, ActorError, Addr};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::core::Cmd;
use super::table::{Record, Stamp};

/// One message between supervisors of the same name.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Wire {
    /// "I run this supervisor, with these roles; my records digest to `digest`, my table
    /// is `table`, and of your table `have.0` I have the changes up to `have.1`." Sent to
    /// each new peer and every `sync_every`; the peer answers with a window of the
    /// changes after `have` (all of its records for a table it does not hold). `reply`
    /// asks for a hello back (to a peer not known yet).
    Hello {
        from: String,
        incarnation: u64,
        roles: Vec<String>,
        digest: u64,
        reply: bool,
        table: u64,
        have: Option<(u64, u64)>,
    },
    /// Records from `from`, whose table is `table`: merged on arrival. Changed ones,
    /// sent as they change (`window: None`), or a batch of a window answering a hello.
    Records {
        from: String,
        table: u64,
        records: Vec<Record>,
        window: Option<Window>,
    },
    /// "My supervisor is shutting down": not a member of it any more.
    Bye { from: String },
    /// "Rebalance": the next plan moves `Manual` children as `Eager` ones.
    Rebalance,
    /// "Move child `id` to node `to`" (to the node running it, from the one where
    /// `migrate` was called; `req` names the request in a `MigrateFailed` answer).
    Migrate {
        id: String,
        to: String,
        from: String,
        req: u64,
    },
    /// "Child `id` could not move": to the node where `migrate` was called.
    MigrateFailed { req: u64, why: String },
    /// "Child `id` is moving away from `from`: hold what you send it by id, and say
    /// `Held` (on the channel your messages to it take, so it arrives after them)."
    Hold { id: String, from: String },
    /// "I hold what I send to `id`": every message this node sent it before is ahead.
    Held { id: String, from: String },
    /// The handed-over state of child `id` (of record `created`) to the node taking it
    /// over, with the checkpoint sequence it continues and the `migrate` request, if any.
    State {
        id: String,
        created: Stamp,
        from: String,
        seq: u64,
        #[serde(with = "block")]
        bytes: Vec<u8>,
        req: Option<(String, u64)>,
    },
    /// "I cannot take child `id` over": the old node starts it again from its state.
    Refused {
        id: String,
        from: String,
        why: String,
    },
    /// "Child `id` answers on `node`, exported there as `export`": release what is held
    /// for it, to there.
    Moved {
        id: String,
        node: String,
        export: String,
    },
    /// A checkpoint of child `id` (of record `created`), to keep for a restart elsewhere.
    Checkpoint {
        id: String,
        created: Stamp,
        seq: u64,
        #[serde(with = "block")]
        bytes: Vec<u8>,
    },
    /// "My supervisor is shutting down gracefully: hand nothing to me."
    Leaving { from: String },
}

/// Where a batch of records answering a hello stands in the sender's sequence of
/// changes: it holds the changes after `after` up to `upto` (those the receiver's table
/// sent itself left out). The receiver counts them as had only if it had every
/// change up to `after`: a batch lost on the way is sent again, never skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Window {
    pub(crate) after: u64,
    pub(crate) upto: u64,
    pub(crate) rest: Rest,
}

/// What follows a batch of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Rest {
    /// More batches of the same window.
    Batch,
    /// Nothing: the window ends, and the sender had no more changes.
    Done,
    /// The window ends, and the sender has more changes: ask again (a hello) for the
    /// next window. One window is in flight at a time, so a peer far behind is brought
    /// up to date at the pace it merges, never by a burst of the whole table.
    More,
}

/// A state's bytes as one block on the wire (postcard: its length, then the bytes), not
/// as a sequence of numbers each encoded on its own: a megabyte is a copy, not a loop.
mod block {
    use serde::{Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl de::Visitor<'_> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

/// The supervisor process's message: a [`Wire`] message with its wire form.
#[derive(Debug)]
pub(crate) struct DsupMsg(pub(crate) Wire);

foundation_actors::__newtype_remote_message!(DsupMsg, "foundation.registry.Distributed");

/// The process peers send to: hands what they send to the supervisor's loop. The loop's
/// queue is bounded, so a flood waits in this process's mailbox, which the node bounds.
pub(crate) struct Receiver {
    pub(crate) tx: mpsc::Sender<Cmd>,
}

impl Actor for Receiver {
    type Msg = DsupMsg;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<DsupMsg>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(&self, _: &Addr<DsupMsg>, msg: DsupMsg, (): &mut ()) -> Result<(), ActorError> {
        // The loop is gone only when the supervisor is: nothing to hand over then.
        let _ = self.tx.send(Cmd::Wire(msg.0)).await;
        Ok(())
    }
}
