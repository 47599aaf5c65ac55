//! How long an entry lives: [`Ttl`] given on a write, [`TtlLeft`] reported by `ttl`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::TtlError;

/// How long an entry written with it lives.
///
/// Given on every write (`put`, `put_new`, `replace`, `put_many`, `incr`, `expire`,
/// `get_or_compute`). A write restarts the entry's clock; [`Ttl::Idle`] also restarts it on
/// every read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Ttl {
    /// The cache's default (set when the cache is built; never expires if none was set).
    #[default]
    Default,
    /// Never expires (it may still be evicted when the cache is full).
    Never,
    /// Expires this long after it was written.
    Live(Duration),
    /// Expires this long after it was last read or written.
    Idle(Duration),
}

impl Ttl {
    /// The longest TTL accepted: 100 years of 365 days. A longer one is refused with
    /// [`TtlError::TooLong`] rather than let its deadline overflow the clock.
    pub const MAX: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

    /// Checks the duration of a [`Ttl::Live`] or [`Ttl::Idle`].
    ///
    /// # Errors
    ///
    /// [`TtlError::Zero`] for a zero duration, [`TtlError::TooLong`] for one over
    /// [`Ttl::MAX`].
    pub fn validate(self) -> Result<Self, TtlError> {
        match self {
            Ttl::Live(d) | Ttl::Idle(d) if d.is_zero() => Err(TtlError::Zero),
            Ttl::Live(d) | Ttl::Idle(d) if d > Self::MAX => Err(TtlError::TooLong(d)),
            ttl => Ok(ttl),
        }
    }
}

impl From<Duration> for Ttl {
    /// A duration is a [`Ttl::Live`].
    fn from(d: Duration) -> Self {
        Ttl::Live(d)
    }
}

/// What is left of an entry's life, as [`Cache::ttl`](crate::Cache::ttl) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TtlLeft {
    /// The entry never expires.
    Never,
    /// The entry expires after this long, unless it is written (or, for [`Ttl::Idle`],
    /// read) again.
    After(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_overlong_ttls_are_refused_and_the_bounds_are_accepted() {
        assert_eq!(Ttl::Live(Duration::ZERO).validate(), Err(TtlError::Zero));
        assert_eq!(Ttl::Idle(Duration::ZERO).validate(), Err(TtlError::Zero));
        let over = Ttl::MAX + Duration::from_nanos(1);
        assert_eq!(Ttl::Live(over).validate(), Err(TtlError::TooLong(over)));
        assert_eq!(
            Ttl::Idle(Duration::MAX).validate(),
            Err(TtlError::TooLong(Duration::MAX))
        );
        assert_eq!(Ttl::Live(Ttl::MAX).validate(), Ok(Ttl::Live(Ttl::MAX)));
        let nano = Duration::from_nanos(1);
        assert_eq!(Ttl::Idle(nano).validate(), Ok(Ttl::Idle(nano)));
        assert_eq!(Ttl::Never.validate(), Ok(Ttl::Never));
        assert_eq!(Ttl::Default.validate(), Ok(Ttl::Default));
    }
}
