//! The replicated adapter on one node (its cluster behaviour is in `cluster`): the cache
//! API, bad input refused with typed errors, metrics; and `cached` / `#[cached]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use foundation_cache::{
    Cache, CacheError, CodecError, Local, Replicated, ReplicatedOptions, Ttl, TtlError, cached,
};
use foundation_cluster::node::{Node, NodeConfig};

async fn node(name: &str) -> Node {
    Node::start(NodeConfig::new(name, "cookie").listen("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
}

/// A value whose serialization fails (as a type with a map keyed by something the codec
/// cannot take would).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
enum Value {
    Fine(u32),
    Unsendable,
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Fine(n) => s.serialize_newtype_variant("Value", 0, "Fine", n),
            Value::Unsendable => Err(serde::ser::Error::custom("this value stays here")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_works_on_one_node_and_bad_input_gets_typed_errors_leaving_it_usable() {
    let node = node("solo").await;
    let cache: Replicated<String, Value> = Replicated::start(
        &node,
        ReplicatedOptions::new("solo-cache").max_key_bytes(16),
    )
    .await
    .unwrap();
    let k = |s: &str| s.to_owned();

    // A value that fails to serialize: a typed error with the type and the serializer's
    // message, nothing written.
    let err = cache
        .put(k("bad"), Value::Unsendable, Ttl::Default)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CacheError::Codec(CodecError::Serialize {
            what: "value",
            type_name: "it::replicated::Value",
            reason: "this value stays here".into(),
        })
    );
    assert_eq!(
        err.to_string(),
        "a value of type `it::replicated::Value` failed to serialize: this value stays here"
    );
    assert_eq!(cache.get(&k("bad")).await.unwrap(), None);
    // put_many: one bad entry writes none of them.
    let err = cache
        .put_many(
            [(k("m1"), Value::Fine(1)), (k("m2"), Value::Unsendable)],
            Ttl::Default,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CacheError::Codec(_)));
    assert_eq!(cache.get(&k("m1")).await.unwrap(), None);
    // A key over the limit, a zero or overlong TTL.
    let long = "k".repeat(40);
    assert_eq!(
        cache.put(long.clone(), Value::Fine(1), Ttl::Default).await,
        Err(CacheError::KeyTooLarge {
            cache: "solo-cache".into(),
            size: 41,
            limit: 16
        })
    );
    assert_eq!(
        cache
            .put(long.clone(), Value::Fine(1), Ttl::Default)
            .await
            .unwrap_err()
            .to_string(),
        "cache `solo-cache`: a key of 41 bytes (encoded) is over the limit of 16 bytes, set by \
         the cache's `max_key_bytes`"
    );
    assert_eq!(
        cache
            .put(k("z"), Value::Fine(1), Ttl::Live(Duration::ZERO))
            .await,
        Err(CacheError::InvalidTtl(TtlError::Zero))
    );
    assert!(matches!(
        cache
            .put(k("z"), Value::Fine(1), Ttl::Live(Duration::MAX))
            .await,
        Err(CacheError::InvalidTtl(TtlError::TooLong(_)))
    ));

    // Still usable: the rest of the API.
    cache
        .put(k("a"), Value::Fine(1), Ttl::Default)
        .await
        .unwrap();
    assert_eq!(cache.get(&k("a")).await.unwrap(), Some(Value::Fine(1)));
    assert!(
        !cache
            .put_new(k("a"), Value::Fine(2), Ttl::Default)
            .await
            .unwrap()
    );
    assert!(
        cache
            .put_new(k("b"), Value::Fine(2), Ttl::Default)
            .await
            .unwrap()
    );
    assert!(
        cache
            .replace(k("b"), Value::Fine(3), Ttl::Default)
            .await
            .unwrap()
    );
    assert!(
        !cache
            .replace(k("c"), Value::Fine(3), Ttl::Default)
            .await
            .unwrap()
    );
    assert_eq!(cache.take(&k("b")).await.unwrap(), Some(Value::Fine(3)));
    assert_eq!(cache.get(&k("b")).await.unwrap(), None);
    assert!(
        cache
            .expire(&k("a"), Ttl::Live(Duration::from_secs(60)))
            .await
            .unwrap()
    );
    assert!(cache.touch(&k("a")).await.unwrap());
    assert!(!cache.touch(&k("nope")).await.unwrap());
    assert_eq!(cache.len().await.unwrap(), 1);
    cache.delete(&k("a")).await.unwrap();
    assert!(!cache.contains(&k("a")).await.unwrap());
    cache
        .put_many(
            [(k("x"), Value::Fine(1)), (k("y"), Value::Fine(2))],
            Ttl::Default,
        )
        .await
        .unwrap();
    cache.clear().await.unwrap();
    assert_eq!(cache.len().await.unwrap(), 0);

    // Single flight, and a computed value that cannot be sent is returned, not cached.
    let runs = Arc::new(AtomicU32::new(0));
    let calls = (0..8).map(|_| {
        let runs = Arc::clone(&runs);
        cache.get_or_compute(k("sf"), Ttl::Default, move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, std::io::Error>(Value::Fine(9))
        })
    });
    for v in futures::future::join_all(calls).await {
        assert_eq!(v.unwrap(), Value::Fine(9));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get(&k("sf")).await.unwrap(), Some(Value::Fine(9)));
    let v = cache
        .get_or_compute(k("unsent"), Ttl::Default, || async {
            Ok::<_, std::io::Error>(Value::Unsendable)
        })
        .await
        .unwrap();
    assert_eq!(v, Value::Unsendable);
    assert_eq!(cache.get(&k("unsent")).await.unwrap(), None);
    assert_eq!(cache.sync_stats().codec_errors, 1);

    // Counters.
    let counts: Replicated<String, u64> =
        Replicated::start(&node, ReplicatedOptions::new("solo-counts"))
            .await
            .unwrap();
    assert_eq!(counts.incr(k("n"), 5, Ttl::Default).await.unwrap(), 5);
    assert_eq!(counts.decr(k("n"), 2, Ttl::Default).await.unwrap(), 3);
    assert_eq!(
        counts.decr(k("n"), 4, Ttl::Default).await,
        Err(CacheError::Overflow {
            by: -4,
            counter: "u64"
        })
    );
    assert_eq!(counts.get(&k("n")).await.unwrap(), Some(3));

    // A second cache of one name on one node is refused.
    let again: Result<Replicated<String, u64>, _> =
        Replicated::start(&node, ReplicatedOptions::new("solo-counts")).await;
    assert!(matches!(
        again,
        Err(foundation_cache::StartError::NameTaken(n)) if n == "solo-counts"
    ));
    cache.shutdown();
    counts.shutdown();
    node.shutdown().await;
}

#[test]
fn the_stats_and_the_replication_counters_are_in_the_metrics_facade_labelled_by_node() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let node = node("metering-node").await;
            let cache: Replicated<u64, u64> =
                Replicated::start(&node, ReplicatedOptions::new("metered"))
                    .await
                    .unwrap();
            cache.put(1, 1, Ttl::Default).await.unwrap();
            cache.get(&1).await.unwrap();
            cache.get(&2).await.unwrap();
            let stats = cache.stats();
            assert_eq!((stats.hits, stats.misses, stats.writes), (1, 1, 1));
            cache.shutdown();
            node.shutdown().await;
        });
    });
    let values: std::collections::HashMap<(String, Vec<(String, String)>), DebugValue> =
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                ((key.name().to_owned(), labels), value)
            })
            .collect();
    // Labelled by node as the runtime's series are: two nodes of one process keep apart.
    let at = |name: &str| {
        values.get(&(
            name.to_owned(),
            vec![
                ("node".to_owned(), "metering-node".to_owned()),
                ("cache".to_owned(), "metered".to_owned()),
            ],
        ))
    };
    assert_eq!(
        at("foundation_cache_hits_total"),
        Some(&DebugValue::Counter(1)),
        "{values:?}"
    );
    assert_eq!(
        at("foundation_cache_misses_total"),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        at("foundation_cache_writes_total"),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        at("foundation_cache_evictions_total"),
        Some(&DebugValue::Counter(0))
    );
    assert_eq!(
        at("foundation_cache_sync_malformed_total"),
        Some(&DebugValue::Counter(0))
    );
    assert_eq!(
        at("foundation_cache_codec_errors_total"),
        Some(&DebugValue::Counter(0))
    );
}

/// A service whose lookups are cached by `#[cached]`.
struct Directory {
    cache: Local<(u32, String), String>,
    lookups: AtomicU32,
}

impl Directory {
    /// The key is the two arguments, as a tuple.
    #[foundation_cache::cached(cache = self.cache, ttl = Duration::from_secs(60))]
    async fn lookup(&self, team: u32, name: String) -> Result<String, String> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if name == "nobody" {
            return Err(format!("no {name} in team {team}"));
        }
        let upper = name.to_uppercase();
        Ok(format!("{team}/{upper}"))
    }
}

#[tokio::test]
async fn cached_functions_read_through_the_cache_and_never_cache_an_error() {
    let dir = Directory {
        cache: Local::builder().max_entries(100).build().unwrap(),
        lookups: AtomicU32::new(0),
    };
    assert_eq!(dir.lookup(1, "ada".into()).await.unwrap(), "1/ADA");
    assert_eq!(dir.lookup(1, "ada".into()).await.unwrap(), "1/ADA");
    assert_eq!(dir.lookup(2, "ada".into()).await.unwrap(), "2/ADA");
    assert_eq!(dir.lookups.load(Ordering::SeqCst), 2);
    // The TTL given to the attribute.
    assert!(matches!(
        dir.cache.ttl(&(1, "ada".into())).await.unwrap(),
        Some(foundation_cache::TtlLeft::After(d)) if d <= Duration::from_secs(60)
    ));
    // An error is returned as it is, and not cached: the next call runs again.
    assert!(dir.lookup(1, "nobody".into()).await.is_err());
    assert!(dir.lookup(1, "nobody".into()).await.is_err());
    assert_eq!(dir.lookups.load(Ordering::SeqCst), 4);
    // The helper: the same, by hand.
    let v = cached(&dir.cache, (9, "x".into()), Ttl::Default, || async {
        Ok::<_, String>("computed".to_owned())
    })
    .await
    .unwrap();
    assert_eq!(v, "computed");
    assert_eq!(dir.cache.stats().writes, 3);
}
