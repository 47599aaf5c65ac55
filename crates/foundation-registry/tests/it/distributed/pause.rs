//! A singleton's node paused (`SIGSTOP`) longer than the margin, with and without strict
//! mode. The test process holds a small fenced store (a UDP socket that keeps the largest
//! fencing token seen and refuses a write with a smaller one); each instance writes to it
//! when it starts, and the paused instance writes once more right after its resume (a
//! write begun before the pause). Without strict mode the paused instance runs on beside
//! its successor and the store accepts both: the overlap is reported. In strict mode the
//! successor starts only under a new lease, with a larger token, and the paused instance's
//! write is refused: no two instances' writes are ever accepted at once. Strict mode
//! across a real partition is here too: a cut-off owner of two leased singletons.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::harness::start;
use super::split::{Life, lives, one_at_a_time, overlaps, single};
use super::{converge, start_child, started_on};

/// One write, as the store received it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Write {
    id: String,
    node: String,
    token: u64,
    seq: u32,
    accepted: bool,
}

/// A store that fences: it keeps the largest token it has seen and refuses a write that
/// carries a smaller one. Writes are applied in the order they arrive.
struct FencedStore {
    addr: String,
    writes: mpsc::Receiver<Write>,
    /// Every write received so far, in order.
    log: Vec<Write>,
    done: Arc<AtomicBool>,
}

impl FencedStore {
    fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        let done = Arc::new(AtomicBool::new(false));
        let (tx, writes) = mpsc::channel();
        let stop = done.clone();
        std::thread::spawn(move || {
            let mut largest = 0;
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                let Ok(n) = socket.recv(&mut buf) else {
                    continue;
                };
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                let words: Vec<&str> = line.split(' ').collect();
                let [id, node, token, seq] = words[..] else {
                    panic!("bad write {line:?}");
                };
                let token: u64 = token.parse().unwrap();
                let accepted = token >= largest;
                largest = largest.max(token);
                let write = Write {
                    id: id.to_owned(),
                    node: node.to_owned(),
                    token,
                    seq: seq.parse().unwrap(),
                    accepted,
                };
                if tx.send(write).is_err() {
                    return;
                }
            }
        });
        Self {
            addr,
            writes,
            log: Vec::new(),
            done,
        }
    }

    /// Waits (up to 30 s: a bound for a hung test) for a write matching `want`.
    fn expect(&mut self, want: impl Fn(&Write) -> bool) -> Write {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let left = until
                .checked_duration_since(Instant::now())
                .unwrap_or_default();
            let write = self
                .writes
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no such write in 30 s; got {:?}", self.log));
            self.log.push(write.clone());
            if want(&write) {
                return write;
            }
        }
    }
}

impl Drop for FencedStore {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// Instances (node and token) whose accepted writes interleave: one accepted again after
/// another's accepted write followed its own (`A … B … A`). The store's view of two
/// instances acting at once.
fn interleaved(log: &[Write]) -> Vec<((String, u64), (String, u64))> {
    let mut found = Vec::new();
    let mut current: Option<(String, u64)> = None;
    let mut done: Vec<(String, u64)> = Vec::new();
    for w in log.iter().filter(|w| w.accepted) {
        let key = (w.node.clone(), w.token);
        if current.as_ref() == Some(&key) {
            continue;
        }
        if let Some(before) = current.take() {
            if done.contains(&key) {
                found.push((key.clone(), before.clone()));
            }
            done.push(before);
        }
        current = Some(key);
    }
    found
}

/// What a paused owner's run gave: the store's log, the successor's first write and
/// the paused instance's late one, and every instance's life.
struct Paused {
    log: Vec<Write>,
    successor: Write,
    late: Write,
    lives: Vec<Life>,
}

/// Three nodes (1 s silence, 0.5 s margin), strict or not; a singleton `id`; its node
/// paused from just after the child began a write until a successor has written; then
/// resumed, the write finished; every node agreeing on one instance at the end.
fn pause_the_owner(strict: bool, id: &str) -> Paused {
    let mut store = FencedStore::start();
    let mut settings = vec![
        ("SILENCE_MS", "1000"),
        ("MARGIN_MS", "500"),
        ("STORE", store.addr.as_str()),
    ];
    if strict {
        settings.push(("STRICT", "1"));
    }
    let a = start("a", &settings);
    let seed = a.addr.clone();
    settings.push(("SEEDS", &seed));
    let b = start("b", &settings);
    let c = start("c", &settings);
    let mut nodes = [a, b, c];
    for node in &mut nodes {
        node.tell("members 3");
        node.expect(|l| l == "members 3");
        if strict {
            node.tell("leader");
            node.expect(|l| l.starts_with("leader "));
        }
    }
    let owner = started_on(&start_child(&mut nodes[0], &format!("echo {id} singleton")));
    let x = nodes.iter().position(|n| n.name == owner).unwrap();
    let first = store.expect(|w| w.id == id && w.seq == 0);
    assert_eq!(
        (first.node.as_str(), first.accepted),
        (owner.as_str(), true)
    );
    assert_eq!(first.token > 0, strict, "{first:?}");

    // The owner's child reads its token and begins a write; its node stops dead.
    nodes[x].tell(&format!("slowwrite {id}"));
    nodes[x].expect(|l| l.starts_with(&format!("fence read {id} ")));
    nodes[x].pause(true);
    // The other two declare it down and, past the margin (and in strict mode once the
    // lease ran out), start a successor, which writes.
    let successor = store.expect(|w| w.id == id && w.seq == 0 && w.node != owner);
    assert!(successor.accepted, "{successor:?}");
    nodes[x].pause(false);
    nodes[x].tell("go");
    let late = store.expect(|w| w.id == id && w.node == owner && w.seq == 1);

    // Every node agrees on one instance in the end.
    let table = format!("{id}={}/running;", single(&mut nodes[(x + 1) % 3], id));
    for node in &mut nodes {
        converge(node, 1, &table);
    }
    let lives = lives(&mut nodes, id);
    Paused {
        log: store.log.clone(),
        successor,
        late,
        lives,
    }
}

#[test]
fn without_strict_mode_a_node_paused_past_the_margin_runs_beside_its_successor() {
    let run = pause_the_owner(false, "np1");
    // No tokens: the store cannot tell the paused instance's late write from a current
    // one, and takes it after the successor's. Two instances acted at once: reported.
    assert!(run.late.accepted, "{:?}", run.log);
    assert_ne!(interleaved(&run.log), Vec::new(), "{:?}", run.log);
    let both = overlaps(&run.lives);
    assert_ne!(both, Vec::new(), "{:?}", run.lives);
    eprintln!("without strict mode, instances overlapped: {both:?}");
}

#[test]
fn in_strict_mode_a_paused_holders_writes_are_refused_by_its_fencing_token() {
    let run = pause_the_owner(true, "sp1");
    // The successor runs under a newer lease; the paused instance's write carries the old
    // token and is refused.
    assert!(run.successor.token > run.late.token, "{:?}", run.log);
    assert!(!run.late.accepted, "{:?}", run.log);
    // No two instances' writes were ever accepted at once.
    assert_eq!(interleaved(&run.log), Vec::new(), "{:?}", run.log);
    // The paused process itself lived on past its lease (nothing can stop a stopped
    // process): what strict mode rules out is its effect.
    eprintln!("strict mode, process lives: {:?}", run.lives);
}

#[test]
fn in_strict_mode_a_cut_off_owner_stops_every_leased_singleton_before_the_majority_starts_them() {
    use super::harness::{Net, three_in};
    use super::moved;
    use super::split::id_owned_by;

    let net = Net::new(3);
    let mut nodes = three_in(&net, &[("MARGIN_MS", "2000"), ("STRICT", "1")]);
    for node in &mut nodes {
        node.tell("leader");
        node.expect(|l| l.starts_with("leader "));
    }
    // Two strict singletons on c: cut off, c has neither the supervisor's quorum nor the
    // Raft group's, and must stop both (its lease releases cannot be written) in time.
    let ids = [id_owned_by("sa", "c", 3), id_owned_by("sb", "c", 3)];
    for id in &ids {
        let at = started_on(&start_child(&mut nodes[0], &format!("echo {id} singleton")));
        assert_eq!(at, "c");
    }
    net.cut(2);
    nodes[2].expect(|l| l == "ev quorumlost");
    for id in &ids {
        let (at, _) = moved(&mut nodes[0], id, "c", "ev started");
        assert_ne!(at, "c");
    }
    net.heal(2);
    nodes[2].expect(|l| l == "ev quorumback");
    for id in &ids {
        let at = single(&mut nodes[0], id);
        for node in &mut nodes {
            node.tell(&format!("await {id} {at}"));
            node.expect(|l| l == format!("at {id} {at}"));
        }
        one_at_a_time(&mut nodes, id);
    }
}
