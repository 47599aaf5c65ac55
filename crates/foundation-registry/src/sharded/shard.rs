//! One shard's entities: the hand-synchronised core of the runtime, without I/O.
//!
//! A [`Shard`] is plain data; the runtime keeps each behind its own mutex and calls every
//! method below under it. The protocol that makes one entity run one message at a time,
//! while any number of senders queue for it, is the `running` flag of its [`Entry`]:
//!
//! - [`Shard::deliver`] queues a message on its entity (creating the entry for a new key)
//!   and returns [`Delivered::run`] = true exactly when it set `running` from false to
//!   true: the caller then starts the entity's runner, handing it that message and the
//!   entity's state ([`Delivered::hand`]: the entity was idle, so its queue is empty and
//!   the message is not queued at all). Otherwise a runner is active and will see the
//!   message.
//! - A runner started without a message (passivation, a remembered entity, released
//!   held messages) takes the entity's state with [`Shard::take_state`]; one handed a
//!   message has it already and handles that message first. Then it calls
//!   [`Shard::next_with`] in a loop: it gets the next message, or a request to stop, or is told
//!   to park. Parking (queue empty) puts the state back and clears `running` in the same
//!   critical section, so a message delivered after that starts a new runner, and one
//!   delivered before it is handed to this one: never lost, never run twice, in order.
//! - Passivation (idle, least recently used, asked) marks an idle entity `running` and
//!   `stop`, so its runner's first step is to stop it; messages that arrive meanwhile
//!   queue behind the stop and start the entity again once its state is saved.
//!
//! The loom model in `tests/loom_shard.rs` checks these claims with senders, runners and
//! a passivation racing one another.

use std::collections::VecDeque;
use std::hash::Hash;

use foldhash::HashMap;

/// One entity: its state while idle, its queue, and the runner protocol's flags.
pub(crate) struct Entry<S, E> {
    /// The state while the entity is idle; `None` while a runner holds it, or before the
    /// entity has started.
    state: Option<S>,
    /// Messages not yet handed to a runner, oldest first. Empty and unallocated while idle.
    queue: VecDeque<E>,
    /// A runner owns the entity (see the module docs).
    running: bool,
    /// The runner is to stop the entity at its next step (passivation).
    stop: bool,
    /// The runner is to start the entity without a message (remembered entities).
    start: bool,
    /// Marked to stop because the shard was over its limit, and not parked since (counted
    /// in [`Shard::evicting`]).
    evicted: bool,
    /// The shard's delivery sequence at the last message: the LRU order.
    last_seq: u64,
    /// The runtime's clock (ms) at the last message: idle passivation.
    last_ms: u64,
}

/// What [`Shard::deliver`] asks of its caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Delivered<K, S, E> {
    /// Start a runner for the key delivered to.
    pub(crate) run: bool,
    /// With `run`: the message delivered, handed to the new runner as its first instead
    /// of queued (the entity was idle, so its queue was empty): an idle entity's first
    /// message allocates no queue. Beside it, the entity's state, taken out of its entry
    /// (`None` if it has not started): the runner starts with both, without taking the
    /// shard's lock again.
    pub(crate) hand: Option<(E, Option<S>)>,
    /// Start a runner for this key too: the least recently used idle entity, marked to
    /// stop because the shard is over its limit.
    pub(crate) evict: Option<K>,
}

/// What a runner does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<E> {
    /// Handle this message (starting the entity first if it has no state).
    Msg(E),
    /// Start the entity (it has no state), then ask again.
    Start,
    /// Stop the entity (save or terminate its state), then ask again.
    Stop,
    /// Nothing left: the state is back in the entry (or the entry is gone); end the runner.
    Park,
}

/// Why a delivery was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The shard has stopped for good.
    Stopped,
    /// The shard holds messages (not started yet, or in a move) and its backlog is full.
    Backlog,
}

/// The entities of one shard. Every method is called under the shard's lock.
pub(crate) struct Shard<K, S, E> {
    entities: HashMap<K, Entry<S, E>>,
    /// `Some` while the shard holds its messages (before its region starts; later, while
    /// it moves): they are delivered in order on [`Shard::release`].
    held: Option<VecDeque<(K, E)>>,
    /// How many messages may be held.
    backlog: usize,
    /// Stopped for good: deliveries are refused, queued messages dropped.
    stopped: bool,
    /// Draining for a move: each entity stops once its queue is empty, new deliveries
    /// are held (see [`Shard::drain`]).
    draining: bool,
    /// Deliveries so far: the LRU clock.
    seq: u64,
    /// Entities above which the least recently used idle one is passivated.
    limit: usize,
    /// Entities marked to stop for the limit that have not parked yet: they still count
    /// in `entities`, and are not passivated for again.
    evicting: usize,
}

impl<K: Hash + Eq + Clone, S, E> Shard<K, S, E> {
    /// An empty shard that holds its messages until [`Shard::release`].
    pub(crate) fn new(limit: usize, backlog: usize) -> Self {
        Self {
            entities: HashMap::default(),
            held: Some(VecDeque::new()),
            backlog,
            stopped: false,
            draining: false,
            seq: 0,
            limit: limit.max(1),
            evicting: 0,
        }
    }

    /// Queues `env` for `key`'s entity (see the module docs).
    pub(crate) fn deliver(
        &mut self,
        key: &K,
        env: E,
        now_ms: u64,
    ) -> Result<Delivered<K, S, E>, (Refused, E)> {
        if self.stopped {
            return Err((Refused::Stopped, env));
        }
        if let Some(held) = &mut self.held {
            if held.len() >= self.backlog {
                return Err((Refused::Backlog, env));
            }
            held.push_back((key.clone(), env));
            return Ok(Delivered {
                run: false,
                hand: None,
                evict: None,
            });
        }
        Ok(self.push(key, env, now_ms, true))
    }

    /// Queues `env` for `key`'s entity in an open shard; with `direct`, a message that
    /// starts a runner is handed to it ([`Delivered::hand`]) instead of queued.
    fn push(&mut self, key: &K, env: E, now_ms: u64, direct: bool) -> Delivered<K, S, E> {
        self.seq += 1;
        let seq = self.seq;
        if let Some(entry) = self.entities.get_mut(key) {
            entry.last_seq = seq;
            entry.last_ms = now_ms;
            if entry.running {
                entry.queue.push_back(env);
                return Delivered {
                    run: false,
                    hand: None,
                    evict: None,
                };
            }
            // Idle: nothing is queued (a runner parks only on an empty queue, and every
            // other way to `running` = false goes through a park).
            debug_assert!(entry.queue.is_empty());
            entry.running = true;
            let hand = if direct {
                Some((env, entry.state.take()))
            } else {
                entry.queue.push_back(env);
                None
            };
            return Delivered {
                run: true,
                hand,
                evict: None,
            };
        }
        let mut queue = VecDeque::new();
        let hand = if direct {
            Some((env, None))
        } else {
            queue.push_back(env);
            None
        };
        self.entities.insert(
            key.clone(),
            Entry {
                state: None,
                queue,
                running: true,
                stop: false,
                start: false,
                evicted: false,
                last_seq: seq,
                last_ms: now_ms,
            },
        );
        let evict = if self.entities.len() > self.limit + self.evicting {
            self.evict_lru()
        } else {
            None
        };
        Delivered {
            run: true,
            hand,
            evict,
        }
    }

    /// Marks the least recently used idle entity to stop; its key, for a runner.
    fn evict_lru(&mut self) -> Option<K> {
        let (key, entry) = self
            .entities
            .iter_mut()
            .filter(|(_, e)| !e.running && e.state.is_some())
            .min_by_key(|(_, e)| e.last_seq)?;
        entry.running = true;
        entry.stop = true;
        entry.evicted = true;
        self.evicting += 1;
        Some(key.clone())
    }

    /// The first step of a runner started without a message: takes the entity's state
    /// (`None` if it has not started).
    pub(crate) fn take_state(&mut self, key: &K) -> Option<S> {
        self.entities.get_mut(key).and_then(|e| e.state.take())
    }

    /// [`Shard::next_with`] with nothing to drop as the entity parks (the tests').
    #[cfg(test)]
    pub(crate) fn next(&mut self, key: &K, state: &mut Option<S>) -> Next<E> {
        self.next_with(key, state, |_| {}, &mut None)
    }

    /// The runner's next step (see the module docs). `state` is the runner's: on
    /// [`Next::Park`] it has been moved back into the entry, after `hibernate` ran on it
    /// (what the state can rebuild is dropped while the entity is idle). A park that
    /// leaves the shard over its limit marks the least recently used idle entity to stop
    /// and puts its key in `evict`, for a runner: entities that were all busy when a flood
    /// of new keys went over the limit are passivated as they go idle, so the shard comes
    /// back down to its limit instead of staying over it.
    pub(crate) fn next_with(
        &mut self,
        key: &K,
        state: &mut Option<S>,
        hibernate: impl FnOnce(&mut S),
        evict: &mut Option<K>,
    ) -> Next<E> {
        let stopped = self.stopped;
        let Some(entry) = self.entities.get_mut(key) else {
            return Next::Park;
        };
        if entry.stop {
            entry.stop = false;
            if state.is_some() {
                return Next::Stop;
            }
        }
        if stopped {
            // Stopped for good: what is queued is dropped (reply ports close), and a
            // running entity is stopped first.
            entry.queue = VecDeque::new();
            if state.is_some() {
                return Next::Stop;
            }
        }
        if let Some(env) = entry.queue.pop_front() {
            return Next::Msg(env);
        }
        if entry.start {
            entry.start = false;
            if state.is_none() && !self.draining {
                return Next::Start;
            }
        }
        if self.draining && state.is_some() {
            // Draining for a move: stopped once everything queued was handled.
            return Next::Stop;
        }
        entry.running = false;
        if entry.evicted {
            entry.evicted = false;
            self.evicting = self.evicting.saturating_sub(1);
        }
        if let Some(s) = state.as_mut() {
            hibernate(s);
        }
        entry.state = state.take();
        // Idle entities keep no queue allocation.
        entry.queue = VecDeque::new();
        if entry.state.is_none() {
            self.entities.remove(key);
        } else if self.entities.len() > self.limit + self.evicting {
            *evict = self.evict_lru();
        }
        Next::Park
    }

    /// Drops what is queued for `key` (a `Temporary` entity crashed).
    pub(crate) fn drop_queue(&mut self, key: &K) -> VecDeque<E> {
        self.entities
            .get_mut(key)
            .map(|e| std::mem::take(&mut e.queue))
            .unwrap_or_default()
    }

    /// Asks `key`'s entity to stop; `true` if the caller must start a runner for it (it
    /// was idle), `false` if its runner will see the request, or it is not running.
    pub(crate) fn request_stop(&mut self, key: &K) -> bool {
        let Some(e) = self.entities.get_mut(key) else {
            return false;
        };
        if e.running {
            e.stop = true;
            return false;
        }
        if e.state.is_none() {
            return false;
        }
        e.running = true;
        e.stop = true;
        true
    }

    /// Marks every idle entity whose last message came before `cutoff_ms` to stop; their
    /// keys, for runners.
    pub(crate) fn idle_since(&mut self, cutoff_ms: u64) -> Vec<K> {
        let mut keys = Vec::new();
        for (k, e) in &mut self.entities {
            if !e.running && e.state.is_some() && e.last_ms < cutoff_ms {
                e.running = true;
                e.stop = true;
                keys.push(k.clone());
            }
        }
        keys
    }

    /// Delivers the held messages, in order, and stops holding; the keys to start
    /// runners for.
    pub(crate) fn release(&mut self, now_ms: u64) -> Vec<K> {
        let Some(held) = self.held.take() else {
            return Vec::new();
        };
        let mut run = Vec::new();
        for (k, env) in held {
            // Queued, not handed: the runners start after the whole run is queued, in
            // order. Not held any more and not stopped (stop_all takes the held messages
            // first).
            let d = self.push(&k, env, now_ms, false);
            if d.run {
                run.push(k);
            }
            run.extend(d.evict);
        }
        run
    }

    /// Opens the shard (its region started, or started again after a stop): delivers the
    /// held messages; the keys to start runners for.
    pub(crate) fn open(&mut self, now_ms: u64) -> Vec<K> {
        self.stopped = false;
        self.release(now_ms)
    }

    /// Stops the shard for good: deliveries are refused from now on, held messages are
    /// returned (to be dropped), and every entity is marked to stop; the keys of the idle
    /// ones, for runners.
    pub(crate) fn stop_all(&mut self) -> (Vec<K>, VecDeque<(K, E)>) {
        self.stopped = true;
        let held = self.held.take().unwrap_or_default();
        let mut keys = Vec::new();
        for (k, e) in &mut self.entities {
            e.stop = true;
            if !e.running {
                e.running = true;
                keys.push(k.clone());
            }
        }
        (keys, held)
    }

    /// Starts `key`'s entity without a message if it has no entry (a remembered entity
    /// after its shard moved); `true` if the caller must start its runner.
    pub(crate) fn activate(&mut self, key: &K, now_ms: u64) -> bool {
        if self.stopped || self.held.is_some() || self.entities.contains_key(key) {
            return false;
        }
        self.seq += 1;
        self.entities.insert(
            key.clone(),
            Entry {
                state: None,
                queue: VecDeque::new(),
                running: true,
                stop: false,
                start: true,
                evicted: false,
                last_seq: self.seq,
                last_ms: now_ms,
            },
        );
        true
    }

    /// Starts holding new deliveries (the shard is not served here), if it is not
    /// already.
    pub(crate) fn hold(&mut self) {
        if self.held.is_none() {
            self.held = Some(VecDeque::new());
        }
    }

    /// How many messages it may hold.
    pub(crate) fn set_backlog(&mut self, n: usize) {
        self.backlog = n.max(1);
    }

    /// Whether the shard is open (delivering, not holding).
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.held.is_none() && !self.stopped
    }

    /// Drains the shard for a move: new deliveries are held from now on, every entity
    /// handles what is queued for it and then stops (its snapshot kept or its
    /// `terminate` run); the keys of the idle ones, for runners. The shard is drained
    /// once it has no entity left ([`Shard::len`] is 0).
    pub(crate) fn drain(&mut self) -> Vec<K> {
        self.draining = true;
        self.hold();
        let mut keys = Vec::new();
        for (k, e) in &mut self.entities {
            if !e.running {
                e.running = true;
                e.stop = true;
                keys.push(k.clone());
            }
        }
        keys
    }

    /// Ends a drain: the shard goes on holding; the messages held meanwhile, in order,
    /// for the shard's new owner.
    pub(crate) fn end_drain(&mut self) -> VecDeque<(K, E)> {
        self.draining = false;
        let held = self.held.take().unwrap_or_default();
        self.held = Some(VecDeque::new());
        held
    }

    /// Takes what the shard holds, in order; a holding shard goes on holding.
    pub(crate) fn take_held(&mut self) -> VecDeque<(K, E)> {
        self.held.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Ends a drain and goes on holding what came meanwhile, in order: the shard parks
    /// (its node lost the quorum) until it is opened or handed off.
    pub(crate) fn end_park(&mut self) {
        self.draining = false;
    }

    /// The keys of the entities in the shard.
    pub(crate) fn keys(&self) -> Vec<K> {
        self.entities.keys().cloned().collect()
    }

    /// Entities in the shard (running, idle, or being stopped).
    pub(crate) fn len(&self) -> usize {
        self.entities.len()
    }

    /// Entities a runner owns now.
    pub(crate) fn running(&self) -> usize {
        self.entities.values().filter(|e| e.running).count()
    }

    /// Whether `key` has an entry (started, starting, or being stopped).
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.entities.contains_key(key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod unit {
    use super::*;

    /// Starts a runner for `key` with its message `m`: asserts `m` is handed to it; the
    /// state handed beside it.
    fn run_with(shard: &mut Shard<u32, u32, u32>, key: u32, m: u32) -> Option<u32> {
        let d = shard.deliver(&key, m, 0).unwrap();
        assert!(d.run);
        let (handed, state) = d.hand.unwrap();
        assert_eq!(handed, m);
        state
    }

    fn started(shard: &mut Shard<u32, u32, u32>, key: u32) {
        let mut st = Some(run_with(shard, key, 0).unwrap_or(0));
        assert_eq!(shard.next(&key, &mut st), Next::Park);
    }

    #[test]
    fn a_message_while_running_goes_to_the_runner_in_order() {
        let mut s: Shard<u32, u32, u32> = Shard::new(10, 10);
        s.release(0);
        // A new entity has no state; the runner handles 10 and its state is 5.
        assert_eq!(run_with(&mut s, 1, 10), None);
        let d = s.deliver(&1, 11, 0).unwrap();
        assert!(!d.run && d.hand.is_none());
        let mut st = Some(5);
        assert!(!s.deliver(&1, 12, 0).unwrap().run);
        assert_eq!(s.next(&1, &mut st), Next::Msg(11));
        assert_eq!(s.next(&1, &mut st), Next::Msg(12));
        assert_eq!(s.next(&1, &mut st), Next::Park);
        assert!(st.is_none());
        // Parked: the next delivery starts a runner, handed the state with the message.
        assert_eq!(run_with(&mut s, 1, 13), Some(5));
        assert_eq!(s.take_state(&1), None);
    }

    #[test]
    fn held_messages_are_delivered_in_order_on_release() {
        let mut s: Shard<u32, u32, u32> = Shard::new(10, 2);
        assert!(!s.deliver(&1, 1, 0).unwrap().run);
        assert!(!s.deliver(&1, 2, 0).unwrap().run);
        assert_eq!(s.deliver(&1, 3, 0), Err((Refused::Backlog, 3)));
        assert_eq!(s.release(0), vec![1]);
        let mut st = None;
        assert_eq!(s.next(&1, &mut st), Next::Msg(1));
        assert_eq!(s.next(&1, &mut st), Next::Msg(2));
    }

    #[test]
    fn what_a_holding_shard_holds_is_taken_in_order_and_it_goes_on_holding() {
        let mut s: Shard<u32, u32, u32> = Shard::new(10, 10);
        assert!(!s.deliver(&1, 1, 0).unwrap().run);
        assert!(!s.deliver(&2, 2, 0).unwrap().run);
        assert_eq!(Vec::from(s.take_held()), vec![(1, 1), (2, 2)]);
        assert!(!s.is_open());
        assert!(!s.deliver(&1, 3, 0).unwrap().run);
        assert_eq!(Vec::from(s.take_held()), vec![(1, 3)]);
        // An open shard holds nothing, and taking leaves it open.
        assert!(s.release(0).is_empty());
        assert!(s.take_held().is_empty());
        assert!(s.is_open());
    }

    #[test]
    fn over_the_limit_the_least_recently_used_idle_entity_is_stopped() {
        let mut s: Shard<u32, u32, u32> = Shard::new(2, 10);
        s.release(0);
        started(&mut s, 1);
        started(&mut s, 2);
        // 1 is used again: 2 is now the least recently used.
        let mut st = run_with(&mut s, 1, 0);
        assert_eq!(s.next(&1, &mut st), Next::Park);
        let d = s.deliver(&3, 0, 0).unwrap();
        assert_eq!(
            d,
            Delivered {
                run: true,
                hand: Some((0, None)),
                evict: Some(2)
            }
        );
        let mut st2 = s.take_state(&2);
        assert_eq!(s.next(&2, &mut st2), Next::Stop);
        st2 = None;
        assert_eq!(s.next(&2, &mut st2), Next::Park);
        assert!(!s.contains(&2));
    }

    #[test]
    fn a_drained_shard_handles_what_was_queued_then_stops_its_entities_and_holds_the_rest() {
        let mut s: Shard<u32, u32, u32> = Shard::new(10, 10);
        s.release(0);
        started(&mut s, 1);
        assert_eq!(run_with(&mut s, 2, 20), None);
        // 1 is idle: a runner stops it; 2 has a message in hand: it is handled first.
        assert_eq!(s.drain(), vec![1]);
        assert!(!s.deliver(&2, 21, 0).unwrap().run);
        let mut st1 = s.take_state(&1);
        assert_eq!(s.next(&1, &mut st1), Next::Stop);
        st1 = None;
        assert_eq!(s.next(&1, &mut st1), Next::Park);
        // The runner started the entity and handled 20, handed to it.
        let mut st2 = Some(2);
        assert_eq!(s.next(&2, &mut st2), Next::Stop);
        st2 = None;
        assert_eq!(s.next(&2, &mut st2), Next::Park);
        assert_eq!(s.len(), 0);
        assert_eq!(s.end_drain(), VecDeque::from(vec![(2, 21)]));
        assert!(!s.is_open());
    }

    #[test]
    fn a_stopped_shard_refuses_and_stops_its_entities() {
        let mut s: Shard<u32, u32, u32> = Shard::new(2, 10);
        s.release(0);
        started(&mut s, 1);
        let (keys, held) = s.stop_all();
        assert_eq!(keys, vec![1]);
        assert!(held.is_empty());
        assert_eq!(s.deliver(&1, 9, 0), Err((Refused::Stopped, 9)));
        let mut st = s.take_state(&1);
        assert_eq!(s.next(&1, &mut st), Next::Stop);
        st = None;
        assert_eq!(s.next(&1, &mut st), Next::Park);
        assert_eq!(s.len(), 0);
    }
}

#[cfg(all(test, feature = "loom"))]
mod tests {
    mod loom_shard;
}
