//! The partitioned adapter and the near cache on one node (in this process): every
//! operation, bad input (keys over the limit, values that fail to encode or decode), and
//! the single flight. The multi-node behaviour is in `cluster`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use foundation_cache::{
    Cache, CacheError, CodecError, ComputeError, Multilevel, Partitioned, Ttl, TtlLeft,
};
use foundation_cluster::node::{Node, NodeConfig};
use futures::StreamExt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

async fn node(name: &str) -> Node {
    Node::start(NodeConfig::new(name, "cookie").listen("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_on_one_node() {
    let node = node("p1").await;
    let c: Partitioned<String, u64> = Partitioned::builder("ops")
        .replicas(1)
        .start(&node)
        .await
        .unwrap();
    assert_eq!(c.get(&"a".into()).await.unwrap(), None);
    c.put("a".into(), 1, Ttl::Default).await.unwrap();
    assert_eq!(c.get(&"a".into()).await.unwrap(), Some(1));
    assert!(!c.put_new("a".into(), 2, Ttl::Default).await.unwrap());
    assert!(c.put_new("b".into(), 2, Ttl::Default).await.unwrap());
    assert!(c.replace("b".into(), 3, Ttl::Default).await.unwrap());
    assert!(!c.replace("z".into(), 3, Ttl::Default).await.unwrap());
    assert_eq!(
        c.get_many(&["a".into(), "z".into(), "b".into()])
            .await
            .unwrap(),
        vec![Some(1), None, Some(3)]
    );
    c.put_many((0..10).map(|i| (format!("k{i}"), i)), Ttl::Default)
        .await
        .unwrap();
    assert_eq!(c.len().await.unwrap(), 12);
    assert_eq!(c.incr("n".into(), 5, Ttl::Default).await.unwrap(), 5);
    assert_eq!(c.decr("n".into(), 2, Ttl::Default).await.unwrap(), 3);
    assert_eq!(
        c.decr("n".into(), 4, Ttl::Default).await,
        Err(CacheError::Overflow {
            by: -4,
            counter: "u64"
        })
    );
    assert_eq!(c.get(&"n".into()).await.unwrap(), Some(3));
    assert_eq!(c.take(&"a".into()).await.unwrap(), Some(1));
    assert!(!c.contains(&"a".into()).await.unwrap());
    c.delete(&"b".into()).await.unwrap();
    assert_eq!(c.get(&"b".into()).await.unwrap(), None);
    assert_eq!(c.ttl(&"n".into()).await.unwrap(), Some(TtlLeft::Never));
    assert!(
        c.expire(&"n".into(), Ttl::Live(Duration::from_secs(100)))
            .await
            .unwrap()
    );
    assert!(
        matches!(c.ttl(&"n".into()).await.unwrap(), Some(TtlLeft::After(d)) if d <= Duration::from_secs(100))
    );
    assert!(c.touch(&"n".into()).await.unwrap());
    assert!(!c.touch(&"gone".into()).await.unwrap());
    assert!(matches!(
        c.put("t".into(), 1, Ttl::Live(Duration::ZERO)).await,
        Err(CacheError::InvalidTtl(_))
    ));
    let mut keys: Vec<String> = c.stream_keys().map(|k| k.unwrap()).collect().await;
    keys.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    want.push("n".into());
    want.sort();
    assert_eq!(keys, want);
    let total: u64 = c
        .stream()
        .map(|e| e.unwrap().1)
        .collect::<Vec<_>>()
        .await
        .iter()
        .sum();
    assert_eq!(total, 45 + 3);
    let s = c.stats();
    assert!(s.hits >= 4 && s.misses >= 2 && s.writes >= 14, "{s:?}");
    c.clear().await.unwrap();
    assert!(c.is_empty().await.unwrap());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_the_limit_is_refused_and_a_second_cache_of_one_name_too() {
    let node = node("p2").await;
    let c: Partitioned<String, u64> = Partitioned::builder("limit")
        .max_key_bytes(16)
        .start(&node)
        .await
        .unwrap();
    let long = "x".repeat(100);
    let refused = c.put(long.clone(), 1, Ttl::Default).await;
    assert_eq!(
        refused,
        Err(CacheError::KeyTooLarge {
            cache: "limit".into(),
            size: 101,
            limit: 16
        })
    );
    assert_eq!(
        refused.unwrap_err().to_string(),
        "cache `limit`: a key of 101 bytes (encoded) is over the limit of 16 bytes, set by the \
         cache's `max_key_bytes`"
    );
    assert!(matches!(
        c.get(&long).await,
        Err(CacheError::KeyTooLarge { .. })
    ));
    c.put("short".into(), 1, Ttl::Default).await.unwrap();
    assert_eq!(c.get(&"short".into()).await.unwrap(), Some(1));
    let again = Partitioned::<String, u64>::builder("limit")
        .start(&node)
        .await;
    assert!(matches!(
        again,
        Err(foundation_cache::StartError::NameTaken(_))
    ));
    node.shutdown().await;
}

/// Encodes as a string unless it is `Poison::Unwritable`; never decodes.
#[derive(Debug, Clone, PartialEq)]
enum Poison {
    Fine,
    Unwritable,
}

impl Serialize for Poison {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Poison::Fine => s.serialize_str("fine"),
            Poison::Unwritable => Err(serde::ser::Error::custom("cannot write this one")),
        }
    }
}

impl<'de> Deserialize<'de> for Poison {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "fine" {
            Err(serde::de::Error::custom("this one never reads back"))
        } else {
            Ok(Poison::Fine)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_fail_to_encode_or_decode_are_typed_errors_and_the_cache_goes_on() {
    let node = node("p3").await;
    let c: Partitioned<u32, Poison> = Partitioned::builder("poison").start(&node).await.unwrap();
    let e = c.put(1, Poison::Unwritable, Ttl::Default).await;
    assert_eq!(
        e,
        Err(CacheError::Codec(CodecError::Serialize {
            what: "value",
            type_name: "it::partitioned::Poison",
            reason: "cannot write this one".into(),
        }))
    );
    assert_eq!(
        e.unwrap_err().to_string(),
        "a value of type `it::partitioned::Poison` failed to serialize: cannot write this one"
    );
    assert!(
        !c.contains(&1).await.unwrap(),
        "a refused write wrote nothing"
    );
    c.put(2, Poison::Fine, Ttl::Default).await.unwrap();
    let e = c.get(&2).await;
    assert!(
        matches!(
            e,
            Err(CacheError::Codec(CodecError::Deserialize {
                what: "value",
                ..
            }))
        ),
        "{e:?}"
    );
    // Still usable.
    assert!(c.contains(&2).await.unwrap());
    c.delete(&2).await.unwrap();
    assert_eq!(c.len().await.unwrap(), 0);
    // A computed value that cannot be encoded: the caller gets the codec error, nothing
    // is cached, and the key can be computed again.
    let e = c
        .get_or_compute(3, Ttl::Default, || async {
            Ok::<_, std::convert::Infallible>(Poison::Unwritable)
        })
        .await;
    assert!(
        matches!(&e, Err(ComputeError::Cache(CacheError::Codec(CodecError::Serialize { reason, .. }))) if reason == "cannot write this one"),
        "{e:?}"
    );
    assert!(!c.contains(&3).await.unwrap());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_compute_once_and_a_failure_caches_nothing() {
    let node = node("p4").await;
    let c: Partitioned<u32, String> = Partitioned::builder("flight").start(&node).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::new();
    for _ in 0..20 {
        let c = c.clone();
        let runs = Arc::clone(&runs);
        waiters.push(tokio::spawn(async move {
            c.get_or_compute(7, Ttl::Default, move || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, std::io::Error>("seven".to_owned())
            })
            .await
            .unwrap()
        }));
    }
    for w in waiters {
        assert_eq!(w.await.unwrap(), "seven");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(c.get(&7).await.unwrap().as_deref(), Some("seven"));

    // The callers on the computing node get the error itself, its message and the node.
    let failed = c
        .get_or_compute(8, Ttl::Default, || async { Err::<String, _>("no row 8") })
        .await;
    assert!(
        matches!(&failed, Err(ComputeError::Compute { message, node: Some(n), error: Some(e) })
            if message == "no row 8" && n == "p4" && **e == "no row 8"),
        "{failed:?}"
    );
    assert_eq!(
        failed.unwrap_err().to_string(),
        "the compute function failed on node `p4`: no row 8"
    );
    assert_eq!(c.get(&8).await.unwrap(), None);
    let panicked = c
        .get_or_compute(8, Ttl::Default, || async { panic!("boom") })
        .await;
    assert!(
        matches!(&panicked, Err(ComputeError::<String>::Panicked { message, node: Some(n) })
            if message == "boom" && n == "p4"),
        "{panicked:?}"
    );
    let ok = c
        .get_or_compute(8, Ttl::Default, || async {
            Ok::<_, String>("eight".to_owned())
        })
        .await;
    assert_eq!(ok.unwrap(), "eight");
    // A caller dropped mid-computation leaves no claim behind: the next one computes.
    let pending = c.get_or_compute(9, Ttl::Default, || {
        futures::future::pending::<Result<String, String>>()
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(200), pending)
            .await
            .is_err()
    );
    let again = c.get_or_compute(9, Ttl::Default, || async {
        Ok::<_, String>("nine".to_owned())
    });
    let again = tokio::time::timeout(Duration::from_secs(30), again).await;
    assert_eq!(again.unwrap().unwrap(), "nine");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_cache_reads_through_and_keeps_what_it_read() {
    let node = node("p5").await;
    let pubsub = foundation_pubsub::PubSub::start(&node, "near-ps")
        .await
        .unwrap();
    let l2: Partitioned<u64, String> = Partitioned::builder("near-one").start(&node).await.unwrap();
    let near = Multilevel::builder("near-one")
        .start(&pubsub, l2.clone())
        .await
        .unwrap();
    near.put(1, "one".into(), Ttl::Default).await.unwrap();
    assert_eq!(
        near.l1().get(&1).await.unwrap(),
        None,
        "a write drops the L1 entry"
    );
    assert_eq!(near.get(&1).await.unwrap().as_deref(), Some("one"));
    assert_eq!(near.l1().get(&1).await.unwrap().as_deref(), Some("one"));
    assert_eq!(near.get(&1).await.unwrap().as_deref(), Some("one"));
    near.put(1, "uno".into(), Ttl::Default).await.unwrap();
    assert_eq!(near.get(&1).await.unwrap().as_deref(), Some("uno"));
    near.delete(&1).await.unwrap();
    assert_eq!(near.get(&1).await.unwrap(), None);
    let v = near
        .get_or_compute(5, Ttl::Default, || async {
            Ok::<_, String>("five".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(v, "five");
    assert_eq!(l2.get(&5).await.unwrap().as_deref(), Some("five"));
    near.clear().await.unwrap();
    assert!(near.is_empty().await.unwrap());
    node.shutdown().await;
}
