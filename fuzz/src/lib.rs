//! What the fuzz targets share: the message types the `message` target decodes, and the
//! seed corpus, made with the crates' own encoders (`cargo xtask fuzz --seeds` writes it
//! to `corpus/<target>/`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use foundation_actors::remote::{RemoteMessage, Replier, encode_reply};
use foundation_actors::{Context, ReplyPort};
use serde::{Deserialize, Serialize};

/// A field type of a user message: a plain serde enum.
#[derive(Debug, Serialize, Deserialize)]
pub enum Shape {
    /// No fields.
    Point,
    /// A named float.
    Circle {
        /// The radius.
        r: f64,
    },
    /// A list of pairs.
    Poly(Vec<(i32, i32)>),
}

/// A user message with the field shapes applications use: casts and calls, strings,
/// bytes, options, maps, nested enums, arrays, wide integers.
#[derive(Debug, RemoteMessage)]
pub enum Msg {
    /// A cast with named fields.
    #[remote(tag = 1)]
    Put {
        /// A string.
        key: String,
        /// Bytes.
        value: Vec<u8>,
        /// An option.
        ttl: Option<u64>,
    },
    /// A call.
    #[remote(tag = 2)]
    Get(String, ReplyPort<Option<Vec<u8>>>),
    /// No fields.
    #[remote(tag = 3)]
    Ping,
    /// A list and an ordered map.
    #[remote(tag = 4)]
    Batch(Vec<(String, i64)>, BTreeMap<u32, bool>),
    /// A hash map and a char.
    #[remote(tag = 5)]
    Index(HashMap<String, Vec<u16>>, char),
    /// A nested enum, an array and wide integers, under a tag of two bytes.
    #[remote(tag = 300)]
    Draw(Shape, [u8; 4], (u128, i8)),
    /// A call with named fields.
    #[remote(tag = 7)]
    Ask {
        /// A list of enums.
        shapes: Vec<Shape>,
        /// The reply.
        reply: ReplyPort<Reply>,
    },
}

/// The reply to [`Msg::Ask`].
pub type Reply = Vec<(String, Option<u64>)>;

/// A struct message (no tag).
#[derive(Debug, RemoteMessage)]
pub struct Event {
    /// An integer.
    pub id: u64,
    /// A string.
    pub name: String,
    /// A list.
    pub tags: Vec<String>,
    /// An option of a tuple.
    pub at: Option<(u64, u32)>,
}

/// A reply port for a message that is only encoded: the port is not on the wire.
fn port<T: Serialize + Send + 'static>() -> ReplyPort<T> {
    Replier::new(|_| {}).port()
}

/// Every seed: (target, bytes).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = foundation_cluster::fuzzing::seeds();
    seeds.extend(foundation_registry::fuzzing::seeds());
    seeds.extend(foundation_pubsub::fuzzing::seeds());
    seeds.extend(foundation_cache::fuzzing::seeds());

    let contexts = [
        Context::new(),
        Context::new()
            .with_request_id("req-1")
            .with_baggage("tenant", "acme")
            .with_baggage("flag", "on"),
        Context::new().with_timeout(Duration::from_millis(250)),
    ];
    for ctx in &contexts {
        if let Ok(bytes) = postcard::to_stdvec(ctx) {
            seeds.push(("context", bytes));
        }
    }

    let msgs = [
        Msg::Put {
            key: "k".into(),
            value: vec![1, 2, 3],
            ttl: Some(60),
        },
        Msg::Get("k".into(), port()),
        Msg::Ping,
        Msg::Batch(
            vec![("a".into(), -1), ("b".into(), 2)],
            BTreeMap::from([(1, true), (2, false)]),
        ),
        Msg::Index(HashMap::from([("x".into(), vec![1, 300])]), 'é'),
        Msg::Draw(Shape::Poly(vec![(0, 0), (3, 4)]), *b"abcd", (u128::MAX, -8)),
        Msg::Ask {
            shapes: vec![Shape::Point, Shape::Circle { r: 1.5 }],
            reply: port(),
        },
    ];
    for msg in &msgs {
        if let Ok(bytes) = msg.to_bytes() {
            // Casts as a cast, calls as a call: the way the node decodes each.
            let which = if msg.is_call() { 1 } else { 0 };
            seeds.push(("message", [vec![which], bytes].concat()));
        }
    }
    let event = Event {
        id: 9,
        name: "started".into(),
        tags: vec!["a".into()],
        at: Some((1_700_000_000, 5)),
    };
    if let Ok(bytes) = event.to_bytes() {
        seeds.push(("message", [vec![2], bytes].concat()));
    }
    let reply: Reply = vec![("a".into(), Some(1)), ("b".into(), None)];
    if let Ok(bytes) = encode_reply("Reply", &reply) {
        seeds.push(("message", [vec![3], bytes].concat()));
    }
    seeds
}

/// Writes every seed to `corpus/<target>/seed-<n>` under `dir`, replacing the seeds
/// written before (inputs the fuzzer added are left alone).
///
/// # Errors
///
/// Any I/O error.
pub fn write_seeds(dir: &Path) -> std::io::Result<usize> {
    let seeds = seeds();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (target, _) in &seeds {
        let corpus = dir.join(target);
        if counts.insert(target, 0).is_none() && corpus.is_dir() {
            for entry in std::fs::read_dir(&corpus)? {
                let path = entry?.path();
                let is_seed = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("seed-"));
                if is_seed {
                    std::fs::remove_file(path)?;
                }
            }
        }
    }
    for (target, bytes) in &seeds {
        let n = counts.entry(target).or_default();
        *n += 1;
        let corpus = dir.join(target);
        std::fs::create_dir_all(&corpus)?;
        std::fs::write(corpus.join(format!("seed-{n:02}")), bytes)?;
    }
    Ok(seeds.len())
}
