//! Sharded entities across node processes: every node computes the same owner for each
//! shard, and a message to an entity reaches it on its shard's owner, from any node.
//!
//! A node process (`node_process`) starts node `FOUNDATION_TEST_NODE_NAME` (`SEEDS`,
//! `SILENCE_MS`) and the `Sharded` `ledger` of [`Ledger`] entities (u64 keys, 1,024
//! shards; `ROLE`: a role it offers, `ON_ROLE`: shards only on nodes offering it). It
//! obeys:
//!
//! - `members <n>`: `@members <n>` once `n` nodes run `ledger` and this node's owner
//!   table counts `n` owners (or every eligible member, with `ON_ROLE`);
//! - `owners <keys>`: `@owners <digest> <node>=<count>,…` over keys `0..keys`, the
//!   digest a hash of the owner of each key in order;
//! - `whoami <keys>`: calls every entity `0..keys` from here (500 at a time) and prints
//!   `@whoami <answered> <elsewhere> <failed> <node>=<count>,…`, `elsewhere` counting
//!   answers from a node other than the owner this node computes;
//! - `push <keys> <n>`: casts `push(1)`, …, `push(n)` to every entity `0..keys`, then
//!   `@pushed`;
//! - `logs <keys> <n>`: calls `log` of every entity and prints `@logs <ok> <bad>`, `ok`
//!   counting the logs that are exactly `1..=n`;
//! - `ctx`: calls entity 7 under a context with a trace id and baggage, and prints
//!   `@ctx same|differs <node>`;
//! - `entities`: `@entities <n>`, the entities active on this node.
//!
//! With `COUNTS` set it also runs `counts`, [`Count`] entities that checkpoint every
//! second message (replicated to `REPLICAS` other nodes, 1 by default), and obeys
//! `counts members <n>`, `counts settled`, `counts add <keys> <times>`, `counts owners
//! <keys>` (remembers each key's owner now), `counts copies` (`@counts copies <kept>
//! <refused>`), `counts entities`, `counts covered <keys>` (`@counts covered <n>`: keys
//! whose shard this node holds by rendezvous, owner or first replica, and whose
//! checkpoint it does not keep) and `counts check <keys> <node> <if_there> <else>`
//! (`@counts check <ok> <bad>`: a key is ok if it answers `if_there` when its remembered
//! owner was `node`, else `else`).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{Node, NodeConfig};
use foundation_registry::distributed::{Handoff, checkpoint};
use foundation_registry::placement::{Distribution, Load, Rendezvous};
use foundation_registry::sharded::{Sharded, ShardedSpec};
use foundation_testkit::{Child, commands, say};

/// An entity: knows its key and node, logs the numbers pushed to it.
#[derive(Clone)]
pub struct Ledger {
    node: String,
    log: Vec<u64>,
}

#[actor(remote = "test.Ledger")]
impl Ledger {
    #[cast(tag = 1)]
    fn push(&mut self, n: u64) {
        self.log.push(n);
    }

    #[call(tag = 2)]
    fn log(&self) -> Vec<u64> {
        self.log.clone()
    }

    #[call(tag = 3)]
    fn whoami(&self) -> String {
        self.node.clone()
    }

    /// The node, and the trace id and `user` baggage of the context current here.
    #[call(tag = 4)]
    fn context(&self) -> (String, Option<(String, Option<String>)>) {
        let ctx = Context::current().map(|c| {
            (
                c.trace_id().to_string(),
                c.baggage("user").map(str::to_owned),
            )
        });
        (self.node.clone(), ctx)
    }
}

/// What a [`Book`] takes.
#[derive(Debug, RemoteMessage)]
#[remote(name = "test.Book")]
pub enum BookMsg {
    /// Append a number.
    #[remote(tag = 1)]
    Push(u64),
    /// The numbers so far.
    #[remote(tag = 2)]
    Log(ReplyPort<Vec<u64>>),
    /// The node it runs on.
    #[remote(tag = 3)]
    Whoami(ReplyPort<String>),
}

/// An entity whose state (its log) moves with its shard ([`Handoff`]).
#[derive(Clone)]
pub struct Book {
    node: String,
}

impl Actor for Book {
    type Msg = BookMsg;
    type State = Vec<u64>;
    type Args = ();

    async fn init(&self, _: &Addr<BookMsg>, (): ()) -> Result<Vec<u64>, ActorError> {
        Ok(Vec::new())
    }

    async fn handle(
        &self,
        _: &Addr<BookMsg>,
        msg: BookMsg,
        log: &mut Vec<u64>,
    ) -> Result<(), ActorError> {
        match msg {
            BookMsg::Push(n) => log.push(n),
            BookMsg::Log(port) => {
                let _ = port.send(log.clone());
            }
            BookMsg::Whoami(port) => {
                let _ = port.send(self.node.clone());
            }
        }
        Ok(())
    }
}

impl Handoff for Book {
    type Snapshot = Vec<u64>;

    fn export(&self, log: Vec<u64>) -> Vec<u64> {
        log
    }

    async fn restore(
        &self,
        _: &Addr<BookMsg>,
        log: Vec<u64>,
        (): (),
    ) -> Result<Vec<u64>, ActorError> {
        Ok(log)
    }
}

/// What a [`Count`] takes.
#[derive(Debug, RemoteMessage)]
#[remote(name = "test.Count")]
pub enum CountMsg {
    /// Count one; every second one is checkpointed.
    #[remote(tag = 1)]
    Add,
    /// The count.
    #[remote(tag = 2)]
    Get(ReplyPort<u64>),
}

/// An entity that counts its messages and checkpoints at every even count.
#[derive(Clone)]
pub struct Count;

impl Actor for Count {
    type Msg = CountMsg;
    type State = u64;
    type Args = ();

    async fn init(&self, _: &Addr<CountMsg>, (): ()) -> Result<u64, ActorError> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: &Addr<CountMsg>,
        msg: CountMsg,
        n: &mut u64,
    ) -> Result<(), ActorError> {
        match msg {
            CountMsg::Add => {
                *n += 1;
                if *n % 2 == 0 {
                    checkpoint(&*n)?;
                }
            }
            CountMsg::Get(port) => {
                let _ = port.send(*n);
            }
        }
        Ok(())
    }
}

impl Handoff for Count {
    type Snapshot = u64;

    fn export(&self, n: u64) -> u64 {
        n
    }

    async fn restore(&self, _: &Addr<CountMsg>, n: u64, (): ()) -> Result<u64, ActorError> {
        Ok(n)
    }
}

const ENTRY: &str = "sharded_cluster::node_process";

/// Node process `name`, seeded with `seed` if given, with `extra` settings.
fn start(name: &str, seed: Option<&str>, extra: &[(&str, &str)]) -> Child {
    let mut settings = vec![("SILENCE_MS", "1000")];
    if let Some(s) = seed {
        settings.push(("SEEDS", s));
    }
    settings.extend_from_slice(extra);
    Child::start(ENTRY, name, &settings)
}

/// Nodes `names`, each seeded with the first; returns once each sees them all.
fn nodes(names: &[&str], extra: &[(&str, &str)]) -> Vec<Child> {
    let first = start(names[0], None, extra);
    let seed = first.addr.clone();
    let mut all = vec![first];
    for n in &names[1..] {
        all.push(start(n, Some(&seed), extra));
    }
    let members = format!("members {}", names.len());
    for n in &mut all {
        n.tell(&members);
        n.expect(|l| l == members);
    }
    all
}

fn ask(node: &mut Child, line: &str, prefix: &str) -> String {
    node.tell(line);
    let got = node.expect(|l| l.starts_with(prefix));
    got[prefix.len()..].trim().to_owned()
}

#[test]
fn three_nodes_agree_on_every_shards_owner_and_each_of_10_000_keys_answers_from_its_owner_only() {
    let mut nodes = nodes(&["a", "b", "c"], &[]);
    let keys = 10_000;
    let owners: Vec<String> = nodes
        .iter_mut()
        .map(|n| ask(n, &format!("owners {keys}"), "owners "))
        .collect();
    assert_eq!(owners[0], owners[1], "a and b computed different owners");
    assert_eq!(owners[0], owners[2], "a and c computed different owners");
    // Every node owns a share (1,024 shards over 3 nodes).
    let counts = owners[0].split_whitespace().nth(1).unwrap().to_owned();
    assert_eq!(counts.split(',').count(), 3, "owners: {counts}");
    for n in &mut nodes {
        let got = ask(n, &format!("whoami {keys}"), "whoami ");
        // Every key answered, each from the owner this node computed, and the answers
        // by node are the owners' counts.
        assert_eq!(got, format!("{keys} 0 0 {counts}"), "node {}", n.name);
    }
    // Each key's entity is active on exactly one node: asked from three nodes, started once.
    let active: usize = nodes
        .iter_mut()
        .map(|n| ask(n, "entities", "entities ").parse::<usize>().unwrap())
        .sum();
    assert_eq!(active, keys);
}

#[test]
fn casts_from_every_node_arrive_in_order_and_the_context_travels_to_the_owner() {
    let mut nodes = nodes(&["a", "b", "c"], &[]);
    // Node b streams numbered casts to 300 keys (two thirds of them on other nodes).
    assert_eq!(ask(&mut nodes[1], "push 300 50", "pushed"), "");
    for n in &mut nodes {
        assert_eq!(ask(n, "logs 300 50", "logs "), "300 0", "node {}", n.name);
    }
    for n in &mut nodes {
        let got = ask(n, "ctx", "ctx ");
        assert!(got.starts_with("same "), "node {}: {got}", n.name);
    }
}

#[test]
fn shards_restricted_to_a_role_go_only_to_nodes_offering_it() {
    let a = start("a", None, &[("ROLE", "gpu"), ("ON_ROLE", "gpu")]);
    let seed = a.addr.clone();
    let b = start("b", Some(&seed), &[("ON_ROLE", "gpu")]);
    let c = start("c", Some(&seed), &[("ROLE", "gpu"), ("ON_ROLE", "gpu")]);
    let mut nodes = [a, b, c];
    for n in &mut nodes {
        n.tell("members 3");
        n.expect(|l| l == "members 3");
    }
    for n in &mut nodes {
        let got = ask(n, "whoami 2000", "whoami ");
        let mut words = got.split_whitespace();
        assert_eq!(words.next(), Some("2000"), "node {}: {got}", n.name);
        assert_eq!(words.next(), Some("0"), "node {}: {got}", n.name);
        assert_eq!(words.next(), Some("0"), "node {}: {got}", n.name);
        let by_node = words.next().unwrap();
        assert!(
            !by_node.contains("b="),
            "node {}: b owns shards: {by_node}",
            n.name
        );
    }
}

/// `@books <served> <handed_off> <owned_here> <digest>` of `node`, as numbers.
fn books_shards(node: &mut Child) -> (usize, u64, usize, String) {
    let got = ask(node, "books shards", "books ");
    let w: Vec<&str> = got.split_whitespace().collect();
    (
        w[0].parse().unwrap(),
        w[1].parse().unwrap(),
        w[2].parse().unwrap(),
        w[3].to_owned(),
    )
}

fn settle(nodes: &mut [Child]) {
    let line = format!("settled {}", nodes.len());
    for n in nodes.iter_mut() {
        n.tell(&line);
        n.expect(|l| l == line);
    }
}

/// A stream of numbered casts from `a` to 1,000 books runs while `change` happens to the
/// cluster; afterwards every book's log is exactly 1, 2, … (nothing lost, nothing twice,
/// in order), read from every node left.
fn stream_through(nodes: &mut Vec<Child>, change: impl FnOnce(&mut Vec<Child>)) -> u64 {
    let keys = 1_000;
    assert_eq!(
        ask(&mut nodes[0], &format!("stream {keys}"), "streaming"),
        ""
    );
    std::thread::sleep(Duration::from_millis(300));
    change(nodes);
    std::thread::sleep(Duration::from_millis(300));
    let got = ask(&mut nodes[0], "endstream", "streamed ");
    let mut w = got.split_whitespace();
    let last: u64 = w.next().unwrap().parse().unwrap();
    assert_eq!(w.next(), Some("0"), "casts refused");
    for n in nodes.iter_mut() {
        let logs = ask(n, &format!("booklogs {keys} {last}"), "booklogs ");
        assert_eq!(
            logs,
            format!("{keys} 0"),
            "node {}: logs after {last} rounds",
            n.name
        );
    }
    last
}

#[test]
fn a_fourth_node_joining_takes_only_the_shards_it_now_owns_and_a_stream_through_the_move_loses_nothing()
 {
    let mut nodes = nodes(&["a", "b", "c"], &[]);
    settle(&mut nodes);
    let before: Vec<(usize, u64, usize, String)> = nodes.iter_mut().map(books_shards).collect();
    let seed = nodes[0].addr.clone();
    stream_through(&mut nodes, |nodes| {
        nodes.push(start("d", Some(&seed), &[]));
        for n in nodes.iter_mut() {
            n.tell("members 4");
            n.expect(|l| l == "members 4");
        }
        settle(nodes);
    });
    let after: Vec<(usize, u64, usize, String)> = nodes.iter_mut().map(books_shards).collect();
    // Every node agrees on the owners, and each serves exactly the shards it owns.
    for (i, a) in after.iter().enumerate() {
        assert_eq!(
            a.3, after[0].3,
            "node {} computed other owners",
            nodes[i].name
        );
        assert_eq!(
            a.0, a.2,
            "node {} serves {} shards, owns {}",
            nodes[i].name, a.0, a.2
        );
    }
    // Only shards whose owner changed moved: all of them to d, and as many as d took.
    let moved: u64 = (0..3).map(|i| after[i].1 - before[i].1).sum();
    let d_took = after[3].0;
    let lost: usize = (0..3).map(|i| before[i].0 - after[i].0).sum();
    assert_eq!(
        lost, d_took,
        "a, b and c gave up {lost} shards, d serves {d_took}"
    );
    assert_eq!(moved, d_took as u64, "{moved} handoffs for {d_took} shards");
    // 1,024 shards: a 4th node takes about a quarter (issue 15: at most 27%).
    assert!(
        d_took * 100 <= 1_024 * 27,
        "d took {d_took} of 1,024 shards"
    );
    eprintln!("shards moved when d joined a, b, c: {d_took} of 1024");
}

/// Four nodes, a numbered stream per key, and node `d` leaving through it with the node
/// command `leave` (`Sharded::leave`, then `Node::leave`) or `nodeleave` (`Node::leave`
/// alone).
fn stream_through_a_leave(command: &str) {
    let mut nodes = nodes(&["a", "b", "c", "d"], &[]);
    settle(&mut nodes);
    stream_through(&mut nodes, |nodes| {
        let mut d = nodes.pop().unwrap();
        assert_eq!(ask(&mut d, command, "left"), "");
        for n in nodes.iter_mut() {
            n.tell("members 3");
            n.expect(|l| l == "members 3");
        }
        settle(nodes);
    });
}

#[test]
fn a_node_leaving_gracefully_hands_its_shards_off_and_a_stream_through_the_leave_loses_nothing() {
    stream_through_a_leave("leave");
}

/// As above, but the node leaves with `Node::leave` alone: its `Sharded`s hand their
/// shards off first (a leave hook), so the stream through the leave loses nothing either.
#[test]
fn a_node_leaving_with_node_leave_alone_hands_its_shards_off_and_the_stream_loses_nothing() {
    stream_through_a_leave("nodeleave");
}

#[test]
fn after_a_kill_9_every_key_answers_again_from_the_new_owners() {
    let mut nodes = nodes(&["a", "b", "c"], &[]);
    settle(&mut nodes);
    assert_eq!(ask(&mut nodes[0], "bookwho 2000", "bookwho "), "2000 0");
    let mut c = nodes.pop().unwrap();
    c.kill();
    for n in nodes.iter_mut() {
        n.tell("members 2");
        n.expect(|l| l == "members 2");
    }
    for n in nodes.iter_mut() {
        assert_eq!(
            ask(n, "bookwho 2000", "bookwho "),
            "2000 0",
            "node {}",
            n.name
        );
    }
}

#[test]
fn remembered_entities_are_started_on_their_new_owner_without_a_message() {
    let mut nodes = nodes(&["a", "b", "c"], &[("REMEMBER", "1")]);
    settle(&mut nodes);
    // Every book 0..2000 active somewhere.
    assert_eq!(ask(&mut nodes[0], "bookwho 2000", "bookwho "), "2000 0");
    let seed = nodes[0].addr.clone();
    nodes.push(start("d", Some(&seed), &[("REMEMBER", "1")]));
    for n in nodes.iter_mut() {
        n.tell("members 4");
        n.expect(|l| l == "members 4");
    }
    settle(&mut nodes);
    // d got no message, yet runs the books of its shards.
    let owned_by_d = ask(&mut nodes[3], "owned books 2000", "owned ");
    let active = ask(&mut nodes[3], "books entities", "books entities ");
    assert_ne!(active, "0");
    assert_eq!(active, owned_by_d);
}

/// `counts members <n>` on every node of `nodes`.
fn counts_members(nodes: &mut [Child], n: usize) {
    let line = format!("counts members {n}");
    for node in nodes.iter_mut() {
        node.tell(&line);
        node.expect(|l| l == line);
    }
}

fn counts_settled(nodes: &mut [Child]) {
    for node in nodes.iter_mut() {
        node.tell("counts settled");
        node.expect(|l| l == "counts settled");
    }
}

/// Waits until every checkpoint is held by its owner and one copy and every node
/// computes the owners of the 2,000 keys alike, then kills the last node and waits until
/// the others see it gone.
fn kill_the_last_once_copies_are_held(nodes: &mut Vec<Child>) {
    counts_copies(nodes);
    for n in nodes.iter_mut() {
        assert_eq!(ask(n, "counts owners 2000", "counts owners"), "");
    }
    let mut last = nodes.pop().unwrap();
    last.kill();
    let left = nodes.len();
    counts_members(nodes, left);
}

/// Every node's `counts check 2000 <args>` (`<dead node> <its keys' count> <the others'>`):
/// all 2,000 keys answer with the counts expected.
fn counts_check(nodes: &mut [Child], args: &str) {
    let line = format!("counts check 2000 {args}");
    for n in nodes.iter_mut() {
        assert_eq!(ask(n, &line, "counts check "), "2000 0", "node {}", n.name);
    }
}

/// Waits until every node holds the checkpoint of every key 0..2,000 whose shard it
/// holds (owner or replica, by rendezvous over the members it sees), twice in a row a
/// second apart (copies are re-sent every 250 ms).
fn counts_copies(nodes: &mut [Child]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let missing = |nodes: &mut [Child]| -> Vec<String> {
        nodes
            .iter_mut()
            .map(|n| {
                let got = ask(n, "counts covered 2000", "counts covered ");
                format!("{}: {got}", n.name)
            })
            .filter(|m| !m.ends_with(": 0"))
            .collect()
    };
    loop {
        let gaps = missing(nodes);
        if gaps.is_empty() {
            std::thread::sleep(Duration::from_secs(1));
            if missing(nodes).is_empty() {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "checkpoints missing on their holders: {gaps:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn after_a_kill_9_every_key_answers_again_with_the_count_of_its_last_checkpoint() {
    let counts = [("COUNTS", "1")];
    let mut nodes = nodes(&["a", "b", "c"], &counts);
    counts_members(&mut nodes, 3);
    counts_settled(&mut nodes);
    // 3 messages to each of 2,000 keys: each counts 3 and checkpointed at 2.
    assert_eq!(ask(&mut nodes[0], "counts add 2000 3", "counts added"), "");
    // Each checkpoint on its owner and one copy.
    kill_the_last_once_copies_are_held(&mut nodes);
    // c's entities restart on their new owners from their checkpoint (2, not 0); the
    // others never stopped (3).
    counts_check(&mut nodes, "c 2 3");
}

#[test]
fn remembered_entities_of_a_killed_node_restart_from_their_checkpoints_without_a_message() {
    let counts = [("COUNTS", "1"), ("REMEMBER", "1")];
    let mut nodes = nodes(&["a", "b", "c"], &counts);
    counts_members(&mut nodes, 3);
    counts_settled(&mut nodes);
    assert_eq!(ask(&mut nodes[0], "counts add 2000 3", "counts added"), "");
    kill_the_last_once_copies_are_held(&mut nodes);
    // No message yet: a and b run c's entities too, once its shards open there.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let active: usize = nodes
            .iter_mut()
            .map(|n| {
                ask(n, "counts entities", "counts entities ")
                    .parse::<usize>()
                    .unwrap()
            })
            .sum();
        if active == 2_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{active} of 2,000 entities active on a and b"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    counts_check(&mut nodes, "c 2 3");
}

#[test]
fn checkpoint_copies_follow_the_shards_to_a_joining_node_and_survive_its_kill_9() {
    let counts = [("COUNTS", "1")];
    let mut nodes = nodes(&["a", "b", "c"], &counts);
    counts_members(&mut nodes, 3);
    counts_settled(&mut nodes);
    assert_eq!(ask(&mut nodes[0], "counts add 2000 3", "counts added"), "");
    counts_copies(&mut nodes);
    // d joins: the shards it takes move to it (drained: each entity's state, 3, is its
    // checkpoint), and the copies are re-sent to the shards' replicas as they are now.
    let seed = nodes[0].addr.clone();
    nodes.push(start("d", Some(&seed), &counts));
    for n in nodes.iter_mut() {
        n.tell("members 4");
        n.expect(|l| l == "members 4");
    }
    counts_members(&mut nodes, 4);
    counts_settled(&mut nodes);
    // d dies: what it took over restarts from the copies it sent on.
    kill_the_last_once_copies_are_held(&mut nodes);
    counts_check(&mut nodes, "d 3 3");
}

/// A running stream: what stops it, and its task (its last round, its refused casts).
type Stream = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<(u64, u64)>,
);

/// The node side: runs only in a child started by [`start`].
#[test]
#[ignore = "runs as a child process of the sharded cluster tests"]
fn node_process() {
    foundation_testkit::run_node(run);
}

async fn run(name: String) {
    let var = foundation_testkit::setting;
    let silence = Duration::from_millis(var("SILENCE_MS").map_or(3000, |ms| ms.parse().unwrap()));
    let config = NodeConfig::new(&name, "cookie")
        .listen("127.0.0.1:0".parse().unwrap())
        .silence(silence);
    let node = Node::start(config).await.unwrap();
    let me = name.clone();
    let mut spec = ShardedSpec::new("ledger", Ledger::actor(), move |_: &u64| Ledger {
        node: me.clone(),
        log: Vec::new(),
    });
    if let Some(role) = var("ROLE") {
        spec = spec.role(role);
    }
    let on_role = var("ON_ROLE");
    if let Some(role) = &on_role {
        spec = spec.on_role(role.clone());
    }
    let ledger: Sharded<u64, LedgerMsg> = Sharded::start_on(&node, spec).await.unwrap();
    let me = name.clone();
    let mut books_spec = ShardedSpec::new("books", Book { node: me }, |_: &u64| ()).handoff();
    if var("REMEMBER").is_some() {
        books_spec = books_spec.remember_entities();
    }
    let books: Sharded<u64, BookMsg> = Sharded::start_on(&node, books_spec).await.unwrap();
    let count_entities: Option<Sharded<u64, CountMsg>> = match var("COUNTS") {
        Some(_) => {
            let replicas = var("REPLICAS").map_or(1, |k| k.parse().unwrap());
            let mut spec = ShardedSpec::new("counts", Count, |_: &u64| ())
                .handoff()
                .checkpoint_replicas(replicas);
            if var("REMEMBER").is_some() {
                spec = spec.remember_entities();
            }
            Some(Sharded::start_on(&node, spec).await.unwrap())
        }
        None => None,
    };
    let mut children = SupervisorSpec::new("entities", Strategy::OneForOne)
        .child(ledger.child_spec())
        .child(books.child_spec());
    if let Some(c) = &count_entities {
        children = children.child(c.child_spec());
    }
    let sup = Supervisor::start(children).await.unwrap();
    // Each key's owner at the last `counts owners`.
    let mut counts_owners: Vec<Option<String>> = Vec::new();
    let mut stream: Option<Stream> = None;
    say(&format!("ready {} {}", node.name(), node.advertised()));
    for seed in var("SEEDS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        node.connect(&seed.parse::<Peer>().unwrap());
    }
    let mut lines = commands();
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["members", n] => {
                let n: usize = n.parse().unwrap();
                loop {
                    let owners = by_owner(&ledger, 20_000);
                    let eligible = if on_role.is_some() { owners.len() } else { n };
                    if ledger.members().len() == n && owners.len() == eligible {
                        if on_role.is_some() {
                            // The table is computed again within its refresh period.
                            tokio::time::sleep(Duration::from_millis(600)).await;
                        }
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                say(&format!("members {n}"));
            }
            ["owners", keys] => {
                let keys: u64 = keys.parse().unwrap();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                for k in 0..keys {
                    ledger.owner_of(&k).hash(&mut h);
                }
                let counts = counts(&by_owner(&ledger, keys));
                say(&format!("owners {:x} {counts}", h.finish()));
            }
            ["whoami", keys] => {
                let keys: u64 = keys.parse().unwrap();
                let (mut answered, mut elsewhere, mut failed) = (0, 0, 0);
                let mut from: BTreeMap<String, usize> = BTreeMap::new();
                for chunk in (0..keys).collect::<Vec<_>>().chunks(500) {
                    let mut calls = tokio::task::JoinSet::new();
                    for &k in chunk {
                        let e: LedgerRef = ledger.entity(k);
                        let owner = ledger.owner_of(&k);
                        calls.spawn(async move { (e.whoami().await, owner) });
                    }
                    while let Some(r) = calls.join_next().await {
                        match r.unwrap() {
                            (Ok(at), owner) => {
                                answered += 1;
                                if owner.as_deref() != Some(at.as_str()) {
                                    elsewhere += 1;
                                }
                                *from.entry(at).or_default() += 1;
                            }
                            (Err(e), _) => {
                                failed += 1;
                                eprintln!("whoami failed: {e}");
                            }
                        }
                    }
                }
                say(&format!(
                    "whoami {answered} {elsewhere} {failed} {}",
                    counts(&from)
                ));
            }
            ["push", keys, n] => {
                let keys: u64 = keys.parse().unwrap();
                let n: u64 = n.parse().unwrap();
                for i in 1..=n {
                    for k in 0..keys {
                        let e: LedgerRef = ledger.entity(k);
                        e.push(i).await.unwrap();
                    }
                }
                say("pushed");
            }
            ["logs", keys, n] => {
                let keys: u64 = keys.parse().unwrap();
                let n: u64 = n.parse().unwrap();
                let want: Vec<u64> = (1..=n).collect();
                let (mut ok, mut bad) = (0, 0);
                for k in 0..keys {
                    let e: LedgerRef = ledger.entity(k);
                    // `pushed` says the pusher sent its casts, not that they arrived: a log
                    // that is a beginning of `want` is asked again until the rest is in.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                    let mut got = e.log().await;
                    while matches!(&got, Ok(log) if log.len() < want.len() && want.starts_with(log))
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        got = e.log().await;
                    }
                    match got {
                        Ok(log) if log == want => ok += 1,
                        Ok(log) => {
                            bad += 1;
                            eprintln!("key {k}: log {log:?}");
                        }
                        Err(e) => {
                            bad += 1;
                            eprintln!("key {k}: {e}");
                        }
                    }
                }
                say(&format!("logs {ok} {bad}"));
            }
            ["ctx"] => {
                let ctx = Context::new().with_baggage("user", "ada");
                let trace = ctx.trace_id().to_string();
                let e: LedgerRef = ledger.entity(7);
                let (at, seen) = ctx.scope(e.context()).await.unwrap();
                let same = seen == Some((trace, Some("ada".to_owned())));
                say(&format!(
                    "ctx {} {at}",
                    if same { "same" } else { "differs" }
                ));
            }
            ["entities"] => say(&format!("entities {}", ledger.stats().entities)),
            ["books", "entities"] => say(&format!("books entities {}", books.stats().entities)),
            // Once no shard of either is in a move here and `n` run it.
            ["settled", n] => {
                let n: usize = n.parse().unwrap();
                loop {
                    let (l, b) = (ledger.stats(), books.stats());
                    if l.in_transit == 0
                        && b.in_transit == 0
                        && books.members().len() == n
                        && by_owner_books(&books, 5_000).len() == n
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                // A table computed just now may still start a move: settled twice.
                tokio::time::sleep(Duration::from_millis(600)).await;
                while books.stats().in_transit > 0 || ledger.stats().in_transit > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                say(&format!("settled {n}"));
            }
            // `@books <served> <handed_off> <owned_here> <digest>` of `books`.
            ["books", "shards"] => {
                let st = books.stats();
                let owned = (0..st.shards)
                    .filter(|i| books.shard_owner(*i).as_deref() == Some(node.name()))
                    .count();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                for k in 0..5_000u64 {
                    books.owner_of(&k).hash(&mut h);
                }
                say(&format!(
                    "books {} {} {owned} {:x}",
                    st.served,
                    st.handed_off,
                    h.finish()
                ));
            }
            // Streams `Push(1)`, `Push(2)`, … to every book `0..keys`, a round at a time.
            ["stream", keys] => {
                let keys: u64 = keys.parse().unwrap();
                let (stop, mut stopped) = tokio::sync::oneshot::channel();
                let books = books.clone();
                let task = tokio::spawn(async move {
                    let (mut round, mut errors) = (0, 0);
                    loop {
                        round += 1;
                        for k in 0..keys {
                            if books.addr(k).cast(BookMsg::Push(round)).is_err() {
                                errors += 1;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        if stopped.try_recv().is_ok() {
                            return (round, errors);
                        }
                    }
                });
                stream = Some((stop, task));
                say("streaming");
            }
            ["endstream"] => {
                let (stop, task) = stream.take().unwrap();
                let _ = stop.send(());
                let (last, errors) = task.await.unwrap();
                say(&format!("streamed {last} {errors}"));
            }
            // `@booklogs <ok> <bad>`: `ok` books whose log is exactly 1..=n.
            ["booklogs", keys, n] => {
                let keys: u64 = keys.parse().unwrap();
                let n: u64 = n.parse().unwrap();
                let want: Vec<u64> = (1..=n).collect();
                let (mut ok, mut bad) = (0, 0);
                for k in 0..keys {
                    match books.addr(k).call(BookMsg::Log).await {
                        Ok(log) if log == want => ok += 1,
                        Ok(log) => {
                            bad += 1;
                            if bad < 5 {
                                eprintln!(
                                    "book {k}: {} numbers, {:?}…",
                                    log.len(),
                                    &log[..log.len().min(20)]
                                );
                            }
                        }
                        Err(e) => {
                            bad += 1;
                            eprintln!("book {k}: {e}");
                        }
                    }
                }
                say(&format!("booklogs {ok} {bad}"));
            }
            // `@bookwho <answered> <failed>`: every book `0..keys` answers `whoami`.
            ["bookwho", keys] => {
                let keys: u64 = keys.parse().unwrap();
                let (mut answered, mut failed) = (0, 0);
                for k in 0..keys {
                    let addr = books.addr(k);
                    match addr
                        .call_timeout(BookMsg::Whoami, Duration::from_secs(20))
                        .await
                    {
                        Ok(_) => answered += 1,
                        Err(e) => {
                            failed += 1;
                            eprintln!("book {k}: {e}");
                        }
                    }
                }
                say(&format!("bookwho {answered} {failed}"));
            }
            ["owned", "books", keys] => {
                let keys: u64 = keys.parse().unwrap();
                let n = (0..keys)
                    .filter(|k| books.owner_of(k).as_deref() == Some(node.name()))
                    .count();
                say(&format!("owned {n}"));
            }
            ["counts", rest @ ..] => {
                let Some(counts) = &count_entities else {
                    say("counts not running (COUNTS)");
                    continue;
                };
                counts_command(counts, node.name(), rest, &mut counts_owners).await;
            }
            ["leave"] => {
                books.leave().await;
                ledger.leave().await;
                say("left");
            }
            // The node's own graceful leave, without `Sharded::leave` first: its hooks
            // hand the shards off as `Sharded::leave` does.
            ["nodeleave"] => {
                node.leave().await;
                say("left");
            }
            _ => say(&format!("unknown {line}")),
        }
    }
    ledger.leave().await;
    sup.shutdown().await;
    node.shutdown().await;
}

/// The `counts …` commands (see the module docs).
async fn counts_command(
    counts: &Sharded<u64, CountMsg>,
    me: &str,
    words: &[&str],
    owners: &mut Vec<Option<String>>,
) {
    match words {
        ["members", n] => {
            let n: usize = n.parse().unwrap();
            loop {
                let owning: std::collections::BTreeSet<String> =
                    (0..5_000u64).filter_map(|k| counts.owner_of(&k)).collect();
                if counts.members().len() == n && owning.len() == n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            say(&format!("counts members {n}"));
        }
        ["settled"] => {
            for _ in 0..2 {
                while counts.stats().in_transit > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(600)).await;
            }
            say("counts settled");
        }
        ["add", keys, times] => {
            let keys: u64 = keys.parse().unwrap();
            let times: u64 = times.parse().unwrap();
            for _ in 0..times {
                for k in 0..keys {
                    counts.addr(k).cast(CountMsg::Add).unwrap();
                }
            }
            // Each key's casts and then this call go on one lane: handled in order.
            for k in 0..keys {
                let n = counts
                    .addr(k)
                    .call_timeout(CountMsg::Get, Duration::from_secs(20))
                    .await
                    .unwrap();
                assert!(n >= times, "key {k}: {n}");
            }
            say("counts added");
        }
        ["owners", keys] => {
            let keys: u64 = keys.parse().unwrap();
            *owners = (0..keys).map(|k| counts.owner_of(&k)).collect();
            say("counts owners");
        }
        ["entities"] => say(&format!("counts entities {}", counts.stats().entities)),
        // The keys whose shard this node holds (owner or first replica, by rendezvous
        // over the members it sees) and that it keeps no checkpoint of.
        ["covered", keys] => {
            let keys: u64 = keys.parse().unwrap();
            let members = counts.members();
            let names: Vec<&str> = members.iter().map(String::as_str).collect();
            let (mut missing, mut as_owner) = (0, 0);
            for k in 0..keys {
                let shard = format!("counts/{}", counts.shard_of(&k));
                let holders = Rendezvous.rank(shard.as_bytes(), &names, &Load::new());
                let holds = holders.iter().take(2).any(|h| *h == me);
                if holds && counts.checkpoint_seq(&k).is_none() {
                    missing += 1;
                    if holders.first() == Some(&me) {
                        as_owner += 1;
                    }
                }
            }
            // The total first: the test reads a node as covered when it ends with ": 0".
            let detail = if missing > 0 {
                format!(" ({as_owner} as owner) 1")
            } else {
                String::new()
            };
            say(&format!("counts covered {missing}{detail}"));
        }
        ["copies"] => {
            let st = counts.stats();
            say(&format!(
                "counts copies {} {}",
                st.checkpoints, st.checkpoints_refused
            ));
        }
        ["check", keys, node, there, elsewhere] => {
            let keys: u64 = keys.parse().unwrap();
            let there: u64 = there.parse().unwrap();
            let elsewhere: u64 = elsewhere.parse().unwrap();
            let (mut ok, mut bad) = (0, 0);
            for k in 0..keys {
                let was = owners.get(k as usize).cloned().flatten();
                let want = if was.as_deref() == Some(*node) {
                    there
                } else {
                    elsewhere
                };
                match counts
                    .addr(k)
                    .call_timeout(CountMsg::Get, Duration::from_secs(20))
                    .await
                {
                    Ok(n) if n == want => ok += 1,
                    Ok(n) => {
                        bad += 1;
                        if bad < 5 {
                            eprintln!("count {k} (was on {was:?}): {n}, not {want}");
                        }
                    }
                    Err(e) => {
                        bad += 1;
                        eprintln!("count {k}: {e}");
                    }
                }
            }
            say(&format!("counts check {ok} {bad}"));
        }
        _ => say(&format!("unknown counts {}", words.join(" "))),
    }
}

fn by_owner_books(books: &Sharded<u64, BookMsg>, keys: u64) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for k in 0..keys {
        if let Some(o) = books.owner_of(&k) {
            *m.entry(o).or_default() += 1;
        }
    }
    m
}

/// How many of keys `0..keys` each node owns, by node.
fn by_owner(ledger: &Sharded<u64, LedgerMsg>, keys: u64) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for k in 0..keys {
        if let Some(o) = ledger.owner_of(&k) {
            *m.entry(o).or_default() += 1;
        }
    }
    m
}

fn counts(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(n, c)| format!("{n}={c}"))
        .collect::<Vec<_>>()
        .join(",")
}
