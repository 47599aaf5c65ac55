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
    /// "I run this supervisor, with these roles, and my records digest to `digest`."
    /// Sent to each new peer and every `sync_every`; a peer whose digest differs sends
    /// its records. `reply` asks for a hello back (to a peer not known yet).
    Hello {
        from: String,
        incarnation: u64,
        roles: Vec<String>,
        digest: u64,
        reply: bool,
    },
    /// Records (changed ones, or all of them) from `from`: merged on arrival.
    Records { from: String, records: Vec<Record> },
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
        bytes: Vec<u8>,
    },
    /// "My supervisor is shutting down gracefully: hand nothing to me."
    Leaving { from: String },
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
