//! What a distributed supervisor's nodes send each other, on the node's `control` channel,
//! to the process each exports as `$dsup/<name>`.

use foundation_actors::{Actor, ActorError, Addr};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::core::Cmd;
use super::table::Record;

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
