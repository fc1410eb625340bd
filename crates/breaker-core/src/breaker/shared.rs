//! Keeping the agent's view in step with the shared record: loading, compare-and-swap
//! updates, installing pushed changes, and the back-end failure policy (degraded mode,
//! reconnect backoff, local fallback, recovery).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use crate::driver::{
    Change, ChangeSink, DriverError, DriverErrorKind, DynDriver, MAX_UPDATE_ATTEMPTS, Revision,
    Swap, Updated, Versioned, Watch,
};
use crate::error::{BackendError, Operation};
use crate::events::{Cause, Event, EventHub};
use crate::machine;
use crate::name::Name;
use crate::policy::{BackendFailure, Policy};
use crate::record::{Record, RecordError};
use crate::time::{BreakerClock, SystemClock, Timestamp};
use crate::timers::{self, RunningTimers, Timer};

use super::hot::{HotView, Pending};
use super::permit::Deferred;

/// Readings of the back-end's clock taken to align with it.
const CLOCK_SAMPLES: usize = 5;

/// A reading whose round trip is this short is good enough to stop sampling.
const GOOD_CLOCK_SAMPLE: Duration = Duration::from_millis(2);

/// How often an agent aligns its clock with the back-end's again.
const CLOCK_REALIGN: Duration = Duration::from_secs(300);

/// Writes faster than this on average are made by the failing caller itself: handing one to
/// the background writer costs a wake-up and a context switch on each side (several
/// microseconds on a loaded host), more than an in-process store's whole write.
const INLINE_WRITE_BELOW: Duration = Duration::from_micros(20);

/// How many of a breaker's first writes are all timed (see `Inner::write_timer`).
const WRITES_TIMED_FIRST: u32 = 8;

/// After the first, one write in this many is timed.
const WRITES_TIMED_EVERY: u32 = 16;

/// The one deadline of a caller-visible operation (a call's admission, an outcome's write,
/// an operator action, a flush), shared by all of its steps and retries: the clock
/// alignment, the load, the write-back of a lost forced state, the watch, every
/// compare-and-swap attempt. So a caller waits at most `backend_timeout` (and the drivers'
/// scheduling slack), whatever the back-end does, rather than the timeout once per step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(std::time::Instant);

impl Deadline {
    /// `budget` from now.
    pub(crate) fn after(budget: Duration) -> Self {
        let now = std::time::Instant::now();
        // A budget too long to represent is as good as none.
        Deadline(
            now.checked_add(budget)
                .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365)),
        )
    }

    /// What is left for the next step: at least a millisecond, so that a step past the
    /// deadline fails at once as a timeout, by the driver's own means.
    pub(crate) fn left(&self) -> Duration {
        self.0
            .saturating_duration_since(std::time::Instant::now())
            .max(Duration::from_millis(1))
    }
}

/// How a stored value reached the agent, which decides whether an absent one may replace
/// the view: versions tell a stale value from a newer one, but an absence has no version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// Pushed by the driver's watch (including the reload a watch makes when it starts,
    /// which may have been read before this agent's own latest write).
    Pushed,
    /// Read by a load that began when the view was at install number `seq`.
    Loaded { seq: u64 },
    /// The store's value as a compare-and-swap found it: as of that write.
    Conflict,
}

/// Whether the back-end answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Health {
    Healthy,
    /// Unreachable; not tried again before `retry_at`, and then only by one caller.
    Down {
        retry_at: Timestamp,
        delay: Duration,
    },
}

/// The agent's copy of the shared record and what goes with it.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The cached shared record, or the local record while degraded.
    pub(crate) record: Record,
    /// Under a quorum, the agent's own breaker (see `own`): its own outcomes, by the policy
    /// without the quorum. `None` (closed) until its first outcome, and always without a
    /// quorum, so that a breaker without one holds no second record.
    pub(crate) own: Option<Box<Record>>,
    /// Its version in the back-end (`None`: absent there).
    pub(crate) version: Option<u64>,
    /// A [`digest`] of the stored bytes at `version`: a store that lost its data and counts
    /// its versions again from the start reuses a version for other contents, which must not
    /// pass for the record this agent holds.
    pub(crate) digest: u64,
    pub(crate) loaded: bool,
    /// Counts installs, so that a load can tell whether the view changed while it ran.
    pub(crate) installs: u64,
    pub(crate) health: Health,
    pub(crate) last_error: Option<BackendError>,
    pub(crate) last_sync: Timestamp,
    pub(crate) watch: Option<Watch>,
    /// The back-end lost the forced state this agent obeys: write it back.
    pub(crate) lost_forced: bool,
    /// A value older than the view arrived: read the record at the next upkeep, to tell a
    /// stale push from a store that went back.
    pub(crate) verify: bool,
    /// Outcomes that could not be written when they happened (a probe permit dropped
    /// unreported, a call that panicked inside a future), written at the next maintenance.
    pub(crate) queued: Vec<Deferred>,
    /// Closed-state outcomes of one generation that the cached mode writes in the
    /// background (failures, slow calls), merged until the writer takes them.
    pub(crate) unsent: Option<(u64, machine::Tally)>,
    /// The [`digest`] of this agent's compare-and-swap in flight, if any: its push (an
    /// in-process store pushes before the swap returns) is the record the writer installs
    /// itself, not one to decode again.
    pub(crate) own_write: Option<u64>,
    /// The view was folded from a log that should be written into the record (a fold that
    /// tripped, a log at its limit, a delta dropped): the next upkeep compacts it, if this
    /// agent's own write has not (see `append`).
    pub(crate) compact_due: bool,
    /// How many deltas of a log the view was folded from (see `append`).
    pub(crate) log_len: usize,
    /// A [`digest`] of the last of those deltas (0: none). A log only grows between
    /// writes of the record, and every write of it but the rarest (a compaction that folded
    /// only outcomes of an ended generation) changes its bytes, so a value of the same
    /// record bytes whose delta at that place is this one holds the view's deltas, and more
    /// after them are folded from where the view left off. Checking the one delta rather
    /// than all of them halved a failure's cost on the memory driver.
    pub(crate) log_tail: u64,
    /// The highest version pushed so far: a push below it is out of the store's order.
    pub(crate) pushed: u64,
}

impl Shared {
    pub(crate) fn degraded(&self) -> bool {
        matches!(self.health, Health::Down { .. })
    }

    /// The error the breaker is degraded by, if it is (a read may have just found the
    /// stored record incompatible).
    pub(crate) fn down_error(&self) -> Option<BackendError> {
        self.last_error.clone().filter(|_| self.degraded())
    }

    /// The cached record as the local fallback breaker works on it: by this agent's clock,
    /// since the back-end that keeps the timers cannot be asked.
    pub(crate) fn local_record(&self) -> Record {
        let mut rec = self.record.clone();
        rec.timers = None;
        rec
    }
}

/// Everything a breaker handle shares.
///
/// Laid out in the order written (`repr(C)`), with what a call admitted while closed reads
/// first: the cached view, the clock, the classifiers and three of the policy's answers,
/// copied here so that such a call reads neither the policy nor anything past the first
/// 64 bytes. With many breakers called in no order, each call is a cache miss: one line
/// instead of the three or four the compiler's own order spread these fields over.
#[repr(C)]
pub(crate) struct Inner {
    pub(crate) hot: HotView,
    pub(crate) clock: BreakerClock,
    /// The classifiers of `call` and `call_blocking`.
    pub(crate) classifiers: crate::outcome::DefaultClassifiers,
    /// Whether a trip rule reads successes ([`Policy::needs_successes`]): without one, a
    /// success is neither counted nor written once the breaker's record exists.
    pub(crate) needs_successes: bool,
    /// The policy's `strict`.
    pub(crate) strict: bool,
    /// Whether the policy has a slow-call rule, so that a call must be timed.
    pub(crate) times_calls: bool,
    // The closed call's fields end here; the small ones below fill the rest of the line
    // rather than leave padding further on.
    /// The back-end keeps the open period and probe leases as timers and judges them (the
    /// driver keeps timers and no clock was injected).
    pub(crate) timers: bool,
    /// The driver [updates atomically](crate::Driver::updates_atomically) and keeps no
    /// timers: a write that conflicts is retried through its `update`, which cannot
    /// conflict again.
    pub(crate) atomic: bool,
    /// The policy [appends outcomes](Policy::append_outcomes), the driver
    /// [appends](crate::Driver::appends) and keeps no timers: closed-state outcomes are
    /// appended to the record's log (see `append`).
    pub(crate) appends: bool,
    pub(crate) maintaining: AtomicBool,
    /// Set while the breaker waits in its background writer's queue.
    pub(crate) write_queued: AtomicBool,
    /// Writes begun, for [`Inner::write_timer`]'s sampling.
    pub(crate) writes: std::sync::atomic::AtomicU32,
    pub(crate) name: Name,
    pub(crate) policy: Arc<Policy>,
    /// The policy of the agent's own breaker under a quorum (`None`: no quorum).
    pub(crate) own_policy: Option<Box<Policy>>,
    pub(crate) driver: Arc<dyn DynDriver>,
    pub(crate) backend: &'static str,
    /// This agent's identity in the records it writes.
    pub(crate) agent: u64,
    /// A moving average of this breaker's compare-and-swap times, in microseconds
    /// (`u64::MAX` until the first): decides whether a failure is written by its caller or
    /// by the background writer (see `writes_are_fast`).
    pub(crate) write_micros: std::sync::atomic::AtomicU64,
    pub(crate) pending: Pending,
    pub(crate) shared: Mutex<Shared>,
    /// Held while queued outcomes are written (see `drain_queued`).
    pub(crate) draining: futures_util::lock::Mutex<()>,
    /// The background writer's queue, found on the first outcome it writes (`None`: no
    /// writer thread could start).
    pub(crate) writer: std::sync::OnceLock<Option<super::writer::Queue>>,
    pub(crate) events: EventHub,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves only plain data behind; keep going.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new deadline for one caller-visible operation, `backend_timeout` from now.
    pub(crate) fn deadline(&self) -> Deadline {
        Deadline::after(self.policy.backend_timeout)
    }

    pub(crate) fn backend_error(&self, operation: Operation, source: DriverError) -> BackendError {
        BackendError::new(self.name, self.backend, operation, source)
    }

    /// Records a back-end failure: degraded mode until `retry_at`, with the delay doubling on
    /// each failed retry.
    pub(crate) fn fail(&self, operation: Operation, source: DriverError) -> BackendError {
        let err = self.backend_error(operation, source);
        let mut s = self.lock();
        self.mark_down(&mut s, err.clone());
        drop(s);
        crate::observe::backend_error(&err);
        self.events.emit(Event::BackendError(err.clone()));
        err
    }

    /// [`Inner::fail`]'s state change, with the lock held: degraded until the retry.
    fn mark_down(&self, s: &mut Shared, err: BackendError) {
        let now = self.clock.now();
        let delay = match s.health {
            Health::Healthy => self.policy.reconnect_initial,
            Health::Down { delay, .. } => delay.saturating_mul(2).min(self.policy.reconnect_max),
        };
        s.health = Health::Down {
            retry_at: now.saturating_add(jittered(delay, self.agent ^ now.as_millis())),
            delay,
        };
        s.last_error = Some(err);
        self.publish_view(s);
    }

    /// Makes `rec` the cached view, reporting a transition if it is one.
    fn install(&self, s: &mut Shared, rec: Record, version: Option<u64>) {
        let (from, old_gen) = (s.record.state, s.record.generation);
        let announce = s.loaded && (rec.generation != old_gen || rec.state != from);
        if !s.loaded {
            // The first read: the state series exists from now, not from the first transition.
            crate::observe::state(self.name, self.backend, rec.state);
        }
        if rec.generation != old_gen {
            // Successes counted locally belong to the generation that just ended, and an
            // outcome of an older generation changes nothing: they are not written. A
            // transition of the fleet's breaker (a trip, an operator's force or reset) takes
            // over from the agent's own.
            self.pending.take();
            s.own = None;
        }
        let now = self.clock.now();
        s.record = rec;
        s.version = version;
        s.compact_due = false;
        s.log_len = 0;
        s.log_tail = 0;
        s.loaded = true;
        s.installs = s.installs.wrapping_add(1);
        s.last_sync = now;
        self.publish_view(s);
        if !machine::quiet(&s.record, &self.policy, now) {
            // A record with something in its window (or not closed) ends a rest: its
            // successes may matter, its gauges age.
            self.hot
                .bring_maintenance_forward(now.saturating_add(self.policy.flush_interval));
        }
        crate::observe::window(self.name, self.backend, &s.record, &self.policy, now);
        if announce {
            let cause = if s.record.writer == self.agent {
                Cause::Caused
            } else {
                Cause::Observed
            };
            crate::observe::transition(
                self.name,
                self.backend,
                from,
                s.record.state,
                s.record.generation,
                cause,
                s.record.operator,
                &self.policy,
            );
            self.events.emit(Event::Transition {
                breaker: self.name,
                from,
                to: s.record.state,
                generation: s.record.generation,
                cause,
                at: now,
            });
        }
    }

    /// Installs a stored value if it is newer than the cached one, so that a view never goes
    /// backwards: a value of a lower version is ignored, and so is an absence that may have
    /// been read before the view was installed (pushed, or loaded while the view changed);
    /// an absence found by a compare-and-swap, or by a load that nothing overtook, is the
    /// store's word. A corrupt value is reported and replaced in the cache by a fresh closed
    /// record of a later generation, carrying the corrupt value's version so that the next
    /// write overwrites it.
    pub(crate) fn install_stored(
        &self,
        s: &mut Shared,
        stored: Option<Versioned>,
        adopt: bool,
        read: Read,
    ) {
        let overtaken = match read {
            Read::Pushed => true,
            Read::Loaded { seq } => seq != s.installs,
            Read::Conflict => false,
        };
        // Whether the value is the store's word as of now: read by this agent, with nothing
        // installed while the read ran.
        let authoritative = !overtaken;
        // Whether a push comes in the order the store wrote: a watch delivers one name's
        // changes in order, so a push of a version below one pushed before is a store that
        // went back (or a watch begun again), while one merely below the view is late.
        let pushed_in_order = match (&stored, read) {
            (Some(v), Read::Pushed) => {
                let in_order = v.version >= s.pushed;
                s.pushed = s.pushed.max(v.version);
                in_order
            }
            _ => false,
        };
        match stored {
            None if s.loaded && s.record.state.is_forced() => {
                // Forced states never expire, so the back-end lost its data (a restart
                // without persistence). An operator's forced state must not be lost
                // silently: keep obeying it and write it back.
                s.version = None;
                s.lost_forced = true;
                self.hot.schedule_maintenance(Timestamp::ZERO);
            }
            None if !adopt && overtaken && s.version.is_some() => {
                // Perhaps read before the version this agent holds was written: a watch's
                // first reload racing this agent's own first write. Should the record really
                // be gone, the next write finds out by its conflict.
            }
            None => {
                // Nothing stored (never written, expired or deleted): the breaker is closed.
                // The generation is kept so that it never goes back for this agent.
                if adopt || !s.loaded || s.version.is_some() {
                    let mut fresh = Record::new();
                    fresh.generation = if s.loaded { s.record.generation } else { 0 };
                    fresh.timers = self.judged_by(&fresh, &[]);
                    self.install(s, fresh, None);
                }
            }
            Some(v) => {
                // An older version read now is a store that went back (restored from an
                // older backup): its record is the fleet's now, and versions restart from
                // it. An older version pushed is most likely a late push, overtaken by
                // this agent's own write or read: in the store's order (no lower than the
                // pushes before it) it is one; out of it, only a read can tell: make one at
                // the next upkeep, which is due now.
                if !adopt && !authoritative && s.version.is_some_and(|cur| cur > v.version) {
                    // Strict mode reads at its next admission anyway: no extra read. Nor
                    // is one needed for the view's own record with fewer of its deltas:
                    // appends' pushes and replies cross all the time.
                    let earlier_append = s.digest == digest(&v.value) && v.log.len() < s.log_len;
                    if !self.policy.strict && !earlier_append && !pushed_in_order {
                        s.verify = true;
                        self.hot.schedule_maintenance(Timestamp::ZERO);
                    }
                    return;
                }
                if read == Read::Pushed
                    && !self.timers
                    && v.log.is_empty()
                    && s.own_write.is_some_and(|own| own == digest(&v.value))
                    && s.version.is_none_or(|cur| cur < v.version)
                {
                    // This agent's own write, pushed before its swap returned: the writer
                    // installs the record it wrote, without decoding it again. (Another
                    // value of the same digest would be skipped too; the view is then one
                    // write behind, which the next write's conflict mends.)
                    return;
                }
                if !adopt
                    && s.version == Some(v.version)
                    && s.digest == digest(&v.value)
                    && v.log.len() <= s.log_len
                {
                    // The same record; only a timer can have run out since.
                    let timers = self.judged_by(&s.record, &v.timers);
                    if s.record.timers != timers {
                        s.record.timers = timers;
                        self.publish_view(s);
                    }
                    return;
                }
                let now = self.clock.now();
                if !adopt
                    && !self.timers
                    && s.version.is_some_and(|cur| cur <= v.version)
                    && v.log.len() > s.log_len
                    && s.digest == digest(&v.value)
                    && log_tail(&v.log[..s.log_len]) == s.log_tail
                {
                    // Only appended to since the view: fold the new deltas onto it, rather
                    // than decode the record and fold the whole log again.
                    let mut rec = s.record.clone();
                    let folded = self.fold_log(&mut rec, &v.log, s.log_len, now);
                    let due = s.compact_due || folded.compact;
                    self.install(s, rec, Some(v.version));
                    self.note_log(s, &v.log, due, folded.dropped);
                    return;
                }
                let decoded = Record::decode(&v.value);
                if let Err(RecordError::SchemaVersion { found }) = decoded
                    && found > crate::record::SCHEMA_VERSION
                {
                    // A newer build's record: never misread, never written over. The
                    // failure policy applies until it is one this build reads; every retry
                    // reads it again.
                    let err = self.backend_error(
                        Operation::Load,
                        DriverError::new(
                            DriverErrorKind::Incompatible,
                            format!(
                                "the stored record has schema version {found}, newer than this \
                                 build reads ({}): upgrade this agent",
                                crate::record::SCHEMA_VERSION
                            ),
                        ),
                    );
                    self.mark_down(s, err.clone());
                    crate::observe::backend_error(&err);
                    self.events.emit(Event::BackendError(err));
                    return;
                }
                let decoded = decoded.map_err(|e| e.to_string()).and_then(|mut rec| {
                    rec.timers = self.judged_by(&rec, &v.timers);
                    machine::check(&rec, &self.policy, now)
                        .map_err(|why| format!("insane record: {why}"))?;
                    let folded = self.fold_log(&mut rec, &v.log, 0, now);
                    Ok((rec, folded))
                });
                match decoded {
                    Ok((rec, _))
                        if s.loaded
                            && s.record.state.is_forced()
                            && rec.generation < s.record.generation
                            && !rec.operator =>
                    {
                        // Generations never go back but when the store lost the record this
                        // agent's forced state came from (restarted without its data, or
                        // restored from a backup) and someone wrote since. An operator's
                        // forced state is never lost silently: keep obeying it and write it
                        // back over the newcomer, whose version the write expects; unless
                        // the newcomer is an operator's own decision on the store as it is.
                        s.version = Some(v.version);
                        s.digest = digest(&v.value);
                        s.lost_forced = true;
                        self.hot.schedule_maintenance(Timestamp::ZERO);
                    }
                    Ok((rec, folded)) => {
                        self.install(s, rec, Some(v.version));
                        s.digest = digest(&v.value);
                        self.note_log(s, &v.log, folded.compact, folded.dropped);
                    }
                    Err(reason) => {
                        let mut fresh = Record::new();
                        fresh.generation = s
                            .record
                            .generation
                            .saturating_add(1)
                            .min(machine::MAX_GENERATION);
                        fresh.timers = self.judged_by(&fresh, &[]);
                        self.install(s, fresh, Some(v.version));
                        s.digest = digest(&v.value);
                        self.report_corrupt(reason);
                    }
                }
            }
        }
    }

    /// Reports stored bytes this build cannot use, for `reason`, as a corrupt record.
    pub(crate) fn report_corrupt(&self, reason: String) {
        let err = self.backend_error(
            Operation::Load,
            DriverError::new(DriverErrorKind::Corrupt, reason),
        );
        crate::observe::backend_error(&err);
        self.events.emit(Event::CorruptRecord(err));
    }

    /// What the back-end's running timers say of `rec`'s deadlines, when this breaker lets
    /// the back-end judge them; `None` when its clock does.
    fn judged_by(&self, rec: &Record, running: &[Timer]) -> Option<RunningTimers> {
        self.timers
            .then(|| RunningTimers::of(rec.generation, running))
    }

    /// Loads the record, aligns the clock and starts the watch on first use.
    pub(crate) async fn ensure_ready(self: &Arc<Self>, dl: Deadline) -> Result<(), BackendError> {
        {
            let s = self.lock();
            if s.degraded() {
                return Err(s.last_error.clone().expect("degraded implies an error"));
            }
            if s.loaded {
                return Ok(());
            }
        }
        self.connect(false, dl).await
    }

    /// First contact, or contact again after an outage (`adopt`: the shared record replaces
    /// whatever the agent had, the local fallback record included).
    pub(crate) async fn connect(
        self: &Arc<Self>,
        adopt: bool,
        dl: Deadline,
    ) -> Result<(), BackendError> {
        // Unclaimed: a breaker's first contact does not go on until the clock it shares is
        // aligned, even while another breaker of its driver aligns it too.
        if let Err(e) = self.align_clock_if_due(false, dl).await {
            return Err(self.fail(Operation::Clock, e));
        }
        let seq = self.lock().installs;
        let loaded = crate::observe::backend_op(
            self.name,
            self.backend,
            Operation::Load,
            self.driver.load(&self.name, dl.left()),
        );
        let stored = match loaded.await {
            Ok(stored) => stored,
            Err(e) => return Err(self.fail(Operation::Load, e)),
        };
        {
            let mut s = self.lock();
            let was_down = s.degraded();
            s.last_error = None;
            self.install_stored(&mut s, stored, adopt, Read::Loaded { seq });
            if let Some(incompatible) = s.down_error() {
                return Err(incompatible);
            }
            s.health = Health::Healthy;
            self.publish_view(&s);
            if was_down {
                crate::observe::backend_recovered(self.name, self.backend);
                self.events.emit(Event::BackendRecovered {
                    breaker: self.name,
                    backend: self.backend,
                });
            }
        }
        self.restore_forced(dl).await?;
        self.ensure_watch(dl).await;
        self.hot
            .schedule_maintenance(self.clock.now().saturating_add(self.policy.flush_interval));
        Ok(())
    }

    /// Aligns the host clock with the back-end's, where the driver offers one and no clock
    /// was injected: the best of up to [`CLOCK_SAMPLES`] readings, the one whose round trip
    /// was shortest (the first also opens a lazy connection, whose setup would otherwise
    /// count as clock error), each taken as of the middle of its round trip.
    async fn align_clock(self: &Arc<Self>, dl: Deadline) -> Result<(), DriverError> {
        let BreakerClock::Host(host) = &self.clock else {
            return Ok(());
        };
        let mut best: Option<(Duration, Timestamp, Timestamp)> = None;
        for _ in 0..CLOCK_SAMPLES {
            let before = SystemClock::precise();
            let Some(reference) = self.driver.now(dl.left()).await? else {
                return Ok(());
            };
            let after = SystemClock::precise();
            let round_trip = after.saturating_duration_since(before);
            let mid = before.saturating_add(round_trip / 2);
            if best.is_none_or(|(rt, _, _)| round_trip < rt) {
                best = Some((round_trip, mid, reference));
            }
            if round_trip <= GOOD_CLOCK_SAMPLE {
                break;
            }
        }
        if let Some((_, mid, reference)) = best {
            host.offset.align(mid, reference);
            host.aligned(SystemClock::precise());
        }
        Ok(())
    }

    /// Aligns the clock the breakers of this driver share, when it never was or
    /// [`CLOCK_REALIGN`] has passed since (so that drift between the host and the back-end
    /// does not build up): once per driver, not per breaker. `claim`ed, one of the breakers
    /// due together asks and the others go on with the last alignment; a claimed alignment
    /// that fails is left for the next breaker due.
    async fn align_clock_if_due(
        self: &Arc<Self>,
        claim: bool,
        dl: Deadline,
    ) -> Result<(), DriverError> {
        let BreakerClock::Host(host) = &self.clock else {
            return Ok(());
        };
        let now = SystemClock::precise();
        if !host.due(now, CLOCK_REALIGN, claim) {
            return Ok(());
        }
        let aligned = self.align_clock(dl).await;
        if claim && aligned.is_err() {
            host.unclaim(now);
        }
        aligned
    }

    async fn ensure_watch(self: &Arc<Self>, dl: Deadline) {
        if self.lock().watch.as_ref().is_some_and(Watch::is_alive) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(self);
        let sink: ChangeSink = Arc::new(move |change: Change| {
            if let Some(inner) = weak.upgrade() {
                inner.on_change(change);
            }
        });
        match self.driver.watch(&self.name, sink, dl.left()).await {
            Ok(watch) => self.lock().watch = watch,
            // Not fatal: without a watch the agent polls within `max_staleness`.
            Err(e) => self
                .events
                .emit(Event::BackendError(self.backend_error(Operation::Watch, e))),
        }
    }

    fn on_change(&self, change: Change) {
        if change.name != self.name {
            return;
        }
        let mut s = self.lock();
        if !s.degraded() {
            self.install_stored(&mut s, change.record, false, Read::Pushed);
        }
    }

    /// Writes back a forced state the back-end lost (see `install_stored`), over whatever
    /// replaced it. Another agent may have written first: its record is then judged again
    /// (a newer forced state or a reset stands; a newcomer's record is written over at the
    /// next upkeep).
    async fn restore_forced(self: &Arc<Self>, dl: Deadline) -> Result<(), BackendError> {
        let (forced, expected) = {
            let mut s = self.lock();
            if !std::mem::take(&mut s.lost_forced) {
                return Ok(());
            }
            (s.record.encode_as(self.policy.record_encoding), s.version)
        };
        let written = digest(&forced);
        match self
            .driver
            .compare_and_swap(&self.name, expected, forced, None, dl.left())
            .await
        {
            Ok(Swap::Swapped { version }) => {
                let mut s = self.lock();
                if own_write_is_newest(s.version, version, expected) {
                    (s.version, s.digest) = (Some(version), written);
                }
                Ok(())
            }
            Ok(Swap::Conflict { current }) => {
                let mut s = self.lock();
                self.install_stored(&mut s, current, false, Read::Conflict);
                Ok(())
            }
            Err(e) => {
                self.lock().lost_forced = true;
                Err(self.fail(Operation::CompareAndSwap, e))
            }
        }
    }

    /// Reads the record again and installs it if newer. On first use, the first load is
    /// the read: it is not made twice.
    pub(crate) async fn refresh(self: &Arc<Self>, dl: Deadline) -> Result<(), BackendError> {
        let first = !self.lock().loaded;
        self.ensure_ready(dl).await?;
        if first {
            return Ok(());
        }
        let seq = self.lock().installs;
        let loaded = crate::observe::backend_op(
            self.name,
            self.backend,
            Operation::Load,
            self.driver.load(&self.name, dl.left()),
        )
        .await;
        match loaded {
            Ok(stored) => {
                let mut s = self.lock();
                self.install_stored(&mut s, stored, false, Read::Loaded { seq });
                s.last_sync = self.clock.now();
                s.down_error().map_or(Ok(()), Err)
            }
            Err(e) => Err(self.fail(Operation::Load, e)),
        }
    }

    /// Applies `op` to the shared record with compare-and-swap, retrying on conflicts with
    /// the value the conflict returned (by one update, where the driver updates
    /// atomically). Writes nothing when `op` changes nothing.
    pub(crate) async fn update<R: Send>(
        self: &Arc<Self>,
        op: &mut (impl FnMut(&mut Record, Timestamp) -> R + Send),
        dl: Deadline,
    ) -> Result<R, BackendError> {
        self.ensure_ready(dl).await?;
        let mut retry_by_update = false;
        // As many attempts before giving up under contention as a driver's default update.
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let (mut rec, version, installs) = {
                let s = self.lock();
                (s.record.clone(), s.version, s.installs)
            };
            // The record before `op`, where the timers need it; otherwise the view itself
            // is, unless a newer one was installed while `op` ran (installs are the only
            // change of the view without timers): then again, from the newer view.
            let before = self.timers.then(|| rec.clone());
            let now = self.clock.now();
            let out = op(&mut rec, now);
            let unchanged = match &before {
                Some(before) => rec == *before,
                None => {
                    let s = self.lock();
                    if s.installs != installs {
                        continue;
                    }
                    s.record == rec
                }
            };
            if unchanged {
                return Ok(out);
            }
            if retry_by_update {
                return self.update_atomically(op, dl).await;
            }
            // Timers only for a back-end that judges them; an empty list costs nothing, and
            // a driver without timers forwards to its plain compare-and-swap.
            let timers = match &before {
                Some(before) => timers::started(before, &rec, &self.policy, now),
                None => Vec::new(),
            };
            match self.swap_once(rec, version, now, timers, None, dl).await {
                Ok(true) => return Ok(out),
                Ok(false) => {
                    if let Some(incompatible) = self.lock().down_error() {
                        return Err(incompatible);
                    }
                    // Another writer came first. Where the driver can, the retry (if the
                    // outcome still changes the record that won) is an update, which no
                    // writer can come before again: an outcome costs at most two writes,
                    // however many agents write the record. The first try stays a
                    // compare-and-swap from the view: an update holds the record while the
                    // breaker revises (on SQLite, the write lock across two thread
                    // hand-offs), which measured 25-40% fewer calls per second where
                    // writers seldom conflict.
                    retry_by_update = self.atomic;
                }
                Err(e) => return Err(self.fail(Operation::CompareAndSwap, e)),
            }
        }
        // Pathological contention: treated like an unreachable back-end, so the failure
        // policy applies and the retry backs off.
        Err(self.fail(
            Operation::CompareAndSwap,
            DriverError::new(
                DriverErrorKind::Other,
                format!("gave up after {MAX_UPDATE_ATTEMPTS} conflicting writes"),
            ),
        ))
    }

    /// One compare-and-swap of `rec`, as revised at `now` from the view at `version`,
    /// starting `timers` with it: sealed as this agent's, installed once it landed (unless a
    /// push of a later write came first). On a conflict the record that won is installed
    /// instead. Returns whether the write landed. With `compacting`, the view's first so
    /// many deltas are written into the record and later ones kept
    /// ([`crate::Driver::compact`]).
    pub(crate) async fn swap_once(
        self: &Arc<Self>,
        mut rec: Record,
        version: Option<u64>,
        now: Timestamp,
        timers: Vec<(crate::timers::Timer, Duration)>,
        compacting: Option<usize>,
        dl: Deadline,
    ) -> Result<bool, DriverError> {
        let (bytes, ttl, written) = self.seal(&mut rec, now);
        self.lock().own_write = Some(written);
        let started = self.write_timer();
        let write = match (compacting, version) {
            (Some(through), Some(expected)) => {
                self.driver
                    .compact(&self.name, expected, through, bytes, ttl, dl.left())
            }
            _ => self.driver.compare_and_swap_with_timers(
                &self.name,
                version,
                bytes,
                ttl,
                timers,
                dl.left(),
            ),
        };
        let swapped =
            crate::observe::backend_op(self.name, self.backend, Operation::CompareAndSwap, write)
                .await;
        self.note_write_time(started);
        let mut s = self.lock();
        s.own_write = None;
        match swapped? {
            Swap::Swapped { version: new } => {
                if own_write_is_newest(s.version, new, version) {
                    self.install(&mut s, rec, Some(new));
                    s.digest = written;
                }
                Ok(true)
            }
            Swap::Conflict { current } => {
                self.install_stored(&mut s, current, false, Read::Conflict);
                Ok(false)
            }
        }
    }

    /// [`Inner::update`]'s retry on a driver that [updates
    /// atomically](crate::Driver::updates_atomically), once `op` was found to change the
    /// view: the driver shows the stored record, `op` revises it with the lock held, and the
    /// driver writes the revision in the same step, so no other writer can come first.
    async fn update_atomically<R: Send>(
        self: &Arc<Self>,
        op: &mut (impl FnMut(&mut Record, Timestamp) -> R + Send),
        dl: Deadline,
    ) -> Result<R, BackendError> {
        // What the reviser saw and made, for the install once the write landed. It may run
        // more than once (a driver's fallback after a conflict): each run starts afresh.
        let mut out = None;
        let mut made: Option<(Record, u64, Option<u64>)> = None;
        let mut refused = None;
        let mut revise = |current: Option<Versioned>| {
            made = None;
            let mut s = self.lock();
            // Read inside the write: the store's word as of now.
            self.install_stored(&mut s, current, false, Read::Conflict);
            if let Some(incompatible) = s.down_error() {
                refused = Some(incompatible);
                return Revision::Keep;
            }
            let mut rec = s.record.clone();
            let now = self.clock.now();
            out = Some(op(&mut rec, now));
            if rec == s.record {
                return Revision::Keep;
            }
            let (value, ttl, written) = self.seal(&mut rec, now);
            s.own_write = Some(written);
            made = Some((rec, written, s.version));
            Revision::Write { value, ttl }
        };
        let started = self.write_timer();
        // Observed as the compare-and-swap it stands for: one write of the record.
        let updated = crate::observe::backend_op(
            self.name,
            self.backend,
            Operation::CompareAndSwap,
            self.driver.update(&self.name, &mut revise, dl.left()),
        )
        .await;
        self.note_write_time(started);
        let mut s = self.lock();
        s.own_write = None;
        match updated {
            Ok(Updated::Written { version: new }) => {
                if let Some((rec, written, seen)) = made
                    && own_write_is_newest(s.version, new, seen)
                {
                    self.install(&mut s, rec, Some(new));
                    s.digest = written;
                }
            }
            Ok(Updated::Kept) => {
                if let Some(incompatible) = refused {
                    return Err(incompatible);
                }
            }
            Err(e) => {
                drop(s);
                return Err(self.fail(Operation::CompareAndSwap, e));
            }
        }
        drop(s);
        out.ok_or_else(|| {
            self.fail(
                Operation::CompareAndSwap,
                DriverError::new(
                    DriverErrorKind::Other,
                    "the driver answered an update without showing the record",
                ),
            )
        })
    }

    /// Makes `rec`, as this agent's `op` left it at `now`, a record to write: this agent its
    /// writer; returns its bytes, its time to live and the bytes' digest.
    fn seal(&self, rec: &mut Record, now: Timestamp) -> (Vec<u8>, Option<Duration>, u64) {
        rec.writer = self.agent;
        let ttl = machine::record_ttl(rec, &self.policy, now);
        let bytes = rec.encode_as(self.policy.record_encoding);
        let written = digest(&bytes);
        (bytes, ttl, written)
    }

    /// When the write about to start began, if it is one whose time is sampled: the first
    /// [`WRITES_TIMED_FIRST`] of the breaker, then one in [`WRITES_TIMED_EVERY`], so
    /// that a write to an in-process store does not pay two readings of the clock to learn
    /// again that it is fast, and a back-end that slows down is still noticed within a few
    /// dozen writes.
    pub(crate) fn write_timer(&self) -> Option<std::time::Instant> {
        let n = self.writes.fetch_add(1, Ordering::Relaxed);
        (n < WRITES_TIMED_FIRST || n.is_multiple_of(WRITES_TIMED_EVERY))
            .then(std::time::Instant::now)
    }

    /// Folds the time of a write timed since `started` ([`Inner::write_timer`]) into the
    /// moving average; nothing for a write not timed.
    pub(crate) fn note_write_time(&self, started: Option<std::time::Instant>) {
        if let Some(started) = started {
            self.fold_write_time(started.elapsed());
        }
    }

    /// Folds one write's time into the moving average (a quarter for the new one).
    pub(crate) fn fold_write_time(&self, took: Duration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX - 1);
        let old = self.write_micros.load(Ordering::Relaxed);
        let new = if old == u64::MAX {
            sample
        } else {
            old.saturating_mul(3).saturating_add(sample) / 4
        };
        self.write_micros.store(new, Ordering::Relaxed);
    }

    /// Whether this breaker's writes take less than handing them to the background writer
    /// would ([`INLINE_WRITE_BELOW`]): an in-process store's do, so its callers write their
    /// own failures; a networked back-end's do not, so its callers go on at once.
    pub(crate) fn writes_are_fast(&self) -> bool {
        self.write_micros.load(Ordering::Relaxed) < INLINE_WRITE_BELOW.as_micros() as u64
    }

    /// Applies `op` to the shared record; while the back-end is unreachable and the policy is
    /// the local fallback, to the local record instead. Outcomes are dropped under the other
    /// policies.
    ///
    /// `op` gets the policy to apply: the breaker's for the shared record; for the local
    /// record, the same without a quorum, which one agent alone could never make.
    pub(crate) async fn apply(
        self: &Arc<Self>,
        mut op: impl FnMut(&mut Record, Timestamp, &Policy) -> bool + Send,
        dl: Deadline,
    ) {
        let degraded = self.lock().degraded();
        let policy = &self.policy;
        if !degraded
            && self
                .update(&mut |rec, now| op(rec, now, policy), dl)
                .await
                .is_ok()
        {
            return;
        }
        if self.policy.on_backend_failure == BackendFailure::LocalFallback {
            let local_policy = self.own_policy.as_deref().unwrap_or(&self.policy);
            let mut s = self.lock();
            let local = s.local_record();
            let mut rec = local.clone();
            if op(&mut rec, self.clock.now(), local_policy) && rec != local {
                self.install_local(&mut s, rec);
            }
        }
    }

    /// Makes `rec`, changed by this agent alone while the back-end is unreachable, the local
    /// view. It is never written back: once the back-end answers, its record wins.
    pub(crate) fn install_local(&self, s: &mut Shared, mut rec: Record) {
        rec.writer = self.agent;
        let version = s.version;
        self.install(s, rec, version);
    }

    /// Tries the back-end again if the reconnect delay has passed, unless another caller is
    /// already at it. Returns whether it is healthy now.
    pub(crate) async fn try_recover(self: &Arc<Self>, dl: Deadline) -> bool {
        if self.maintaining.swap(true, Ordering::Acquire) {
            return !self.lock().degraded();
        }
        let _guard = ClearOnDrop(&self.maintaining);
        self.recover_if_due(dl).await
    }

    /// Reconnects if the back-end is down and its retry is due; the caller holds the
    /// maintenance flag.
    async fn recover_if_due(self: &Arc<Self>, dl: Deadline) -> bool {
        let due = match self.lock().health {
            Health::Healthy => return true,
            Health::Down { retry_at, .. } => self.clock.now() >= retry_at,
        };
        due && self.connect(true, dl).await.is_ok()
    }

    /// Periodic upkeep on the hot path's schedule, by one caller at a time.
    pub(crate) async fn maintain(self: &Arc<Self>, dl: Deadline) {
        if self.maintaining.swap(true, Ordering::Acquire) {
            return;
        }
        let _guard = ClearOnDrop(&self.maintaining);
        let _ = self.sync(false, dl).await;
    }

    /// Gives back dropped probe permits, writes pending successes, and reloads the record
    /// when the view may be stale (always, with `force`).
    pub(crate) async fn sync(
        self: &Arc<Self>,
        force: bool,
        dl: Deadline,
    ) -> Result<(), BackendError> {
        self.hot
            .schedule_maintenance(self.clock.now().saturating_add(self.policy.flush_interval));
        if self.lock().degraded() {
            if force {
                self.connect(true, dl).await?;
            } else if !self.recover_if_due(dl).await {
                return Ok(());
            }
        }
        self.restore_forced(dl).await?;
        // A failure leaves the last alignment in place (the next call's back-end errors
        // will tell).
        let _ = self.align_clock_if_due(true, dl).await;
        self.drain_queued(dl).await;
        let successes = self.pending.take();
        self.count_own(machine::Tally::new(successes, 0, 0));
        // Successes that no rule would read are counted and dropped: a healthy fleet writes
        // nothing (judged on the cached view; a failure still in flight from another agent
        // may make the next flush's successes count). Only a breaker with no record yet
        // writes them, once, so that operators see it listed.
        let matter = successes > 0 && {
            let s = self.lock();
            s.version.is_none()
                || machine::successes_matter(&s.record, &self.policy, self.clock.now())
        };
        if matter {
            let tally = machine::Tally::new(successes, 0, 0);
            self.count(self.hot.generation(), tally, false, dl).await;
        }
        let compact = {
            let s = self.lock();
            self.log_to_compact(&s, self.clock.now())
        };
        if compact {
            // A log that its appenders did not compact (they lost the race, or went away),
            // or one that nothing in the record needs any more.
            self.compact(dl).await;
        }
        let stale = {
            let mut s = self.lock();
            let pushed = s.watch.as_ref().is_some_and(Watch::is_alive);
            let verify = std::mem::take(&mut s.verify);
            verify
                || !pushed
                    && self.clock.now() >= s.last_sync.saturating_add(self.policy.max_staleness)
        };
        if force || stale {
            self.refresh(dl).await?;
            // The refresh may have found a forced state lost.
            self.restore_forced(dl).await?;
        } else if cfg!(feature = "metrics") {
            // Nothing installed: the window's gauges still age with the clock.
            let s = self.lock();
            crate::observe::window(
                self.name,
                self.backend,
                &s.record,
                &self.policy,
                self.clock.now(),
            );
        }
        let now = self.clock.now();
        let s = self.lock();
        if self.at_rest(&s, now) {
            // Judged with the lock held: whatever makes upkeep due again (a queued outcome,
            // a push to install, a verify) either came first and is seen here, or comes
            // after and schedules its own.
            self.hot
                .schedule_maintenance(now.saturating_add(self.resting_upkeep()));
        }
        match s.last_error.clone() {
            Some(e) if force => Err(e),
            _ => Ok(()),
        }
    }

    /// Whether nothing of this breaker can come due before its watch might be found dead:
    /// its record exists and is closed with nothing in the window, its watch is alive, and
    /// nothing waits to be written, given back or checked. Such a breaker's upkeep has
    /// nothing to flush or age, so it comes every [`Inner::resting_upkeep`] rather than
    /// every `flush_interval`: with many breakers, upkeep costs what changes, not the
    /// number of breakers. Under a quorum the agent's own breaker counts every outcome, so
    /// such a breaker never rests.
    fn at_rest(&self, s: &Shared, now: Timestamp) -> bool {
        s.loaded
            && s.version.is_some()
            && !s.degraded()
            && self.own_policy.is_none()
            && s.queued.is_empty()
            && s.unsent.is_none()
            && !s.verify
            && !s.lost_forced
            && !s.compact_due
            && s.log_len == 0
            && s.watch.as_ref().is_some_and(Watch::is_alive)
            && machine::quiet(&s.record, &self.policy, now)
    }

    /// How often a breaker at rest ([`Inner::at_rest`]) has its upkeep: within
    /// `max_staleness` a dead watch is noticed and the record read again, the bound the
    /// design promises for a breaker without one; never more often than `flush_interval`.
    fn resting_upkeep(&self) -> Duration {
        self.policy.max_staleness.max(self.policy.flush_interval)
    }
}

/// Whether this agent's write, stored as version `new` in place of the version `expected`,
/// is to be the view at `view` (the view's version now): unless a push of a later write
/// came first. A version lower than the one expected is no later write: the store counts
/// again from the start (its counter was lost or replaced).
pub(crate) fn own_write_is_newest(view: Option<u64>, new: u64, expected: Option<u64>) -> bool {
    view.is_none_or(|cur| cur < new) || view == expected
}

/// A [`digest`] of the last of `log`'s deltas; 0 for none.
pub(crate) fn log_tail(log: &[Vec<u8>]) -> u64 {
    log.last().map_or(0, |delta| digest(delta))
}

/// A digest of stored bytes, to tell two values stored under one version apart.
fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// `delay` shortened by a random part of up to a quarter, so that a fleet that lost its
/// back-end together does not retry it together; `seed` differs between agents and retries.
fn jittered(delay: Duration, seed: u64) -> Duration {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(seed);
    // A fraction in [0, 1) from the top 53 bits.
    let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
    delay.mul_f64(1.0 - unit / 4.0)
}

/// Clears a flag when dropped, so a cancelled maintenance never leaves it set.
pub(crate) struct ClearOnDrop<'a>(pub(crate) &'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_closed_call_reads_is_in_the_first_64_bytes() {
        // The layout promise of `Inner`: a call admitted while closed reads these fields
        // alone; together they must fit one cache line.
        let end = std::mem::offset_of!(Inner, times_calls) + 1;
        let fields = [
            std::mem::offset_of!(Inner, hot),
            std::mem::offset_of!(Inner, clock),
            std::mem::offset_of!(Inner, classifiers),
            std::mem::offset_of!(Inner, needs_successes),
            std::mem::offset_of!(Inner, strict),
        ];
        assert!(fields.iter().all(|&at| at < end), "{fields:?} before {end}");
        assert!(end <= 64, "the closed call's fields end at byte {end}");
        assert!(std::mem::offset_of!(Inner, name) >= end);
    }

    #[test]
    fn a_deadline_gives_each_step_what_is_left_and_at_least_a_millisecond() {
        let d = Deadline::after(Duration::from_secs(1));
        let left = d.left();
        assert!(
            left <= Duration::from_secs(1) && left > Duration::from_millis(500),
            "{left:?}"
        );
        assert_eq!(
            Deadline::after(Duration::ZERO).left(),
            Duration::from_millis(1)
        );
        // A budget too long to represent is a year, not a panic and not nothing.
        assert!(Deadline::after(Duration::MAX).left() > Duration::from_secs(300 * 86_400));
    }

    #[test]
    fn reconnect_delays_are_spread_over_their_last_quarter() {
        let delay = Duration::from_secs(4);
        let delays: Vec<Duration> = (0..200).map(|seed| jittered(delay, seed)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d > Duration::from_secs(3) && *d <= delay),
            "{delays:?}"
        );
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 100,
            "spread, not one delay: {}",
            distinct.len()
        );
    }
}
