//! A cluster-wide ecosystem's decoders of peer bytes, for the fuzz targets (see
//! `crate::fuzzing`).

use std::sync::Arc;
use std::time::Instant;

use foundation_actors::RemoteMessage;
use tokio::sync::oneshot;

use super::dispatch::{Body, Dispatch, Outcome, Sink};
use super::run::RunShared;
use super::runtime::Board;
use super::spec::WorkSpec;
use super::wire::{Line, Wire, WorkMsg};

/// Jobs this node submitted and waits for (tickets `0..JOBS`), and chunks of one
/// map-reduce run (tickets `JOBS..2 * JOBS`, two items each).
const JOBS: u64 = 4;

/// The nodes of the ecosystem as this node sees them.
const MEMBERS: [&str; 3] = ["me", "node-b", "node-c"];

/// The kinds every node registers: a job of integers, one of strings, a reducer.
fn spec() -> WorkSpec {
    WorkSpec::new("fuzz")
        .job("square", |n: u64| n.wrapping_mul(n))
        .job("len", |s: String| s.len() as u64)
        .reduce("sum", |a: u64, b: u64| a.wrapping_add(b))
}

/// Messages from peers to a cluster-wide ecosystem's receiver on this node (and to its
/// coordinator, when it runs here), each a length byte and that many bytes, decoded as
/// the node decodes them and handled in order as the receiver and the coordinator handle
/// them: a job is run by this node's kinds (mapped and folded for a chunk); a result
/// completes a job of this node's ledger (its output decoded as the caller's type, a
/// chunk's folded into its run); a refusal, a table and a bye change where the ledger's
/// jobs go; a report reaches the coordinator's board, which computes the table it sends.
/// After each message, what waits is sent where the dispatch says.
pub(crate) fn wire(bytes: &[u8]) -> bool {
    let kinds = Arc::new(spec().kinds);
    let mut dispatch = Dispatch::new(8);
    let mut board = Board::default();
    let members: Vec<String> = MEMBERS.iter().map(|&m| m.to_owned()).collect();
    let run = Arc::new(RunShared::new(
        2 * JOBS as usize,
        JOBS as usize,
        "sum".to_owned(),
        Arc::clone(&kinds),
    ));
    let mut results = Vec::new();
    for ticket in 0..2 * JOBS {
        let item = postcard::to_allocvec(&ticket).unwrap_or_default();
        let (sink, reduce, items) = if ticket < JOBS {
            let (tx, rx) = oneshot::channel::<Outcome>();
            results.push(rx);
            (Sink::One(tx), None, vec![item])
        } else {
            let items = vec![item.clone(), item];
            (
                Sink::Run(Arc::clone(&run), items.len()),
                Some("sum".to_owned()),
                items,
            )
        };
        let body = Arc::new(Body {
            kind: "square".to_owned(),
            reduce,
            items,
        });
        dispatch.add(ticket, body, sink);
    }
    // The table a coordinator sends at first.
    let first: Vec<Line> = MEMBERS
        .iter()
        .map(|m| Line {
            node: (*m).to_owned(),
            workers: 2,
            load: 0,
            part: 1,
        })
        .collect();
    dispatch.set_table(&first, 6);
    let now = Instant::now();
    let mut all = true;
    for msg in crate::fuzzing::chunks(bytes) {
        let Ok(WorkMsg(wire)) = WorkMsg::from_bytes(msg) else {
            all = false;
            continue;
        };
        match wire {
            Wire::Job {
                ticket,
                from,
                kind,
                reduce,
                items,
            } => {
                let ran = kinds.execute(&kind, reduce.as_deref(), &items);
                drop(std::hint::black_box((ticket, from, ran)));
            }
            Wire::Done {
                ticket,
                node,
                outcome,
                load,
            } => {
                if let Some(entry) = dispatch.complete(ticket, &node, load) {
                    match entry.sink {
                        Sink::One(tx) => {
                            let _ = tx.send((node, outcome));
                        }
                        Sink::Run(run, items) => {
                            if !run.chunk_done(&node, items, outcome) {
                                dispatch.cancel_run(&run);
                            }
                        }
                    }
                }
            }
            Wire::Nack { ticket, node, load } => dispatch.nack(ticket, &node, load, now),
            Wire::Report {
                node,
                part,
                roles,
                load,
                peak,
            } => {
                board.report(node, part, roles, load, peak, &members);
                for (role, respawn) in [(None, false), (Some("gpu"), true)] {
                    let lines = board.lines(role, 2, respawn, &members);
                    dispatch.set_table(&lines, board.peak);
                }
            }
            Wire::Table { lines, peak } => dispatch.set_table(&lines, peak),
            Wire::Bye { node, part } => {
                std::hint::black_box(dispatch.part_gone(&node, part));
            }
        }
        // What waits goes where there is room (each job at most once per message).
        for _ in 0..2 * JOBS {
            let Some(sent) = dispatch.next_send(now) else {
                break;
            };
            std::hint::black_box(sent);
        }
        std::hint::black_box((dispatch.peers(), dispatch.waiting(), dispatch.has_room(now)));
    }
    // The callers decode their jobs' outputs.
    for mut rx in results {
        if let Ok((_, Ok(bytes))) = rx.try_recv() {
            std::hint::black_box(postcard::from_bytes::<u64>(&bytes).ok());
        }
    }
    std::hint::black_box(dispatch.outstanding());
    all
}

/// Seed messages for `wire`: what the peers of an ecosystem send this node, each encoded
/// as their processes encode it: a job and a chunk, results of a job and of a chunk (one
/// failed), a refusal, a report, a table and a bye.
pub(crate) fn seed_messages() -> Vec<Vec<u8>> {
    let enc = |n: u64| postcard::to_allocvec(&n).unwrap_or_default();
    let wires = [
        Wire::Job {
            ticket: 11,
            from: "node-b".into(),
            kind: "square".into(),
            reduce: None,
            items: vec![enc(7)],
        },
        Wire::Job {
            ticket: 12,
            from: "node-b".into(),
            kind: "square".into(),
            reduce: Some("sum".into()),
            items: vec![enc(1), enc(2), enc(3)],
        },
        Wire::Done {
            ticket: 0,
            node: "node-b".into(),
            outcome: Ok(enc(0)),
            load: 1,
        },
        Wire::Done {
            ticket: JOBS,
            node: "node-b".into(),
            outcome: Ok(enc(32)),
            load: 0,
        },
        Wire::Done {
            ticket: 1,
            node: "node-c".into(),
            outcome: Err("panicked: boom".into()),
            load: 0,
        },
        Wire::Nack {
            ticket: 2,
            node: "node-c".into(),
            load: 9,
        },
        Wire::Report {
            node: "node-b".into(),
            part: 5,
            roles: vec!["gpu".into()],
            load: 2,
            peak: 6,
        },
        Wire::Table {
            lines: vec![
                Line {
                    node: "me".into(),
                    workers: 2,
                    load: 0,
                    part: 1,
                },
                Line {
                    node: "node-b".into(),
                    workers: 3,
                    load: 1,
                    part: 5,
                },
            ],
            peak: 5,
        },
        Wire::Bye {
            node: "node-c".into(),
            part: 1,
        },
    ];
    wires
        .into_iter()
        .filter_map(|w| WorkMsg(w).to_bytes().ok())
        .collect()
}
