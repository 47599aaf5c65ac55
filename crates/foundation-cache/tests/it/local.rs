//! The local adapter through the `Cache` trait: every operation, TTLs and their bad
//! input, bounds, counters.

use std::time::{Duration, Instant};

use foundation_cache::{Cache, CacheError, Local, Stats, Ttl, TtlError, TtlLeft};
use futures::StreamExt;

use crate::support::now;

fn cache<V: Clone + Send + Sync + 'static>() -> Local<u32, V> {
    Local::builder().max_entries(1_000).build().unwrap()
}

/// Sleeps long enough for a 1 ms TTL to have run out (more on a loaded machine only makes
/// it more certain).
fn past_a_millisecond() {
    std::thread::sleep(Duration::from_millis(20));
}

const MS: Ttl = Ttl::Live(Duration::from_millis(1));
const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn put_get_take_delete_and_contains() {
    let c = cache::<String>();
    assert_eq!(now(c.get(&1)), Ok(None));
    now(c.put(1, "a".into(), Ttl::Default)).unwrap();
    assert_eq!(now(c.get(&1)), Ok(Some("a".into())));
    assert_eq!(now(c.contains(&1)), Ok(true));
    now(c.put(1, "b".into(), Ttl::Default)).unwrap();
    assert_eq!(now(c.take(&1)), Ok(Some("b".into())));
    assert_eq!(now(c.take(&1)), Ok(None));
    now(c.put(2, "c".into(), Ttl::Never)).unwrap();
    now(c.delete(&2)).unwrap();
    assert_eq!(now(c.contains(&2)), Ok(false));
    now(c.delete(&2)).unwrap();
}

#[test]
fn put_new_writes_only_over_nothing_and_replace_only_over_something() {
    let c = cache::<u8>();
    assert_eq!(now(c.replace(1, 1, Ttl::Default)), Ok(false));
    assert_eq!(now(c.get(&1)), Ok(None));
    assert_eq!(now(c.put_new(1, 1, Ttl::Default)), Ok(true));
    assert_eq!(now(c.put_new(1, 2, Ttl::Default)), Ok(false));
    assert_eq!(now(c.get(&1)), Ok(Some(1)));
    assert_eq!(now(c.replace(1, 3, Ttl::Default)), Ok(true));
    assert_eq!(now(c.get(&1)), Ok(Some(3)));
    // An expired entry is nothing: put_new writes over it, replace does not.
    now(c.put(2, 1, MS)).unwrap();
    past_a_millisecond();
    assert_eq!(now(c.replace(2, 2, Ttl::Default)), Ok(false));
    assert_eq!(now(c.put_new(2, 2, Ttl::Default)), Ok(true));
    assert_eq!(now(c.get(&2)), Ok(Some(2)));
}

#[test]
fn put_many_and_get_many_keep_the_keys_order() {
    let c = cache::<u32>();
    now(c.put_many((0..10).map(|k| (k, k * 10)), Ttl::Default)).unwrap();
    let got = now(c.get_many(&[3, 42, 0, 9])).unwrap();
    assert_eq!(got, vec![Some(30), None, Some(0), Some(90)]);
}

#[test]
fn incr_and_decr_count_from_zero_and_refuse_to_overflow() {
    let c = cache::<u8>();
    assert_eq!(now(c.incr(1, 200, Ttl::Default)), Ok(200));
    let over = now(c.incr(1, 100, Ttl::Default));
    assert_eq!(
        over,
        Err(CacheError::Overflow {
            by: 100,
            counter: "u8"
        })
    );
    assert_eq!(
        over.unwrap_err().to_string(),
        "the counter would overflow: adding 100 leaves the range of `u8`; it is unchanged"
    );
    assert_eq!(
        now(c.get(&1)),
        Ok(Some(200)),
        "unchanged by the refused incr"
    );
    assert_eq!(now(c.decr(1, 50, Ttl::Default)), Ok(150));
    assert_eq!(
        now(c.decr(2, 1, Ttl::Default)),
        Err(CacheError::Overflow {
            by: -1,
            counter: "u8"
        })
    );
    assert_eq!(now(c.get(&2)), Ok(None));
    let signed = cache::<i64>();
    assert_eq!(now(signed.decr(1, 5, Ttl::Default)), Ok(-5));
    assert_eq!(
        now(signed.decr(1, i64::MIN, Ttl::Default)),
        Err(CacheError::Overflow {
            by: -i128::from(i64::MIN),
            counter: "i64"
        })
    );
}

#[test]
fn concurrent_incrs_lose_no_update() {
    let c = cache::<u64>();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..500 {
                    now(c.incr(7, 1, Ttl::Default)).unwrap();
                }
            });
        }
    });
    assert_eq!(now(c.get(&7)), Ok(Some(2_000)));
}

#[test]
fn an_existing_counter_keeps_its_deadline() {
    let c = cache::<u64>();
    now(c.incr(1, 1, Ttl::Live(HOUR))).unwrap();
    now(c.incr(1, 1, Ttl::Never)).unwrap();
    assert!(matches!(now(c.ttl(&1)), Ok(Some(TtlLeft::After(d))) if d <= HOUR));
    now(c.incr(2, 1, MS)).unwrap();
    past_a_millisecond();
    assert_eq!(now(c.get(&2)), Ok(None));
}

#[test]
fn zero_and_overlong_ttls_are_refused_and_nothing_is_written() {
    let c = cache::<u32>();
    let long = Ttl::MAX + Duration::from_secs(1);
    for (ttl, error) in [
        (Ttl::Live(Duration::ZERO), TtlError::Zero),
        (Ttl::Idle(Duration::ZERO), TtlError::Zero),
        (Ttl::Live(long), TtlError::TooLong(long)),
        (Ttl::Idle(Duration::MAX), TtlError::TooLong(Duration::MAX)),
    ] {
        let refused = Err(CacheError::InvalidTtl(error));
        assert_eq!(now(c.put(1, 1, ttl)), refused);
        assert_eq!(now(c.put_new(1, 1, ttl)), refused.clone().map(|()| false));
        assert_eq!(now(c.put_many([(1, 1)], ttl)), refused);
        assert_eq!(now(c.incr(1, 1, ttl)), refused.clone().map(|()| 0));
        assert_eq!(now(c.get(&1)), Ok(None));
        now(c.put(2, 2, Ttl::Never)).unwrap();
        assert_eq!(now(c.replace(2, 3, ttl)), refused.clone().map(|()| false));
        assert_eq!(now(c.expire(&2, ttl)), refused.clone().map(|()| false));
        assert_eq!(now(c.get(&2)), Ok(Some(2)));
        assert_eq!(now(c.ttl(&2)), Ok(Some(TtlLeft::Never)));
    }
    let built = Local::<u32, u32>::builder()
        .default_ttl(Ttl::Live(Duration::ZERO))
        .build();
    assert_eq!(built.err(), Some(TtlError::Zero));
}

#[test]
fn entries_expire_after_their_ttl_and_expirations_are_counted() {
    let c = cache::<u32>();
    now(c.put(1, 1, MS)).unwrap();
    now(c.put(2, 2, Ttl::Idle(Duration::from_millis(1)))).unwrap();
    now(c.put(3, 3, Ttl::Live(HOUR))).unwrap();
    past_a_millisecond();
    assert_eq!(now(c.get(&1)), Ok(None));
    assert_eq!(now(c.get(&2)), Ok(None));
    assert_eq!(now(c.contains(&1)), Ok(false));
    assert_eq!(now(c.get(&3)), Ok(Some(3)));
    // moka removes an expired entry (and its listener counts it) at the first
    // housekeeping after its timer wheel's bucket passes, about a second after its
    // deadline; nothing can be awaited for it, so run the housekeeping until then.
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.stats().expirations < 2 {
        assert!(Instant::now() < deadline, "{:?}", c.stats());
        std::thread::sleep(Duration::from_millis(50));
        c.run_pending_tasks();
    }
    assert_eq!(c.stats().expirations, 2);
    assert_eq!(now(c.len()), Ok(1));
}

#[test]
fn ttl_reports_what_is_left_and_expire_and_touch_restart_the_clock() {
    let c: Local<u32, u32> = Local::builder()
        .max_entries(10)
        .default_ttl(Ttl::Live(HOUR))
        .build()
        .unwrap();
    now(c.put(1, 1, Ttl::Default)).unwrap();
    now(c.put(2, 2, Ttl::Never)).unwrap();
    now(c.put(3, 3, Ttl::Idle(HOUR))).unwrap();
    let left = |k| match now(c.ttl(&k)) {
        Ok(Some(TtlLeft::After(d))) => d,
        other => panic!("key {k}: {other:?}"),
    };
    assert!(left(1) <= HOUR && left(1) > HOUR / 2);
    assert_eq!(now(c.ttl(&2)), Ok(Some(TtlLeft::Never)));
    assert_eq!(
        left(3),
        HOUR,
        "an idle entry's ttl is a read: the full idle time"
    );
    assert_eq!(now(c.ttl(&4)), Ok(None));

    // expire: a new TTL from now; an entry that never expired now does.
    assert_eq!(now(c.expire(&2, MS)), Ok(true));
    assert_eq!(now(c.expire(&4, MS)), Ok(false));
    past_a_millisecond();
    assert_eq!(now(c.get(&2)), Ok(None));
    assert_eq!(now(c.expire(&1, Ttl::Never)), Ok(true));
    assert_eq!(now(c.ttl(&1)), Ok(Some(TtlLeft::Never)));

    // touch: the clock restarts with the entry's own TTL.
    now(c.put(5, 5, Ttl::Live(Duration::from_secs(2)))).unwrap();
    assert_eq!(now(c.touch(&5)), Ok(true));
    assert!(left(5) <= Duration::from_secs(2));
    assert_eq!(now(c.touch(&6)), Ok(false));
    now(c.put(7, 7, MS)).unwrap();
    past_a_millisecond();
    assert_eq!(
        now(c.touch(&7)),
        Ok(false),
        "an expired entry is not touched back"
    );
}

#[test]
fn the_entry_bound_holds_under_a_flood_of_distinct_keys() {
    let c: Local<u32, u32> = Local::builder().max_entries(100).build().unwrap();
    for k in 0..10_000 {
        now(c.put(k, k, Ttl::Default)).unwrap();
    }
    c.run_pending_tasks();
    let len = now(c.len()).unwrap();
    assert!(len <= 100, "{len} entries");
    let stats = c.stats();
    assert_eq!(stats.writes, 10_000);
    assert!(stats.evictions >= 10_000 - 100, "{stats:?}");
}

#[test]
fn without_eviction_counts_the_bound_holds_and_evictions_stay_at_zero() {
    let c: Local<u32, u32> = Local::builder()
        .max_entries(100)
        .count_evictions(false)
        .build()
        .unwrap();
    for k in 0..1_000 {
        now(c.put(k, k, Ttl::Default)).unwrap();
    }
    assert!(now(c.len()).unwrap() <= 100);
    assert_eq!((c.stats().writes, c.stats().evictions), (1_000, 0));
}

#[test]
fn the_weight_bound_holds_under_a_flood_of_distinct_keys() {
    let c: Local<u32, Vec<u8>> = Local::builder()
        .max_weight(10_000, |_, v: &Vec<u8>| v.len() as u32)
        .build()
        .unwrap();
    for k in 0..5_000 {
        now(c.put(k, vec![0; 100], Ttl::Default)).unwrap();
    }
    c.run_pending_tasks();
    assert!(c.weighted_size() <= 10_000, "{}", c.weighted_size());
    assert!(now(c.len()).unwrap() <= 100);
}

#[test]
fn lru_admits_every_new_entry() {
    let c: Local<u32, u32> = Local::builder().max_entries(10).lru().build().unwrap();
    for k in 0..100 {
        now(c.put(k, k, Ttl::Default)).unwrap();
        c.run_pending_tasks();
    }
    assert_eq!(now(c.get(&99)), Ok(Some(99)));
}

#[test]
fn streams_yield_every_live_entry_once_and_clear_empties_the_cache() {
    let c = cache::<u32>();
    now(c.put_many((0..100).map(|k| (k, k + 1)), Ttl::Default)).unwrap();
    now(c.put(1_000, 0, MS)).unwrap();
    past_a_millisecond();
    let mut keys: Vec<u32> =
        futures::executor::block_on(c.stream_keys().map(Result::unwrap).collect());
    keys.sort_unstable();
    assert_eq!(keys, (0..100).collect::<Vec<_>>());
    let mut entries: Vec<(u32, u32)> =
        futures::executor::block_on(c.stream().map(Result::unwrap).collect());
    entries.sort_unstable();
    assert_eq!(entries, (0..100).map(|k| (k, k + 1)).collect::<Vec<_>>());
    assert_eq!(now(c.is_empty()), Ok(false));
    now(c.clear()).unwrap();
    assert_eq!(now(c.len()), Ok(0));
    assert_eq!(now(c.get(&5)), Ok(None));
}

#[test]
fn reads_and_writes_are_counted() {
    let c = cache::<u32>();
    now(c.put(1, 1, Ttl::Default)).unwrap();
    now(c.put_many([(2, 2), (3, 3)], Ttl::Default)).unwrap();
    now(c.get(&1)).unwrap();
    now(c.get(&9)).unwrap();
    now(c.get_many(&[2, 8])).unwrap();
    now(c.take(&3)).unwrap();
    now(c.contains(&1)).unwrap();
    now(c.ttl(&1)).unwrap();
    assert_eq!(now(c.put_new(1, 5, Ttl::Default)), Ok(false));
    now(c.incr(4, 1, Ttl::Default)).unwrap();
    assert_eq!(
        c.stats(),
        Stats {
            hits: 3,
            misses: 2,
            writes: 4,
            evictions: 0,
            expirations: 0
        }
    );
}

#[test]
fn handles_and_futures_are_send_sync_and_clone() {
    fn send_sync_clone<T: Send + Sync + Clone>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let c = cache::<String>();
    send_sync_clone(&c);
    send(&c.get(&1));
    send(&c.put(1, String::new(), Ttl::Default));
    send(&c.stream());
    send(&c.get_or_compute(1, Ttl::Default, || async {
        Ok::<_, std::convert::Infallible>(String::new())
    }));
    // A clone is a handle to the same cache.
    let other = c.clone();
    now(other.put(1, "x".into(), Ttl::Default)).unwrap();
    assert_eq!(now(c.get(&1)), Ok(Some("x".into())));
}

/// One operation of the model-based test.
#[derive(Debug, Clone)]
enum Op {
    Put(u8, u16),
    PutNew(u8, u16),
    Replace(u8, u16),
    Delete(u8),
    Take(u8),
    Incr(u8, i8),
    Get(u8),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let k = 0..8u8;
    prop_oneof![
        (k.clone(), any::<u16>()).prop_map(|(k, v)| Op::Put(k, v)),
        (k.clone(), any::<u16>()).prop_map(|(k, v)| Op::PutNew(k, v)),
        (k.clone(), any::<u16>()).prop_map(|(k, v)| Op::Replace(k, v)),
        k.clone().prop_map(Op::Delete),
        k.clone().prop_map(Op::Take),
        (k.clone(), any::<i8>()).prop_map(|(k, by)| Op::Incr(k, by)),
        k.prop_map(Op::Get),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// The local cache (entries that never expire, no bound reached) answers every
    /// operation as a `HashMap` does, and ends holding the same entries.
    #[test]
    fn the_local_cache_behaves_as_a_map(ops in proptest::collection::vec(op(), 0..60)) {
        use std::collections::HashMap;
        use proptest::prop_assert_eq;
        let c = cache::<u16>();
        let mut model: HashMap<u32, u16> = HashMap::new();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    now(c.put(k.into(), v, Ttl::Never)).unwrap();
                    model.insert(k.into(), v);
                }
                Op::PutNew(k, v) => {
                    let wrote = !model.contains_key(&k.into());
                    if wrote {
                        model.insert(k.into(), v);
                    }
                    prop_assert_eq!(now(c.put_new(k.into(), v, Ttl::Never)), Ok(wrote));
                }
                Op::Replace(k, v) => {
                    let wrote = model.contains_key(&k.into());
                    if wrote {
                        model.insert(k.into(), v);
                    }
                    prop_assert_eq!(now(c.replace(k.into(), v, Ttl::Never)), Ok(wrote));
                }
                Op::Delete(k) => {
                    model.remove(&k.into());
                    now(c.delete(&k.into())).unwrap();
                }
                Op::Take(k) => {
                    prop_assert_eq!(now(c.take(&k.into())), Ok(model.remove(&k.into())));
                }
                Op::Incr(k, by) => {
                    let current = model.get(&k.into()).copied().unwrap_or(0);
                    let expected = u16::try_from(i32::from(current) + i32::from(by)).ok();
                    let got = now(c.incr(k.into(), by.into(), Ttl::Never));
                    match expected {
                        Some(v) => {
                            model.insert(k.into(), v);
                            prop_assert_eq!(got, Ok(v));
                        }
                        None => prop_assert_eq!(got, Err(CacheError::Overflow { by: by.into(), counter: "u16" })),
                    }
                }
                Op::Get(k) => {
                    prop_assert_eq!(now(c.get(&k.into())), Ok(model.get(&k.into()).copied()));
                }
            }
        }
        let mut held: Vec<(u32, u16)> =
            futures::executor::block_on(c.stream().map(Result::unwrap).collect());
        held.sort_unstable();
        let mut expected: Vec<(u32, u16)> = model.into_iter().collect();
        expected.sort_unstable();
        prop_assert_eq!(held, expected);
    }
}
