//! Node processes running a pubsub: this test binary re-runs itself as a node (see
//! `foundation-testkit`).
//!
//! A child starts node `FOUNDATION_TEST_NODE_NAME` with the pubsub `ps` (its broadcasts
//! on the `pubsub` channel), prints members coming and going (`@up <node>`,
//! `@down <node>`), and obeys:
//!
//! - `sub <id> <topic>`: a stream subscriber; prints `@got <id> <text> <who>` for each
//!   note (`who`: the `who` baggage of the publisher's context), and for numbered notes
//!   checks each publisher's numbers come in order, once: `@gap <id> <publisher>
//!   <expected> <got>` if not, `@done <id> <publisher>` at the last;
//! - `asub <id> <topic>`: an actor subscriber under a supervisor; prints
//!   `@agot <id> <text> <incarnation>`, and crashes on the note `crash`;
//! - `pub <topic> <text>`: a broadcast under a context whose `who` is this node; `local
//!   <topic> <text>`: the same, to this node's subscribers only;
//!   `direct <node> <topic> <text>`: a direct broadcast (`@direct ok|err`);
//! - `seq <topic> <n>`: broadcasts notes numbered 1 to `n` (`@seqsent <n>`);
//! - `pubwrong <topic>`: broadcasts a [`Forged`] (a note's shape, another wire name) on
//!   the topic the others read as notes;
//! - `pubmoved <topic> <text>`: as `pub`, as a [`moved::Note`] (another Rust type, the
//!   same wire name);
//! - `count <topic> <n>`: `@count <topic> <n>` once the cluster-wide count is `n`;
//! - `slow <id> <topic> <capacity>`: a stream subscriber that never reads, its buffer
//!   `capacity` messages, `DropNewest`;
//! - `drops <n>`: `@drops <n> queued <q>` once this node has dropped `n` messages in all
//!   (`q`: what the slow subscribers hold);
//! - `stats`: `@stats received=<n> wrong_type=<n> sent=<n>`;
//! - `many <topic> <n>`: `n` stream subscribers that never read, each with room for
//!   100,000 messages (`@subscribed <n>`): a pubsub process that takes a while per broadcast;
//! - `flow <n>`: once `received + remote_dropped` is `n`, `@flow received=<n>
//!   remote_dropped=<n> by_node=<n> delivered=<n> dropped=<n> sent=<n> send_failed=<n>`
//!   (`by_node`: the node's own count of messages it dropped for a process's limit);
//! - `topics <prefix> <from> <to>`: a stream subscriber (never read) of each topic
//!   `<prefix>.<i>` for `i` in `from..to` (`@topics <n>`); `untopics <prefix> <from> <to>`
//!   drops them (`@untopics <n>`);
//! - `peertopics <prefix> <n> <want>`: `@peertopics <want>` once the cluster-wide
//!   subscribers of `<prefix>.<i>`, `i` in `0..n`, add up to `want`;
//! - `interest`: `@interest sent=<n> bytes=<n> full=<n>` (this node's interest messages);
//! - `wait <topic> <n>`: `@waited <topic> <count> peers <nodes>` once
//!   `PubSub::wait_for_subscribers` sees `n` (20 s at most; else `@waitfail <error>`);
//! - `shutdown <topic>`: subscribes a stream to `<topic>`, shuts the node down, and
//!   prints what the pubsub does then: `@shutdown broadcast=.. ended=.. subscribe=..
//!   count=.. start=..`;
//! - `startps`: with `LATE`, starts the pubsub (`@startedps`);
//! - `exit`.
//!
//! Settings: `SEEDS`, `SILENCE_MS`, `GOSSIP_MS` (the pubsub's gossip period, 200 ms by
//! default), `LATE` (the pubsub starts at `startps`, after the node joined), `MAX_QUEUED` (the pubsub's limit of messages from peers waiting at its
//! process, `Options::max_queued`).

use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{ClusterEvent, Node, NodeConfig};
use foundation_pubsub::{BufferConfig, Overflow, PubSub, Topic};
pub use foundation_testkit::Child;
use foundation_testkit::{commands, say};

/// What the topics carry. Its wire name is its Rust name, `Note`.
#[derive(Debug, Clone, RemoteMessage)]
pub struct Note {
    pub publisher: String,
    /// 0 for a plain note; else its number, up to `last`.
    pub seq: u64,
    pub last: u64,
    pub text: String,
}

/// Another Rust type (another path, another `std::any::type_name`) with the same wire
/// name, `Note`, and shape: a topic's type moved to another module is the same type to
/// peers.
pub mod moved {
    #[derive(Debug, Clone, foundation_actors::RemoteMessage)]
    pub struct Note {
        pub publisher: String,
        pub seq: u64,
        pub last: u64,
        pub text: String,
    }
}

/// A type of `Note`'s shape (its bytes decode as a `Note`) but another wire name: to
/// peers, another type, refused before it is decoded.
#[derive(Debug, Clone, RemoteMessage)]
#[remote(name = "test.Forged")]
pub struct Forged {
    pub publisher: String,
    pub seq: u64,
    pub last: u64,
    pub text: String,
}

/// The actor subscriber: prints what it gets, crashes on `crash`.
#[derive(Clone)]
struct Printer {
    id: String,
}

impl Actor for Printer {
    type Msg = Note;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<Note>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(&self, me: &Addr<Note>, note: Note, (): &mut ()) -> Result<(), ActorError> {
        if note.text == "crash" {
            return Err("asked to crash".into());
        }
        say(&format!(
            "agot {} {} {}",
            self.id,
            note.text,
            me.incarnation()
        ));
        Ok(())
    }
}

const ENTRY: &str = "cluster::harness::node_process";

/// Starts node process `name`, seeded with `seed`'s address if given.
pub fn start(name: &str, seed: Option<&Child>) -> Child {
    start_with(name, seed, &[])
}

/// As [`start`], with more settings.
pub fn start_with(name: &str, seed: Option<&Child>, more: &[(&str, &str)]) -> Child {
    let addr = seed.map(|s| s.addr.clone()).unwrap_or_default();
    let mut settings = vec![("SILENCE_MS", "1000")];
    if seed.is_some() {
        settings.push(("SEEDS", addr.as_str()));
    }
    settings.extend_from_slice(more);
    Child::start(ENTRY, name, &settings)
}

/// Nodes `a`, `b` and `c`, each having seen the two others up.
pub fn three() -> [Child; 3] {
    let a = start("a", None);
    let b = start("b", Some(&a));
    let c = start("c", Some(&a));
    let mut nodes = [a, b, c];
    for (i, n) in nodes.iter_mut().enumerate() {
        let others: Vec<String> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, o)| format!("up {o}"))
            .collect();
        let want: Vec<&str> = others.iter().map(String::as_str).collect();
        n.expect_all(&want);
    }
    nodes
}

fn topic<T>(name: &str) -> Topic<T> {
    Topic::new(name).unwrap()
}

/// The node side: runs only in a child started by [`start`].
#[test]
#[ignore = "runs as a child process of the multi-node tests"]
fn node_process() {
    foundation_testkit::run_node(run);
}

async fn run(name: String) {
    let var = foundation_testkit::setting;
    // The node's limit of remote messages queued at one process (10,000 by default) would
    // drop part of a 20,000-message stream at a pubsub server that a loaded machine slows
    // down (counted in `Stats::remote_dropped`): the order tests are about what arrives, so
    // the limit is raised; `MAX_QUEUED` sets the pubsub's own.
    let mut config = NodeConfig::new(&name, "cookie")
        .listen("127.0.0.1:0".parse().unwrap())
        .max_remote_queued(1_000_000);
    // The broadcasts' channel as the crate advises (`channel_config`: low priority, so the
    // pubsub's process runs on the node's low-priority thread); `NO_CHANNEL`: a node that
    // did not declare it; `PENDING`: its outbox limit in bytes.
    if var("NO_CHANNEL").is_none() {
        let mut channel = foundation_pubsub::channel_config();
        if let Some(bytes) = var("PENDING") {
            channel = channel.max_pending(bytes.parse().unwrap());
        }
        config = config.channel(foundation_pubsub::CHANNEL, channel);
    }
    if let Some(ms) = var("SILENCE_MS") {
        config = config.silence(Duration::from_millis(ms.parse().unwrap()));
    }
    let node = Node::start(config).await.unwrap();
    let gossip_ms: u64 = var("GOSSIP_MS").map_or(200, |ms| ms.parse().unwrap());
    let mut options =
        foundation_pubsub::Options::new("ps").gossip_every(Duration::from_millis(gossip_ms));
    if let Some(n) = var("MAX_QUEUED") {
        options = options.max_queued(n.parse().unwrap());
    }
    let mut lines = commands();
    let mut cluster = node.subscribe();
    tokio::spawn(async move {
        while let Ok(e) = cluster.recv().await {
            match e {
                ClusterEvent::NodeUp(m) => say(&format!("up {}", m.id)),
                ClusterEvent::NodeDown { member, .. } => say(&format!("down {}", member.id)),
                _ => {}
            }
        }
    });
    let late = var("LATE").is_some();
    let mut ps = None;
    if !late {
        ps = Some(PubSub::start_with(&node, options.clone()).await.unwrap());
    }
    say(&format!("ready {} {}", node.name(), node.advertised()));
    for seed in var("SEEDS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        node.connect(&seed.parse::<Peer>().unwrap());
    }
    // `LATE`: the pubsub starts at `startps`, once the node has joined the others.
    while ps.is_none() {
        let Some(line) = lines.recv().await else {
            return;
        };
        if line == "startps" {
            ps = Some(PubSub::start_with(&node, options.clone()).await.unwrap());
            say("startedps");
        }
    }
    let Some(ps) = ps else { return };
    let mut sups = Vec::new();
    let mut slow: Vec<foundation_pubsub::Subscription<Note>> = Vec::new();
    let mut by_topic: std::collections::HashMap<String, foundation_pubsub::Subscription<Note>> =
        Default::default();
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["sub", id, t] => {
                // Room for a whole numbered stream: a reader that falls behind on a loaded
                // machine must not turn the order tests into tests of the drop policy.
                let room = BufferConfig::new(100_000, Overflow::DropNewest);
                let mut sub = ps.subscribe_stream_with(&topic::<Note>(t), room).unwrap();
                let owned = (*id).to_owned();
                let here = node.clone();
                tokio::spawn(async move {
                    let id = owned;
                    let mut next: std::collections::HashMap<String, u64> = Default::default();
                    while let Some(got) = sub.recv().await {
                        if got.seq == 0 {
                            let who = got
                                .context()
                                .and_then(|c| c.baggage("who"))
                                .unwrap_or("-")
                                .to_owned();
                            say(&format!("got {id} {} {who}", got.text));
                            continue;
                        }
                        let want = next.entry(got.publisher.clone()).or_insert(1);
                        if got.seq != *want {
                            let dropped = sub.dropped();
                            let by_node = here.stats().remote_dropped;
                            say(&format!(
                                "gap {id} {} {} {} (dropped {dropped}, by the node {by_node})",
                                got.publisher, *want, got.seq
                            ));
                        }
                        *want = got.seq + 1;
                        if got.seq == got.last {
                            say(&format!("done {id} {}", got.publisher));
                        }
                    }
                });
                say(&format!("subscribed {id}"));
            }
            ["asub", id, t] => {
                let spec = ChildSpec::new(
                    *id,
                    Printer {
                        id: (*id).to_owned(),
                    },
                    (),
                );
                let addr = spec.addr();
                let sup = Supervisor::start(
                    SupervisorSpec::new(format!("sup-{id}"), Strategy::OneForOne).child(spec),
                )
                .await
                .unwrap();
                ps.subscribe(&topic::<Note>(t), &addr).unwrap();
                sups.push(sup);
                say(&format!("subscribed {id}"));
            }
            [verb @ ("pub" | "local"), t, text] => {
                let note = Note {
                    publisher: name.clone(),
                    seq: 0,
                    last: 0,
                    text: (*text).to_owned(),
                };
                let ctx = Context::new().with_baggage("who", name.as_str());
                ctx.sync_scope(|| match *verb {
                    "pub" => ps.broadcast(&topic(t), note),
                    _ => ps.local_broadcast(&topic(t), note),
                })
                .unwrap();
                say(&format!("published {t} {text}"));
            }
            ["direct", to, t, text] => {
                let note = Note {
                    publisher: name.clone(),
                    seq: 0,
                    last: 0,
                    text: (*text).to_owned(),
                };
                match ps.direct_broadcast(to, &topic(t), note) {
                    Ok(()) => say("direct ok"),
                    Err(e) => say(&format!("direct err {e}")),
                }
            }
            ["seq", t, n] => {
                let n: u64 = n.parse().unwrap();
                let t: Topic<Note> = topic(t);
                for seq in 1..=n {
                    let note = Note {
                        publisher: name.clone(),
                        seq,
                        last: n,
                        text: String::new(),
                    };
                    ps.broadcast(&t, note).unwrap();
                    if seq % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                say(&format!("seqsent {n}"));
            }
            ["pubwrong", t] => {
                let forged = Forged {
                    publisher: name.clone(),
                    seq: 0,
                    last: 0,
                    text: "forged".to_owned(),
                };
                ps.broadcast(&topic::<Forged>(t), forged).unwrap();
                say("pubwrong");
            }
            ["pubmoved", t, text] => {
                let note = moved::Note {
                    publisher: name.clone(),
                    seq: 0,
                    last: 0,
                    text: (*text).to_owned(),
                };
                let ctx = Context::new().with_baggage("who", name.as_str());
                ctx.sync_scope(|| ps.broadcast(&topic(t), note)).unwrap();
                say(&format!("published {t} {text}"));
            }
            ["count", t, n] => {
                let n: usize = n.parse().unwrap();
                let t: Topic<Note> = topic(t);
                // Polled in the child: the parent's bound on `@count` is what fails a test.
                while ps.subscribers_count(&t) != n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                say(&format!("count {} {n}", t.name()));
            }
            ["wait", t, n] => {
                let n: usize = n.parse().unwrap();
                let t: Topic<Note> = topic(t);
                match ps
                    .wait_for_subscribers(&t, n, Duration::from_secs(20))
                    .await
                {
                    Ok(seen) => say(&format!(
                        "waited {} {seen} peers {}",
                        t.name(),
                        ps.peers().join(",")
                    )),
                    Err(e) => say(&format!("waitfail {e}")),
                }
            }
            ["shutdown", t] => {
                // The node shuts down under a pubsub still held, and its stream: the pubsub
                // stops with it.
                let t: Topic<Note> = topic(t);
                let mut sub = ps.subscribe_stream(&t).unwrap();
                node.shutdown().await;
                let note = Note {
                    publisher: name.clone(),
                    seq: 0,
                    last: 0,
                    text: "after".to_owned(),
                };
                let broadcast = match ps.broadcast(&t, note) {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("{e:?}"),
                };
                let ended = tokio::time::timeout(Duration::from_secs(30), sub.recv())
                    .await
                    .map_or("no".to_owned(), |m| format!("{}", m.is_none()));
                let subscribe = ps
                    .subscribe_stream(&t)
                    .map(|_| ())
                    .map_err(|e| format!("{e:?}"));
                let again = match PubSub::start(&node, "ps2").await {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("{e:?}"),
                };
                say(&format!(
                    "shutdown broadcast={broadcast} ended={ended} subscribe={subscribe:?} count={} start={again}",
                    ps.subscribers_count(&t)
                ));
            }
            ["slow", id, t, cap] => {
                let room = BufferConfig::new(cap.parse().unwrap(), Overflow::DropNewest);
                slow.push(ps.subscribe_stream_with(&topic::<Note>(t), room).unwrap());
                say(&format!("subscribed {id}"));
            }
            ["drops", n] => {
                let n: u64 = n.parse().unwrap();
                while ps.stats().dropped != n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let queued: usize = slow.iter().map(|s| s.len()).sum();
                say(&format!("drops {n} queued {queued}"));
            }
            ["stats"] => {
                let s = ps.stats();
                say(&format!(
                    "stats received={} wrong_type={} sent={}",
                    s.received, s.wrong_type, s.sent
                ));
            }
            ["many", t, n] => {
                let n: usize = n.parse().unwrap();
                let room = BufferConfig::new(100_000, Overflow::DropNewest);
                for _ in 0..n {
                    slow.push(ps.subscribe_stream_with(&topic::<Note>(t), room).unwrap());
                }
                say(&format!("subscribed {n}"));
            }
            ["flow", n] => {
                let n: u64 = n.parse().unwrap();
                // Polled in the child: the parent's bound on `@flow` is what fails a test.
                while ps.stats().received + ps.stats().remote_dropped < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let s = ps.stats();
                say(&format!(
                    "flow received={} remote_dropped={} by_node={} delivered={} dropped={} sent={} send_failed={}",
                    s.received,
                    s.remote_dropped,
                    node.stats().remote_dropped,
                    s.delivered,
                    s.dropped,
                    s.sent,
                    s.send_failed
                ));
            }
            ["topics", prefix, from, to] => {
                let (from, to): (u64, u64) = (from.parse().unwrap(), to.parse().unwrap());
                for i in from..to {
                    let t = format!("{prefix}.{i}");
                    let sub = ps.subscribe_stream(&topic::<Note>(&t)).unwrap();
                    by_topic.insert(t, sub);
                }
                say(&format!("topics {}", to - from));
            }
            ["untopics", prefix, from, to] => {
                let (from, to): (u64, u64) = (from.parse().unwrap(), to.parse().unwrap());
                for i in from..to {
                    by_topic.remove(&format!("{prefix}.{i}"));
                }
                say(&format!("untopics {}", to - from));
            }
            ["peertopics", prefix, n, want] => {
                let n: u64 = n.parse().unwrap();
                let want: usize = want.parse().unwrap();
                let topics: Vec<Topic<Note>> =
                    (0..n).map(|i| topic(&format!("{prefix}.{i}"))).collect();
                // Polled in the child: the parent's bound on the answer is what fails a test.
                while topics
                    .iter()
                    .map(|t| ps.subscribers_count(t))
                    .sum::<usize>()
                    != want
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                say(&format!("peertopics {want}"));
            }
            ["interest"] => {
                let s = ps.stats();
                say(&format!(
                    "interest sent={} bytes={} full={}",
                    s.interest_sent, s.interest_bytes, s.interest_full
                ));
            }
            ["exit"] => break,
            _ => say(&format!("unknown {line}")),
        }
    }
    node.shutdown().await;
}
