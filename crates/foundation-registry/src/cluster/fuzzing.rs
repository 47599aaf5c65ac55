//! The replication's decoders of peer bytes, for the fuzz targets (see `crate::fuzzing`).

use foundation_actors::RemoteMessage;

use super::sync::{Held, SyncMsg, Wire};
use super::{Key, Value};
use crate::replica::{Op, Replica};

/// Messages between the registries of one scope, each a length byte and that many bytes,
/// decoded as the replication process decodes a peer's message and applied in order to one
/// replica as `sync::Inner::receive` applies them (every origin counts as a peer). An
/// empty message stands for "the last origin seen went down".
pub(crate) fn sync<K: Key, V: Value>(bytes: &[u8]) -> bool {
    let mut replica = Replica::<K, Held<V>>::new("me", 1);
    let mut last_origin: Option<String> = None;
    let mut all = true;
    for msg in crate::fuzzing::chunks(bytes) {
        if msg.is_empty() {
            if let Some(origin) = last_origin.take() {
                replica.node_down(&origin);
            }
            continue;
        }
        let Ok(SyncMsg(wire)) = SyncMsg::<K, V>::from_bytes(msg) else {
            all = false;
            continue;
        };
        match wire {
            Wire::Delta(delta) => {
                let key = match &delta.op {
                    Op::Put { key, .. } | Op::Remove { key } => key.clone(),
                };
                last_origin = Some(delta.origin.clone());
                std::hint::black_box(replica.apply(delta));
                std::hint::black_box(replica.winner(&key));
            }
            Wire::Snapshot(snap) => {
                let mut keys = replica.keys_of(&snap.origin);
                keys.extend(snap.entries.iter().map(|(k, _, _)| k.clone()));
                last_origin = Some(snap.origin.clone());
                std::hint::black_box(replica.apply_snapshot(snap));
                for key in &keys {
                    std::hint::black_box(replica.winner(key));
                }
            }
            Wire::Want { from } => {
                std::hint::black_box((from, replica.snapshot()));
            }
            Wire::Digest {
                origin,
                incarnation,
                seq,
            } => {
                std::hint::black_box(replica.is_behind(&origin, incarnation, seq));
            }
        }
    }
    all
}

/// Seed messages for `sync::<K, V>`: what a replica of node `node-b` sends as it
/// registers `keys` with `value`, updates and unregisters one, and answers, each encoded as
/// the replication process encodes it.
pub(crate) fn seed_messages<K: Key, V: Value>(keys: [K; 2], value: V) -> Vec<Vec<u8>> {
    let mut peer = Replica::<K, Held<V>>::new("node-b", 7);
    let held = |id| Held {
        id,
        value: value.clone(),
    };
    let [first, second] = keys;
    let mut wires = Vec::new();
    if let Ok(delta) = peer.register(first.clone(), held(1)) {
        wires.push(Wire::Delta(delta));
    }
    if let Ok(delta) = peer.register(second.clone(), held(2)) {
        wires.push(Wire::Delta(delta));
    }
    wires.extend(peer.update(&first, held(3)).map(Wire::Delta));
    wires.push(Wire::Snapshot(peer.snapshot()));
    wires.extend(peer.unregister(&second).map(Wire::Delta));
    wires.push(Wire::Want {
        from: "node-b".into(),
    });
    if let Some((incarnation, seq)) = peer.progress("node-b") {
        wires.push(Wire::Digest {
            origin: "node-b".into(),
            incarnation,
            seq,
        });
    }
    wires
        .into_iter()
        .filter_map(|wire| SyncMsg(wire).to_bytes().ok())
        .collect()
}
