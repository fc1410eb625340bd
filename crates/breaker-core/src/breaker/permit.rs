//! The permit API: a call admitted by the breaker, reported once as success, failure or
//! ignored. A permit dropped unreported counts as ignored.

use std::sync::Arc;

use crate::time::Timestamp;

use crate::machine::{self, Tally};
use crate::outcome::Outcome;

use super::shared::{Deadline, Inner};

/// How a call was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// An ordinary call while closed, in this generation.
    Closed { generation: u64 },
    /// A half-open probe holding this lease.
    Probe { generation: u64, lease: u64 },
    /// A probe of the agent's own breaker under a quorum (see `own`), of its generation.
    Own { generation: u64, lease: u64 },
    /// Admitted without protection while the back-end is unreachable (fail open, or a
    /// forced-closed breaker); its outcome is not counted.
    Unprotected,
}

/// An outcome that needs the back-end (or the local fallback) to be recorded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deferred {
    admitted: Admitted,
    outcome: Outcome,
    slow: bool,
}

impl Deferred {
    fn is_probe(&self) -> bool {
        matches!(self.admitted, Admitted::Probe { .. })
    }
}

/// The breaker a permit reports to: borrowed on the hot path (no reference count touched),
/// or owned, so that the permit can move into a spawned task.
enum Holder<'a> {
    Borrowed(&'a Arc<Inner>),
    Owned(Arc<Inner>),
}

impl std::ops::Deref for Holder<'_> {
    type Target = Arc<Inner>;

    #[inline]
    fn deref(&self) -> &Arc<Inner> {
        match self {
            Holder::Borrowed(inner) => inner,
            Holder::Owned(inner) => inner,
        }
    }
}

/// Permission to make one call. Report how it went with [`Permit::record`] (or
/// [`Permit::success`], [`Permit::failure`], [`Permit::ignore`]). Dropping it unreported
/// reports [`Outcome::Ignored`], which gives a probe permit back, or [`Outcome::Failure`]
/// when it is dropped while the thread panics.
///
/// [`Breaker::acquire`](crate::Breaker::acquire) lends a permit that borrows the breaker;
/// [`Breaker::acquire_owned`](crate::Breaker::acquire_owned) gives a `Permit<'static>` that
/// holds its own handle, to move into a spawned task.
#[must_use = "a permit reports its call's outcome; dropping it reports the call as ignored"]
pub struct Permit<'a> {
    inner: Holder<'a>,
    admitted: Admitted,
    /// When the call started on the breaker's clock, plus one; zero when slowness does not
    /// matter. Kept to one word: the permit lives in every call's future.
    started: u64,
    /// For the call-duration metric (nothing without the `metrics` feature).
    timer: crate::observe::CallTimer,
    settled: bool,
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.inner.name)
            .field("admitted", &self.admitted)
            .finish()
    }
}

impl<'a> Permit<'a> {
    #[inline]
    pub(crate) fn new(inner: &'a Arc<Inner>, admitted: Admitted) -> Self {
        // Durations are measured only when slowness matters: reading the clock costs.
        let started = if inner.policy.slow_call.is_some() {
            inner.clock.now().as_millis().saturating_add(1)
        } else {
            0
        };
        Permit {
            inner: Holder::Borrowed(inner),
            admitted,
            started,
            timer: crate::observe::CallTimer::start(),
            settled: false,
        }
    }

    /// The same permit, holding its own handle to the breaker.
    pub fn into_owned(mut self) -> Permit<'static> {
        let owned = Permit {
            inner: Holder::Owned(Arc::clone(&self.inner)),
            admitted: self.admitted,
            started: self.started,
            timer: self.timer,
            settled: false,
        };
        // This one hands its report over: dropping it must report nothing.
        self.settled = true;
        owned
    }

    /// Whether this permit is a half-open probe (of the fleet's breaker, or of the agent's
    /// own under a quorum).
    pub fn is_probe(&self) -> bool {
        matches!(self.admitted, Admitted::Probe { .. } | Admitted::Own { .. })
    }

    /// The fleet's generation the call was admitted in (`None` when admitted without the
    /// fleet's breaker: without protection while the back-end is unreachable, or as a probe
    /// of the agent's own breaker under a quorum).
    pub fn generation(&self) -> Option<u64> {
        match self.admitted {
            Admitted::Closed { generation } | Admitted::Probe { generation, .. } => {
                Some(generation)
            }
            Admitted::Own { .. } | Admitted::Unprotected => None,
        }
    }

    /// Reports a success.
    pub async fn success(self) {
        self.record(Outcome::Success).await
    }

    /// Reports a failure.
    pub async fn failure(self) {
        self.record(Outcome::Failure).await
    }

    /// Reports the call as ignored; never waits.
    pub fn ignore(self) {
        drop(self)
    }

    /// Reports `outcome`. A success while closed is counted locally and written in a batch;
    /// a failure, a probe's outcome, or anything in strict mode is written at once.
    #[inline]
    pub async fn record(mut self, outcome: Outcome) {
        if let Some(deferred) = self.settle(outcome) {
            // Boxed so that the hot path's future stays small.
            Box::pin(self.inner.report(deferred, self.inner.deadline())).await;
        }
    }

    /// [`Permit::record`] for code without an async runtime: blocks this thread until the
    /// outcome is recorded (never longer than the back-end deadline).
    #[inline]
    pub fn record_blocking(mut self, outcome: Outcome) {
        if let Some(deferred) = self.settle(outcome) {
            self.inner.report_blocking(deferred);
        }
    }

    /// Settles the permit; returns what must still be written, if anything.
    #[inline]
    fn settle(&mut self, outcome: Outcome) -> Option<Deferred> {
        self.settled = true;
        let policy = &self.inner.policy;
        let slow = match policy.slow_call {
            Some(rule) if self.started != 0 && outcome != Outcome::Ignored => {
                let started = Timestamp::from_millis(self.started - 1);
                self.inner.clock.now().saturating_duration_since(started) > rule.threshold
            }
            _ => false,
        };
        let outcome = match policy.slow_call {
            Some(rule) if slow && rule.counts_as_failure => Outcome::Failure,
            _ => outcome,
        };
        self.timer
            .finish(self.inner.name, self.inner.backend, outcome);
        match self.admitted {
            Admitted::Closed { generation } => self.inner.settle_closed(generation, outcome, slow),
            Admitted::Unprotected => {
                crate::observe::call(self.inner.name, self.inner.backend, outcome);
                None
            }
            Admitted::Own { generation, lease } => {
                self.inner.settle_own(generation, lease, outcome);
                None
            }
            admitted => Some(Deferred {
                admitted,
                outcome,
                slow,
            }),
        }
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.settled {
            self.drop_unsettled();
        }
    }
}

impl Permit<'_> {
    #[cold]
    #[inline(never)]
    fn drop_unsettled(&mut self) {
        // Dropped while unwinding, the call panicked: a failure. Every common executor drops
        // a panicking future while unwinding. Otherwise it was cancelled or abandoned.
        let outcome = if std::thread::panicking() {
            Outcome::Failure
        } else {
            Outcome::Ignored
        };
        // Drop cannot wait for the back-end. A probe's slot is released from a thread of its
        // own at once, so that other agents may claim it within a push of the drop (waiting
        // for this agent's next call could take forever); anything else is written at the
        // next maintenance, which is due at once.
        if let Some(deferred) = self.settle(outcome) {
            let probe = deferred.is_probe();
            self.inner.queue(deferred);
            if probe {
                self.inner.drain_in_background();
            }
        }
    }
}

impl Inner {
    /// Settles a call admitted while closed: a plain success is counted locally; what must
    /// reach the back-end is returned.
    #[inline]
    pub(crate) fn settle_closed(
        self: &Arc<Self>,
        generation: u64,
        outcome: Outcome,
        slow: bool,
    ) -> Option<Deferred> {
        crate::observe::call(self.name, self.backend, outcome);
        match outcome {
            Outcome::Ignored => None,
            // No rule reads successes (the failures-in-window rule alone) and the record
            // exists: nothing to count or write, in either mode.
            Outcome::Success if !slow && !self.needs_successes && self.hot.recorded() => None,
            Outcome::Success if !slow && !self.strict && self.hot.batches(generation) => {
                if self.needs_successes {
                    self.pending.add_success();
                } else {
                    // Until the record exists, the first successes make it (operators see
                    // the breaker): a shared word, no counter line of its own.
                    self.pending.add_early();
                }
                None
            }
            // Strict mode writes every outcome before the caller goes on, and so does the
            // caller of a back-end whose writes cost less than a hand-off.
            _ if self.strict || self.writes_are_fast() => Some(Deferred {
                admitted: Admitted::Closed { generation },
                outcome,
                slow,
            }),
            _ => {
                self.send_later(generation, Tally::of(outcome, slow));
                None
            }
        }
    }

    /// Hands a closed-state outcome to the background writer: sent at once, and the caller
    /// does not wait for it; the agent's next call does, should it come first. Outcomes of
    /// one generation merge while they wait; an older generation's change nothing, so a
    /// newer generation's replace them.
    #[cold]
    #[inline(never)]
    pub(crate) fn send_later(self: &Arc<Self>, generation: u64, tally: Tally) {
        {
            let mut s = self.lock();
            s.unsent = match s.unsent {
                Some((g, unsent)) if g == generation => Some((g, unsent.plus(tally))),
                Some((g, unsent)) if g > generation => Some((g, unsent)),
                _ => Some((generation, tally)),
            };
            // The agent's next call waits for it (and writes it, should no writer thread
            // have started).
            self.hot.set_write_in_flight(true);
        }
        super::writer::send(self);
    }

    /// Queues the failure of a closed-state call that panicked where nothing can wait.
    #[cold]
    pub(crate) fn queue_failure(self: &Arc<Self>, generation: u64) {
        if let Some(deferred) = self.settle_closed(generation, Outcome::Failure, false) {
            self.queue(deferred);
        }
    }

    /// Writes the queued outcomes now, on the background writer's thread (the drivers run
    /// their I/O on their own runtimes, so blocking on it there is safe). Should no writer
    /// thread start, the next maintenance writes them, as for any queued outcome.
    fn drain_in_background(self: &Arc<Self>) {
        super::writer::send(self);
    }

    /// Writes every queued outcome, one drainer at a time, so that a `flush` that finds the
    /// queue empty has also waited for a drain in progress to land.
    pub(crate) async fn drain_queued(self: &Arc<Self>, dl: Deadline) {
        let _one_at_a_time = self.draining.lock().await;
        let (queued, unsent) = {
            let mut s = self.lock();
            (std::mem::take(&mut s.queued), s.unsent.take())
        };
        if let Some((generation, tally)) = unsent {
            self.write_tally(generation, tally, dl).await;
            let s = self.lock();
            if s.unsent.is_none() {
                self.hot.set_write_in_flight(false);
            }
        }
        for deferred in queued {
            self.report(deferred, dl).await;
        }
    }

    /// Writes closed-state outcomes of `generation`, with the successes batched before
    /// them (in order: the successes first).
    async fn write_tally(self: &Arc<Self>, generation: u64, mut tally: Tally, dl: Deadline) {
        tally.successes = tally.successes.saturating_add(self.pending.take());
        // Successes alone that no rule would read in the record as it stands (a run of
        // consecutive failures already broken, a rate with no failure to dilute) change
        // nothing: not written, in either mode, once the record exists (as the flush
        // judges). Judged on the view (in strict mode, the admission's read): a failure of
        // another agent that the view has not seen yet is ordered after these successes, as
        // if they had landed first; one found by a conflicting write makes them count.
        let successes_only = tally.failures == 0 && tally.slow == 0;
        let recorded = self.hot.recorded();
        self.count(generation, tally, successes_only && recorded, dl)
            .await;
        self.count_own(tally);
    }

    /// Queues an outcome for the next maintenance and makes that due now.
    fn queue(&self, deferred: Deferred) {
        self.lock().queued.push(deferred);
        self.hot.schedule_maintenance(Timestamp::ZERO);
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn report_blocking(self: &Arc<Self>, d: Deferred) {
        futures_executor::block_on(self.report(d, self.deadline()));
    }

    /// Writes an outcome that could not be settled on the hot path.
    pub(crate) async fn report(self: &Arc<Self>, d: Deferred, dl: Deadline) {
        match d.admitted {
            Admitted::Closed { generation } => {
                if d.outcome != Outcome::Ignored {
                    self.write_tally(generation, Tally::of(d.outcome, d.slow), dl)
                        .await;
                }
            }
            Admitted::Probe { generation, lease } => {
                crate::observe::call(self.name, self.backend, d.outcome);
                self.apply(
                    |rec, now, policy| {
                        machine::settle_probe(rec, policy, now, generation, lease, d.outcome)
                    },
                    dl,
                )
                .await;
            }
            Admitted::Own { .. } | Admitted::Unprotected => {}
        }
    }
}
