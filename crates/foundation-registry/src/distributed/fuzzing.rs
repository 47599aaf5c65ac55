//! The distributed supervisor's decoders of peer bytes, for the fuzz targets (see
//! `crate::fuzzing`).

use std::collections::BTreeMap;

use foundation_actors::RemoteMessage;

use super::table::{Record, Removal, SpecWire, Table};
use super::wire::{DsupMsg, Wire};
use crate::placement::{Child, ChildPlacement, NodeInfo, Placement, Planner, Rendezvous, View};

/// The wall clock the plans are made at (ms): a peer's stamps may lie on either side.
const NOW_MS: u64 = 1_700_000_000_000;

/// Messages to one supervisor's process, each a length byte and that many bytes, decoded
/// as the node decodes them for `$dsup/<name>` and handled as its loop handles them: a
/// hello makes its sender a peer (with its roles), records are merged into this node's
/// table, a bye removes the peer, a rebalance asks for one; a move's messages are decoded. After each message, the loop's
/// work on what it holds: the table's digest, and a plan over the peers and the live
/// records (each record's spec and state as the placement core reads them).
pub(crate) fn wire(bytes: &[u8]) -> bool {
    let mut table = Table::new("me");
    let mut peers: BTreeMap<String, NodeInfo> = BTreeMap::new();
    let planner = Planner::new(Rendezvous);
    let mut rebalance = false;
    let mut all = true;
    for msg in crate::fuzzing::chunks(bytes) {
        let Ok(DsupMsg(wire)) = DsupMsg::from_bytes(msg) else {
            all = false;
            continue;
        };
        match wire {
            Wire::Hello {
                from,
                incarnation,
                roles,
                digest,
                reply,
                table: theirs,
                have,
            } => {
                // The window a hello is answered with.
                let after = match have {
                    Some((t, n)) if t == table.id() => n.min(table.seq()),
                    _ => 0,
                };
                std::hint::black_box(table.since(after, Some((&from, theirs)), 1024));
                let mut info = NodeInfo::new(from.clone(), incarnation);
                info.roles = roles.into_iter().collect();
                peers.insert(from, info);
                std::hint::black_box((digest == table.digest(), reply));
            }
            Wire::Records {
                from,
                table: theirs,
                records,
                window,
            } => {
                std::hint::black_box(table.merge_from(Some((&from, theirs)), records));
                std::hint::black_box(window);
            }
            Wire::Bye { from } => {
                peers.remove(&from);
            }
            Wire::Rebalance => rebalance = true,
            // A move's messages (holds, states, checkpoints): decoded above, which is
            // what a peer's bytes reach before the loop looks at the child they name.
            other => {
                std::hint::black_box(other);
            }
        }
        let mut view = View::new();
        view.insert(NodeInfo::new("me", 1));
        for info in peers.values() {
            view.insert(info.clone());
        }
        let children: Vec<Child> = table
            .all_live()
            .map(|r| {
                std::hint::black_box(r.spec.per_node());
                Child::with_state(r.spec.placement(), r.state())
            })
            .collect();
        let plan = if std::mem::take(&mut rebalance) {
            planner.rebalance("me", &view, &children, NOW_MS)
        } else {
            planner.plan("me", &view, &children, NOW_MS)
        };
        std::hint::black_box((plan, table.digest()));
    }
    all
}

/// Seed messages for `wire`: what a supervisor on node `node-b` sends as it says hello,
/// creates three children (a singleton, a replicated one on a role, a pinned one), starts
/// and fails one, removes one, asks for a rebalance and leaves, each encoded as its
/// process encodes it.
pub(crate) fn seed_messages() -> Vec<Vec<u8>> {
    let mut b = Table::new("node-b");
    let hello = Wire::Hello {
        from: "node-b".into(),
        incarnation: 7,
        roles: vec!["gpu".into()],
        digest: b.digest(),
        reply: true,
        table: b.id(),
        have: Some((11, 0)),
    };
    let specs = [
        ChildPlacement::new("solo", Placement::Singleton),
        ChildPlacement::new("pair", Placement::Replicated { n: 2 }).on_role("gpu"),
        ChildPlacement::new("pin", Placement::Pinned("me".into())).home("node-b"),
    ];
    let mut records: Vec<Record> = specs
        .iter()
        .map(|s| b.create(SpecWire::new("counter", vec![1, 2, 3], s)))
        .collect();
    records.extend(b.write_slot("solo", "node-b", |s, at| {
        s.instance = Some(7);
        s.started = Some(at.clone());
    }));
    records.extend(b.write_slot("pair", "node-b", |s, at| {
        s.ended = Some((at.clone(), super::table::ExitWire::Failed));
        s.failures.push(NOW_MS - 1_000);
        s.restarts = 2;
    }));
    records.extend(b.remove(
        "pin",
        Removal::GaveUp {
            failures: 3,
            max: 3,
        },
    ));
    // One record a message: a message is at most 255 bytes behind its length byte.
    let (id, seq) = (b.id(), b.seq());
    let one = |record: Record| Wire::Records {
        from: "node-b".into(),
        table: id,
        records: vec![record],
        window: None,
    };
    let window = |(n, record): (u64, Record)| Wire::Records {
        from: "node-b".into(),
        table: id,
        records: vec![record],
        window: Some(super::wire::Window {
            after: n - 1,
            upto: n,
            rest: if n == seq {
                super::wire::Rest::Done
            } else {
                super::wire::Rest::Batch
            },
        }),
    };
    let mut wires = vec![hello];
    wires.extend(records.into_iter().map(one));
    wires.push(Wire::Rebalance);
    wires.extend(b.since(0, None, usize::MAX).into_iter().map(window));
    wires.push(Wire::Bye {
        from: "node-b".into(),
    });
    wires
        .into_iter()
        .filter_map(|wire| DsupMsg(wire).to_bytes().ok())
        .collect()
}
