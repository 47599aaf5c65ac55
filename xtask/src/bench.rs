//! `cargo xtask bench [--quick]`: runs the benches and judges the headline figures.
//!
//! Runs the criterion bench `actors`, the memory bench `memory` and the paired-ratio bench
//! `paired` of `foundation-actors`, the benches `ring` and `remote` (two node processes
//! beside raw ractor_cluster) of `foundation-cluster`, the bench `registry` (lookups
//! beside a plain `DashMap`) of `foundation-registry`, and the bench `pubsub` (local fan-out
//! beside raw ractor and `tokio::sync::broadcast`) and `cluster` (3 node processes) of
//! `foundation-pubsub`, the benches `cache` (the local cache beside raw moka) and
//! `cluster` (3 node processes: the partitioned and near caches) and `replicated` (3 node
//! processes: a replicated put's cost, and its visibility on every node) of
//! `foundation-cache`, then the BEAM's side (`bench/beam/*.erl`, see `beam.rs`: Phoenix's
//! pubsub design in Erlang, a gen_server and a supervisor, beside the pubsub and headline
//! rows; missing with the reason when `erl` cannot be had); reads criterion's estimates,
//! `target/bench-memory.json`, `target/bench-sharded.json` (bench `sharded` of
//! `foundation-registry`: memory per idle sharded entity and casts to active ones),
//! `target/bench-work.json` (bench `work` of `foundation-registry`: map-reduce on 3 node
//! processes beside the same work on one node),
//! `target/bench-cluster.json`, `target/bench-pubsub.json`, `target/bench-cache.json`,
//! `target/bench-cache-replicated.json` and
//! `target/bench-paired.json`;
//! prints one table, writes
//! `target/bench-summary.json`, and ends with `budgets met: N of M`. A budget that is not
//! met does not fail the command; a missing result does.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::beam::{self, Beam};
use crate::{cargo, run_step, workspace_root};

/// What a figure must satisfy.
#[derive(Debug, Clone, Copy)]
enum Budget {
    /// `value / competitor_value` at most this.
    Ratio(f64),
    /// `value / competitor_value` at least this (for rates, where more is better).
    AtLeastRatio(f64),
    /// `value` at most this many nanoseconds.
    AtMostNs(f64),
    /// `value - competitor_value` at most this many bytes.
    AddedBytes(f64),
    /// `value` at most this, in the figure's own unit.
    AtMost(f64),
    /// Reported only, never judged.
    None,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Ratio(max) => write!(f, "ratio <= {max}"),
            Budget::AtLeastRatio(min) => write!(f, "ratio >= {min}"),
            Budget::AtMostNs(max) => write!(f, "<= {max} ns"),
            Budget::AddedBytes(max) => write!(f, "+<= {max} B"),
            Budget::AtMost(max) => write!(f, "<= {max}"),
            Budget::None => f.write_str("none"),
        }
    }
}

/// One headline timing figure: ours against the competitor, both criterion benchmark ids.
#[derive(Debug)]
struct Headline {
    /// Figure name shown in the table.
    name: &'static str,
    /// Criterion id (`group/function`) of Foundation's measurement.
    ours: &'static str,
    /// Criterion id (`group/function`) of the competitor's measurement.
    competitor: &'static str,
    /// Unit of the mean (every bench measures one operation per iteration).
    unit: &'static str,
    /// What the figure must satisfy.
    budget: Budget,
    /// The group whose paired ratio is this figure's ratio, if any: in
    /// `bench-cache-paired.json` for a group named `cache_*` (foundation-cache's `cache`
    /// bench, against raw moka), else in `bench-paired.json` (foundation-actors' `paired`
    /// bench, against raw ractor).
    paired: Option<&'static str>,
}

/// The headline timing figures, in table order.
const HEADLINES: &[Headline] = &[
    Headline {
        name: "tell",
        ours: "tell/foundation",
        competitor: "tell/ractor",
        paired: Some("tell"),
        unit: "ns/msg",
        budget: Budget::Ratio(1.2),
    },
    // Every message carries a context and is handled under a child context and a span.
    Headline {
        name: "tell with a context",
        ours: "tell_in_context/foundation",
        competitor: "tell_in_context/ractor",
        paired: Some("tell_in_context"),
        unit: "ns/msg",
        budget: Budget::None,
    },
    Headline {
        name: "call round trip",
        ours: "call/foundation",
        competitor: "call/ractor",
        paired: Some("call"),
        unit: "ns",
        budget: Budget::Ratio(1.2),
    },
    Headline {
        name: "supervised child start",
        ours: "child_start/foundation",
        competitor: "child_start/ractor",
        paired: Some("child_start"),
        unit: "ns",
        budget: Budget::Ratio(1.3),
    },
    Headline {
        name: "restart latency",
        ours: "restart/foundation",
        competitor: "restart/ractor",
        paired: Some("restart"),
        unit: "ns",
        budget: Budget::AtMostNs(100_000.0),
    },
    // Issue 3: a handle generated by `#[actor]` against a hand-written raw ractor actor.
    // The cast's budget is 1.10, not 1.05: a send through a stable address takes the slot's
    // read lock (two atomic read-modify-writes, ~4 % of a cast), raw ractor takes none. The
    // lock-free send that avoided it was taken out (issue 20).
    Headline {
        name: "generated handle cast",
        ours: "handle_tell/generated",
        competitor: "handle_tell/ractor",
        paired: Some("handle_tell"),
        unit: "ns/msg",
        budget: Budget::Ratio(1.10),
    },
    Headline {
        name: "generated handle call",
        ours: "handle_call/generated",
        competitor: "handle_call/ractor",
        paired: Some("handle_call"),
        unit: "ns",
        budget: Budget::Ratio(1.05),
    },
    // What the macro adds over the same actor hand-written on foundation-actors (itself a
    // ractor actor behind Foundation's adapter): the same 1.05 budget.
    Headline {
        name: "generated vs hand-written cast",
        ours: "handle_tell/generated",
        competitor: "handle_tell/hand_written",
        paired: Some("handle_tell_vs_hand"),
        unit: "ns/msg",
        budget: Budget::Ratio(1.05),
    },
    Headline {
        name: "generated vs hand-written call",
        ours: "handle_call/generated",
        competitor: "handle_call/hand_written",
        paired: Some("handle_call_vs_hand"),
        unit: "ns",
        budget: Budget::Ratio(1.05),
    },
    // Issue 4 (in progress): the hash ring's owner lookup beside rendezvous hashing.
    Headline {
        name: "ring owner lookup, 10 nodes",
        ours: "ring_owner/ring/10",
        competitor: "ring_owner/rendezvous/10",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    Headline {
        name: "ring owner lookup, 50 nodes",
        ours: "ring_owner/ring/50",
        competitor: "ring_owner/rendezvous/50",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    // The same groups on a 2-worker runtime: reported, not judged (see the bench's
    // `Flavor` for why the headlines run on a current-thread runtime).
    Headline {
        name: "tell, 2 workers",
        ours: "tell_2w/foundation",
        competitor: "tell_2w/ractor",
        paired: None,
        unit: "ns/msg",
        budget: Budget::None,
    },
    Headline {
        name: "call round trip, 2 workers",
        ours: "call_2w/foundation",
        competitor: "call_2w/ractor",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    Headline {
        name: "supervised child start, 2 workers",
        ours: "child_start_2w/foundation",
        competitor: "child_start_2w/ractor",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    Headline {
        name: "restart latency, 2 workers",
        ours: "restart_2w/foundation",
        competitor: "restart_2w/ractor",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    Headline {
        name: "child start with a unique id",
        ours: "child_start/foundation_named",
        competitor: "child_start/ractor",
        paired: Some("child_start_named"),
        unit: "ns",
        budget: Budget::None,
    },
    // Issue 12: one `terminate_child` in a dynamic supervisor holding 10,000 children,
    // beside one holding 1,000 (bench `actors`, `common::Terminate`): about 1 if a
    // termination costs the same however many children there are, about 10 if it grows
    // with them (terminating 10,000 one by one was quadratic until commit 0076a60). Judged
    // at 2: 1.18 and 1.36 measured (load 13), 5.9 with the quadratic removal put back.
    Headline {
        name: "terminate_child with 10k children vs with 1k",
        ours: "terminate_child/10000",
        competitor: "terminate_child/1000",
        paired: None,
        unit: "ns",
        budget: Budget::Ratio(2.0),
    },
    // Issue 5: a local registry lookup (`Registry::whereis`) beside a plain `DashMap` lookup
    // (Erlang's `pg:get_members` is 246 ns and `global:whereis_name` 310 ns on this
    // machine).
    Headline {
        name: "registry lookup",
        ours: "registry_lookup/foundation",
        competitor: "registry_lookup/dashmap",
        paired: None,
        unit: "ns",
        budget: Budget::AtMostNs(100.0),
    },
    // The same, beside a `DashMap` with the registry's own hasher: what the registry adds
    // over its map.
    Headline {
        name: "registry lookup vs its map",
        ours: "registry_lookup/foundation",
        competitor: "registry_lookup/dashmap_foldhash",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    Headline {
        name: "cluster registration, 3 nodes",
        ours: "cluster_register/foundation",
        competitor: "cluster_register/local_registry",
        paired: None,
        unit: "ns",
        budget: Budget::AtMostNs(100_000.0),
    },
    Headline {
        name: "consistent registration (raft), 3 nodes",
        ours: "consistent_register/foundation",
        competitor: "cluster_register/foundation",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    // Issue 14: starting a singleton within 2x a cluster-registry registration. The
    // counterpart of a registration (which returns after its local insert, its delta
    // queued for the peers) is `place_child`: it returns once the child is recorded here,
    // its record queued for the peers. The answering start (`start_child`: placed, then
    // waited for until it answers by name and is recorded, wherever it was placed) is
    // reported below: two times in three its owner is another node, and that wait
    // includes a network round trip, which no local insert has.
    //
    // The budget is judged on the two like-for-like pairs, each side timed the same way:
    // back to back in batches (as `cluster_register/foundation` is timed), and one call at
    // a time after an idle pause (as `singleton_placed` is timed). The mixed pair (one at
    // a time against batched) is reported: a call after an idle pause costs a registration
    // ten times its batched figure (seen 50-85 us against 5 us) and `place_child` about
    // twice, so the mixed pair measures the timing method as much as the code.
    Headline {
        name: "distributed place_child of a singleton, batched, vs registrations batched, 3 nodes",
        ours: "distributed_start/singleton_placed_batched",
        competitor: "cluster_register/foundation",
        paired: None,
        unit: "ns",
        budget: Budget::Ratio(2.0),
    },
    Headline {
        name: "distributed place_child of a singleton vs a registration, both one at a time, 3 nodes",
        ours: "distributed_start/singleton_placed",
        competitor: "distributed_start/registration_one_at_a_time",
        paired: None,
        unit: "ns",
        budget: Budget::Ratio(2.0),
    },
    Headline {
        name: "distributed place_child one at a time vs registrations batched (mixed), 3 nodes",
        ours: "distributed_start/singleton_placed",
        competitor: "cluster_register/foundation",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    Headline {
        name: "distributed start_child of a singleton (answering), 3 nodes",
        ours: "distributed_start/singleton",
        competitor: "cluster_register/foundation",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    Headline {
        name: "distributed start_child pinned here, 3 nodes",
        ours: "distributed_start/pinned_here",
        competitor: "cluster_register/foundation",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    // Issue 16: one broadcast to 10,000 local actor subscribers, per delivery, beside the
    // same message cast by hand to 10,000 raw ractor actors.
    Headline {
        name: "pubsub local fan-out, 10k actors",
        ours: "pubsub_fanout_actors/foundation",
        competitor: "pubsub_fanout_actors/ractor",
        paired: None,
        unit: "ns/delivery",
        budget: Budget::Ratio(1.1),
    },
    // ... and to 1,000 `Stream` subscribers beside `tokio::sync::broadcast` with 1,000
    // receivers: >= 5 million deliveries/s (<= 200 ns each).
    Headline {
        name: "pubsub stream fan-out, 1k streams (>= 5M/s)",
        ours: "pubsub_fanout_streams/foundation",
        competitor: "pubsub_fanout_streams/tokio_broadcast",
        paired: None,
        unit: "ns/delivery",
        budget: Budget::AtMostNs(200.0),
    },
    // Issue 17: the local cache (`Local` on `moka::sync`) beside raw moka built the same
    // way (bound, per-entry `Expiry`, an eviction listener counting into atomics), over the
    // same 10,000 keys: at most 10% more.
    Headline {
        name: "local cache get (hit)",
        ours: "cache_get_hit/foundation",
        competitor: "cache_get_hit/moka",
        paired: Some("cache_get_hit"),
        unit: "ns",
        budget: Budget::Ratio(1.1),
    },
    Headline {
        name: "local cache get (miss)",
        ours: "cache_get_miss/foundation",
        competitor: "cache_get_miss/moka",
        paired: Some("cache_get_miss"),
        unit: "ns",
        budget: Budget::Ratio(1.1),
    },
    Headline {
        name: "local cache put",
        ours: "cache_put/foundation",
        competitor: "cache_put/moka",
        paired: Some("cache_put"),
        unit: "ns",
        budget: Budget::Ratio(1.1),
    },
    // What moka's own features cost it, reported only: a per-entry `Expiry` and a listener
    // on a hit, and the listener on a put (with one, moka takes a per-key lock per write);
    // and the local cache's put built without the listener (`count_evictions(false)`).
    Headline {
        name: "raw moka get (hit), per-entry expiry + listener vs none",
        ours: "cache_get_hit/moka",
        competitor: "cache_get_hit/moka_no_expiry",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    Headline {
        name: "raw moka put, eviction listener vs none",
        ours: "cache_put/moka",
        competitor: "cache_put/moka_no_listener",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    Headline {
        name: "local cache put without eviction counts vs moka without listener",
        ours: "cache_put/foundation_no_counts",
        competitor: "cache_put/moka_no_listener",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    // Issue 17: what replication adds to a write on the writing node (two peers): the
    // replicated adapter's put beside the local cache's, reported only.
    Headline {
        name: "replicated cache put (3 nodes) vs local cache put",
        ours: "replicated_put/foundation",
        competitor: "replicated_put/local",
        paired: None,
        unit: "ns",
        budget: Budget::None,
    },
    Headline {
        name: "remote tell (>= 500k msg/s)",
        ours: "remote_tell/foundation",
        competitor: "remote_tell/ractor_cluster",
        paired: None,
        unit: "ns/msg",
        budget: Budget::AtMostNs(2000.0),
    },
    Headline {
        name: "remote call round trip",
        ours: "remote_call/foundation",
        competitor: "remote_call/ractor_cluster",
        paired: None,
        unit: "ns",
        budget: Budget::AtMostNs(100_000.0),
    },
];

/// Budgets for entries of `bench-memory.json` and `bench-cluster.json`, by name; entries
/// not listed have none.
const JSON_BUDGETS: &[(&str, Budget)] = &[
    ("idle supervised actor", Budget::AddedBytes(1024.0)),
    // Issue 15: an idle sharded entity costs at most 400 B beyond its state (the
    // competitor value is the state's size).
    ("idle sharded entity", Budget::AddedBytes(400.0)),
    // The same as the issue words it: the resident set's growth per entity over 1,000,000
    // `#[actor]` entities (each process's own allocator overhead and slack included).
    (
        "idle sharded entity, resident set, 1M entities",
        Budget::AddedBytes(400.0),
    ),
    // Issue 15: a message to an active local entity through its handle costs at most
    // 1.2x a raw ractor cast: as rates (msg/s, ours over raw ractor's), at least 1/1.2.
    (
        "casts to 10k active sharded entities",
        Budget::AtLeastRatio(0.83),
    ),
    // Issue 15: activation and delivery of a first message at most a raw ractor spawn
    // plus one cast (same run); at most 27% of 1,024 shards move when a 4th node joins 3;
    // a message to an entity on another node within the remote tell and call budgets.
    (
        "first message to an inactive sharded entity",
        Budget::Ratio(1.0),
    ),
    ("shards moved when a 4th node joins 3", Budget::AtMost(27.0)),
    (
        "cast to a sharded entity on another node",
        Budget::AtMostNs(2000.0),
    ),
    (
        "call to a sharded entity on another node",
        Budget::AtMostNs(100_000.0),
    ),
    ("full mesh of 3 nodes", Budget::AtMost(1000.0)),
    ("killed node detected", Budget::AtMost(100.0)),
    // The silence limit (3 s by default) counts from the last word heard; the rest is the
    // event loop waking at that deadline.
    ("silent node detected", Budget::AtMost(3050.0)),
    // Channels (issue 12): a flood on one channel leaves a small call on another within
    // 3x of its idle p99 (the ratio to the idle figure, its `competitor_value`).
    (
        "small call p99 while another channel floods",
        Budget::Ratio(3.0),
    ),
    (
        "cluster name visible on all nodes, p99",
        Budget::AtMost(50.0),
    ),
    // Issue 14: a planned migration of a child with 1 MB of state, from `migrate` to the
    // new incarnation answering, on loopback.
    (
        "planned migration of a 1 MB child, migrate to answering, max",
        Budget::AtMost(50.0),
    ),
    // Issue 16: publish-to-delivery across nodes under light load, in microseconds.
    (
        "pubsub publish-to-delivery across nodes, p99",
        Budget::AtMost(1000.0),
    ),
    // Issue 16: a small call while pubsub broadcasts flood the same two nodes, beside the
    // same call idle. The issue sets no figure; the channels' (issue 12: within 3x of the
    // idle p99) applies, the broadcasts riding a channel of their own and the flood's
    // publisher on `spawn_low_priority`, as for issue 12's row and as the docs advise.
    // The same with the publisher as a plain task on the runtime is reported beside it
    // ("..., publisher on the runtime", no budget: on this 2-core machine its busy loop
    // competes with the call for a core, at the OS's level).
    (
        "small call p99 while pubsub broadcasts flood",
        Budget::Ratio(3.0),
    ),
    // Issue 16: cluster broadcast, at least 1.3x the BEAM's deliveries/s (its competitor,
    // attached from `BEAM_COMPETITORS`). Phoenix's subscribers are processes: the actor
    // row is the like-for-like one; the stream row is judged too.
    // Issue 17: a get of a key another node owns, on loopback, in microseconds (its
    // competitor: the plain remote call, the same run), both timed from a task on the
    // runtime as the landed remote call is (the row "..., from the bench thread" times
    // them through `block_on` and is reported only); the near cache's invalidation
    // reaching every node, in milliseconds.
    (
        "partitioned cache get of a remote key, round trip",
        Budget::AtMost(60.0),
    ),
    (
        "near-cache invalidation on all nodes, p99",
        Budget::AtMost(5.0),
    ),
    (
        "pubsub cluster broadcast, 3 nodes x 1k stream subscribers",
        Budget::AtLeastRatio(1.3),
    ),
    (
        "pubsub cluster broadcast, 3 nodes x 1k actor subscribers",
        Budget::AtLeastRatio(1.3),
    ),
    // Issue 17: a replicated put readable on every node of 3, in milliseconds.
    (
        "replicated put visible on all 3 nodes, p99",
        Budget::AtMost(5.0),
    ),
];

/// Rows without a competitor of their own that take the BEAM's figure (a key of
/// `bench/beam/fbench.erl`'s output) as their competitor.
const BEAM_COMPETITORS: &[(&str, &str)] = &[
    (
        "pubsub cluster broadcast, 3 nodes x 1k stream subscribers",
        "pubsub_cluster_broadcast",
    ),
    (
        "pubsub cluster broadcast, 3 nodes x 1k actor subscribers",
        "pubsub_cluster_broadcast",
    ),
    (
        "pubsub publish-to-delivery across nodes, p50",
        "pubsub_cluster_latency_p50",
    ),
    (
        "pubsub publish-to-delivery across nodes, p99",
        "pubsub_cluster_latency_p99",
    ),
    ("killed node detected", "killed_node_detected"),
];

/// Where our side of a row beside the BEAM comes from.
#[derive(Debug, Clone, Copy)]
enum Ours {
    /// A criterion id (`group/function`).
    Criterion(&'static str),
    /// A row already in the table, by name.
    Row(&'static str),
}

/// A row of its own beside the BEAM, for figures whose row already has a competitor.
#[derive(Debug)]
struct BeamRow {
    /// Figure name shown in the table.
    name: &'static str,
    /// Foundation's (or raw ractor's) measurement.
    ours: Ours,
    /// The BEAM's figure: a key of `bench/beam/fbench.erl`'s output.
    beam: &'static str,
    /// Unit of both values.
    unit: &'static str,
    /// What the figure must satisfy.
    budget: Budget,
}

/// The rows beside the BEAM, after the others.
const BEAM_ROWS: &[BeamRow] = &[
    // Issue 16: ahead of the BEAM's local fan-out (an `fbench_pubsub` broadcast: an ETS
    // lookup, then one send per subscriber process).
    BeamRow {
        name: "pubsub local fan-out, 10k actors, vs the BEAM",
        ours: Ours::Criterion("pubsub_fanout_actors/foundation"),
        beam: "pubsub_local_fanout",
        unit: "ns/delivery",
        budget: Budget::Ratio(1.0),
    },
    // The same on one scheduler (`erl +S 1:1`): one core each, as our current-thread runtime.
    BeamRow {
        name: "pubsub local fan-out, 10k actors, vs the BEAM on 1 scheduler",
        ours: Ours::Criterion("pubsub_fanout_actors/foundation"),
        beam: "pubsub_local_fanout_1s",
        unit: "ns/delivery",
        budget: Budget::None,
    },
    // What each runtime's plain send costs in the same fan-out: raw ractor casts by hand
    // beside `!` in a loop.
    BeamRow {
        name: "fan-out by hand, 10k: raw ractor casts vs the BEAM's sends",
        ours: Ours::Criterion("pubsub_fanout_actors/ractor"),
        beam: "send_local_fanout",
        unit: "ns/delivery",
        budget: Budget::None,
    },
    // The headline rows (current-thread runtime) beside a gen_server and a
    // simple_one_for_one supervisor on one scheduler; the BEAM's figures with its default
    // schedulers are in `bench-beam.json`.
    BeamRow {
        name: "tell, vs the BEAM (gen_server:cast, 1 scheduler)",
        ours: Ours::Criterion("tell/foundation"),
        beam: "tell_1s",
        unit: "ns/msg",
        budget: Budget::None,
    },
    BeamRow {
        name: "call round trip, vs the BEAM (gen_server:call, 1 scheduler)",
        ours: Ours::Criterion("call/foundation"),
        beam: "call_1s",
        unit: "ns",
        budget: Budget::None,
    },
    BeamRow {
        name: "supervised child start, vs the BEAM (supervisor:start_child, 1 scheduler)",
        ours: Ours::Criterion("child_start/foundation"),
        beam: "child_start_1s",
        unit: "ns",
        budget: Budget::None,
    },
    // Between two nodes on loopback: a gen_server on a peer node, reached by its pid.
    BeamRow {
        name: "remote tell, vs the BEAM (gen_server:cast to a peer)",
        ours: Ours::Criterion("remote_tell/foundation"),
        beam: "remote_tell",
        unit: "ns/msg",
        budget: Budget::None,
    },
    BeamRow {
        name: "remote call round trip, vs the BEAM (gen_server:call to a peer)",
        ours: Ours::Criterion("remote_call/foundation"),
        beam: "remote_call",
        unit: "ns",
        budget: Budget::None,
    },
    BeamRow {
        name: "idle supervised actor, vs the BEAM (idle gen_server)",
        ours: Ours::Row("idle supervised actor"),
        beam: "idle_process_memory",
        unit: "B",
        budget: Budget::None,
    },
];

/// Gives the rows of `BEAM_COMPETITORS` the BEAM's figure as their competitor, then adds
/// `BEAM_ROWS`. A BEAM figure that is missing leaves its competitor value empty (so a
/// budget on it is not met) and names the reason in the competitor column.
fn add_beam(target: &Path, figures: &mut Vec<Figure>, beam: &Beam) -> Result<()> {
    let label = |key: &str| match beam.get(key) {
        Ok(value) => (format!("beam/{key}"), Some(value)),
        Err(reason) => (format!("beam/{key}: missing ({reason})"), None),
    };
    for (row, key) in BEAM_COMPETITORS {
        for figure in figures.iter_mut().filter(|f| f.name == *row) {
            let (competitor, value) = label(key);
            figure.competitor = Some(competitor);
            figure.competitor_value = value;
        }
    }
    for row in BEAM_ROWS {
        let value = match row.ours {
            Ours::Criterion(id) => criterion_mean(target, id)?,
            Ours::Row(name) => figures
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.value)
                .with_context(|| format!("no row `{name}` to set beside the BEAM"))?,
        };
        let (competitor, competitor_value) = label(row.beam);
        figures.push(Figure {
            name: row.name.to_owned(),
            value,
            unit: row.unit.to_owned(),
            competitor: Some(competitor),
            competitor_value,
            budget: row.budget,
            paired_ratio: None,
        });
    }
    Ok(())
}

/// One row of the summary.
#[derive(Debug)]
struct Figure {
    /// Figure name.
    name: String,
    /// Foundation's value.
    value: f64,
    /// Unit of `value` and `competitor_value`.
    unit: String,
    /// What the figure is compared with, if anything.
    competitor: Option<String>,
    /// The competitor's value, if any.
    competitor_value: Option<f64>,
    /// What the figure must satisfy.
    budget: Budget,
    /// The median ratio of paired rounds, where measured (see the `paired` bench).
    paired_ratio: Option<f64>,
}

impl Figure {
    /// The paired ratio where measured, else `value / competitor_value`.
    fn ratio(&self) -> Option<f64> {
        self.paired_ratio.or_else(|| {
            self.competitor_value
                .filter(|c| *c > 0.0 && c.is_finite())
                .map(|c| self.value / c)
        })
    }

    /// Whether the budget is met (always for no budget; never when its input is missing).
    fn met(&self) -> bool {
        match self.budget {
            Budget::Ratio(max) => self.ratio().is_some_and(|r| r <= max),
            Budget::AtLeastRatio(min) => self.ratio().is_some_and(|r| r >= min),
            Budget::AtMostNs(max) | Budget::AtMost(max) => self.value <= max,
            Budget::AddedBytes(max) => self.competitor_value.is_some_and(|c| self.value - c <= max),
            Budget::None => true,
        }
    }
}

/// Runs the benches, then prints and writes the summary.
pub(crate) fn run(args: &[OsString]) -> Result<()> {
    let mut quick = false;
    for arg in args {
        match arg.to_str() {
            Some("--quick") => quick = true,
            _ => bail!(
                "xtask bench: unknown argument `{}` (usage: cargo xtask bench [--quick])",
                arg.to_string_lossy()
            ),
        }
    }

    let mut actors = cargo()?;
    actors.args(["bench", "-p", "foundation-actors", "--bench", "actors"]);
    if quick {
        actors.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
    }
    eprintln!("==> xtask bench: actors");
    run_step("bench", "actors", actors)?;

    let mut ring = cargo()?;
    ring.args(["bench", "-p", "foundation-cluster", "--bench", "ring"]);
    if quick {
        ring.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
    }
    eprintln!("==> xtask bench: ring");
    run_step("bench", "ring", ring)?;

    let mut remote = cargo()?;
    remote.args(["bench", "-p", "foundation-cluster", "--bench", "remote"]);
    if quick {
        remote.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
    }
    eprintln!("==> xtask bench: remote");
    run_step("bench", "remote", remote)?;

    let mut registry = cargo()?;
    registry.args(["bench", "-p", "foundation-registry", "--bench", "registry"]);
    if quick {
        registry.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
    }
    eprintln!("==> xtask bench: registry");
    run_step("bench", "registry", registry)?;

    let mut pubsub = cargo()?;
    pubsub.args(["bench", "-p", "foundation-pubsub", "--bench", "pubsub"]);
    if quick {
        pubsub.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
    }
    eprintln!("==> xtask bench: pubsub");
    run_step("bench", "pubsub", pubsub)?;

    let mut pubsub_cluster = cargo()?;
    pubsub_cluster.args(["bench", "-p", "foundation-pubsub", "--bench", "cluster"]);
    eprintln!("==> xtask bench: pubsub cluster");
    run_step("bench", "pubsub cluster", pubsub_cluster)?;

    let mut cache = cargo()?;
    cache.args(["bench", "-p", "foundation-cache", "--bench", "cache"]);
    if quick {
        cache.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
    }
    eprintln!("==> xtask bench: cache");
    run_step("bench", "cache", cache)?;

    let mut cache_cluster = cargo()?;
    cache_cluster.args(["bench", "-p", "foundation-cache", "--bench", "cluster"]);
    eprintln!("==> xtask bench: cache cluster");
    run_step("bench", "cache cluster", cache_cluster)?;

    let mut replicated = cargo()?;
    replicated.args(["bench", "-p", "foundation-cache", "--bench", "replicated"]);
    if quick {
        replicated.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
    }
    eprintln!("==> xtask bench: replicated cache");
    run_step("bench", "replicated cache", replicated)?;

    // The BEAM beside the pubsub rows and the headline rows; never fails the bench.
    eprintln!("==> xtask bench: the BEAM");
    let beam = beam::measure(&workspace_root()?, &target_dir()?);

    let mut names = cargo()?;
    names.args(["bench", "-p", "foundation-registry", "--bench", "cluster"]);
    if quick {
        names.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
    }
    eprintln!("==> xtask bench: cluster registry");
    run_step("bench", "cluster registry", names)?;

    let mut memory = cargo()?;
    memory.args(["bench", "-p", "foundation-actors", "--bench", "memory"]);
    eprintln!("==> xtask bench: memory");
    run_step("bench", "memory", memory)?;

    let mut sharded = cargo()?;
    sharded.args(["bench", "-p", "foundation-registry", "--bench", "sharded"]);
    if quick {
        // 10,000 entities instead of 100,000: the per-entity figure barely moves.
        sharded.env("SHARDED_N", "10000");
    }
    eprintln!("==> xtask bench: sharded");
    run_step("bench", "sharded", sharded)?;

    // Issue 15: map-reduce on 3 node processes beside the same work on one node,
    // reported (the issue sets no budget).
    let mut work = cargo()?;
    work.args(["bench", "-p", "foundation-registry", "--bench", "work"]);
    eprintln!("==> xtask bench: work");
    run_step("bench", "work", work)?;

    let mut paired_bench = cargo()?;
    paired_bench.args(["bench", "-p", "foundation-actors", "--bench", "paired"]);
    eprintln!("==> xtask bench: paired");
    run_step("bench", "paired", paired_bench)?;

    let target = target_dir()?;
    let paired_path = target.join("bench-paired.json");
    let paired = read_json(&paired_path).context(
        "no paired-ratio results; run `cargo bench -p foundation-actors --bench paired`",
    )?;
    let cache_paired = read_json(&target.join("bench-cache-paired.json"))
        .context("no paired cache ratios; run `cargo bench -p foundation-cache --bench cache`")?;
    let mut figures = Vec::new();
    for headline in HEADLINES {
        figures.push(Figure {
            name: headline.name.to_owned(),
            value: criterion_mean(&target, headline.ours)?,
            unit: headline.unit.to_owned(),
            competitor: Some(headline.competitor.to_owned()),
            competitor_value: Some(criterion_mean(&target, headline.competitor)?),
            budget: headline.budget,
            paired_ratio: match headline.paired {
                Some(group) if group.starts_with("cache_") => {
                    Some(paired_ratio(&cache_paired, group)?)
                }
                Some(group) => Some(paired_ratio(&paired, group)?),
                None => None,
            },
        });
    }
    figures.extend(json_figures(
        &target,
        "bench-memory.json",
        "cargo bench -p foundation-actors --bench memory",
    )?);
    figures.extend(json_figures(
        &target,
        "bench-sharded.json",
        "cargo bench -p foundation-registry --bench sharded",
    )?);
    figures.extend(json_figures(
        &target,
        "bench-work.json",
        "cargo bench -p foundation-registry --bench work",
    )?);
    figures.extend(json_figures(
        &target,
        "bench-cluster.json",
        "cargo bench -p foundation-cluster --bench remote",
    )?);
    figures.extend(json_figures(
        &target,
        "bench-registry.json",
        "cargo bench -p foundation-registry --bench cluster",
    )?);
    figures.extend(json_figures(
        &target,
        "bench-pubsub.json",
        "cargo bench -p foundation-pubsub --bench cluster",
    )?);
    figures.extend(json_figures(
        &target,
        "bench-cache.json",
        "cargo bench -p foundation-cache --bench cluster",
    )?);
    figures.extend(json_figures(
        &target,
        "bench-cache-replicated.json",
        "cargo bench -p foundation-cache --bench replicated",
    )?);
    add_beam(&target, &mut figures, &beam)?;

    print_table(&figures);
    for line in &beam.info {
        println!("the BEAM: {line}");
    }
    println!(
        "values: criterion estimates; ratio: median over 5 processes of each one's median of \
         paired rounds (bench `paired`) where measured (all single-thread timing rows), \
         value / competitor value otherwise"
    );

    let summary_path = target.join("bench-summary.json");
    fs::write(&summary_path, summary_json(&figures)?)
        .with_context(|| format!("writing {}", summary_path.display()))?;
    eprintln!("==> xtask bench: wrote {}", summary_path.display());

    let judged: Vec<&Figure> = figures
        .iter()
        .filter(|f| !matches!(f.budget, Budget::None))
        .collect();
    let met = judged.iter().filter(|f| f.met()).count();
    println!("budgets met: {met} of {}", judged.len());
    Ok(())
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else `<workspace root>/target`.
pub(crate) fn target_dir() -> Result<PathBuf> {
    let root = workspace_root()?;
    Ok(match std::env::var_os("CARGO_TARGET_DIR") {
        // A relative value is relative to where cargo ran, which is the workspace root.
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    })
}

/// Criterion's time per iteration, in nanoseconds, for benchmark id `group/function`: the
/// estimate criterion itself reports (the slope of its linear fit, or the mean where it has
/// no slope), so the table matches what criterion printed.
fn criterion_mean(target: &Path, id: &str) -> Result<f64> {
    let mut path = target.join("criterion");
    path.extend(id.split('/'));
    path.push("new");
    path.push("estimates.json");
    let estimates = read_json(&path).with_context(|| {
        format!("no criterion results for `{id}`; run `cargo xtask bench` to produce them")
    })?;
    estimates
        .pointer("/slope/point_estimate")
        .and_then(Value::as_f64)
        .or_else(|| {
            estimates
                .pointer("/mean/point_estimate")
                .and_then(Value::as_f64)
        })
        .with_context(|| format!("{} has no slope or mean estimate", path.display()))
}

/// The figures of a `{"figures": [...]}` file (`bench-memory.json`, `bench-cluster.json`),
/// every entry, with their budgets; `hint` says which bench writes it.
fn json_figures(target: &Path, file: &str, hint: &str) -> Result<Vec<Figure>> {
    let path = target.join(file);
    let doc = read_json(&path).with_context(|| format!("no results in {file}; run `{hint}`"))?;
    let entries = doc
        .get("figures")
        .and_then(Value::as_array)
        .with_context(|| format!("{} has no `figures` array", path.display()))?;

    let mut figures = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let field = |key: &str| entry.get(key).filter(|v| !v.is_null());
        let name = field("name").and_then(Value::as_str).with_context(|| {
            format!("{}: figures[{index}] has no string `name`", path.display())
        })?;
        let value = field("value").and_then(Value::as_f64).with_context(|| {
            format!("{}: figure `{name}` has no number `value`", path.display())
        })?;
        let unit = field("unit").and_then(Value::as_str).unwrap_or("B");
        let competitor = field("competitor").and_then(Value::as_str);
        let competitor_value = match field("competitor_value") {
            None => None,
            Some(v) => Some(v.as_f64().with_context(|| {
                format!(
                    "{}: figure `{name}` has a non-numeric `competitor_value`",
                    path.display()
                )
            })?),
        };
        let budget = JSON_BUDGETS
            .iter()
            .find(|(budgeted, _)| *budgeted == name)
            .map_or(Budget::None, |(_, budget)| *budget);
        if matches!(budget, Budget::AddedBytes(_)) && competitor_value.is_none() {
            bail!(
                "{}: figure `{name}` needs a `competitor_value` for its budget",
                path.display()
            );
        }
        figures.push(Figure {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            competitor: competitor.map(str::to_owned),
            competitor_value,
            budget,
            paired_ratio: None,
        });
    }
    Ok(figures)
}

/// The median paired ratio of `group` in a paired-ratio file (`{"pairs": [{"group", "ratio", ..}]}`).
fn paired_ratio(paired: &Value, group: &str) -> Result<f64> {
    paired
        .get("pairs")
        .and_then(Value::as_array)
        .and_then(|pairs| {
            pairs
                .iter()
                .find(|p| p.get("group").and_then(Value::as_str) == Some(group))
        })
        .and_then(|p| p.get("ratio"))
        .and_then(Value::as_f64)
        .with_context(|| format!("no paired ratio for `{group}`"))
}

/// Reads and parses one JSON file, naming it in any error.
fn read_json(path: &Path) -> Result<Value> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// Formats a measured value for the table.
fn number(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// Prints the summary table to stdout.
fn print_table(figures: &[Figure]) {
    const HEADER: [&str; 8] = [
        "figure",
        "value",
        "unit",
        "competitor",
        "competitor value",
        "ratio",
        "budget",
        "met",
    ];
    /// Columns holding numbers, right-aligned.
    const NUMERIC: [bool; 8] = [false, true, false, false, true, true, false, false];

    let rows: Vec<[String; 8]> = figures
        .iter()
        .map(|f| {
            [
                f.name.clone(),
                number(f.value),
                f.unit.clone(),
                f.competitor.clone().unwrap_or_else(|| "-".to_owned()),
                f.competitor_value.map_or_else(|| "-".to_owned(), number),
                f.ratio()
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
                f.budget.to_string(),
                if f.met() { "yes" } else { "NO" }.to_owned(),
            ]
        })
        .collect();

    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let line = |cells: [&str; 8]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let width = widths[i];
            if NUMERIC[i] {
                out.push_str(&format!("{cell:>width$}"));
            } else {
                out.push_str(&format!("{cell:<width$}"));
            }
        }
        println!("{}", out.trim_end());
    };

    line(HEADER);
    let rule = widths.map(|w| "-".repeat(w));
    line(rule.each_ref().map(String::as_str));
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
}

/// `{"figures": [...]}` with each figure's keys in the documented order.
fn summary_json(figures: &[Figure]) -> Result<String> {
    let mut out = String::from("{\n  \"figures\": [");
    for (i, f) in figures.iter().enumerate() {
        let fields: [(&str, Value); 8] = [
            ("name", Value::from(f.name.as_str())),
            ("value", number_value(Some(f.value))),
            ("unit", Value::from(f.unit.as_str())),
            (
                "competitor",
                f.competitor.as_deref().map_or(Value::Null, Value::from),
            ),
            ("competitor_value", number_value(f.competitor_value)),
            ("ratio", number_value(f.ratio())),
            ("budget", Value::from(f.budget.to_string())),
            ("met", Value::from(f.met())),
        ];
        out.push_str(if i == 0 { "\n    {" } else { ",\n    {" });
        for (j, (key, value)) in fields.iter().enumerate() {
            out.push_str(if j == 0 { "\n      " } else { ",\n      " });
            out.push_str(&serde_json::to_string(key).context("encoding summary JSON")?);
            out.push_str(": ");
            out.push_str(&serde_json::to_string(value).context("encoding summary JSON")?);
        }
        out.push_str("\n    }");
    }
    if !figures.is_empty() {
        out.push_str("\n  ");
    }
    out.push_str("]\n}\n");
    Ok(out)
}

/// A JSON number, or `null` for a missing or non-finite value.
fn number_value(value: Option<f64>) -> Value {
    value
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that fails should stop loudly
mod tests {
    use super::*;

    /// A target directory holding a criterion estimate of `value` for every criterion id
    /// in `BEAM_ROWS`.
    fn fake_target(value: f64) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-beam-test-{}", std::process::id()));
        for row in BEAM_ROWS {
            if let Ours::Criterion(id) = row.ours {
                let mut path = dir.join("criterion");
                path.extend(id.split('/'));
                path.push("new");
                fs::create_dir_all(&path).unwrap();
                let estimate = format!("{{\"mean\":{{\"point_estimate\":{value}}}}}");
                fs::write(path.join("estimates.json"), estimate).unwrap();
            }
        }
        dir
    }

    fn row(name: &str, value: f64) -> Figure {
        Figure {
            name: name.to_owned(),
            value,
            unit: "deliveries/s".to_owned(),
            competitor: None,
            competitor_value: None,
            budget: JSON_BUDGETS
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(Budget::None, |(_, b)| *b),
            paired_ratio: None,
        }
    }

    #[test]
    fn the_beam_becomes_the_competitor_or_a_reason() {
        let target = fake_target(400.0);
        let mut figures = vec![
            row(
                "pubsub cluster broadcast, 3 nodes x 1k stream subscribers",
                6.0e6,
            ),
            row(
                "pubsub cluster broadcast, 3 nodes x 1k actor subscribers",
                2.0e6,
            ),
            row("idle supervised actor", 10_000.0),
        ];
        let beam = Beam::for_test(
            &[
                ("pubsub_cluster_broadcast", 2.0e6),
                ("pubsub_local_fanout", 500.0),
            ],
            &[("local_1s", "erl was killed")],
        );
        add_beam(&target, &mut figures, &beam).unwrap();
        let by_name = |name: &str| figures.iter().find(|f| f.name == name).unwrap();

        // Throughput: at least 1.3x the BEAM's deliveries/s.
        let streams = by_name("pubsub cluster broadcast, 3 nodes x 1k stream subscribers");
        assert_eq!(streams.competitor_value, Some(2.0e6));
        assert!(streams.met(), "3x the BEAM meets the budget");
        let actors = by_name("pubsub cluster broadcast, 3 nodes x 1k actor subscribers");
        assert!(!actors.met(), "1x the BEAM does not meet 1.3x");

        // Local fan-out: ours 400 ns against the BEAM's 500 ns.
        let local = by_name("pubsub local fan-out, 10k actors, vs the BEAM");
        assert_eq!((local.value, local.competitor_value), (400.0, Some(500.0)));
        assert!(local.met());

        // A missing figure names its reason and is not met.
        let one = by_name("pubsub local fan-out, 10k actors, vs the BEAM on 1 scheduler");
        assert_eq!(one.competitor_value, None);
        assert!(
            one.competitor
                .as_deref()
                .unwrap()
                .contains("erl was killed")
        );
        let tell = by_name("tell, vs the BEAM (gen_server:cast, 1 scheduler)");
        assert!(tell.competitor.as_deref().unwrap().contains("missing"));
        fs::remove_dir_all(&target).unwrap();
    }
}
