//! The runtime from outside: started as an application starts it, read over its HTTP
//! endpoint with a real client, two nodes over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests unwrap: a failure is the point

use std::net::SocketAddr;
use std::time::Duration;

use foundation::prelude::*;
use foundation::runtime::{ConfigError, PartError, StartError};

/// An HTTP GET, blocking (on a blocking thread): status, `traceparent` header, body.
async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let url = format!("http://{addr}{path}");
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into();
        let mut req = agent.get(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let mut resp = req.call().expect("the endpoint answers");
        let status = resp.status().as_u16();
        let trace = resp
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        (status, trace, body)
    })
    .await
    .unwrap()
}

fn single() -> foundation::runtime::Builder {
    Foundation::builder()
        .no_config_file()
        .env([("RUNTIME_TEST", "1")])
        .handle_signals(false)
        .cookie("runtime-test")
        .cluster(Discovery::None)
        .listen("127.0.0.1:0".parse().unwrap())
        .http_listen("127.0.0.1:0".parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_serves_health_metrics_cluster_and_the_dashboard_and_stops_in_order() {
    let app = single()
        .node_name("solo")
        .set("http.token", "t0ken")
        .start()
        .await
        .unwrap();
    let http = app.http_addr().unwrap();
    assert!(app.is_ready());

    // Probes need no token.
    assert_eq!(get(http, "/health/live", &[]).await.0, 200);
    assert_eq!(get(http, "/health/ready", &[]).await.0, 200);

    // Nor does the dashboard's page, which holds no data.
    assert_eq!(get(http, "/dashboard", &[]).await.0, 200);
    // Everything else does.
    for path in ["/metrics", "/cluster", "/cluster/node"] {
        let (status, _, body) = get(http, path, &[]).await;
        assert_eq!(status, 401, "{path} without a token");
        assert!(body.contains("is required"), "{body}");
        let wrong = [("Authorization", "Bearer nope")];
        let (status, _, body) = get(http, path, &wrong).await;
        assert_eq!(status, 401, "{path} with a wrong token");
        assert!(body.contains("is wrong"), "{body}");
    }
    let auth = ("Authorization", "Bearer t0ken");

    // Parts made through the runtime show in the report and in the metrics.
    let cache = app.cache::<String, u64>("sessions").unwrap();
    cache.put("a".to_owned(), 1, Ttl::Default).await.unwrap();
    assert_eq!(cache.get(&"a".to_owned()).await.unwrap(), Some(1));
    assert_eq!(cache.get(&"b".to_owned()).await.unwrap(), None);
    assert!(matches!(
        app.cache::<String, String>("sessions"),
        Err(PartError::CacheTypes(name)) if name == "sessions"
    ));
    let topic: Topic<String> = Topic::new("news").unwrap();
    let _sub = app.pubsub().subscribe_stream(&topic).unwrap();

    // The scheme's name is case-insensitive.
    assert_eq!(
        get(http, "/cluster/node", &[("Authorization", "bearer t0ken")])
            .await
            .0,
        200
    );
    let (status, _, metrics) = get(http, "/metrics", &[auth]).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("foundation_members_up{node=\"solo\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("foundation_cache_hit_ratio{node=\"solo\",cache=\"sessions\"} 0.5"),
        "{metrics}"
    );
    assert!(metrics.contains("foundation_restarts_total"), "{metrics}");

    // The cluster as JSON, and a trace that comes in through HTTP goes back out.
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, trace, body) = get(http, "/cluster", &[auth, ("traceparent", incoming)]).await;
    assert_eq!(status, 200);
    let trace = trace.expect("a traceparent comes back");
    assert!(
        trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
            && !trace.contains("00f067aa0ba902b7"),
        "the trace continues with a span of its own: {trace}"
    );
    let info: ClusterInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(info.nodes.len(), 1);
    let me = info.nodes[0].info.as_ref().unwrap();
    assert_eq!(me.name, "solo");
    assert_eq!(me.discovery, "none");
    assert_eq!(me.topics, vec![("news".to_owned(), 1)]);
    assert_eq!(me.caches[0].name, "sessions");
    assert_eq!((me.caches[0].hits, me.caches[0].misses), (1, 1));

    let (status, _, page) = get(http, "/dashboard", &[auth]).await;
    assert_eq!(status, 200);
    assert!(page.contains("nodes-up"), "{page}");

    // Shutdown: stopped resolves, the endpoint goes away, parts refuse.
    app.shutdown().await;
    tokio::time::timeout(Duration::from_secs(10), app.stopped())
        .await
        .expect("stopped after shutdown");
    assert!(!app.is_ready());
    assert!(app.node().is_shut_down());
    assert!(matches!(
        app.registry::<String, TallyMsg>("late").await,
        Err(PartError::ShutDown)
    ));
    assert!(matches!(
        app.cache::<String, u64>("late"),
        Err(PartError::ShutDown)
    ));
    let refused = tokio::task::spawn_blocking(move || {
        std::net::TcpStream::connect_timeout(&http, Duration::from_secs(2)).is_err()
    });
    // The listener closes once its last connection ends; give it a moment.
    let mut closed = refused.await.unwrap();
    for _ in 0..50 {
        if closed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        closed = tokio::task::spawn_blocking(move || {
            std::net::TcpStream::connect_timeout(&http, Duration::from_secs(2)).is_err()
        })
        .await
        .unwrap();
    }
    assert!(closed, "the HTTP endpoint still accepts after shutdown");
    // A second shutdown returns at once.
    tokio::time::timeout(Duration::from_secs(5), app.shutdown())
        .await
        .unwrap();
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(crate = "foundation::serde")]
struct Tally {
    n: u64,
}

#[actor(remote = "runtime-test.Tally", handoff)]
impl Tally {
    #[cast(tag = 1)]
    fn add(&mut self, k: u64) {
        self.n += k;
    }
    #[call(tag = 2)]
    fn total(&self) -> u64 {
        self.n
    }
}

/// The singleton's total, asked until it answers (20 s at most).
async fn total_of(sup: &DistributedSupervisor<TallyMsg>) -> Option<u64> {
    for _ in 0..200 {
        if let Ok(t) = sup
            .call("hits", TallyMsg::Total, Duration::from_secs(2))
            .await
        {
            return Some(t);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_see_each_other_and_a_graceful_shutdown_hands_the_singleton_off() {
    let a = single()
        .node_name("a")
        .cluster_name("rt-two")
        .start()
        .await
        .unwrap();
    let b = single()
        .node_name("b")
        .cluster_name("rt-two")
        .cluster(Discovery::Static)
        .peers([a.node().advertised()])
        .start()
        .await
        .unwrap();
    assert_eq!(b.config().discovery, Discovery::Static);
    a.node()
        .wait_for("b", Duration::from_secs(20))
        .await
        .unwrap();
    b.node()
        .wait_for("a", Duration::from_secs(20))
        .await
        .unwrap();

    let spec = || {
        DistributedSpec::new("tallies")
            .handoff_kind("tally", |(): ()| (Tally::handoff_actor(), Tally::default()))
    };
    let sup_a = a.supervisor(spec()).await.unwrap();
    let sup_b = b.supervisor(spec()).await.unwrap();
    sup_a
        .start_child(
            "tally",
            &(),
            ChildPlacement::new("hits", Placement::Singleton),
        )
        .await
        .unwrap();
    sup_a.cast("hits", TallyMsg::Add(5)).unwrap();
    // b learns the name as the registry replicates it.
    assert_eq!(total_of(&sup_b).await, Some(5));

    // A replicated cache and a work ecosystem, made through the runtime on both nodes.
    let cache_a = a
        .replicated_cache::<String, String>("shared")
        .await
        .unwrap();
    let cache_b = b
        .replicated_cache::<String, String>("shared")
        .await
        .unwrap();
    cache_a
        .put("k".into(), "v".into(), Ttl::Default)
        .await
        .unwrap();
    let mut seen = None;
    for _ in 0..200 {
        seen = cache_b.get(&"k".to_owned()).await.unwrap();
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.as_deref(), Some("v"), "a write on a is read on b");
    let spec = || {
        foundation::registry::work::WorkSpec::new("squares")
            .job("square", |n: u64| n * n)
            .reduce("sum", |x: u64, y: u64| x + y)
    };
    let work_a = a.work(spec()).await.unwrap();
    let _work_b = b.work(spec()).await.unwrap();
    let sum: Option<u64> = work_a
        .map_reduce("square", 1..=1000_u64, "sum")
        .await
        .unwrap();
    assert_eq!(sum, Some((1..=1000_u64).map(|n| n * n).sum()));

    // A service registered on a, seen in a's report.
    let services = a.services::<TallyMsg, ()>("services").await.unwrap();
    let _services_b = b.services::<TallyMsg, ()>("services").await.unwrap();
    let tally = Tally::spawn(Tally::default()).await.unwrap();
    services
        .register(
            "tally",
            tally.addr(),
            foundation::registry::services::Spec::new(()).capability("count"),
        )
        .unwrap();

    // Each node's report, gathered from the other over the network.
    let info = b.cluster_info().await;
    assert_eq!(info.cluster_name, "rt-two");
    let names: Vec<&str> = info.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["b", "a"]);
    assert_eq!(info.up().count(), 2);
    let from_a = info.nodes[1].info.as_ref().expect("a answered");
    assert_eq!(from_a.supervisors[0].name, "tallies");
    assert_eq!(from_a.supervisors[0].children[0].id, "hits");
    assert_eq!(from_a.members, vec![("b".to_owned(), "up".to_owned())]);
    assert_eq!(from_a.services[0].services[0].name, "tally");
    assert_eq!(
        from_a.services[0].services[0].instances,
        vec![("a".to_owned(), vec!["count".to_owned()])]
    );
    assert_eq!(from_a.caches[0].name, "shared");
    assert_eq!(from_a.caches[0].kind, "replicated");
    assert_eq!(from_a.work[0].name, "squares");
    assert!(
        from_a.work[0].ran_here > 0 || info.nodes[0].info.as_ref().unwrap().work[0].ran_here > 0
    );

    // The node running the singleton leaves: it is handed off with its state.
    let owner = sup_a.whereis("hits").unwrap().node().to_owned();
    let (leaving, staying, sup_staying) = if owner == "a" {
        (&a, &b, &sup_b)
    } else {
        (&b, &a, &sup_a)
    };
    leaving.shutdown().await;
    assert_eq!(
        total_of(sup_staying).await,
        Some(5),
        "the singleton came back with its state"
    );
    // The node that left goes from the view, or is listed as not up, once its leave
    // reaches the other.
    let mut info = staying.cluster_info().await;
    for _ in 0..100 {
        if info.up().count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        info = staying.cluster_info().await;
    }
    assert_eq!(info.up().count(), 1, "{info:?}");
    assert!(info.up().all(|n| n.name != owner), "{info:?}");
    staying.shutdown().await;
}

/// Two runtimes of cluster `cluster`: `first`, then `second` seeded with it (static
/// discovery); returns once each sees the other.
async fn pair(first: &str, second: &str, cluster: &str) -> (Foundation, Foundation) {
    let a = single()
        .node_name(first)
        .cluster_name(cluster)
        .start()
        .await
        .unwrap();
    let b = single()
        .node_name(second)
        .cluster_name(cluster)
        .cluster(Discovery::Static)
        .peers([a.node().advertised()])
        .start()
        .await
        .unwrap();
    for (from, to) in [(&a, second), (&b, first)] {
        from.node()
            .wait_for(to, Duration::from_secs(20))
            .await
            .unwrap();
    }
    (a, b)
}

/// A process that holds each note in its handler until its gate lets one through.
struct Gated {
    gate: std::sync::Arc<tokio::sync::Semaphore>,
}

#[actor(remote = "runtime-test.Gated")]
impl Gated {
    #[cast(tag = 1)]
    async fn hold(&mut self, _note: u64) {
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
    }
}

/// The value of the series `series` (its name and labels, as the exposition prints them).
fn value_of(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls `f` until it gives something (60 s at most, else fails with `what`).
async fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fetches `/metrics` until `done` holds of it (60 s at most, else fails with `what`).
async fn metrics_until(http: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, metrics) = get(http, "/metrics", &[]).await;
        assert_eq!(status, 200);
        if done(&metrics) {
            return metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}, never seen in:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two runtimes of one process (as tests and demos run them): each series is its node's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_in_one_process_keep_their_series_apart_and_every_family_has_help() {
    let (a, b) = pair("ls-a", "ls-b", "rt-labels").await;
    let http = a.http_addr().unwrap();

    // Each runtime's pubsub has series of its own: two subscriptions on a, none on b.
    let topic: Topic<String> = Topic::new("labelled-news").unwrap();
    let _one = a.pubsub().subscribe_stream(&topic).unwrap();
    let _two = a.pubsub().subscribe_stream(&topic).unwrap();
    let subscriptions = |node: &str| {
        format!("foundation_pubsub_subscriptions{{node=\"{node}\",pubsub=\"foundation\"}}")
    };
    let (_, _, metrics) = get(http, "/metrics", &[]).await;
    let on_a = value_of(&metrics, &subscriptions("ls-a"));
    let on_b = value_of(&metrics, &subscriptions("ls-b"));
    assert!(
        on_a.is_some() && on_b.is_some(),
        "a series per node:\n{metrics}"
    );
    assert_eq!(on_a.unwrap() - on_b.unwrap(), 2.0, "{metrics}");

    // Every family in the exposition has its HELP line.
    let helped: std::collections::HashSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP ")?.split_whitespace().next())
        .collect();
    let families: Vec<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next())
        .collect();
    assert!(
        families.contains(&"foundation_members_up")
            && families.contains(&"foundation_pubsub_subscriptions"),
        "{metrics}"
    );
    let undescribed: Vec<&&str> = families.iter().filter(|f| !helped.contains(*f)).collect();
    assert!(
        undescribed.is_empty(),
        "families without HELP: {undescribed:?}\n{metrics}"
    );

    b.shutdown().await;
    a.shutdown().await;
}

/// The node counts what other nodes sent its exported processes and they have not handled:
/// `/metrics` and the node's report show it fill and drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_at_named_processes_show_as_mailbox_depths() {
    let (a, b) = pair("mb-a", "mb-b", "rt-mailbox").await;
    let http = a.http_addr().unwrap();

    // A process exported on a holds each note from b in its handler until its gate opens:
    // the notes wait in its mailbox, counted, and counted as messages from another node.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let gated = Gated::spawn(Gated { gate: gate.clone() }).await.unwrap();
    a.node()
        .export_with(
            "gate",
            gated.addr(),
            foundation::cluster::node::ExportConfig::new().max_queued(100),
        )
        .unwrap();
    const NOTES: u64 = 6;
    for i in 0..NOTES {
        b.node().send("mb-a", "gate", &GatedMsg::Hold(i)).unwrap();
    }
    let queued = "foundation_mailbox_queued{node=\"mb-a\"}";
    let deepest = "foundation_mailbox_queued_max{node=\"mb-a\"}";
    let from_peers = "foundation_mailbox_from_peers{node=\"mb-a\"}";
    // The first note is in the handler's hands: the others wait. All are from a peer.
    let waiting = NOTES - 1;
    let metrics = metrics_until(http, "the notes queued on a", |m| {
        value_of(m, queued).is_some_and(|v| v >= waiting as f64)
            && value_of(m, deepest) == Some(waiting as f64)
            && value_of(m, from_peers) == Some(NOTES as f64)
    })
    .await;
    for family in [
        "foundation_mailbox_queued",
        "foundation_mailbox_queued_max",
        "foundation_mailbox_from_peers",
    ] {
        assert!(
            metrics.contains(&format!("# HELP {family} ")),
            "{family} is described:\n{metrics}"
        );
    }
    // b's view of the cluster carries a's report, the gate its deepest mailbox.
    let info = b.cluster_info().await;
    let from_a = info
        .nodes
        .iter()
        .find(|n| n.name == "mb-a")
        .and_then(|n| n.info.as_ref())
        .expect("a answered");
    let top = from_a.mailboxes.first().expect("a reports its mailboxes");
    assert_eq!(
        (
            top.name.as_str(),
            top.queued,
            top.from_peers,
            top.max_queued
        ),
        ("gate", waiting as usize, NOTES as usize, 100),
        "{:?}",
        from_a.mailboxes
    );
    assert!(
        from_a.totals.mailbox_queued >= waiting,
        "{:?}",
        from_a.totals
    );
    // (b's question for this report is in a's hands too: at least the notes.)
    assert!(
        from_a.totals.mailbox_from_peers >= NOTES,
        "{:?}",
        from_a.totals
    );
    // The notes are counted as messages between the nodes, each way they went.
    assert!(b.node().stats().messages_out >= NOTES);
    assert!(a.node().stats().messages_in >= NOTES);
    let arrived = "foundation_messages_total{node=\"mb-a\",direction=\"in\"}";
    let value = value_of(&metrics, arrived);
    assert!(
        value.is_some_and(|v| v >= NOTES as f64),
        "{arrived} = {value:?}:\n{metrics}"
    );

    // The gate opens: the mailbox drains, and the depth goes back to nothing.
    gate.add_permits(NOTES as usize);
    metrics_until(http, "a's mailboxes drained", |m| {
        value_of(m, from_peers) == Some(0.0)
    })
    .await;
    assert!(
        a.node_info().mailboxes.iter().all(|m| m.name != "gate"),
        "{:?}",
        a.node_info().mailboxes
    );

    // A process named only in this OS process, fed only by local sends: its mailbox is
    // counted too (not as messages from peers).
    let local_gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let local = Gated::spawn(Gated {
        gate: local_gate.clone(),
    })
    .await
    .unwrap();
    local.addr().register("rt-mailbox-local").unwrap();
    for i in 0..4 {
        local.hold(i).await.unwrap();
    }
    let seen = wait_until("the local notes counted", || {
        a.node_info()
            .mailboxes
            .into_iter()
            .find(|m| m.name == "rt-mailbox-local" && m.queued == 3)
    })
    .await;
    assert_eq!((seen.from_peers, seen.max_queued), (0, 0), "{seen:?}");
    let m = metrics_until(http, "the local notes in the gauge", |m| {
        value_of(m, queued).is_some_and(|v| v >= 3.0)
    })
    .await;
    assert_eq!(value_of(&m, from_peers), Some(0.0), "{m}");
    local_gate.add_permits(4);
    wait_until("the local notes handled", || {
        (local.addr().queued() == 0).then_some(())
    })
    .await;

    b.shutdown().await;
    a.shutdown().await;
}

/// A `Foundation` dropped without `shutdown()` stops as `shutdown()` does: its node
/// leaves the cluster gracefully (its peer sees it leaving, then down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_dropped_without_shutdown_leaves_the_cluster_gracefully() {
    let (a, b) = pair("keeps", "drops", "rt-drop").await;
    let mut events = a.node().subscribe();
    drop(b);
    // It leaves: seen leaving first (its graceful leave), then down.
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = Vec::new();
        loop {
            use foundation::cluster::node::ClusterEvent;
            match events.recv().await {
                Ok(ClusterEvent::NodeLeaving(m)) if m.id == "drops" => seen.push("leaving"),
                Ok(ClusterEvent::NodeDown { member, .. }) if member.id == "drops" => {
                    seen.push("down");
                    return seen;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the dropped runtime's node went down");
    assert_eq!(seen, ["leaving", "down"]);
    // The member list follows the event.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while a.node().members().iter().any(|m| m.id == "drops") {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            a.node().members()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.shutdown().await;
}

/// A `shutdown()` whose caller gives up on it half-way (a timeout, a `select!`) still
/// stops the runtime all the way: its node leaves gracefully and `stopped()` resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_abandoned_half_way_still_leaves_and_stops() {
    use futures::FutureExt;
    let (a, b) = pair("stays", "abandons", "rt-abandon").await;
    let mut events = a.node().subscribe();
    // Polled once, then dropped: the leave (a round with the peer) cannot be done by then.
    assert!(
        b.shutdown().now_or_never().is_none(),
        "a shutdown finished in one poll: nothing was abandoned"
    );
    tokio::time::timeout(Duration::from_secs(30), b.stopped())
        .await
        .expect("the abandoned shutdown went on to the end");
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = Vec::new();
        loop {
            use foundation::cluster::node::ClusterEvent;
            match events.recv().await {
                Ok(ClusterEvent::NodeLeaving(m)) if m.id == "abandons" => seen.push("leaving"),
                Ok(ClusterEvent::NodeDown { member, .. }) if member.id == "abandons" => {
                    seen.push("down");
                    return seen;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("its node went down");
    assert_eq!(seen, ["leaving", "down"]);
    // Shutting down again returns at once.
    tokio::time::timeout(Duration::from_secs(5), b.shutdown())
        .await
        .unwrap();
    a.shutdown().await;
}

/// Sends `request` over a new connection from `from` and reads until the server closes
/// it (or 10 s): what came back.
async fn raw(http: SocketAddr, from: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(http).await.unwrap();
    // The server may close before reading it all (an oversized head): a write error is
    // part of the answer, not the test's failure.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

const LIVE: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_endpoint_survives_garbage_oversized_heads_and_a_connection_flood() {
    use tokio::io::AsyncReadExt;
    let app = single().node_name("hostile").start().await.unwrap();
    let http = app.http_addr().unwrap();

    // Garbage: refused with 400 (or the connection closed), the endpoint unharmed.
    let answer = raw(http, "127.0.0.1", b"\x00\x01\x02 not http at all\r\n\r\n").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    // A head of 1 MiB: refused, not buffered.
    let mut big = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Junk: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1 << 20));
    big.extend(b"\r\n\r\n");
    let answer = raw(http, "127.0.0.1", &big).await;
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        raw(http, "127.0.0.1", LIVE)
            .await
            .starts_with("HTTP/1.1 200")
    );

    // A client holding 64 idle connections (its cap) is closed at its 65th at once...
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(tokio::net::TcpStream::connect(http).await.unwrap());
    }
    let mut over = tokio::net::TcpStream::connect(http).await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(10), over.read(&mut byte))
        .await
        .expect("a connection over the client's cap is closed at once");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    // ...while another client (another address) is still served: a probe gets through.
    assert!(
        raw(http, "127.0.0.2", LIVE)
            .await
            .starts_with("HTTP/1.1 200"),
        "a probe from another address during the flood"
    );
    // Once the idle ones close, their client is served again.
    drop(idle);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if raw(http, "127.0.0.1", LIVE)
            .await
            .starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cap never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Many `/cluster` requests at once (under the client's cap): each answered, from a
    // shared gathering.
    let asks: Vec<_> = (0..30)
        .map(|_| tokio::spawn(async move { get(http, "/cluster", &[]).await.0 }))
        .collect();
    for ask in asks {
        assert_eq!(ask.await.unwrap(), 200);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn bad_configuration_stops_the_start_with_a_message_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("foundation.toml");

    std::fs::write(&file, "clustr = \"static\"\n").unwrap();
    let err = single().config_file(&file).start().await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, StartError::Config(ConfigError::UnknownKey { .. })),
        "{text}"
    );
    assert!(text.contains("did you mean `cluster`?"), "{text}");
    assert!(text.contains("foundation.toml"), "{text}");

    std::fs::write(&file, "[http]\nlisten = \"localhost:80\"\n").unwrap();
    let err = Foundation::builder()
        .config_file(&file)
        .env([("FOUNDATION_NODE_NAME", "x")])
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`http.listen`") && err.contains("localhost:80"),
        "{err}"
    );

    let err = single()
        .config_file(dir.path().join("missing.toml"))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, StartError::Config(ConfigError::File { .. })),
        "{err}"
    );

    let err = Foundation::builder()
        .no_config_file()
        .env([
            ("FOUNDATION_PROFILE", "production"),
            ("FOUNDATION_PEERS", "127.0.0.1:1"),
        ])
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("FOUNDATION_COOKIE"), "{err}");

    let err = single()
        .env([("FOUNDATION_SILENCE_MS", "soon")])
        .start()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("in the environment variable FOUNDATION_SILENCE_MS: `soon`"),
        "{err}"
    );

    // Kubernetes discovery outside Kubernetes, with no kubeconfig: refused at start.
    if std::env::var_os("KUBECONFIG").is_none()
        && !std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token").exists()
        && std::env::var_os("HOME")
            .is_none_or(|h| !std::path::Path::new(&h).join(".kube/config").exists())
    {
        let err = single()
            .cluster(Discovery::Kubernetes)
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(err, StartError::Discovery(_)) && err.to_string().contains("KUBECONFIG"),
            "{err}"
        );
    }

    // A taken HTTP port set on purpose is an error, not a silent move.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = single()
        .http_listen(taken.local_addr().unwrap())
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::Http { .. }), "{err}");
}

/// Set in the copy of this test binary that runs inside a network namespace of its own.
const IN_NAMESPACE: &str = "RUNTIME_TEST_IN_NETNS";

/// Zero configuration: two runtimes started with nothing set are development nodes that
/// find each other by mDNS (real `mdns-sd` daemons, on the standard port). It runs inside
/// a network namespace of its own (`unshare --net`, loopback up), so no packet reaches
/// the machine's real network; it needs root, as CI has, and fails without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_configured_two_nodes_find_each_other_by_mdns() {
    let name = "with_nothing_configured_two_nodes_find_each_other_by_mdns";
    if std::env::var_os(IN_NAMESPACE).is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("unshare")
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                r#"ip link set lo up && exec "$@""#,
                "sh",
            ])
            .arg(exe)
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(IN_NAMESPACE, "1")
            .output()
            .expect("this test needs `unshare` (util-linux) and root: run it as root");
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("--- {name} in its own network namespace:\n{output}---");
        assert!(
            out.status.success(),
            "{name} failed in its namespace (it needs root to make one)"
        );
        assert!(
            output.contains("1 passed"),
            "{name} did not run in its namespace"
        );
        return;
    }
    let start = |node: &'static str| {
        Foundation::builder()
            .no_config_file()
            .env([("HOSTNAME", "laptop")])
            .handle_signals(false)
            .node_name(node)
            .no_http()
            .start()
    };
    let a = start("zero-a").await.unwrap();
    let b = start("zero-b").await.unwrap();
    for app in [&a, &b] {
        assert_eq!(app.config().profile, Profile::Development);
        assert_eq!(app.config().discovery, Discovery::Mdns);
    }
    a.node()
        .wait_for("zero-b", Duration::from_secs(30))
        .await
        .unwrap();
    b.node()
        .wait_for("zero-a", Duration::from_secs(30))
        .await
        .unwrap();
    let info = a.cluster_info().await;
    assert_eq!(info.up().count(), 2, "{info:?}");
    assert!(
        info.nodes[1]
            .info
            .as_ref()
            .is_some_and(|i| i.discovery_reason.contains("mDNS")),
        "{info:?}"
    );
    b.shutdown().await;
    a.shutdown().await;
}

/// A cluster's TLS files, as an operator makes them: a CA, and one certificate for the
/// cluster's name (`tls.server_name` defaults to `cluster_name`) signed by it, with its
/// key; and a second key, which is not the certificate's.
struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    fn new(cluster_name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![cluster_name.to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("node.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("node.key"), key.serialize_pem()).unwrap();
        let other = KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("other.key"), other.serialize_pem()).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// The three keys, set in code.
    fn on(&self, b: foundation::runtime::Builder) -> foundation::runtime::Builder {
        b.set("tls.cert", self.path("node.pem"))
            .set("tls.key", self.path("node.key"))
            .set("tls.ca", self.path("ca.pem"))
    }
}

const TLS_TEST: &str = "with_the_tls_keys_two_runtimes_form_a_cluster_and_a_plain_one_is_refused";

/// Set in the copy of this test binary that runs the node without TLS: the seed it dials.
const PLAIN_SEED: &str = "RUNTIME_TEST_PLAIN_SEED";

/// The copy of [`TLS_TEST`] that plays the node without TLS: it starts, seeded with the
/// address given, and when its stdin closes prints the members it sees and stops.
async fn plain_node(seed: String) {
    let plain = single()
        .node_name("tls-plain")
        .cluster_name("rt-tls")
        .cluster(Discovery::Static)
        .peers([seed])
        .start()
        .await
        .unwrap();
    assert!(!plain.config().tls());
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await
    .unwrap();
    let members: Vec<String> = plain.node().members().into_iter().map(|m| m.id).collect();
    println!("plain node's members: {members:?}");
    plain.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_tls_keys_two_runtimes_form_a_cluster_and_a_plain_one_is_refused() {
    if let Ok(seed) = std::env::var(PLAIN_SEED) {
        return plain_node(seed).await;
    }
    let files = TlsFiles::new("rt-tls");
    // a: the keys set in code.
    let a = files
        .on(single().node_name("tls-a").cluster_name("rt-tls"))
        .start()
        .await
        .unwrap();
    assert!(a.config().tls());
    let mut events = a.node().subscribe();
    // b: the same keys from the environment.
    let b = single()
        .env([
            ("FOUNDATION_TLS_CERT", files.path("node.pem")),
            ("FOUNDATION_TLS_KEY", files.path("node.key")),
            ("FOUNDATION_TLS_CA", files.path("ca.pem")),
        ])
        .node_name("tls-b")
        .cluster_name("rt-tls")
        .cluster(Discovery::Static)
        .peers([a.node().advertised()])
        .start()
        .await
        .unwrap();
    assert!(b.config().tls());
    a.node()
        .wait_for("tls-b", Duration::from_secs(30))
        .await
        .unwrap();
    b.node()
        .wait_for("tls-a", Duration::from_secs(30))
        .await
        .unwrap();
    let info = a.cluster_info().await;
    assert_eq!(info.up().count(), 2, "{info:?}");
    for node in &info.nodes {
        let report = node.info.as_ref().expect("each node reports itself");
        assert!(report.tls, "{} does not report TLS: {info:?}", node.name);
    }

    // A node without TLS, seeded with a, gets nowhere: a refuses its handshake. It runs
    // in a process of its own: nodes in one process share ractor's process-global
    // groups, through which it would see a and b whatever its connections do.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TLS_TEST, "--nocapture", "--test-threads=1"])
        .env(PLAIN_SEED, a.node().advertised())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(foundation::cluster::node::ClusterEvent::Rejected { why, .. })
                    if why.contains("TLS handshake failed") =>
                {
                    return why;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("a's events ended: {e}"),
            }
        }
    })
    .await;
    // Closing its stdin tells the plain node to print what it sees and stop.
    drop(child.stdin.take());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = refused.unwrap_or_else(|_| {
        panic!("a refused no TLS handshake in 30 s; the plain node said:\n{output}")
    });
    assert!(refused.contains("TLS"), "{refused}");
    for app in [&a, &b] {
        assert!(
            app.node().members().iter().all(|m| m.id != "tls-plain"),
            "{:?}",
            app.node().members()
        );
    }
    assert!(out.status.success(), "the plain node failed:\n{output}");
    // libtest prints the test's name on the same line, before what the test prints.
    let seen = output
        .lines()
        .find_map(|l| l.split_once("plain node's members: ").map(|(_, m)| m))
        .unwrap_or_else(|| panic!("the plain node did not report:\n{output}"));
    assert_eq!(seen, "[]", "{output}");
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn tls_files_that_cannot_be_used_stop_the_start_naming_the_key_the_path_and_why() {
    use foundation::runtime::config::TlsFileError;
    let files = TlsFiles::new("foundation");
    std::fs::write(files.dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
    std::fs::write(
        files.dir.path().join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let tls_file_error = |err: &StartError| match err {
        StartError::Config(ConfigError::TlsFile {
            key, path, error, ..
        }) => (*key, path.to_str().unwrap().to_owned(), error.clone()),
        other => panic!("not a TLS file error: {other}"),
    };

    // A file that does not exist, and one that cannot be read (a directory).
    let missing = files.path("absent.pem");
    let err = files
        .on(single())
        .set("tls.cert", &missing)
        .start()
        .await
        .unwrap_err();
    assert_eq!(
        tls_file_error(&err),
        ("tls.cert", missing.clone(), TlsFileError::NotFound)
    );
    assert!(
        err.to_string().contains("`tls.cert`") && err.to_string().contains(&missing),
        "{err}"
    );
    let dir = files.dir.path().to_str().unwrap().to_owned();
    let err = files
        .on(single())
        .set("tls.ca", &dir)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(tls_file_error(&err), ("tls.ca", p, TlsFileError::Unreadable(_)) if p == dir),
        "{err}"
    );

    // Garbage instead of a certificate, a broken PEM section, a certificate for a key.
    let garbage = files.path("garbage.pem");
    let err = files
        .on(single())
        .set("tls.cert", &garbage)
        .start()
        .await
        .unwrap_err();
    assert_eq!(
        tls_file_error(&err),
        ("tls.cert", garbage.clone(), TlsFileError::NoCertificate)
    );
    let err = files
        .on(single())
        .set("tls.ca", files.path("broken.pem"))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            tls_file_error(&err),
            ("tls.ca", _, TlsFileError::Invalid(_))
        ),
        "{err}"
    );
    let err = files
        .on(single())
        .set("tls.key", files.path("node.pem"))
        .start()
        .await
        .unwrap_err();
    assert_eq!(
        tls_file_error(&err),
        ("tls.key", files.path("node.pem"), TlsFileError::NoKey)
    );

    // A key that is not the certificate's.
    let err = files
        .on(single())
        .set("tls.key", files.path("other.key"))
        .start()
        .await
        .unwrap_err();
    assert_eq!(
        tls_file_error(&err),
        (
            "tls.key",
            files.path("other.key"),
            TlsFileError::KeyMismatch(files.path("node.pem").into())
        )
    );
    assert!(
        err.to_string()
            .contains("is not the private key of the certificate in"),
        "{err}"
    );

    // A certificate without its key, and a key without its certificate.
    let err = single()
        .set("tls.cert", files.path("node.pem"))
        .set("tls.ca", files.path("ca.pem"))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            StartError::Config(ConfigError::Missing { key: "tls.key", .. })
        ),
        "{err}"
    );
    let err = single()
        .env([("FOUNDATION_TLS_KEY", files.path("node.key"))])
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            StartError::Config(ConfigError::Missing {
                key: "tls.cert",
                ..
            })
        ),
        "{err}"
    );

    // A server name no certificate can be issued for.
    let err = files
        .on(single())
        .set("tls.server_name", "not a name")
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            StartError::Config(ConfigError::BadValue {
                key: "tls.server_name",
                ..
            })
        ),
        "{err}"
    );

    // TLS built in code wins over the keys, which are then not read.
    let ready = {
        use std::sync::Arc;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
        let cert = CertificateDer::from_pem_file(files.path("node.pem")).unwrap();
        let key = PrivateKeyDer::from_pem_file(files.path("node.key")).unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(files.path("ca.pem")).unwrap())
            .unwrap();
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let client = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        foundation::cluster::node::Tls::new(Arc::new(server), Arc::new(client), "foundation")
            .unwrap()
    };
    let config = single()
        .tls(ready)
        .set("tls.cert", &missing)
        .resolve()
        .unwrap();
    assert!(config.tls());
    assert!(files.on(single()).resolve().unwrap().tls());
    assert!(!single().resolve().unwrap().tls());
}
