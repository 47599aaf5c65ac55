//! The sharded entities' decoders of peer bytes, for the fuzz targets (see
//! `crate::fuzzing`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use foundation_actors::remote::{RemoteMessage, Replier};
use foundation_actors::{Actor, ActorError, Addr, ReplyPort};
use tokio::sync::oneshot;

use super::checkpoint::{Checkpointed, Store};
use super::cluster::{CastFrame, Frame, Owners, ShardWire};
use super::runtime::{Keeper, shard_index};
use crate::distributed::Handoff;
use crate::placement::{NodeInfo, View};

/// Shards of the fuzzed `Sharded`.
const SHARDS: usize = 64;

/// Calls this node made to other nodes' entities, waiting for their replies: ids `0..CALLS`.
const CALLS: u64 = 4;

/// An entity's message with the shapes applications send: a cast, a call, named fields.
#[derive(Debug, RemoteMessage)]
#[remote(name = "fuzz.Tally", crate = foundation_actors)]
pub(crate) enum Tally {
    /// A cast.
    #[remote(tag = 1)]
    Add(i64),
    /// A call.
    #[remote(tag = 2)]
    Get(ReplyPort<i64>),
    /// Named fields.
    #[remote(tag = 3)]
    Label {
        /// A string.
        name: String,
        /// An option.
        at: Option<u64>,
    },
}

/// The entity: a tally that hands its state over (`Handoff`), with a label list in its
/// snapshot.
#[derive(Clone)]
pub(crate) struct Counter;

impl Actor for Counter {
    type Msg = Tally;
    type State = (i64, Vec<String>);
    type Args = ();

    async fn init(&self, _: &Addr<Tally>, (): ()) -> Result<Self::State, ActorError> {
        Ok((0, Vec::new()))
    }

    async fn handle(
        &self,
        _: &Addr<Tally>,
        msg: Tally,
        state: &mut Self::State,
    ) -> Result<(), ActorError> {
        apply(state, msg);
        Ok(())
    }
}

impl Handoff for Counter {
    type Snapshot = (i64, Vec<String>);

    fn export(&self, state: Self::State) -> Self::Snapshot {
        state
    }

    async fn restore(
        &self,
        _: &Addr<Tally>,
        snapshot: Self::Snapshot,
        (): (),
    ) -> Result<Self::State, ActorError> {
        Ok(snapshot)
    }
}

/// The entity's handler, as code that must not panic on what a peer sent.
fn apply(state: &mut (i64, Vec<String>), msg: Tally) {
    match msg {
        Tally::Add(n) => state.0 = state.0.saturating_add(n),
        Tally::Get(port) => {
            let _ = port.send(state.0);
        }
        Tally::Label { name, at } => {
            std::hint::black_box(at);
            state.1.push(name);
        }
    }
}

/// Messages from peers to a `Sharded`'s process on this node (`$sharded/<name>`), each a
/// length byte and that many bytes, decoded as the node decodes them and handled as the
/// process handles them: a cast's or a call's key (a string) and message decoded and
/// handled by the key's entity (a call's reply encoded as the reply the process sends
/// back), a reply decoded into the port of one of this node's calls, a barrier's and a
/// handoff's shards looked up in the owner table, a handoff's snapshots kept and its
/// active keys decoded, a leave taken into the view the owners are computed from.
pub(crate) fn wire(bytes: &[u8]) -> bool {
    let keeper = new_keeper();
    let mut windows: HashMap<String, super::flow::Window> = HashMap::new();
    let mut ledgers: HashMap<(String, u64), Arc<super::flow::Ledger>> = HashMap::new();
    let mut entities: HashMap<String, (i64, Vec<String>)> = HashMap::new();
    let mut leavers: BTreeSet<String> = BTreeSet::new();
    let mut owners = owners_of(&leavers);
    // This node's calls to other nodes' entities, waiting.
    let mut calls = HashMap::new();
    let mut callers = Vec::new();
    for id in 0..CALLS {
        let (tx, rx) = oneshot::channel::<i64>();
        if let Some(answer) = Tally::Get(tx.into()).into_answer() {
            calls.insert(id, answer);
        }
        callers.push(rx);
    }
    let replies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let mut all = true;
    for msg in crate::fuzzing::chunks(bytes) {
        // As the node reads them for the process: a well-formed cast straight into its
        // key and message, anything else as a `ShardWire`.
        let wire = match Frame::<String, Tally>::from_bytes(msg) {
            Ok(Frame::Cast(CastFrame {
                shard,
                key,
                msg,
                from,
            })) => {
                std::hint::black_box((owners.owner(index(shard)), from));
                deliver(&mut entities, &owners, key, msg);
                continue;
            }
            Ok(Frame::Wire(wire)) => wire,
            Err(_) => {
                all = false;
                continue;
            }
        };
        match wire {
            // Flow control: a credit moves the sender's window, a sync recounts the
            // owner's ledger of that sender; neither may panic or overflow.
            ShardWire::Credit { from, done } => {
                let w = windows.entry(from).or_default();
                w.credit(done);
                std::hint::black_box((w.in_flight(), w.has_room(64)));
            }
            ShardWire::Sync { from, tag, sent } => {
                let ledger = ledgers.entry((from, tag)).or_insert_with(|| {
                    Arc::new(super::flow::Ledger::new(
                        tag,
                        std::sync::Weak::<NoCredit>::new(),
                    ))
                });
                ledger.sync(sent);
                std::hint::black_box((ledger.unreported(), ledger.report(true)));
            }
            // A cast whose key or message does not decode (counted in its sender's
            // ledger, then dropped).
            ShardWire::Cast {
                shard, key, msg, ..
            } => {
                std::hint::black_box(owners.owner(index(shard)));
                let Ok(key) = postcard::from_bytes::<String>(&key) else {
                    all = false;
                    continue;
                };
                match Tally::from_bytes(&msg) {
                    Ok(m) => deliver(&mut entities, &owners, key, m),
                    Err(_) => all = false,
                }
            }
            ShardWire::Call {
                shard,
                key,
                msg,
                from,
                id,
            } => {
                std::hint::black_box(owners.owner(index(shard)));
                let sink = Arc::clone(&replies);
                // The reply goes back to the caller's node as a `Reply`.
                let replier = Replier::new(move |bytes| {
                    let reply = ShardWire::Reply { id, bytes };
                    if let Ok(b) = reply.to_bytes() {
                        sink.lock().unwrap_or_else(PoisonError::into_inner).push(b);
                    }
                });
                std::hint::black_box(from);
                let Ok(key) = postcard::from_bytes::<String>(&key) else {
                    all = false;
                    continue;
                };
                match Tally::from_bytes_with_reply(&msg, replier) {
                    Ok(m) => deliver(&mut entities, &owners, key, m),
                    Err(_) => all = false,
                }
            }
            ShardWire::Reply { id, bytes } => {
                if let Some(answer) = calls.remove(&id) {
                    answer.answer(bytes);
                }
            }
            ShardWire::Barrier { from, shards } => {
                for s in shards {
                    std::hint::black_box((owners.owner(index(s)), &from));
                }
            }
            ShardWire::Handoff {
                from,
                shard,
                snapshots,
                active,
            } => {
                std::hint::black_box((owners.owner(index(shard)), from));
                for (kb, sb) in snapshots {
                    match postcard::from_bytes::<String>(&kb) {
                        Ok(key) => {
                            all &=
                                Keeper::<String, Counter>::put_encoded(&keeper, key, &sb).is_ok();
                        }
                        Err(_) => all = false,
                    }
                }
                for kb in active {
                    match postcard::from_bytes::<String>(&kb) {
                        Ok(key) => {
                            std::hint::black_box(shard_index(&key, SHARDS));
                        }
                        Err(_) => all = false,
                    }
                }
            }
            ShardWire::Leaving { from } => {
                leavers.insert(from);
                owners = owners_of(&leavers);
            }
        }
    }
    // The replies this node's entities gave go back as `Reply` messages a peer decodes.
    let given = std::mem::take(&mut *replies.lock().unwrap_or_else(PoisonError::into_inner));
    for bytes in given {
        assert!(
            matches!(ShardWire::from_bytes(&bytes), Ok(ShardWire::Reply { .. })),
            "a reply this node sends does not decode: {bytes:?}"
        );
    }
    // The calls answered got an `i64`; the others none (their answers dropped here).
    drop(calls);
    for mut rx in callers {
        std::hint::black_box(rx.try_recv().ok());
    }
    // The entities this node holds, handed off as a drained shard's are: their snapshots
    // must decode on the node they go to.
    for (key, state) in entities {
        Keeper::<String, Counter>::save(&keeper, &Counter, &key, state);
    }
    let handed: Vec<(String, Vec<u8>)> = (0..SHARDS)
        .flat_map(|i| Keeper::<String, Counter>::take_encoded(&keeper, i, &|_: &String| true))
        .collect();
    let there = new_keeper();
    for (key, bytes) in handed {
        assert!(
            Keeper::<String, Counter>::put_encoded(&there, key, &bytes).is_ok(),
            "a snapshot this node hands off does not decode: {bytes:?}"
        );
    }
    all
}

/// A ledger's creditor that is gone (the fuzzer reports nothing).
struct NoCredit;

impl super::flow::Creditor for NoCredit {
    fn finished(&self, _: &Arc<super::flow::Ledger>, _: u64) {}
}

/// A checkpoint store as a `Sharded` of [`SHARDS`] shards keeps one (default limits).
fn new_keeper() -> Checkpointed<String> {
    let store = Store::new();
    store.configure(SHARDS, super::checkpoint::Config::default());
    Checkpointed { store }
}

/// A shard number a peer sent, as an index.
fn index(shard: u32) -> usize {
    usize::try_from(shard).unwrap_or(usize::MAX)
}

/// The entity of `key`, started on its first message, handles `msg` (here whatever the
/// owner table says: the real process passes a message for a shard it does not own on
/// to its owner, which handles it the same way).
fn deliver(
    entities: &mut HashMap<String, (i64, Vec<String>)>,
    owners: &Owners,
    key: String,
    msg: Tally,
) {
    std::hint::black_box(owners.owner(shard_index(&key, SHARDS)));
    if entities.len() >= 64 && !entities.contains_key(&key) {
        // The per-node entity limit: the oldest would be passivated.
        entities.clear();
    }
    apply(entities.entry(key).or_default(), msg);
}

/// The owner table over this node and two peers, those in `leavers` leaving.
fn owners_of(leavers: &BTreeSet<String>) -> Owners {
    let mut view = View::new();
    for (i, id) in ["me", "node-b", "node-c"].into_iter().enumerate() {
        let mut info = NodeInfo::new(id, i as u64 + 1);
        info.leaving = leavers.contains(id);
        view.insert(info);
    }
    Owners::compute("fuzz", SHARDS, &view, None)
}

/// Seed messages for `wire`: what a peer running the `Sharded` sends this node, each
/// encoded as its process encodes it: a cast, a call, replies to this node's calls (one
/// with no reply), a barrier, a handoff with snapshots and active keys, and a leave.
pub(crate) fn seed_messages() -> Vec<Vec<u8>> {
    let key = |k: &str| postcard::to_allocvec(k).unwrap_or_default();
    let msg = |m: Tally| m.to_bytes().unwrap_or_default();
    let (tx, _rx) = oneshot::channel::<i64>();
    let snapshot = postcard::to_allocvec(&(5_i64, vec!["a".to_owned()])).unwrap_or_default();
    let wires = [
        ShardWire::Cast {
            shard: 3,
            key: key("alice"),
            msg: msg(Tally::Add(5)),
            from: 1,
        },
        ShardWire::Cast {
            shard: 3,
            key: key("alice"),
            msg: msg(Tally::Label {
                name: "vip".into(),
                at: Some(9),
            }),
            from: 1,
        },
        ShardWire::Call {
            shard: 3,
            key: key("alice"),
            msg: msg(Tally::Get(tx.into())),
            from: "node-b".into(),
            id: 7,
        },
        ShardWire::Reply {
            id: 0,
            bytes: postcard::to_allocvec(&42_i64).ok(),
        },
        ShardWire::Reply { id: 1, bytes: None },
        ShardWire::Barrier {
            from: "node-b".into(),
            shards: vec![1, 2, 63],
        },
        ShardWire::Handoff {
            from: "node-b".into(),
            shard: 2,
            snapshots: vec![(key("bob"), snapshot)],
            active: vec![key("bob"), key("carol")],
        },
        ShardWire::Leaving {
            from: "node-b".into(),
        },
    ];
    wires.iter().filter_map(|w| w.to_bytes().ok()).collect()
}
