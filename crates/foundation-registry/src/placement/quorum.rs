//! Split-brain policies: which side of a partition keeps running distributed children, and
//! when each side acts. See the module docs of [`placement`](super) for the timing argument.

use std::time::{Duration, Instant};

use super::error::{QuorumError, QuorumLoss};
use super::view::View;

/// A split-brain policy: decides, from what this node can still reach, whether its side of
/// a partition keeps running distributed children.
///
/// Every policy is a pure function of the *last stable membership* (the members as they
/// were when membership last settled, without those that left gracefully), the members
/// this node reaches now, and this node's name. Two sides of a two-way partition each
/// evaluate it with their own view; the policies below are built so that at most one side
/// keeps running (for `StaticQuorum`, when its quorum exceeds half the stable membership:
/// see [`Quorum::validate`]).
///
/// Members that joined after the stable membership was taken do not count toward a
/// majority or quorum: a side cannot win by admitting new nodes during the partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Quorum {
    /// The side with a strict majority of the last stable membership keeps running; on an
    /// exact half, the side holding the smallest node name of that membership. The default.
    #[default]
    KeepMajority,
    /// The side holding the oldest member of the last stable membership (smallest
    /// incarnation, then smallest name) keeps running. With `down_if_alone`, an oldest
    /// member cut off alone stops instead and the rest keep running (so the crash of the
    /// oldest does not stop the whole cluster).
    KeepOldest {
        /// The oldest member, alone, gives way to the rest.
        down_if_alone: bool,
    },
    /// A side reaching at least this many members of the last stable membership keeps
    /// running. Must exceed half of the cluster's size to rule out two winners.
    StaticQuorum(usize),
    /// The side that reaches this node keeps running.
    KeepReferee(String),
    /// Every side that lost a member without a graceful leave stops: for clusters whose
    /// membership will not settle, where stopping everything is safer than guessing.
    DownAll,
}

/// What a side does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep running (and take over the children of the lost side, after
    /// [`Decision::start_after`]).
    Keep,
    /// Stop every distributed child here, with this reason.
    Stop(QuorumLoss),
}

impl Verdict {
    /// Whether this side keeps running.
    pub fn keeps(&self) -> bool {
        matches!(self, Self::Keep)
    }
}

impl Quorum {
    /// `KeepOldest` with `down_if_alone`, as Akka's default.
    pub fn keep_oldest() -> Self {
        Self::KeepOldest {
            down_if_alone: true,
        }
    }

    /// Whether this policy can keep its promise in a cluster whose stable membership is
    /// `stable`.
    ///
    /// # Errors
    ///
    /// [`QuorumError::QuorumTooSmall`] for a `StaticQuorum` of at most half the members (or
    /// zero), [`QuorumError::UnknownReferee`] for a referee that is not a member.
    pub fn validate(&self, stable: &View) -> Result<(), QuorumError> {
        match self {
            Self::StaticQuorum(quorum) if *quorum == 0 || quorum * 2 <= stable.len() => {
                Err(QuorumError::QuorumTooSmall {
                    quorum: *quorum,
                    size: stable.len(),
                })
            }
            Self::KeepReferee(referee) if !stable.contains(referee) => {
                Err(QuorumError::UnknownReferee {
                    referee: referee.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Whether the side of `me`, which reaches the members in `reachable` (itself
    /// included), keeps running, given the last stable membership `stable`.
    ///
    /// When no member of `stable` is missing from `reachable`, every policy keeps running.
    pub fn decide(&self, stable: &View, reachable: &View, me: &str) -> Verdict {
        let here: Vec<&str> = stable
            .names()
            .filter(|n| *n == me || reachable.contains(n))
            .collect();
        if here.len() == stable.len() {
            return Verdict::Keep;
        }
        match self {
            Self::KeepMajority => {
                let (r, s) = (here.len(), stable.len());
                if r * 2 > s {
                    Verdict::Keep
                } else if r * 2 == s {
                    // `names()` is sorted: the first is the smallest.
                    match stable.names().next() {
                        Some(smallest) if here.contains(&smallest) => Verdict::Keep,
                        smallest => Verdict::Stop(QuorumLoss::TieLost {
                            smallest: smallest.unwrap_or_default().to_owned(),
                        }),
                    }
                } else {
                    Verdict::Stop(QuorumLoss::Minority {
                        reachable: r,
                        stable: s,
                    })
                }
            }
            Self::KeepOldest { down_if_alone } => {
                let Some(oldest) = stable
                    .iter()
                    .min_by(|a, b| (a.incarnation, &a.id).cmp(&(b.incarnation, &b.id)))
                else {
                    return Verdict::Keep;
                };
                let oldest = oldest.id.as_str();
                let oldest_here = here.contains(&oldest);
                match (oldest_here, *down_if_alone) {
                    (true, true) if here.len() == 1 => Verdict::Stop(QuorumLoss::OldestAlone {
                        oldest: oldest.to_owned(),
                    }),
                    (true, _) => Verdict::Keep,
                    // The oldest is the only one missing: it is alone over there.
                    (false, true) if here.len() + 1 == stable.len() => Verdict::Keep,
                    (false, _) => Verdict::Stop(QuorumLoss::OldestUnreachable {
                        oldest: oldest.to_owned(),
                    }),
                }
            }
            Self::StaticQuorum(quorum) => {
                if here.len() >= *quorum {
                    Verdict::Keep
                } else {
                    Verdict::Stop(QuorumLoss::BelowQuorum {
                        reachable: here.len(),
                        quorum: *quorum,
                    })
                }
            }
            Self::KeepReferee(referee) => {
                if referee == me || reachable.contains(referee) {
                    Verdict::Keep
                } else {
                    Verdict::Stop(QuorumLoss::RefereeUnreachable {
                        referee: referee.clone(),
                    })
                }
            }
            Self::DownAll => Verdict::Stop(QuorumLoss::DownAll),
        }
    }
}

/// The timing of split-brain decisions: the failure detector's silence limit and the
/// margin the winning side adds before taking over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a member may stay silent before it is declared down (the failure
    /// detector's limit).
    pub silence: Duration,
    /// How much longer than `silence` the winning side waits before starting the lost
    /// side's children. See [`MarginBounds`].
    pub margin: Duration,
}

/// The bounds the [`Timing::margin`] must cover for the timing argument to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarginBounds {
    /// The heartbeat interval: the last heartbeat before a partition may be this old.
    pub heartbeat: Duration,
    /// The longest one-way delivery time of a message that does arrive.
    pub max_latency: Duration,
    /// How late after the silence limit the failure detector may notice (its check
    /// interval).
    pub detection_tick: Duration,
    /// The longest a child takes to stop (its shutdown timeout).
    pub shutdown: Duration,
    /// How far two clocks' rates may differ, in parts per million.
    pub drift_ppm: u32,
}

impl MarginBounds {
    /// The smallest margin that covers these bounds with a failure detector of `silence`:
    /// `heartbeat + max_latency + detection_tick + shutdown`, plus twice the drift over
    /// `silence` and that sum.
    pub fn margin(&self, silence: Duration) -> Duration {
        let base = self
            .heartbeat
            .saturating_add(self.max_latency)
            .saturating_add(self.detection_tick)
            .saturating_add(self.shutdown);
        let span = silence.saturating_add(base).as_nanos();
        let drift_nanos = (span * 2 * u128::from(self.drift_ppm)).div_ceil(1_000_000);
        base.saturating_add(Duration::from_nanos(
            u64::try_from(drift_nanos).unwrap_or(u64::MAX),
        ))
    }
}

/// What a node's I/O loop does after a membership change: the verdict and when to act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Keep running or stop.
    pub verdict: Verdict,
    /// On `Stop`: stop every distributed child here no later than this (the moment the
    /// lost members were declared down, so at once).
    pub stop_at: Option<Instant>,
    /// On `Keep` after members were lost: start none of the lost members' children here
    /// before this instant. `None` when nothing was lost.
    pub start_after: Option<Instant>,
}

impl Decision {
    /// Whether this node may start lost members' children (failover starts) at `now`:
    /// its side keeps running and `start_after` has passed.
    pub fn may_start(&self, now: Instant) -> bool {
        self.verdict.keeps() && self.start_after.is_none_or(|after| now >= after)
    }
}

impl Timing {
    /// A timing with `silence` and a margin covering `bounds`.
    pub fn for_bounds(silence: Duration, bounds: &MarginBounds) -> Self {
        Self {
            silence,
            margin: bounds.margin(silence),
        }
    }

    /// Decides for `me` with `quorum`, and says when to act. `last_heard` is when this
    /// node last heard anything from any member of `stable` it no longer reaches (by this
    /// node's own clock); it is ignored when none is missing.
    pub fn decide(
        &self,
        quorum: &Quorum,
        stable: &View,
        reachable: &View,
        me: &str,
        last_heard: Instant,
    ) -> Decision {
        let lost = stable.names().any(|n| n != me && !reachable.contains(n));
        let verdict = quorum.decide(stable, reachable, me);
        let down_at = last_heard.checked_add(self.silence);
        match verdict {
            Verdict::Stop(_) => Decision {
                verdict,
                stop_at: Some(down_at.unwrap_or(last_heard)),
                start_after: None,
            },
            Verdict::Keep => Decision {
                verdict,
                stop_at: None,
                start_after: lost
                    .then(|| down_at.and_then(|t| t.checked_add(self.margin)))
                    .flatten(),
            },
        }
    }
}
