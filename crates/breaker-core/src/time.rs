//! Time on the breaker's clock: the `Timestamp` type, the `Clock` trait and its two clocks.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time on a breaker's clock, in whole milliseconds since the clock's epoch.
///
/// Deadlines in the shared record (end of the open period, probe leases, window buckets) are
/// stored as timestamps and judged by the breaker's clock, never by comparing two agents'
/// wall clocks. All arithmetic saturates.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The clock's epoch.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The latest representable instant.
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// A timestamp `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at [`Timestamp::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(millis_of(d)))
    }

    /// The time from `earlier` to `self`, zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Whole milliseconds of a duration, saturating at `u64::MAX`.
pub(crate) fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A source of time for a breaker.
///
/// Implementations must be cheap: the breaker reads its clock on the hot path while open.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The host's real-time clock, read through the operating system's coarse clock.
///
/// A coarse read costs a few nanoseconds instead of a few dozen, at a resolution of a few
/// milliseconds, which is far finer than any breaker deadline needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(coarsetime::Clock::now_since_epoch().as_millis())
    }
}

/// A clock that moves only when told to: for tests, and for driving every driver through
/// the conformance kit deterministically. Clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    millis: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock that reads `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            millis: Arc::new(AtomicU64::new(start.0)),
        }
    }

    /// Moves the clock forward by `d` (saturating).
    pub fn advance(&self, d: Duration) {
        let add = millis_of(d);
        let _ = self
            .millis
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| {
                Some(m.saturating_add(add))
            });
    }

    /// Sets the clock to `t`; a manual clock may be moved backwards, to test clock skew.
    pub fn set(&self, t: Timestamp) {
        self.millis.store(t.0, Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.millis.load(Ordering::Acquire))
    }
}

/// A clock that follows another one shifted by an offset, so that an agent can read a
/// back-end's clock (say, Redis server time) without a round trip per read.
#[derive(Debug)]
pub(crate) struct OffsetClock {
    base: Arc<dyn Clock>,
    /// Signed offset in milliseconds, stored as the bits of an `i64`.
    offset: AtomicU64,
}

impl OffsetClock {
    pub(crate) fn new(base: Arc<dyn Clock>) -> Self {
        OffsetClock {
            base,
            offset: AtomicU64::new(0),
        }
    }

    /// The base clock's reading, to pair with a reading of the reference clock.
    pub(crate) fn base_now(&self) -> Timestamp {
        self.base.now()
    }

    /// Aligns the clock with a reading of the reference clock taken at `local` base time.
    pub(crate) fn align(&self, local: Timestamp, reference: Timestamp) {
        let offset = reference.0 as i128 - local.0 as i128;
        let offset = offset.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        self.offset.store(offset as u64, Ordering::Relaxed);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let offset = self.offset.load(Ordering::Relaxed) as i64;
        let base = self.base.now().0;
        Timestamp(if offset >= 0 {
            base.saturating_add(offset as u64)
        } else {
            base.saturating_sub(offset.unsigned_abs())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_arithmetic_saturates() {
        assert_eq!(
            Timestamp::MAX.saturating_add(Duration::from_secs(1)),
            Timestamp::MAX
        );
        assert_eq!(
            Timestamp::from_millis(5).saturating_duration_since(Timestamp::from_millis(9)),
            Duration::ZERO
        );
        assert_eq!(
            Timestamp::ZERO.saturating_add(Duration::MAX),
            Timestamp::MAX,
            "a duration beyond u64 milliseconds saturates"
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp::from_millis(1_000));
        let shared = clock.clone();
        assert_eq!(clock.now(), Timestamp::from_millis(1_000));
        shared.advance(Duration::from_millis(250));
        assert_eq!(clock.now(), Timestamp::from_millis(1_250));
        clock.set(Timestamp::from_millis(10));
        assert_eq!(shared.now(), Timestamp::from_millis(10));
    }

    #[test]
    fn offset_clock_follows_reference() {
        let base = ManualClock::new(Timestamp::from_millis(1_000));
        let clock = OffsetClock::new(Arc::new(base.clone()));
        clock.align(Timestamp::from_millis(1_000), Timestamp::from_millis(400));
        assert_eq!(clock.now(), Timestamp::from_millis(400));
        base.advance(Duration::from_millis(100));
        assert_eq!(clock.now(), Timestamp::from_millis(500));
        clock.align(Timestamp::from_millis(1_100), Timestamp::from_millis(9_100));
        assert_eq!(clock.now(), Timestamp::from_millis(9_100));
    }

    #[test]
    fn system_clock_is_near_the_host_clock() {
        let host = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let ours = SystemClock.now().as_millis();
        assert!(ours.abs_diff(host) < 1_000, "{ours} vs {host}");
    }
}
