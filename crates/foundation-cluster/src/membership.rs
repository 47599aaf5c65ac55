//! The membership view and its failure detection, as plain state: no I/O, no clock of its
//! own. The node's event loop feeds it what it hears (`heard`, `joined`, `leaving`,
//! `disconnected`) with the current time and asks it, at the next deadline, which peers
//! have gone silent. Tests drive it with made-up instants.
//!
//! # Failure detection
//!
//! Anything heard from a peer counts as a heartbeat. A peer heard from within the last
//! `silence` (3 s by default) is up; one silent for longer is declared down with
//! [`DownReason::Silent`]: a partition or a paused process. A closed connection is
//! reported at once ([`DownReason::Disconnected`]), so a killed peer is down as soon as its
//! socket closes. A busy peer whose heartbeats arrive late but within `silence` stays up.
//!
//! # Incarnations
//!
//! Each start of a node has a new incarnation (its start time, say). A join with a higher
//! incarnation than the member's replaces it: the old one goes down
//! ([`DownReason::Restarted`]) and the new one comes up. Anything heard from a lower
//! incarnation is ignored, so a restarted node's late packets cannot revive the old one.
//!
//! # Examples
//!
//! ```
//! use std::time::{Duration, Instant};
//! use foundation_cluster::membership::{DownReason, Membership, MembershipEvent, Member};
//!
//! let t0 = Instant::now();
//! let mut view = Membership::new(Duration::from_secs(3));
//! let events = view.joined(Member::new("b", "10.0.0.2:4369", 1), t0);
//! assert!(matches!(events[..], [MembershipEvent::NodeUp(ref m)] if m.id == "b"));
//! view.heard("b", 1, t0 + Duration::from_secs(2));
//! assert!(view.expire(t0 + Duration::from_secs(4)).is_empty()); // heard 2 s ago
//! let down = view.expire(t0 + Duration::from_secs(6));
//! assert!(matches!(down[..], [MembershipEvent::NodeDown { reason: DownReason::Silent, .. }]));
//! assert!(view.live().next().is_none());
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a peer may stay silent before it is declared down, by default.
pub const DEFAULT_SILENCE: Duration = Duration::from_secs(3);

/// A member of the cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node's name, unique in the cluster.
    pub id: String,
    /// Where it listens.
    pub addr: String,
    /// Which start of that node this is: higher is newer.
    pub incarnation: u64,
    /// Up, leaving or down.
    pub status: Status,
}

impl Member {
    /// A member that is up.
    pub fn new(id: impl Into<String>, addr: impl Into<String>, incarnation: u64) -> Self {
        Self {
            id: id.into(),
            addr: addr.into(),
            incarnation,
            status: Status::Up,
        }
    }
}

/// A member's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Live and reachable.
    Up,
    /// Announced a graceful leave; still reachable until it goes.
    Leaving,
    /// Gone: silent, disconnected, left or replaced by a newer incarnation.
    Down(DownReason),
}

/// Why a member went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// Nothing heard for longer than the silence limit (a partition, a paused process).
    Silent,
    /// Its connection closed (a killed process, a refused reconnect).
    Disconnected,
    /// It left gracefully.
    Left,
    /// A newer incarnation of the same node joined.
    Restarted,
}

/// What changed in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A member came up.
    NodeUp(Member),
    /// A member announced it is leaving.
    NodeLeaving(Member),
    /// A member went down.
    NodeDown {
        /// The member, as it was.
        member: Member,
        /// Why.
        reason: DownReason,
    },
}

#[derive(Debug)]
struct Entry {
    member: Member,
    last_heard: Instant,
}

/// The membership view: live members, their incarnations and when each was last heard.
#[derive(Debug)]
pub struct Membership {
    silence: Duration,
    /// Live and leaving members by id. Down members are removed (and reported).
    members: BTreeMap<String, Entry>,
    /// The highest incarnation seen per id, down ones included, so stale ones stay out.
    incarnations: BTreeMap<String, u64>,
}

impl Membership {
    /// An empty view declaring peers down after `silence` without a word.
    pub fn new(silence: Duration) -> Self {
        Self {
            silence,
            members: BTreeMap::new(),
            incarnations: BTreeMap::new(),
        }
    }

    /// A member connected and introduced itself. A newer incarnation replaces the old one
    /// (down, then up); an older one than already seen is ignored.
    pub fn joined(&mut self, member: Member, now: Instant) -> Vec<MembershipEvent> {
        let mut events = Vec::new();
        let known = self.incarnations.get(&member.id).copied();
        if known.is_some_and(|k| member.incarnation < k) {
            return events;
        }
        if let Some(e) = self.members.get_mut(&member.id) {
            if e.member.incarnation == member.incarnation {
                e.last_heard = e.last_heard.max(now);
                return events;
            }
            // A newer start of the same node: the old one is gone.
            if let Some(old) = self.members.remove(&member.id) {
                events.push(down(old.member, DownReason::Restarted));
            }
        }
        self.incarnations
            .insert(member.id.clone(), member.incarnation);
        let mut member = member;
        member.status = Status::Up;
        events.push(MembershipEvent::NodeUp(member.clone()));
        self.members.insert(
            member.id.clone(),
            Entry {
                member,
                last_heard: now,
            },
        );
        events
    }

    /// Something arrived from `id`'s incarnation `incarnation`: it counts as a heartbeat.
    /// Words from an older incarnation, or from a node not (or no longer) a member, are
    /// ignored: a member comes back only by joining again.
    pub fn heard(&mut self, id: &str, incarnation: u64, now: Instant) {
        if let Some(e) = self.members.get_mut(id) {
            if e.member.incarnation == incarnation {
                e.last_heard = e.last_heard.max(now);
            }
        }
    }

    /// `id` announced a graceful leave.
    pub fn leaving(&mut self, id: &str, incarnation: u64) -> Vec<MembershipEvent> {
        match self.members.get_mut(id) {
            Some(e) if e.member.incarnation == incarnation && e.member.status == Status::Up => {
                e.member.status = Status::Leaving;
                vec![MembershipEvent::NodeLeaving(e.member.clone())]
            }
            _ => Vec::new(),
        }
    }

    /// `id` has gone: its connection closed (`Disconnected`) or it finished leaving
    /// (`Left`).
    pub fn gone(&mut self, id: &str, incarnation: u64, reason: DownReason) -> Vec<MembershipEvent> {
        match self.members.get(id) {
            Some(e) if e.member.incarnation == incarnation => {
                let e = self.members.remove(id);
                e.map(|e| vec![down(e.member, reason)]).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// Declares down every member silent for longer than the limit at `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<MembershipEvent> {
        let silence = self.silence;
        let silent: Vec<String> = self
            .members
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last_heard) > silence)
            .map(|(id, _)| id.clone())
            .collect();
        silent
            .into_iter()
            .filter_map(|id| self.members.remove(&id))
            .map(|e| down(e.member, DownReason::Silent))
            .collect()
    }

    /// When the next member would go silent, for the event loop's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.members
            .values()
            .map(|e| e.last_heard + self.silence)
            .min()
    }

    /// The members up or leaving, by id.
    pub fn live(&self) -> impl Iterator<Item = &Member> {
        self.members.values().map(|e| &e.member)
    }

    /// The member `id`, if live.
    pub fn get(&self, id: &str) -> Option<&Member> {
        self.members.get(id).map(|e| &e.member)
    }
}

fn down(mut member: Member, reason: DownReason) -> MembershipEvent {
    member.status = Status::Down(reason);
    MembershipEvent::NodeDown { member, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn ids(events: &[MembershipEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                MembershipEvent::NodeUp(m) => format!("up:{}:{}", m.id, m.incarnation),
                MembershipEvent::NodeLeaving(m) => format!("leaving:{}", m.id),
                MembershipEvent::NodeDown { member, reason } => {
                    format!("down:{}:{}:{reason:?}", member.id, member.incarnation)
                }
            })
            .collect()
    }

    #[test]
    fn a_silent_peer_goes_down_after_the_limit_and_not_before() {
        let t0 = Instant::now();
        let mut v = Membership::new(DEFAULT_SILENCE);
        v.joined(Member::new("b", "b:1", 1), t0);
        assert_eq!(v.next_deadline(), Some(t0 + DEFAULT_SILENCE));
        assert!(
            v.expire(t0 + DEFAULT_SILENCE).is_empty(),
            "exactly at the limit: still up"
        );
        assert_eq!(
            ids(&v.expire(t0 + DEFAULT_SILENCE + secs(0.001))),
            ["down:b:1:Silent"]
        );
        assert!(v.get("b").is_none());
        assert_eq!(v.next_deadline(), None);
    }

    #[test]
    fn a_busy_peer_with_late_heartbeats_stays_up() {
        let t0 = Instant::now();
        let mut v = Membership::new(DEFAULT_SILENCE);
        v.joined(Member::new("b", "b:1", 1), t0);
        // Heartbeats every 0.5 s, some delayed by up to 2 s by a loaded CPU.
        let mut t = t0;
        for delay in [0.5, 0.5, 2.4, 0.1, 2.9, 0.5, 1.7] {
            t += secs(delay);
            assert!(v.expire(t).is_empty(), "declared down at +{:?}", t - t0);
            v.heard("b", 1, t);
        }
        assert_eq!(v.live().count(), 1);
    }

    #[test]
    fn a_closed_connection_is_down_at_once() {
        let t0 = Instant::now();
        let mut v = Membership::new(DEFAULT_SILENCE);
        v.joined(Member::new("b", "b:1", 1), t0);
        assert_eq!(
            ids(&v.gone("b", 1, DownReason::Disconnected)),
            ["down:b:1:Disconnected"]
        );
        assert!(
            v.gone("b", 1, DownReason::Disconnected).is_empty(),
            "reported once"
        );
    }

    #[test]
    fn a_newer_incarnation_replaces_the_old_and_stale_words_are_ignored() {
        let t0 = Instant::now();
        let mut v = Membership::new(DEFAULT_SILENCE);
        v.joined(Member::new("b", "b:1", 1), t0);
        assert_eq!(
            ids(&v.joined(Member::new("b", "b:2", 2), t0 + secs(1.0))),
            ["down:b:1:Restarted", "up:b:2"]
        );
        // The old incarnation's late packets neither refresh nor revive anything.
        v.heard("b", 1, t0 + secs(3.5));
        assert_eq!(ids(&v.expire(t0 + secs(4.1))), ["down:b:2:Silent"]);
        assert!(
            v.joined(Member::new("b", "b:1", 1), t0 + secs(5.0))
                .is_empty()
        );
        assert!(v.gone("b", 1, DownReason::Disconnected).is_empty());
        // The same incarnation joining again after a silent down comes back up.
        assert_eq!(
            ids(&v.joined(Member::new("b", "b:2", 2), t0 + secs(6.0))),
            ["up:b:2"]
        );
        // And a repeated join of a live incarnation is only a heartbeat.
        assert!(
            v.joined(Member::new("b", "b:2", 2), t0 + secs(8.0))
                .is_empty()
        );
        assert!(v.expire(t0 + secs(10.5)).is_empty());
    }

    #[test]
    fn a_graceful_leave_is_announced_then_down() {
        let t0 = Instant::now();
        let mut v = Membership::new(DEFAULT_SILENCE);
        v.joined(Member::new("b", "b:1", 1), t0);
        assert_eq!(ids(&v.leaving("b", 1)), ["leaving:b"]);
        assert!(v.leaving("b", 1).is_empty(), "announced once");
        assert_eq!(v.get("b").map(|m| m.status), Some(Status::Leaving));
        assert_eq!(ids(&v.gone("b", 1, DownReason::Left)), ["down:b:1:Left"]);
    }

    #[test]
    fn each_silent_peer_goes_down_at_its_own_deadline() {
        let t0 = Instant::now();
        let mut v = Membership::new(secs(1.0));
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            v.joined(Member::new(id, id, 1), t0 + secs(i as f64 * 0.5));
        }
        assert_eq!(v.next_deadline(), Some(t0 + secs(1.0)));
        assert_eq!(ids(&v.expire(t0 + secs(1.2))), ["down:a:1:Silent"]);
        assert_eq!(v.next_deadline(), Some(t0 + secs(1.5)));
        assert_eq!(
            ids(&v.expire(t0 + secs(2.1))),
            ["down:b:1:Silent", "down:c:1:Silent"]
        );
    }
}
