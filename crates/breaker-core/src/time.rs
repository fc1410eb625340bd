//! Time on the breaker's clock: the `Timestamp` type, the `Clock` trait and its two clocks.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
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

/// The host's clock, read in about a nanosecond.
///
/// Reading the real-time clock costs a few dozen nanoseconds, too much for a breaker's hot
/// path. This clock reads a timestamp that one background thread per process (started on
/// first use, named `breaker-clock`) refreshes every [`SYSTEM_CLOCK_TICK`]: a resolution far
/// finer than any breaker deadline needs. Should the thread fail to start, every read asks
/// the operating system instead.
///
/// The exact reading, [`SystemClock::precise`], is the host's wall-clock time when the
/// process first read it plus the *monotonic* time elapsed since, so a step of the host's
/// clock (an NTP correction, an operator's `date -s`) after that does not move any deadline.
/// The coarse reading (`now`) is the wall clock as the refreshing thread last saw it, shifted
/// by the difference the refreshing thread found at its last tick, so that after a step it
/// agrees again within a tick. A thread that is not scheduled leaves the coarse
/// reading behind (by hundreds of milliseconds on a loaded machine), so a breaker uses it only
/// to decide admission from its cached view, where lagging time errs on the safe side (an open
/// breaker rejects a little longer, upkeep comes a little later); every deadline it writes or
/// judges in the back-end's name is taken from the exact reading.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// How often the [`SystemClock`] thread refreshes the time.
pub const SYSTEM_CLOCK_TICK: Duration = Duration::from_millis(2);

/// Whether the refreshing thread runs: 0 not started yet, 1 running, 2 could not start.
static TICKING: AtomicU8 = AtomicU8::new(0);

#[inline]
fn ticking() -> bool {
    match TICKING.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => start_ticking(),
    }
}

#[cold]
fn start_ticking() -> bool {
    static START: OnceLock<bool> = OnceLock::new();
    let running = *START.get_or_init(|| {
        // A thread of our own rather than coarsetime's unnamed updater: an unnamed thread
        // takes the name of whichever thread first read the clock (a driver's worker, say),
        // which misleads anyone counting threads by name. The first reading is taken here, so
        // that no read sees the clock before the thread has run.
        coarsetime::Clock::update();
        std::thread::Builder::new()
            .name("breaker-clock".into())
            .spawn(|| {
                loop {
                    coarsetime::Clock::update();
                    note_step();
                    std::thread::sleep(SYSTEM_CLOCK_TICK);
                }
            })
            .is_ok()
    });
    TICKING.store(if running { 1 } else { 2 }, Ordering::Relaxed);
    running
}

/// The host clock's anchor: the wall-clock time at one monotonic instant, taken once per
/// process.
struct Anchor {
    wall_millis: u64,
    monotonic: std::time::Instant,
}

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| Anchor {
        wall_millis: wall_now(),
        monotonic: std::time::Instant::now(),
    })
}

fn wall_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, millis_of)
}

/// How far the anchored, monotonic time is from the host's wall-clock time, in milliseconds,
/// as the refreshing thread last found it: what the coarse reading (the wall clock as that
/// thread last saw it) is shifted by, so that both readings agree after a step of the host's
/// clock once the thread has run. Written only when the host's clock stepped, so the hot
/// path's cache line stays shared.
static STEP_CORRECTION: AtomicI64 = AtomicI64::new(0);

/// Measures the step correction again: the refreshing thread's work at each tick, so that
/// an exact reading is one reading of the monotonic clock (a failure's write takes three).
fn note_step() {
    let correction = step_correction(SystemClock::precise().as_millis(), wall_now());
    // Milliseconds truncate differently on the two clocks: leave a difference of one
    // alone, so that the shared line is written only when the host's clock stepped.
    if STEP_CORRECTION.load(Ordering::Relaxed).abs_diff(correction) > 1 {
        STEP_CORRECTION.store(correction, Ordering::Relaxed);
    }
}

impl SystemClock {
    /// The host's time read exactly now (one reading of the monotonic clock, a few dozen
    /// nanoseconds), not from the refreshing thread: what every deadline a breaker sets or
    /// judges for the fleet is taken from.
    pub fn precise() -> Timestamp {
        let a = anchor();
        Timestamp(
            a.wall_millis
                .saturating_add(millis_of(a.monotonic.elapsed())),
        )
    }
}

/// How far the anchored time is ahead of the host's wall clock `wall` (negative: behind).
fn step_correction(anchored: u64, wall: u64) -> i64 {
    i64::try_from(i128::from(anchored) - i128::from(wall)).unwrap_or(0)
}

/// The wall-clock reading `wall` shifted by a [`step_correction`], saturating.
#[inline]
fn corrected(wall: u64, correction: i64) -> u64 {
    if correction >= 0 {
        wall.saturating_add(correction.unsigned_abs())
    } else {
        wall.saturating_sub(correction.unsigned_abs())
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Timestamp {
        if ticking() {
            let wall = coarsetime::Clock::recent_since_epoch().as_millis();
            Timestamp(corrected(wall, STEP_CORRECTION.load(Ordering::Relaxed)))
        } else {
            SystemClock::precise()
        }
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

/// The host clock shifted by an offset, so that an agent can follow a back-end's clock
/// (say, Redis server time) without a round trip per read.
#[derive(Debug, Default)]
pub(crate) struct OffsetClock {
    /// Signed offset in milliseconds, stored as the bits of an `i64`.
    offset: AtomicU64,
}

impl OffsetClock {
    /// Aligns the clock with a reading of the reference clock taken at host time `local`.
    pub(crate) fn align(&self, local: Timestamp, reference: Timestamp) {
        let offset = reference.0 as i128 - local.0 as i128;
        let offset = offset.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        self.offset.store(offset as u64, Ordering::Relaxed);
    }

    /// `base` shifted by the offset, saturating.
    #[inline]
    pub(crate) fn shift(&self, base: Timestamp) -> Timestamp {
        let offset = self.offset.load(Ordering::Relaxed) as i64;
        Timestamp(if offset >= 0 {
            base.0.saturating_add(offset as u64)
        } else {
            base.0.saturating_sub(offset.unsigned_abs())
        })
    }
}

/// The host clock shifted onto one back-end's clock, shared by every breaker over the
/// same driver (see [`crate::Driver::clock_key`]), with when it was last aligned.
#[derive(Debug, Default)]
pub(crate) struct HostClock {
    pub(crate) offset: OffsetClock,
    /// When the offset was last aligned, in host milliseconds; 0: never.
    aligned_at: AtomicU64,
}

impl HostClock {
    /// The clock for a breaker over a driver of `key`: the one its other breakers use, or a
    /// new one (always, for a driver without a key).
    pub(crate) fn for_driver(key: Option<usize>) -> Arc<HostClock> {
        use std::sync::Weak;
        let Some(key) = key else {
            return Arc::default();
        };
        let mut shared = shared_clocks();
        if let Some(clock) = shared.get(&key).and_then(Weak::upgrade) {
            return clock;
        }
        // Forget the clocks of drivers that are gone, so the map holds live ones only.
        shared.retain(|_, clock| clock.strong_count() > 0);
        let clock = Arc::new(HostClock::default());
        shared.insert(key, Arc::downgrade(&clock));
        clock
    }

    /// How many drivers' clocks are kept (tests).
    #[cfg(test)]
    pub(crate) fn registered() -> usize {
        shared_clocks().len()
    }

    /// Whether the offset needs aligning at host time `now`: never aligned, or aligned
    /// `every` or longer ago. `claim` takes the alignment for the caller (others see it
    /// done meanwhile), so that a thousand breakers due at once send one reading.
    pub(crate) fn due(&self, now: Timestamp, every: Duration, claim: bool) -> bool {
        let at = self.aligned_at.load(Ordering::Acquire);
        let due = at == 0 || now.0 >= at.saturating_add(millis_of(every));
        due && (!claim
            || self
                .aligned_at
                .compare_exchange(at, now.0.max(1), Ordering::AcqRel, Ordering::Acquire)
                .is_ok())
    }

    /// The offset was aligned at host time `now`.
    pub(crate) fn aligned(&self, now: Timestamp) {
        self.aligned_at.store(now.0.max(1), Ordering::Release);
    }

    /// An alignment claimed at `claimed` failed: the next breaker due tries again.
    pub(crate) fn unclaim(&self, claimed: Timestamp) {
        let _ = self.aligned_at.compare_exchange(
            claimed.0.max(1),
            0,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Moves the last alignment back by `by` (tests).
    #[cfg(test)]
    pub(crate) fn age(&self, by: Duration) {
        let at = self.aligned_at.load(Ordering::Acquire);
        self.aligned_at
            .store(at.saturating_sub(millis_of(by)).max(1), Ordering::Release);
    }
}

/// The clock of each live driver that has a [`crate::Driver::clock_key`].
fn shared_clocks()
-> std::sync::MutexGuard<'static, std::collections::HashMap<usize, std::sync::Weak<HostClock>>> {
    type Clocks = std::sync::Mutex<std::collections::HashMap<usize, std::sync::Weak<HostClock>>>;
    static SHARED: OnceLock<Clocks> = OnceLock::new();
    SHARED
        .get_or_init(Clocks::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The clock a breaker judges deadlines by: an injected one, or the host clock shifted onto
/// the back-end's clock where the driver offers one.
#[derive(Debug)]
pub(crate) enum BreakerClock {
    Injected(Arc<dyn Clock>),
    Host(Arc<HostClock>),
}

impl BreakerClock {
    /// The time for every deadline the breaker sets or judges outside the hot path: exact,
    /// whatever the refreshing thread is doing.
    #[inline]
    pub(crate) fn now(&self) -> Timestamp {
        match self {
            BreakerClock::Injected(clock) => clock.now(),
            BreakerClock::Host(host) => host.offset.shift(SystemClock::precise()),
        }
    }

    /// The time for the hot path's admission from the cached view: read in a nanosecond,
    /// possibly behind. Behind, an open breaker rejects a little longer and upkeep comes a
    /// little later; no deadline is ever set from it.
    #[inline]
    pub(crate) fn recent(&self) -> Timestamp {
        match self {
            BreakerClock::Injected(clock) => clock.now(),
            BreakerClock::Host(host) => host.offset.shift(SystemClock.now()),
        }
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
    fn offset_clock_shifts_both_ways() {
        let clock = OffsetClock::default();
        let t = Timestamp::from_millis(1_000);
        assert_eq!(clock.shift(t), t);
        clock.align(t, Timestamp::from_millis(400));
        assert_eq!(
            clock.shift(Timestamp::from_millis(1_100)),
            Timestamp::from_millis(500)
        );
        clock.align(t, Timestamp::from_millis(9_000));
        assert_eq!(
            clock.shift(Timestamp::from_millis(1_100)),
            Timestamp::from_millis(9_100)
        );
        clock.align(Timestamp::MAX, Timestamp::ZERO);
        assert_eq!(clock.shift(t), Timestamp::ZERO, "saturates");
    }

    #[test]
    fn the_precise_clock_does_not_wait_for_the_refreshing_thread() {
        // The coarse reading may lag when its thread is starved; the precise one follows the
        // host at every read. Compared with the host's own clock around it.
        for _ in 0..100 {
            let before = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let precise = SystemClock::precise().as_millis();
            let after = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            // Anchored once, then monotonic: within a few milliseconds of the host, unless
            // the host's clock was stepped while this test ran.
            assert!(
                precise + 5 >= before && precise <= after + 5,
                "{before} <= {precise} <= {after}"
            );
        }
    }

    #[test]
    fn a_host_clock_step_is_undone_for_the_coarse_reading() {
        // Anchored at wall 10,000 s; 5 s of monotonic time later the host's clock is stepped
        // an hour forward (then, separately, an hour back): the exact reading is the anchor
        // plus the monotonic time, and the coarse reading, shifted by the correction the
        // exact reading found, agrees with it.
        let anchored = 10_005_000;
        for stepped in [anchored + 3_600_000, anchored - 3_600_000] {
            let correction = step_correction(anchored, stepped);
            assert_eq!(corrected(stepped, correction), anchored);
            // 2 ms later, on the refreshing thread's reading of the stepped clock.
            assert_eq!(corrected(stepped + 2, correction), anchored + 2);
        }
        assert_eq!(step_correction(7, 7), 0);
        assert_eq!(corrected(5, -10), 0, "saturates at the epoch");
        assert_eq!(
            corrected(u64::MAX - 1, 10),
            u64::MAX,
            "saturates at the end"
        );
        assert_eq!(
            step_correction(u64::MAX, 0),
            0,
            "out of range: no correction"
        );
    }

    #[test]
    fn a_starved_refresher_leaves_only_the_hot_path_behind() {
        let clock = BreakerClock::Host(Arc::default());
        let recent = clock.recent();
        // Busy for 30 ms without yielding to anything: the refresher may or may not have
        // run meanwhile, the precise reading has moved on regardless.
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::spin_loop();
        }
        let precise = clock.now();
        assert!(
            // The coarse reading may also run up to one coarse tick (4 ms) ahead.
            precise.as_millis() >= recent.as_millis() + 25,
            "{recent:?} then {precise:?}"
        );
        assert!(clock.recent() <= clock.now().saturating_add(Duration::from_millis(6)));
    }

    #[test]
    fn system_clock_is_near_the_host_clock() {
        let host = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let first = SystemClock.now().as_millis();
        assert!(first.abs_diff(host) < 1_000, "{first} vs {host}");
        // The refreshing thread keeps it moving.
        std::thread::sleep(Duration::from_millis(20));
        let again = SystemClock.now().as_millis();
        assert!(
            again > first && again - first < 1_000,
            "{first} then {again}"
        );
    }
}
