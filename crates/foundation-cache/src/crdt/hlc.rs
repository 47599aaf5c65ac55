//! Hybrid logical clocks: wall-clock time that never goes backwards and orders causally
//! related events.

use serde::{Deserialize, Serialize};

/// A hybrid logical clock reading: milliseconds of wall-clock time, then a logical counter
/// that orders readings within the same millisecond (or while the wall clock lags behind
/// a reading already seen). Ordered by `wall`, then `logical`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp {
    /// Wall-clock milliseconds (since the Unix epoch, by convention).
    pub wall: u64,
    /// Orders readings with the same `wall`.
    pub logical: u32,
}

impl Timestamp {
    /// The next reading after `self` (the latest reading seen) when the wall clock says
    /// `wall_ms`: the wall clock if it is ahead, else `self` with the counter bumped
    /// (carrying into the next millisecond if the counter is full). Always `> self`.
    #[must_use]
    pub fn next(self, wall_ms: u64) -> Timestamp {
        if wall_ms > self.wall {
            Timestamp {
                wall: wall_ms,
                logical: 0,
            }
        } else if self.logical < u32::MAX {
            Timestamp {
                wall: self.wall,
                logical: self.logical + 1,
            }
        } else {
            Timestamp {
                wall: self.wall.saturating_add(1),
                logical: 0,
            }
        }
    }
}

/// A hybrid logical clock: hands out increasing [`Timestamp`]s, and moves past every
/// timestamp it is shown, so an event after another (on any replica) reads later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hlc {
    last: Timestamp,
}

impl Hlc {
    /// A clock that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new reading, later than every one handed out or observed, when the wall clock
    /// says `wall_ms`.
    pub fn now(&mut self, wall_ms: u64) -> Timestamp {
        self.last = self.last.next(wall_ms);
        self.last
    }

    /// Records a timestamp seen from elsewhere: later readings are after it.
    pub fn observe(&mut self, seen: Timestamp) {
        self.last = self.last.max(seen);
    }

    /// The latest reading handed out or observed.
    pub fn last(&self) -> Timestamp {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_increase_whatever_the_wall_clock_does_and_pass_what_was_observed() {
        let mut c = Hlc::new();
        let a = c.now(100);
        let b = c.now(100);
        let d = c.now(50); // the wall clock went backwards
        assert!(a < b && b < d);
        assert_eq!(d.wall, 100);
        c.observe(Timestamp {
            wall: 500,
            logical: 7,
        });
        let e = c.now(200);
        assert_eq!(
            e,
            Timestamp {
                wall: 500,
                logical: 8
            }
        );
        let full = Timestamp {
            wall: 9,
            logical: u32::MAX,
        };
        assert_eq!(
            full.next(0),
            Timestamp {
                wall: 10,
                logical: 0
            }
        );
        assert!(c.now(1_000) > e);
    }
}
