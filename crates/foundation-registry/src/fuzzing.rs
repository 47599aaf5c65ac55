//! Entry points for the fuzz targets in the repository's `fuzz/` directory, behind the
//! feature `fuzzing` (off by default). **Not an API**: these may change or go at any time,
//! and no application should turn the feature on.
//!
//! Each function takes bytes as a peer could send them, runs the decode the node runs on
//! them through the registry's own functions, and returns whether they were all accepted.
//! None may panic, whatever the bytes: a panic is a bug the fuzzers are there to find.

/// The cluster registry's replication: deltas, snapshots, snapshot requests and digests,
/// applied to a replica. The first byte picks the key and value types: even, `String`
/// names with no value (a plain [`crate::ClusterRegistry`]); odd, service instances
/// ([`crate::services`]). The rest is messages, each a length byte and that many bytes;
/// an empty one stands for "the last origin seen went down".
pub fn registry(bytes: &[u8]) -> bool {
    match bytes.split_first() {
        Some((which, rest)) if which % 2 == 0 => crate::cluster::fuzzing::sync::<String, ()>(rest),
        Some((_, rest)) => crate::cluster::fuzzing::sync::<
            crate::services::InstanceId,
            crate::services::Record<String>,
        >(rest),
        None => false,
    }
}

/// The consistent registry's lease machine: snapshots, replies, and commands applied in
/// order (see the first byte's meaning in `consistent::fuzzing`).
pub fn leases(bytes: &[u8]) -> bool {
    crate::consistent::fuzzing::leases(bytes)
}

/// The distributed supervisor's messages (hellos, records, byes, rebalances), each a
/// length byte and that many bytes, handled in order as its loop handles them, with a plan
/// after each (see `distributed::fuzzing`).
pub fn distributed(bytes: &[u8]) -> bool {
    crate::distributed::fuzzing::wire(bytes)
}

/// What a peer sends the placement layers built on the distributed supervisor. The first
/// byte picks the receiver: even, a `Sharded`'s process (casts and calls to entities,
/// replies, barriers, handoffs, leaves; see `sharded::fuzzing`); odd, a cluster-wide
/// ecosystem's receiver and coordinator (jobs, results, refusals, reports, tables, byes;
/// see `work::fuzzing`). The rest is messages, each a length byte and that many bytes.
pub fn sharded(bytes: &[u8]) -> bool {
    match bytes.split_first() {
        Some((which, rest)) if which % 2 == 0 => crate::sharded::fuzzing::wire(rest),
        Some((_, rest)) => crate::work::fuzzing::wire(rest),
        None => false,
    }
}

/// Splits `bytes` into parts, each a length byte and up to that many bytes.
pub(crate) fn chunks(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&len, rest) = bytes.split_first()?;
        let (part, rest) = rest.split_at(usize::from(len).min(rest.len()));
        bytes = rest;
        Some(part)
    })
}

/// Seed inputs for the targets `registry`, `leases`, `distributed` and `sharded`, made with
/// the registry's own encoders: (target, bytes).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = Vec::new();
    let names = crate::cluster::fuzzing::seed_messages(["alpha".to_owned(), "beta".into()], ());
    seeds.push(("registry", framed(0, &names)));
    let instance = |n| crate::services::InstanceId {
        service: "search".into(),
        node: "node-b".into(),
        n,
    };
    // A service instance's record: its capabilities, metadata and load, in that order.
    let record = (vec!["gpu".to_owned()], "eu-1".to_owned(), 3u64);
    let instances = crate::cluster::fuzzing::seed_messages([instance(1), instance(2)], record);
    seeds.push(("registry", framed(1, &instances)));
    let dsup = crate::distributed::fuzzing::seed_messages();
    seeds.push(("distributed", frames(&dsup)));
    let entities = crate::sharded::fuzzing::seed_messages();
    seeds.push(("sharded", framed(0, &entities)));
    let work = crate::work::fuzzing::seed_messages();
    seeds.push(("sharded", framed(1, &work)));
    seeds.extend(
        crate::consistent::fuzzing::seeds()
            .into_iter()
            .map(|seed| ("leases", seed)),
    );
    seeds
}

/// `first`, then each message behind its length byte, as [`chunks`] reads them back.
fn framed(first: u8, messages: &[Vec<u8>]) -> Vec<u8> {
    [vec![first], frames(messages)].concat()
}

/// Each message behind its length byte, as [`chunks`] reads them back.
pub(crate) fn frames(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for msg in messages {
        out.push(u8::try_from(msg.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(msg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_is_accepted_by_its_decoder() {
        let seeds = seeds();
        assert_eq!(seeds.len(), 2 + 1 + 2 + 5);
        for (target, bytes) in seeds {
            let ok = match target {
                "registry" => registry(&bytes),
                "leases" => leases(&bytes),
                "distributed" => distributed(&bytes),
                "sharded" => sharded(&bytes),
                other => panic!("a seed for an unknown target {other}"),
            };
            assert!(ok, "a {target} seed is refused: {bytes:?}");
        }
    }

    #[test]
    fn the_distributed_seed_holds_every_kind_of_message_whole() {
        let seeds = seeds();
        let Some((_, bytes)) = seeds.iter().find(|(t, _)| *t == "distributed") else {
            panic!("no seed for `distributed`");
        };
        // A hello, six records (three created, two slots written, a removal), a rebalance,
        // the three records again, a bye; none cut short by its length byte.
        let parts: Vec<&[u8]> = chunks(bytes).collect();
        assert_eq!(parts.len(), 12);
        assert!(parts.iter().all(|p| p.len() < 255), "{parts:?}");
    }

    #[test]
    fn the_sharded_seeds_hold_every_kind_of_message_whole() {
        let seeds = seeds();
        let parts: Vec<Vec<&[u8]>> = seeds
            .iter()
            .filter(|(t, _)| *t == "sharded")
            .map(|(_, bytes)| chunks(&bytes[1..]).collect())
            .collect();
        // Entities: two casts, a call, two replies, a barrier, a handoff, a leave. Work: two
        // jobs, three results, a refusal, a report, a table, a bye.
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [8, 9]);
        assert!(parts.iter().flatten().all(|p| p.len() < 255), "{parts:?}");
    }

    #[test]
    fn every_registry_seed_holds_every_kind_of_message() {
        for (_, bytes) in seeds().iter().filter(|(t, _)| *t == "registry") {
            // Registrations, an update, a snapshot, a removal, a want and a digest.
            assert_eq!(chunks(&bytes[1..]).count(), 7);
        }
    }
}
