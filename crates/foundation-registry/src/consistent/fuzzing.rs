//! The lease machine's decoders of peer bytes, for the fuzz targets (see `crate::fuzzing`).

use foundation_cluster::raft::Machine;

use super::{Command, Leases, Reply, decode, encode};

/// The lease machine's bytes, which reach every node through the group's log. The first
/// byte picks what the rest is read as:
///
/// - 0: a snapshot, as a node that installs one restores it;
/// - 1: the machine's reply to a write, as the writing node reads it;
/// - otherwise: commands, each a length byte and that many bytes, applied in order to one
///   machine as committed entries are; the machine's snapshot must then restore to the
///   same state.
pub(crate) fn leases(bytes: &[u8]) -> bool {
    let Some((&which, rest)) = bytes.split_first() else {
        return false;
    };
    match which {
        0 => {
            let mut machine = Leases::default();
            machine.restore(rest);
            std::hint::black_box(machine.snapshot());
            true
        }
        1 => decode::<Reply>(rest).is_ok(),
        _ => {
            let mut machine = Leases::default();
            for command in crate::fuzzing::chunks(rest) {
                std::hint::black_box(machine.apply(command));
            }
            let mut copy = Leases::default();
            copy.restore(&machine.snapshot());
            assert_eq!(copy.names, machine.names, "a snapshot restores the names");
            assert_eq!(copy.last_token, machine.last_token);
            true
        }
    }
}

/// Seed inputs for `leases`, made with the machine's own encoders.
pub(crate) fn seeds() -> Vec<Vec<u8>> {
    let acquire = |key: &[u8], node: &str, now_ms| Command::Acquire {
        key: key.to_vec(),
        node: node.into(),
        incarnation: 1_700_000_000_000,
        export: format!("$consistent/leases/{node}/1"),
        value: b"\x03eu1".to_vec(),
        now_ms,
        ttl_ms: 5000,
    };
    let commands = [
        acquire(b"\x05alpha", "node-a", 1000),
        acquire(b"\x05alpha", "node-b", 2000),
        Command::Renew {
            key: b"\x05alpha".to_vec(),
            token: 1,
            now_ms: 3000,
            ttl_ms: 5000,
        },
        acquire(b"\x04beta", "node-b", 3000),
        Command::Release {
            key: b"\x05alpha".to_vec(),
            token: 1,
        },
    ];
    let mut machine = Leases::default();
    let mut seed = vec![2];
    for command in &commands {
        let Ok(bytes) = encode(command) else { continue };
        seed.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
        seed.extend_from_slice(&bytes);
        machine.apply(&bytes);
    }
    let mut seeds = vec![seed, [vec![0], machine.snapshot()].concat()];
    for reply in [
        Reply::Granted { token: 2 },
        Reply::Held {
            node: "node-a".into(),
        },
        Reply::Unreadable,
    ] {
        if let Ok(bytes) = encode(&reply) {
            seeds.push([vec![1], bytes].concat());
        }
    }
    seeds
}
