//! Entry points for the fuzz targets in the repository's `fuzz/` directory, behind the
//! feature `fuzzing` (off by default). **Not an API**: these may change or go at any time,
//! and no application should turn the feature on.
//!
//! Each function takes bytes as a peer could send them, runs the decode and handling the
//! pubsub runs on them through its own functions, and returns whether they were accepted.
//! None may panic, whatever the bytes: a panic is a bug the fuzzers are there to find.

use std::collections::BTreeMap;

use foundation_actors::RemoteMessage;

use crate::cluster::{Wire, WireMsg, count_in};
use crate::interest::{PeerView, fill};
use crate::topic::validate;
use crate::trie::Trie;
use crate::{PubSub, Topic};

/// A payload type with the shapes applications publish: an enum with named fields, a
/// tuple variant and a list of pairs, each under its wire tag.
#[derive(Debug, Clone, RemoteMessage)]
#[remote(name = "fuzz.Event")]
pub enum Event {
    /// Named fields.
    #[remote(tag = 1)]
    Created {
        /// An integer.
        id: u64,
        /// A string.
        name: String,
    },
    /// One field.
    #[remote(tag = 2)]
    Deleted(u64),
    /// A list of pairs with a float.
    #[remote(tag = 300)]
    Batch(Vec<(String, f64)>),
}

/// A struct payload holding a map.
#[derive(Debug, Clone, RemoteMessage)]
#[remote(name = "fuzz.Counts")]
pub struct Counts {
    /// The map.
    pub counts: BTreeMap<String, i64>,
}

/// The topics the fuzzed node subscribes to, with their payload types: every broadcast to
/// a valid topic reaches at least the first.
const TOPICS: [&str; 4] = ["#", "a.*", "a.b", "a.#"];

/// The topics a peer's interest is asked about besides its own filters.
const PROBES: [&str; 4] = ["a", "a.b", "a.b.c", "orders.eu.created"];

/// A peer's interest other nodes hold, that a broadcast's topic is routed through.
const PEER: [(&str, u32); 4] = [("a.*", 1), ("orders.#", 2), ("x.*.z", 3), ("#", 1)];

/// One message to a pubsub's process, as the node hands it over: decoded as the process's
/// message type, then handled as the process handles it. An interest message is applied
/// to a peer's view (one that holds [`PEER`] at the message's own epoch and version, so
/// that a delta applies, or a new one for a whole set and a digest), which is then asked
/// for counts and routes; a
/// broadcast is fanned out to this node's stream subscribers of several payload types
/// (decoded once per type, the type's wire id compared first), and its topic routed through a
/// peer's table as a broadcast from here would be.
pub fn wire(bytes: &[u8]) -> bool {
    let Ok(WireMsg(wire)) = WireMsg::from_bytes(bytes) else {
        return false;
    };
    let malformed = crate::telemetry::Count::default();
    match wire {
        Wire::Delta {
            origin,
            epoch,
            from,
            changes,
        } => {
            let mut view = PeerView::default();
            let _ = view.full(epoch, from, 0, 1, peer(), &malformed);
            let topics = names(&changes);
            let reply = view.delta(epoch, from, changes, &malformed);
            let _ = std::hint::black_box((origin, reply));
            probe(&view, &topics);
        }
        Wire::Full {
            origin,
            epoch,
            version,
            part,
            parts,
            filters,
        } => {
            let mut view = PeerView::default();
            let topics = names(&filters);
            let reply = view.full(epoch, version, part, parts, filters, &malformed);
            let _ = std::hint::black_box((origin, reply));
            probe(&view, &topics);
        }
        Wire::Digest {
            origin,
            epoch,
            version,
        } => {
            let mut view = PeerView::default();
            let _ = view.full(epoch, version, 0, 1, peer(), &malformed);
            let _ = std::hint::black_box((origin, view.digest(epoch, version)));
            let _ = std::hint::black_box(view.digest(epoch, version.wrapping_add(1)));
        }
        Wire::Want { origin } => {
            std::hint::black_box(origin);
        }
        Wire::Publish {
            topic,
            type_id,
            payload,
        } => {
            let pubsub = PubSub::local("fuzz");
            // Held until the end: a subscription dropped unsubscribes.
            let held = subscribe(&pubsub);
            pubsub.core().receive(&topic, type_id, &payload, None);
            std::hint::black_box(held.len());
            if validate(&topic, false).is_ok() {
                let mut peer_trie: Trie<u32> = Trie::default();
                fill(&mut peer_trie, peer(), &malformed);
                std::hint::black_box((
                    peer_trie.any_match(&topic),
                    count_in(&peer_trie, &topic, false),
                ));
            }
        }
    }
    true
}

/// [`PEER`], as a peer's filters.
fn peer() -> Vec<(String, u32)> {
    PEER.iter().map(|(f, n)| ((*f).to_owned(), *n)).collect()
}

fn names(filters: &[(String, u32)]) -> Vec<String> {
    filters.iter().map(|(f, _)| f.clone()).collect()
}

/// Asks a peer's view for the counts and routes of `topics` and [`PROBES`].
fn probe(view: &PeerView, topics: &[String]) {
    for topic in topics.iter().map(String::as_str).chain(PROBES) {
        if let Ok(pattern) = validate(topic, true) {
            std::hint::black_box(count_in(&view.trie, topic, pattern));
            if !pattern {
                std::hint::black_box(view.trie.any_match(topic));
            }
        }
    }
}

/// Stream subscribers of every topic of [`TOPICS`] for each payload type a seed names,
/// held (dropping one unsubscribes it).
fn subscribe(pubsub: &PubSub) -> Vec<Box<dyn std::any::Any>> {
    fn one<T: crate::Payload>(pubsub: &PubSub, held: &mut Vec<Box<dyn std::any::Any>>) {
        for name in TOPICS {
            if let Ok(topic) = Topic::<T>::new(name) {
                if let Ok(sub) = pubsub.subscribe_stream(&topic) {
                    held.push(Box::new(sub));
                }
            }
        }
    }
    let mut held = Vec::new();
    one::<String>(pubsub, &mut held);
    one::<Vec<u8>>(pubsub, &mut held);
    one::<u64>(pubsub, &mut held);
    one::<Event>(pubsub, &mut held);
    one::<Counts>(pubsub, &mut held);
    held
}

/// Seed inputs for the target `pubsub`, made with the pubsub's own encoders: interest
/// messages (deltas with names, patterns, removals and an invalid filter; whole sets in
/// one part and the first of two, with a zero count; an empty set; a digest; a request),
/// and broadcasts of each payload type to topics that match, one of another type, one to
/// an invalid topic.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // The topic is not checked here (`a.*` is not one to publish to): the receiver checks it.
    fn publish<T: crate::Payload>(topic: &str, msg: &T) -> Option<Wire> {
        crate::cluster::publish(topic, msg).ok()
    }
    let list = |filters: &[(&str, u32)]| -> Vec<(String, u32)> {
        filters.iter().map(|(f, n)| ((*f).to_owned(), *n)).collect()
    };
    let origin = || "node-b".to_owned();
    let delta = |from: u64, changes: &[(&str, u32)]| Wire::Delta {
        origin: origin(),
        epoch: 0x5eed,
        from,
        changes: list(changes),
    };
    let full = |part: u32, parts: u32, filters: &[(&str, u32)]| Wire::Full {
        origin: origin(),
        epoch: 0x5eed,
        version: 3,
        part,
        parts,
        filters: list(filters),
    };
    let wires = [
        Some(delta(
            0,
            &[("orders.#", 2), ("orders.*", 1), ("users.new", 3)],
        )),
        Some(delta(
            41,
            &[("a..b", 1), ("a.*", 0), ("x.*.z", 4), ("#", 0)],
        )),
        Some(full(0, 1, &[("orders.#", 2), ("a.b", 0), ("users.new", 3)])),
        Some(full(0, 2, &[("a.*", 1), ("x.*.z", 4), ("#", 1)])),
        Some(full(0, 1, &[])),
        Some(Wire::Digest {
            origin: origin(),
            epoch: 0x5eed,
            version: 7,
        }),
        Some(Wire::Want { origin: origin() }),
        publish("a.b", &"hello".to_owned()),
        publish("a.c", &vec![1_u8, 2, u8::MAX]),
        publish("a.b", &u64::MAX),
        publish(
            "a.b.c",
            &Event::Created {
                id: 1,
                name: "n".into(),
            },
        ),
        publish("a.b", &Event::Batch(vec![("k".into(), 1.5)])),
        publish(
            "z",
            &Counts {
                counts: BTreeMap::from([("a".to_owned(), -1)]),
            },
        ),
        publish("a.b", &7_u16),
        publish("a.*", &"pattern".to_owned()),
    ];
    wires
        .into_iter()
        .flatten()
        .filter_map(|wire| WireMsg(wire).to_bytes().ok())
        .map(|bytes| ("pubsub", bytes))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_is_accepted_and_the_broadcasts_reach_subscribers() {
        let seeds = seeds();
        assert_eq!(seeds.len(), 15);
        for (_, bytes) in &seeds {
            assert!(wire(bytes), "a seed is refused: {bytes:?}");
        }
        // A seed broadcast of each payload type is decoded and delivered here, not
        // refused for its type: the fuzzer starts from inputs that reach the decoders.
        let pubsub = PubSub::local("seeds");
        let held = subscribe(&pubsub);
        assert_eq!(held.len(), 5 * TOPICS.len());
        for (_, bytes) in &seeds {
            if let Ok(WireMsg(Wire::Publish {
                topic,
                type_id,
                payload,
            })) = WireMsg::from_bytes(bytes)
            {
                pubsub.core().receive(&topic, type_id, &payload, None);
            }
        }
        let stats = pubsub.stats();
        // Each broadcast of a subscribed type reaches that type's subscribers of `#` and
        // of those of `a.*`, `a.b`, `a.#` its topic matches: 4 + 3 + 4 + 2 + 4 + 1.
        assert_eq!(stats.delivered, 18, "{stats:?}");
        assert_eq!(stats.malformed, 1, "{stats:?}"); // the one to `a.*`
    }
}
