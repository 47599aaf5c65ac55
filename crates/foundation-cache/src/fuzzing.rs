//! Entry points for the fuzz targets in the repository's `fuzz/` directory, behind the
//! feature `fuzzing` (off by default). **Not an API**: these may change or go at any time,
//! and no application should turn the feature on.
//!
//! Each function takes bytes as a peer could send them, runs the decode and handling the
//! cache runs on them through its own functions, and returns whether they were all
//! accepted. None may panic, whatever the bytes: a panic is a bug the fuzzers are there to
//! find.
//!
//! The shards and shared states fuzzed here sit on one real node, started once per
//! process on a loopback port (their code takes a node), with no peer: what they would
//! send a peer fails to send, as to a node that went down.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use foundation_actors::RemoteMessage;
use foundation_actors::remote::{Replier, decode_reply};
use foundation_cluster::node::{Node, NodeConfig};
use futures::executor::block_on;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crdt::{LwwMap, Message, OrSet, PnCounter, Replica, ReplicaId, SharedState};
use crate::partitioned::fuzzing::{
    Answer, Claimed, Copied, Core, Failure, Op, Outcome, ShardMsg, serve,
};
use crate::partitioned::wire_codec::{decode, encode};
use crate::replicated::{Item, Store};
use crate::{Cache, Local, Replicated, ReplicatedOptions, Shared, SharedOptions, Ttl};

/// The reply types' wire names, as the calling node decodes them.
const VALUE: &str = "foundation.cache.Value";
const ANSWER: &str = "foundation.cache.Answer";
const CLAIMED: &str = "foundation.cache.Claimed";

/// The name of the node the shards and states run on (the owner of every key).
const ME: &str = "fuzz";

/// The replica id of this node's shared states (fixed, so runs repeat; a peer learns it
/// from this node's deltas anyway).
const MY_ID: ReplicaId = ReplicaId(1);

/// What a peer's bytes reach on a node of a cache. The first byte picks the receiver:
/// `0` a partitioned cache's shard ([`partitioned`]); `1` to `3` a [`Shared`] state of a
/// [`PnCounter`], an [`OrSet`] of strings, an [`LwwMap`] of strings to integers; `4` a
/// [`Replicated`] cache of strings to integers (its shared store, mirrored into its
/// local cache). The rest is messages, each a length byte and that many bytes.
pub fn wire(bytes: &[u8]) -> bool {
    let Some((which, rest)) = bytes.split_first() else {
        return false;
    };
    match which % 5 {
        0 => partitioned(rest),
        1 => shared::<PnCounter>(rest, |c, me, n| {
            c.add(me, if n % 2 == 0 { i64::MAX } else { i64::MIN })
        }),
        2 => shared::<OrSet<String>>(rest, |s, me, n| {
            if n % 3 == 2 {
                s.remove(&"x".to_owned())
            } else {
                s.insert(me, "x".to_owned())
            }
        }),
        3 => shared::<LwwMap<String, u64>>(rest, |m, me, n| {
            let key = format!("k{}", n % 4);
            if n % 3 == 2 {
                m.remove(me, crate::shared::wall_ms(), key)
            } else {
                m.insert(me, crate::shared::wall_ms(), key, n)
            }
        }),
        _ => replicated(rest),
    }
}

/// Requests to one partitioned cache's shard on this node, each a length byte and that
/// many bytes, whose first byte says how the node hands the rest over: even, a cast
/// (decoded with `from_bytes`); odd and below 128, a call (decoded with a reply port);
/// 128 and over, a reply to one of this node's calls, decoded as the caller decodes each
/// reply type (and the key and value bytes in it as strings). Requests are applied to the
/// shard in order, as its process applies them; every reply the shard gives must decode
/// as a reply type.
pub fn partitioned(bytes: &[u8]) -> bool {
    let Some(fx) = fixture() else {
        return false;
    };
    let _rt = fx.rt.enter();
    let Ok(store) = Local::<Vec<u8>, Vec<u8>>::builder()
        .max_entries(256)
        .build()
    else {
        return false;
    };
    let core = Core::new(
        fx.node.clone(),
        "$cache/fuzz".to_owned(),
        1,
        store,
        crate::DEFAULT_MAX_KEY_BYTES,
    );
    let replies: Arc<Mutex<Vec<Option<Vec<u8>>>>> = Arc::default();
    let mut all = true;
    for part in chunks(bytes) {
        let Some((&how, msg)) = part.split_first() else {
            all = false;
            continue;
        };
        if how >= 128 {
            all &= reply(msg);
            continue;
        }
        let decoded = if how % 2 == 0 {
            ShardMsg::from_bytes(msg)
        } else {
            let sink = Arc::clone(&replies);
            let replier = Replier::new(move |bytes| {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(bytes);
            });
            ShardMsg::from_bytes_with_reply(msg, replier)
        };
        match decoded {
            Ok(msg) => serve(&core, msg),
            Err(_) => all = false,
        }
    }
    // Claims still waiting are answered `None` as their ports drop with the shard.
    drop(core);
    let given: Vec<Option<Vec<u8>>> =
        std::mem::take(&mut *replies.lock().unwrap_or_else(PoisonError::into_inner));
    for bytes in given.into_iter().flatten() {
        assert!(
            reply(&bytes),
            "a reply the shard gave does not decode: {bytes:?}"
        );
    }
    all
}

/// A reply to one of this node's calls to a shard, decoded as each reply type (and the
/// keys and values in it as strings, as a cache of strings reads them): whether one of
/// the reply types took it.
fn reply(bytes: &[u8]) -> bool {
    let value = decode_reply::<Option<Vec<u8>>>(VALUE, bytes);
    if let Ok(Some(v)) = &value {
        std::hint::black_box(decode::<String>("value", v).ok());
    }
    let answer = decode_reply::<Answer>(ANSWER, bytes);
    if let Ok(Answer::Value(Some(v))) = &answer {
        std::hint::black_box(decode::<String>("value", v).ok());
    }
    if let Ok(Answer::Page(page)) = &answer {
        for (k, v) in page {
            std::hint::black_box(decode::<String>("key", k).ok());
            std::hint::black_box(decode::<String>("value", v).ok());
        }
    }
    let claimed = decode_reply::<Claimed>(CLAIMED, bytes);
    if let Ok(Claimed::Value(v)) = &claimed {
        std::hint::black_box(decode::<String>("value", v).ok());
    }
    value.is_ok() || answer.is_ok() || claimed.is_ok()
}

/// Messages from peers to a [`Shared`] state of `S` on this node, each a length byte and
/// that many bytes, decoded as its process decodes them and received (merged, answered)
/// in order. After each, a local update (`update`, given the message's number) made on
/// what the peer sent, and the state as this node would send it (full state, delta,
/// digest) must come out of an encoding round trip equal.
fn shared<S>(bytes: &[u8], update: impl Fn(&mut S, ReplicaId, u64) -> S::Delta) -> bool
where
    S: SharedState + Serialize + DeserializeOwned,
    S::Delta: Serialize + DeserializeOwned,
    Message<S>: PartialEq,
{
    let Some(fx) = fixture() else {
        return false;
    };
    let _rt = fx.rt.enter();
    let state: Shared<S> = Shared::detached(&fx.node, SharedOptions::new("fuzz"), None, MY_ID);
    let mut all = true;
    for (n, msg) in (0u64..).zip(chunks(bytes)) {
        all &= state.receive_bytes(msg);
        state.update(|s, me| update(s, me, n));
        round_trip(&state);
    }
    all && state.stats().malformed == 0
}

/// Messages from peers to a [`Replicated`] cache's store on this node, as [`shared`]
/// takes them; the peers' winning writes are mirrored into its local cache (their keys
/// and values decoded as strings and integers). After each, the cache is written and
/// read through its API on what the peer sent.
fn replicated(bytes: &[u8]) -> bool {
    let Some(fx) = fixture() else {
        return false;
    };
    let _rt = fx.rt.enter();
    let options =
        ReplicatedOptions::<String, i64>::new("fuzz").local(Local::builder().max_entries(256));
    let Ok(cache) = Replicated::detached(&fx.node, options, MY_ID) else {
        return false;
    };
    let mut all = true;
    for (n, msg) in (0u64..).zip(chunks(bytes)) {
        all &= cache.shared().receive_bytes(msg);
        let key = format!("k{}", n % 4);
        let wrote = match n % 4 {
            0 => block_on(cache.put(key.clone(), 1, Ttl::Live(Duration::from_secs(60)))),
            1 => block_on(cache.incr(key.clone(), i64::MAX, Ttl::Never)).map(drop),
            2 => block_on(cache.take(&key)).map(drop),
            _ => block_on(cache.expire(&key, Ttl::Idle(Duration::from_secs(1)))).map(drop),
        };
        std::hint::black_box(wrote.is_ok());
        std::hint::black_box(block_on(cache.get(&key)).ok());
        round_trip(cache.shared());
    }
    all && cache.sync_stats().malformed == 0
}

/// What `state` would send a peer now must come out of an encoding round trip equal.
fn round_trip<S>(state: &Shared<S>)
where
    S: SharedState + Serialize + DeserializeOwned,
    S::Delta: Serialize + DeserializeOwned,
    Message<S>: PartialEq,
{
    for msg in state.outgoing() {
        let bytes = postcard::to_allocvec(&msg);
        let back = bytes.as_deref().map(postcard::from_bytes::<Message<S>>);
        assert!(
            matches!(&back, Ok(Ok(b)) if *b == msg),
            "a message this node sends does not come back equal: {msg:?} -> {back:?}"
        );
    }
}

/// The node the shards and states run on, and the runtime its tasks run on: started
/// once per process. `None` if it could not start (no loopback port).
struct Fixture {
    rt: tokio::runtime::Runtime,
    node: Node,
}

fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .ok()?;
            let config = NodeConfig::new(ME, "fuzz-cookie")
                .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
            let node = rt.block_on(Node::start(config)).ok()?;
            Some(Fixture { rt, node })
        })
        .as_ref()
}

/// Splits `bytes` into parts, each a length byte and up to that many bytes.
fn chunks(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&len, rest) = bytes.split_first()?;
        let (part, rest) = rest.split_at(usize::from(len).min(rest.len()));
        bytes = rest;
        Some(part)
    })
}

/// `first`, then each message behind its length byte, as [`chunks`] reads them back.
fn framed(first: u8, messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![first];
    for msg in messages {
        out.push(u8::try_from(msg.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(msg);
    }
    out
}

/// A reply port for a message that is only encoded: the port is not on the wire.
fn port<T: Serialize + Send + 'static>() -> foundation_actors::ReplyPort<T> {
    Replier::new(|_| {}).port()
}

/// Seed inputs for the target `cache`, made with the crate's own encoders: (target,
/// bytes). One per receiver: every request a shard takes and every reply it gives, and
/// every message a peer's shared state (or replicated cache) sends.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let key = |k: &str| encode("key", k).unwrap_or_default();
    let value = |v: &str| encode("value", v).unwrap_or_default();
    let minute = Ttl::Live(Duration::from_secs(60));
    let casts = [
        ShardMsg::Copy(vec![
            Copied {
                key: key("b"),
                value: Some((value("2"), minute)),
                if_absent: true,
            },
            Copied {
                key: key("c"),
                value: None,
                if_absent: false,
            },
        ]),
        ShardMsg::Fulfill(
            key("d"),
            "node-b".into(),
            Outcome::Value(value("4"), minute),
        ),
        ShardMsg::Fulfill(
            key("e"),
            "node-b".into(),
            Outcome::Failed(Failure::Panicked("boom".into())),
        ),
        ShardMsg::Fulfill(key("f"), "node-b".into(), Outcome::Abandoned),
    ];
    let ops = [
        Op::Put(key("a"), value("1"), minute),
        Op::PutNew(key("a"), value("1"), Ttl::Never),
        Op::Replace(key("a"), value("2"), Ttl::Idle(Duration::from_secs(5))),
        Op::Swap {
            key: key("n"),
            expected: None,
            new: encode("value", &1_i64).unwrap_or_default(),
            ttl: Ttl::Never,
        },
        Op::Contains(key("a")),
        Op::Ttl(key("a")),
        Op::Expire(key("a"), minute),
        Op::Touch(key("a")),
        Op::Len,
        Op::Page { skip: 0, limit: 8 },
        Op::Take(key("a")),
        Op::Delete(key("b")),
        Op::Clear,
    ];
    let mut shard: Vec<Vec<u8>> = Vec::new();
    let mut tagged = |how: u8, bytes: Result<Vec<u8>, _>| {
        if let Ok(bytes) = bytes {
            shard.push([vec![how], bytes].concat());
        }
    };
    for msg in &casts {
        tagged(0, msg.to_bytes());
    }
    tagged(1, ShardMsg::Get(key("b"), port()).to_bytes());
    tagged(
        1,
        ShardMsg::Claim(key("g"), "node-b".into(), port()).to_bytes(),
    );
    tagged(
        1,
        ShardMsg::Claim(key("g"), "node-c".into(), port()).to_bytes(),
    );
    for op in ops {
        tagged(1, ShardMsg::Op(op, port()).to_bytes());
    }
    let replies: Vec<Result<Vec<u8>, _>> = vec![
        foundation_actors::remote::encode_reply(VALUE, &Some(value("1"))),
        foundation_actors::remote::encode_reply(ANSWER, &Answer::Done),
        foundation_actors::remote::encode_reply(ANSWER, &Answer::Bool(true)),
        foundation_actors::remote::encode_reply(ANSWER, &Answer::Count(3)),
        foundation_actors::remote::encode_reply(
            ANSWER,
            &Answer::Left(Some(crate::TtlLeft::After(Duration::from_secs(9)))),
        ),
        foundation_actors::remote::encode_reply(
            ANSWER,
            &Answer::Page(vec![(key("a"), value("1"))]),
        ),
        foundation_actors::remote::encode_reply(ANSWER, &Answer::Refused("ttl".into())),
        foundation_actors::remote::encode_reply(CLAIMED, &Claimed::Value(value("1"))),
        foundation_actors::remote::encode_reply(CLAIMED, &Claimed::Compute),
        foundation_actors::remote::encode_reply(CLAIMED, &Claimed::Retry),
        foundation_actors::remote::encode_reply(
            CLAIMED,
            &Claimed::Failed {
                node: "node-b".into(),
                failure: Failure::Returned("no row".into()),
            },
        ),
    ];
    for r in replies {
        tagged(128, r);
    }
    let mut seeds = vec![("cache", framed(0, &shard))];

    let peer = ReplicaId(2);
    seeds.push((
        "cache",
        framed(
            1,
            &peer_messages::<PnCounter>(peer, |c, me| c.add(me, 5), |c, me| c.add(me, -2)),
        ),
    ));
    seeds.push((
        "cache",
        framed(
            2,
            &peer_messages::<OrSet<String>>(
                peer,
                |s, me| s.insert(me, "x".into()),
                |s, _| s.remove(&"x".into()),
            ),
        ),
    ));
    seeds.push((
        "cache",
        framed(
            3,
            &peer_messages::<LwwMap<String, u64>>(
                peer,
                |m, me| m.insert(me, 1_700_000_000_000, "k0".into(), 7),
                |m, me| m.remove(me, 1_700_000_000_001, "k1".into()),
            ),
        ),
    ));
    let now = 1_700_000_000_000;
    let item = |v: i64, ttl| Item::new(encode("value", &v).unwrap_or_default(), ttl, now);
    seeds.push((
        "cache",
        framed(
            4,
            &peer_messages::<Store>(
                peer,
                |m, me| m.insert(me, now, key("k0"), item(3, Ttl::Never)),
                |m, me| m.insert(me, now + 1, key("k1"), item(-1, minute)),
            ),
        ),
    ));
    seeds
}

/// What a peer's replica `peer` sends: a delta (of `first`), its full state, a second
/// delta (of `second`), a digest and a request for this node's state, each as the wire
/// bytes its shared state sends.
fn peer_messages<S>(
    peer: ReplicaId,
    first: impl FnOnce(&mut S, ReplicaId) -> S::Delta,
    second: impl FnOnce(&mut S, ReplicaId) -> S::Delta,
) -> Vec<Vec<u8>>
where
    S: SharedState + Serialize + DeserializeOwned,
    S::Delta: Serialize + DeserializeOwned,
{
    let mut replica = Replica::<S>::new(peer);
    replica.update(first);
    let mut msgs: Vec<Message<S>> = replica.flush().into_iter().collect();
    msgs.push(replica.full_state());
    replica.update(second);
    msgs.extend(replica.flush());
    msgs.push(replica.digest());
    msgs.push(Message::Want { from: peer });
    msgs.iter()
        .filter_map(|m| Shared::<S>::wire_bytes("node-b", m))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_is_accepted_by_its_decoder() {
        let seeds = seeds();
        assert_eq!(seeds.len(), 5);
        for (target, bytes) in seeds {
            assert_eq!(target, "cache");
            assert!(wire(&bytes), "a seed is refused: {bytes:?}");
        }
    }

    #[test]
    fn the_shard_seed_holds_every_request_and_reply_whole() {
        let seeds = seeds();
        let parts: Vec<&[u8]> = chunks(&seeds[0].1[1..]).collect();
        // Four casts, three calls, thirteen operations, eleven replies.
        assert_eq!(parts.len(), 4 + 3 + 13 + 11);
        assert!(parts.iter().all(|p| p.len() < 255), "{parts:?}");
        for (_, bytes) in &seeds[1..] {
            let parts: Vec<&[u8]> = chunks(&bytes[1..]).collect();
            assert_eq!(parts.len(), 5);
            assert!(parts.iter().all(|p| p.len() < 255), "{parts:?}");
        }
    }
}
