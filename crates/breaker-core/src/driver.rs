//! The `Driver` trait: the small versioned store a back-end provides, its dyn-compatible
//! form, and the errors a driver reports.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use crate::name::Name;
use crate::time::Timestamp;
use crate::timers::Timer;

/// A stored value with its version.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Versioned {
    /// The version, which only grows for a name and is never reused, even after the value
    /// expired or was deleted.
    pub version: u64,
    /// The encoded record, opaque to the driver.
    pub value: Vec<u8>,
    /// The name's timers still running, for a driver that keeps timers
    /// ([`Driver::keeps_timers`]); empty otherwise.
    pub timers: Vec<Timer>,
    /// The deltas appended to the record's log since it was last written, oldest first,
    /// each opaque to the driver ([`Driver::append`]); empty for a driver that keeps none.
    pub log: Vec<Vec<u8>>,
}

impl Versioned {
    /// A value of `version`, with no timers.
    pub fn new(version: u64, value: Vec<u8>) -> Self {
        Versioned {
            version,
            value,
            timers: Vec::new(),
            log: Vec::new(),
        }
    }

    /// The same value with these deltas appended to its log since it was written.
    pub fn with_log(mut self, log: Vec<Vec<u8>>) -> Self {
        self.log = log;
        self
    }

    /// The same value with these timers running.
    pub fn with_timers(mut self, timers: Vec<Timer>) -> Self {
        self.timers = timers;
        self
    }
}

/// The result of a compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Swap {
    /// The value was written with this new version.
    Swapped {
        /// The version just written.
        version: u64,
    },
    /// The stored version was not the expected one; nothing was written. `current` is what
    /// is stored now (`None`: nothing), so that the caller can retry without a second read.
    Conflict {
        /// The value found instead.
        current: Option<Versioned>,
    },
}

/// What a reviser ([`Driver::update`]) makes of the record it was shown.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revision {
    /// Leave the stored record as it is: nothing is written.
    Keep,
    /// Write `value` in place of the record shown, with an expiry after `ttl` (`None`:
    /// never).
    Write {
        /// The encoded record to store.
        value: Vec<u8>,
        /// How long the record lives.
        ttl: Option<Duration>,
    },
}

/// The result of a [`Driver::update`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Updated {
    /// The reviser kept the record; nothing was written.
    Kept,
    /// The reviser's value was written with this new version.
    Written {
        /// The version just written.
        version: u64,
    },
}

/// The reviser of a [`Driver::update`]: shown the record stored now (`None`: nothing), it
/// says what to make of it. It may be called again after a conflict, each time with the
/// record that won, so it must not assume it runs once.
pub type Reviser<'a> = dyn FnMut(Option<Versioned>) -> Revision + Send + 'a;

/// How often the default [`Driver::update`] revises after conflicting writes before it
/// gives up; a breaker's own compare-and-swap retries stop at the same count.
pub const MAX_UPDATE_ATTEMPTS: u32 = 64;

/// A change of one breaker's record, pushed by a driver that can watch. For a driver that
/// keeps timers, a timer that runs out is a change too: the same version, fewer timers.
#[derive(Clone, Debug)]
pub struct Change {
    /// The breaker whose record changed.
    pub name: Name,
    /// The record now stored (`None`: it was deleted or expired).
    pub record: Option<Versioned>,
}

/// Where a watching driver delivers changes. It must not block: it only updates memory.
pub type ChangeSink = Arc<dyn Fn(Change) + Send + Sync>;

/// A running watch, returned by [`Driver::watch`]. Dropping it stops the watch.
pub struct Watch {
    alive: Box<dyn Fn() -> bool + Send + Sync>,
    _stop: Box<dyn Send + Sync>,
}

impl Watch {
    /// A watch that is alive while `alive` returns true, and stops when `stop` is dropped.
    pub fn new(
        alive: impl Fn() -> bool + Send + Sync + 'static,
        stop: impl Send + Sync + 'static,
    ) -> Self {
        Watch {
            alive: Box::new(alive),
            _stop: Box::new(stop),
        }
    }

    /// Whether changes are still being delivered. While it is not, the breaker polls to keep
    /// its view within `max_staleness`.
    pub fn is_alive(&self) -> bool {
        (self.alive)()
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// A back-end's versioned store of breaker records.
///
/// A driver knows nothing of breakers: it stores opaque bytes per validated [`Name`], under
/// its own key prefix, with versions for compare-and-swap. All state-machine logic lives in
/// `breaker-core`. Prove an implementation with the conformance kit in `breaker-testing`.
///
/// # Contract for implementors
///
/// - Every method resolves within `timeout` (plus scheduling slack), failing with
///   [`DriverErrorKind::Timeout`] when it cannot; no method blocks the calling thread on I/O.
/// - Returned futures may be polled from any executor, including a blocking `block_on` on a
///   thread with no runtime: a driver built on a runtime runs its I/O on a runtime it owns or
///   a handle it captured.
/// - Versions of a name only grow and are never reused, even across expiry and deletion.
/// - `compare_and_swap` is atomic: of several concurrent swaps expecting the same version,
///   exactly one succeeds.
/// - Expiry is enforced by the back-end itself: an expired value is never returned.
/// - A driver that [appends](Driver::appends) returns every value with its log (load, list,
///   a conflict's current value, a push), empties the log with every compare-and-swap,
///   keeps the deltas a [compaction](Driver::compact) did not fold, and expires the log
///   with its value.
pub trait Driver: Send + Sync + 'static {
    /// A short name of the back-end for errors and metrics (`"memory"`, `"redis"`).
    fn backend(&self) -> &'static str;

    /// Loads the record of `name`, `None` if there is none.
    fn load(
        &self,
        name: &Name,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<Versioned>, DriverError>> + Send;

    /// Writes `value` if the stored version is `expected` (`None`: only if nothing is
    /// stored), with an expiry after `ttl` (`None`: never), in one atomic step.
    fn compare_and_swap(
        &self,
        name: &Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Swap, DriverError>> + Send;

    /// Every record under the driver's prefix, for operators; order unspecified.
    fn list(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<(Name, Versioned)>, DriverError>> + Send;

    /// Starts pushing changes of `name` to `sink`. `Ok(None)` means the driver cannot push;
    /// the breaker then polls. A watch that breaks reports it through [`Watch::is_alive`].
    fn watch(
        &self,
        name: &Name,
        sink: ChangeSink,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<Watch>, DriverError>> + Send {
        let _ = (name, sink, timeout);
        async { Ok(None) }
    }

    /// Whether the back-end keeps timers itself (etcd leases), so that the open period and
    /// probe leases end when the back-end says rather than by any agent's clock. A driver that
    /// answers `true` starts the timers given to [`Driver::compare_and_swap_with_timers`] in
    /// the same atomic step as the write, reports the running ones with every value it
    /// returns or pushes (a timer that runs out is pushed as a change), and lets each run
    /// out by itself, never before its duration (rounding up is fine).
    fn keeps_timers(&self) -> bool {
        false
    }

    /// [`Driver::compare_and_swap`] that also starts `timers`, each running for its
    /// duration, in the same atomic step, and only if the write succeeds. The breaker writes
    /// through this method; `timers` is empty unless the driver
    /// [keeps timers](Driver::keeps_timers). The default forwards to
    /// [`Driver::compare_and_swap`].
    fn compare_and_swap_with_timers(
        &self,
        name: &Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timers: Vec<(Timer, Duration)>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Swap, DriverError>> + Send {
        let _ = timers;
        self.compare_and_swap(name, expected, value, ttl, timeout)
    }

    /// Whether [`Driver::update`] is one atomic step in the back-end (a transaction that
    /// holds the record while the reviser runs), so that no other writer can come between
    /// the record shown and the one written. The breaker writes by compare-and-swap from
    /// its own view, which saves the read; where that conflicts, it retries through
    /// `update` if this answers `true`, so that an outcome costs at most two writes however
    /// many agents write the record, and otherwise (the default) by compare-and-swap again.
    /// A driver that [keeps timers](Driver::keeps_timers) is always written through
    /// [`Driver::compare_and_swap_with_timers`].
    fn updates_atomically(&self) -> bool {
        false
    }

    /// Shows `revise` the record of `name` and writes what it makes of it, as one step:
    /// no other write lands between the record shown and the one written. The default, for
    /// a driver that only has compare-and-swap, loads the record and swaps, revising again
    /// with the record that won each conflict, at most [`MAX_UPDATE_ATTEMPTS`] times, all
    /// within `timeout`. A driver that [updates atomically](Driver::updates_atomically)
    /// calls `revise` once.
    fn update<'a>(
        &'a self,
        name: &'a Name,
        revise: &'a mut Reviser<'_>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Updated, DriverError>> + Send + 'a {
        update_with_swaps(self, name, revise, timeout)
    }

    /// Whether the driver keeps a log of deltas beside each record ([`Driver::append`]), so
    /// that agents count outcomes without ever conflicting; a breaker whose policy
    /// [appends outcomes](crate::Policy::append_outcomes) then appends them. The default,
    /// for a driver of compare-and-swap alone, answers `false`: outcomes are then written
    /// into the record by compare-and-swap, as they always were.
    fn appends(&self) -> bool {
        false
    }

    /// Appends `delta` (opaque bytes) to the log beside the record of `name` as one atomic
    /// step that never conflicts: the record stays as it is, its version grows (so that a
    /// compare-and-swap from an older view conflicts and sees the delta), the log grows by
    /// `delta`, and the record's expiry moves to `ttl` from now if that is later (`None`:
    /// it never expires). With `notify`, watchers are pushed the change as for any write;
    /// without, the delta changes nothing a watcher acts on (successes alone, or anything
    /// under a rule that reads no successes), and a driver may leave them to find it at
    /// their next read or write. Returns the record and its
    /// whole log as now stored, or `None`, appending nothing, when no record is stored (the
    /// breaker then writes one by compare-and-swap) or the driver will not append to it
    /// now (a log at the driver's bound, a value that is not ours). Only called when
    /// [`Driver::appends`] answers `true`; the default refuses.
    fn append(
        &self,
        name: &Name,
        delta: Vec<u8>,
        ttl: Option<Duration>,
        notify: bool,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<Versioned>, DriverError>> + Send {
        let _ = (name, delta, ttl, notify, timeout);
        async {
            Err(DriverError::new(
                DriverErrorKind::Config,
                "append: this driver keeps no log",
            ))
        }
    }

    /// Writes `value` as the record of `name` in place of the record at version `expected`
    /// and the first `through` deltas of its log (which `value` folds), keeping the deltas
    /// appended since, as one atomic step: it conflicts only when the record was written
    /// (by compare-and-swap or compaction) since `expected`, not when it was only appended
    /// to, so that writing a long log into the record never races the appenders. The
    /// version grows, the kept deltas stay in order, and the expiry moves to `ttl` from now
    /// if that is later (`None`: never expires). The default, for a driver that keeps no
    /// log, is a compare-and-swap expecting `expected`.
    fn compact(
        &self,
        name: &Name,
        expected: u64,
        through: usize,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Swap, DriverError>> + Send {
        let _ = through;
        self.compare_and_swap(name, Some(expected), value, ttl, timeout)
    }

    /// The back-end's own clock, if it has one every agent can read (Redis server time).
    /// Breakers that were given no clock follow it, so no two agents' wall clocks are ever
    /// compared.
    fn now(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<Timestamp>, DriverError>> + Send {
        let _ = timeout;
        async { Ok(None) }
    }

    /// Which clock [`Driver::now`] reads, for breakers to share one alignment with it: the
    /// clones of one driver (one connection to one back-end) answer the same key, so that
    /// 10,000 breakers over it ask the back-end's time once, not 10,000 times, at start-up
    /// and at each periodic re-alignment. `None` (the default): every breaker aligns its
    /// own. The key is only compared while a breaker of the driver lives, so the address
    /// of the driver's shared state is a fine key.
    fn clock_key(&self) -> Option<usize> {
        None
    }
}

/// [`Driver::update`] by load and compare-and-swap on `driver`: the default for a driver
/// that does not [update atomically](Driver::updates_atomically), and for a wrapper that
/// must count the operations it is made of.
pub async fn update_with_swaps<D: Driver + ?Sized>(
    driver: &D,
    name: &Name,
    revise: &mut Reviser<'_>,
    timeout: Duration,
) -> Result<Updated, DriverError> {
    let started = Instant::now();
    let left = || {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            Err(DriverError::new(
                DriverErrorKind::Timeout,
                format!("update: no write within the {timeout:?} deadline"),
            ))
        } else {
            Ok(left)
        }
    };
    let mut current = driver.load(name, left()?).await?;
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let expected = current.as_ref().map(|v| v.version);
        let Revision::Write { value, ttl } = revise(current) else {
            return Ok(Updated::Kept);
        };
        match driver
            .compare_and_swap(name, expected, value, ttl, left()?)
            .await?
        {
            Swap::Swapped { version } => return Ok(Updated::Written { version }),
            Swap::Conflict { current: won } => current = won,
        }
    }
    Err(DriverError::new(
        DriverErrorKind::Other,
        format!("update: gave up after {MAX_UPDATE_ATTEMPTS} conflicting writes"),
    ))
}

/// The dyn-compatible form of [`Driver`], implemented for every driver; a breaker holds its
/// driver as `Arc<dyn DynDriver>`.
#[allow(missing_docs)] // Each method is its `Driver` namesake, boxed.
pub trait DynDriver: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    fn load<'a>(
        &'a self,
        name: &'a Name,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<Versioned>, DriverError>>;
    fn compare_and_swap<'a>(
        &'a self,
        name: &'a Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Swap, DriverError>>;
    fn list(&self, timeout: Duration)
    -> BoxFuture<'_, Result<Vec<(Name, Versioned)>, DriverError>>;
    fn watch<'a>(
        &'a self,
        name: &'a Name,
        sink: ChangeSink,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<Watch>, DriverError>>;
    fn keeps_timers(&self) -> bool;
    fn compare_and_swap_with_timers<'a>(
        &'a self,
        name: &'a Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timers: Vec<(Timer, Duration)>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Swap, DriverError>>;
    fn now(&self, timeout: Duration) -> BoxFuture<'_, Result<Option<Timestamp>, DriverError>>;
    fn clock_key(&self) -> Option<usize>;
    fn updates_atomically(&self) -> bool;
    fn appends(&self) -> bool;
    fn append<'a>(
        &'a self,
        name: &'a Name,
        delta: Vec<u8>,
        ttl: Option<Duration>,
        notify: bool,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<Versioned>, DriverError>>;
    fn compact<'a>(
        &'a self,
        name: &'a Name,
        expected: u64,
        through: usize,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Swap, DriverError>>;
    fn update<'a>(
        &'a self,
        name: &'a Name,
        revise: &'a mut Reviser<'_>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Updated, DriverError>>;
}

impl<D: Driver> DynDriver for D {
    fn backend(&self) -> &'static str {
        Driver::backend(self)
    }
    fn load<'a>(
        &'a self,
        name: &'a Name,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<Versioned>, DriverError>> {
        Box::pin(Driver::load(self, name, timeout))
    }
    fn compare_and_swap<'a>(
        &'a self,
        name: &'a Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Swap, DriverError>> {
        Box::pin(Driver::compare_and_swap(
            self, name, expected, value, ttl, timeout,
        ))
    }
    fn list(
        &self,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<(Name, Versioned)>, DriverError>> {
        Box::pin(Driver::list(self, timeout))
    }
    fn watch<'a>(
        &'a self,
        name: &'a Name,
        sink: ChangeSink,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<Watch>, DriverError>> {
        Box::pin(Driver::watch(self, name, sink, timeout))
    }
    fn keeps_timers(&self) -> bool {
        Driver::keeps_timers(self)
    }
    fn compare_and_swap_with_timers<'a>(
        &'a self,
        name: &'a Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timers: Vec<(Timer, Duration)>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Swap, DriverError>> {
        Box::pin(Driver::compare_and_swap_with_timers(
            self, name, expected, value, ttl, timers, timeout,
        ))
    }
    fn now(&self, timeout: Duration) -> BoxFuture<'_, Result<Option<Timestamp>, DriverError>> {
        Box::pin(Driver::now(self, timeout))
    }
    fn clock_key(&self) -> Option<usize> {
        Driver::clock_key(self)
    }
    fn updates_atomically(&self) -> bool {
        Driver::updates_atomically(self)
    }
    fn appends(&self) -> bool {
        Driver::appends(self)
    }
    fn append<'a>(
        &'a self,
        name: &'a Name,
        delta: Vec<u8>,
        ttl: Option<Duration>,
        notify: bool,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<Versioned>, DriverError>> {
        Box::pin(Driver::append(self, name, delta, ttl, notify, timeout))
    }
    fn compact<'a>(
        &'a self,
        name: &'a Name,
        expected: u64,
        through: usize,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Swap, DriverError>> {
        Box::pin(Driver::compact(
            self, name, expected, through, value, ttl, timeout,
        ))
    }
    fn update<'a>(
        &'a self,
        name: &'a Name,
        revise: &'a mut Reviser<'_>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Updated, DriverError>> {
        Box::pin(Driver::update(self, name, revise, timeout))
    }
}

/// What kind of trouble a driver ran into; the breaker's back-end failure policy treats them
/// alike, callers and operators tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DriverErrorKind {
    /// The back-end cannot be reached (connection refused, no quorum, file missing).
    Unavailable,
    /// The back-end did not answer within the deadline.
    Timeout,
    /// A stored value is not a record this build can read.
    Corrupt,
    /// The driver's configuration is wrong (bad URL, wrong credentials, foreign schema).
    Config,
    /// A stored record of a newer layout than this build reads: written by a newer build
    /// of the fleet. It is left as it is, and the breaker applies its back-end failure
    /// policy until the record is one it reads (see the changelog's upgrade notes).
    Incompatible,
    /// Anything else.
    Other,
}

impl fmt::Display for DriverErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriverErrorKind::Unavailable => "unavailable",
            DriverErrorKind::Timeout => "timed out",
            DriverErrorKind::Corrupt => "corrupt record",
            DriverErrorKind::Config => "configuration error",
            DriverErrorKind::Incompatible => "incompatible record",
            DriverErrorKind::Other => "error",
        })
    }
}

/// An error from a driver: a kind, a message, and optionally the underlying error. Cheap to
/// clone, so that one failure can reach the caller and the event stream.
#[derive(Clone, Debug)]
pub struct DriverError {
    kind: DriverErrorKind,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl DriverError {
    /// An error of `kind` with a message saying what went wrong. Never put a secret in it.
    pub fn new(kind: DriverErrorKind, message: impl Into<String>) -> Self {
        DriverError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error, returned by `source()`. The message should then say
    /// what was being done rather than repeat the source's words, so that a report walking
    /// the chain prints each message once.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The kind of trouble.
    pub fn kind(&self) -> DriverErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Checks a driver's namespace prefix for back-end `backend`: the characters of a breaker
/// name (ASCII letters, digits, `-`, `_`, `.`, `:`), so that no prefix holds the separator a
/// driver puts between it and a name, and the (prefix, name) to key mapping stays injective.
/// The error is a [`DriverErrorKind::Config`] naming the back-end and the prefix.
pub fn check_prefix(backend: &str, prefix: &str) -> Result<(), DriverError> {
    crate::Name::check(prefix).map_err(|_| {
        DriverError::new(
            DriverErrorKind::Config,
            format!("{backend}: invalid prefix {prefix:?}: use ASCII letters, digits, '-', '_', '.', ':'"),
        )
    })
}
