//! The `Breaker`: admission, calls (async and blocking), operator actions and events, over
//! any driver.

mod append;
mod hot;
mod own;
mod permit;
mod shared;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::future::Future;
use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::driver::{Driver, DynDriver};
use crate::error::{BackendError, BuildError, Error, Rejected};
use crate::events::{Event, EventHub, Subscription};
use crate::machine::{self, Admission, Claim, Forced};
use crate::name::Name;
use crate::outcome::{Classifier, DefaultClassifiers, Outcome};
use crate::policy::{BackendFailure, Policy};
use crate::record::{Record, State};
use crate::time::{BreakerClock, Clock, HostClock, Timestamp};

use hot::{Fast, HotView, Pending};
use permit::Admitted;
pub use permit::Permit;
use shared::{Health, Inner, Shared};

/// Why a call was not admitted: a rejection or a back-end problem (never a call error).
pub type AdmissionError = Error<Infallible>;

/// A circuit breaker whose state is shared, through a driver, with every agent that uses the
/// same name. Clones are cheap handles to the same breaker.
///
/// While the breaker is closed or open, admission is decided from this agent's cached view
/// with no round trip; successes are counted locally and written in batches, failures at
/// once. Only half-open probes wait for the back-end.
#[derive(Clone)]
pub struct Breaker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.inner.name)
            .field("backend", &self.inner.backend)
            .field("state", &self.state())
            .finish()
    }
}

/// Builds a [`Breaker`].
pub struct BreakerBuilder {
    name: String,
    driver: Arc<dyn DynDriver>,
    policy: Arc<Policy>,
    clock: Option<Arc<dyn Clock>>,
    classifiers: DefaultClassifiers,
}

impl BreakerBuilder {
    /// The policy (default: [`Policy::default`]). Breakers given one `Arc<Policy>` share
    /// one copy of it (as do all breakers with the default policy); a `Policy` is moved in.
    pub fn policy(mut self, policy: impl Into<Arc<Policy>>) -> Self {
        self.policy = policy.into();
        self
    }

    /// Judges every deadline by `clock` (tests: a [`crate::ManualClock`]). Without one, the
    /// breaker follows the back-end's clock where the driver offers it, else the host clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The breaker's own classifier for calls that return `Result<T, E>`, used by
    /// [`Breaker::call`] and [`Breaker::call_blocking`] (so that a status 503, or an error
    /// that says nothing of the service's health, is judged once, where the breaker is built,
    /// rather than at every call). Several may be set, one per result type; a result of a
    /// type none answers for is `Ok`: success, `Err`: failure. [`Breaker::call_with`] takes
    /// a classifier of its own instead.
    ///
    /// ```
    /// use breaker_core::{Breaker, Outcome};
    /// # use breaker_core::{Driver, DriverError, Name, Swap, Versioned};
    /// # #[derive(Clone)] struct NoDriver;
    /// # impl Driver for NoDriver {
    /// #     fn backend(&self) -> &'static str { "none" }
    /// #     async fn load(&self, _: &Name, _: std::time::Duration) -> Result<Option<Versioned>, DriverError> { Ok(None) }
    /// #     async fn compare_and_swap(&self, _: &Name, _: Option<u64>, _: Vec<u8>, _: Option<std::time::Duration>, _: std::time::Duration) -> Result<Swap, DriverError> { Ok(Swap::Swapped { version: 1 }) }
    /// #     async fn list(&self, _: std::time::Duration) -> Result<Vec<(Name, Versioned)>, DriverError> { Ok(vec![]) }
    /// # }
    /// # let driver = NoDriver;
    /// let breaker = Breaker::builder("search", driver)
    ///     .classifier(|r: &Result<u16, std::io::Error>| match r {
    ///         Ok(status) if *status >= 500 => Outcome::Failure,
    ///         Ok(_) => Outcome::Success,
    ///         Err(_) => Outcome::Failure,
    ///     })
    ///     .build()?;
    /// # Ok::<(), breaker_core::BuildError>(())
    /// ```
    pub fn classifier<T: 'static, E: 'static>(
        mut self,
        classifier: impl Classifier<T, E> + 'static,
    ) -> Self {
        self.classifiers.add(classifier);
        self
    }

    /// Validates the name and the policy and builds the breaker. Nothing is read from the
    /// back-end yet: the first call, [`Breaker::refresh`] or [`Breaker::flush`] does that,
    /// and until then [`Breaker::state`] says it does not know.
    pub fn build(self) -> Result<Breaker, BuildError> {
        let name = Name::new(&self.name)?;
        crate::observe::describe();
        self.policy.validate()?;
        let clock = match self.clock {
            Some(clock) => BreakerClock::Injected(clock),
            None => BreakerClock::Host(HostClock::for_driver(self.driver.clock_key())),
        };
        let backend = self.driver.backend();
        let timers = matches!(clock, BreakerClock::Host(_)) && self.driver.keeps_timers();
        // A driver that keeps timers starts them with its writes, which `update` cannot.
        let atomic = !self.driver.keeps_timers() && self.driver.updates_atomically();
        // Appended outcomes start no timers, so a driver that keeps them is always swapped.
        let appends =
            self.policy.append_outcomes && self.driver.appends() && !self.driver.keeps_timers();
        let inner = Inner {
            timers,
            atomic,
            appends,
            name,
            own_policy: own::own_policy(&self.policy),
            needs_successes: self.policy.needs_successes(),
            strict: self.policy.strict,
            times_calls: self.policy.slow_call.is_some(),
            policy: self.policy,
            classifiers: self.classifiers,
            backend,
            driver: self.driver,
            clock,
            agent: agent_id(),
            hot: HotView::new(),
            pending: Pending::default(),
            shared: Mutex::new(Shared {
                record: Record::new(),
                own: None,
                version: None,
                digest: 0,
                loaded: false,
                installs: 0,
                health: Health::Healthy,
                last_error: None,
                last_sync: Timestamp::ZERO,
                watch: None,
                queued: Vec::new(),
                unsent: None,
                own_write: None,
                lost_forced: false,
                verify: false,
                compact_due: false,
                log_len: 0,
                log_tail: 0,
                pushed: 0,
            }),
            maintaining: AtomicBool::new(false),
            draining: futures_util::lock::Mutex::new(()),
            write_queued: AtomicBool::new(false),
            write_micros: std::sync::atomic::AtomicU64::new(u64::MAX),
            writes: std::sync::atomic::AtomicU32::new(0),
            writer: std::sync::OnceLock::new(),
            events: EventHub::default(),
        };
        Ok(Breaker {
            inner: Arc::new(inner),
        })
    }
}

/// A random, non-zero identity for this agent.
fn agent_id() -> u64 {
    RandomState::new().hash_one(std::process::id()) | 1
}

/// The default policy, one copy for the process.
fn default_policy() -> Arc<Policy> {
    static DEFAULT: std::sync::OnceLock<Arc<Policy>> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(|| Arc::new(Policy::default())).clone()
}

impl Breaker {
    /// Starts building a breaker called `name` over `driver`.
    pub fn builder(name: &str, driver: impl Driver) -> BreakerBuilder {
        Self::builder_dyn(name, Arc::new(driver))
    }

    /// [`Breaker::builder`] for a driver already behind `Arc<dyn DynDriver>`.
    pub fn builder_dyn(name: &str, driver: Arc<dyn DynDriver>) -> BreakerBuilder {
        BreakerBuilder {
            name: name.to_owned(),
            driver,
            policy: default_policy(),
            clock: None,
            classifiers: DefaultClassifiers::default(),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &Name {
        &self.inner.name
    }

    /// The breaker's policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The effective state in this agent's view, at the breaker's clock: the state the
    /// fleet's record says, except that an open breaker whose open period is over reads
    /// half-open (at that very instant, too), since a call now would be its probe
    /// ([`machine::effective_state`]). While the back-end is unreachable under the local
    /// fallback, the local breaker's state.
    ///
    /// `None` until this agent has read the record (its first call, [`Breaker::refresh`] or
    /// [`Breaker::flush`]): an agent never reports a state it has not read. Never waits;
    /// a readiness check that must know calls [`Breaker::refresh`] first.
    ///
    /// A failing call on a networked back-end returns before its failure is written (the
    /// background writer writes it), so right after the call that trips the breaker this
    /// may still read `closed`; [`Breaker::written`] waits for the write, and the agent's
    /// next call waits for it by itself.
    pub fn state(&self) -> Option<State> {
        let now = self.inner.clock.now();
        let s = self.inner.lock();
        s.loaded.then(|| machine::effective_state(s.view(), now))
    }

    /// Reads the shared record now, within the back-end deadline, and returns the effective
    /// state it gives (see [`Breaker::state`]): for readiness checks and operators, and for
    /// an agent that must know its fleet's state before its first call. Writes nothing.
    pub async fn refresh(&self) -> Result<State, BackendError> {
        self.inner.refresh(self.inner.deadline()).await?;
        let now = self.inner.clock.now();
        Ok(machine::effective_state(&self.inner.lock().record, now))
    }

    /// [`Breaker::refresh`] for code without an async runtime.
    pub fn refresh_blocking(&self) -> Result<State, BackendError> {
        futures_executor::block_on(self.refresh())
    }

    /// A copy of this agent's view of the shared record as stored (the local record while
    /// the back-end is unreachable under the local fallback); its `state` is the stored one,
    /// which [`machine::effective_state`] turns into the one to report.
    pub fn snapshot(&self) -> Record {
        self.inner.lock().record.clone()
    }

    /// Whether the back-end is currently considered unreachable.
    pub fn is_degraded(&self) -> bool {
        self.inner.lock().degraded()
    }

    /// The breaker's clock reading.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Subscribes to this agent's events of this breaker.
    pub fn subscribe(&self) -> Subscription {
        self.inner.events.subscribe()
    }

    /// Asks for permission to make one call.
    ///
    /// Dropping this future while it claims a half-open probe in the back-end may leave the
    /// claim written: that probe slot then comes free when its lease lapses
    /// (`probe_lease`), as for a probe holder that died.
    #[inline]
    pub async fn acquire(&self) -> Result<Permit<'_>, AdmissionError> {
        match self.gate() {
            Gate::Closed(generation) => {
                Ok(Permit::new(&self.inner, Admitted::Closed { generation }))
            }
            Gate::Rejected(rejected) => Err(Error::Rejected(rejected)),
            // Boxed so that the hot path's future stays small: moving a future that has
            // room for the whole slow path costs more than the admission itself.
            Gate::Slow => Box::pin(self.acquire_slow()).await,
        }
    }

    /// [`Breaker::acquire`], giving a permit that holds its own handle to the breaker, so
    /// that it can move into a spawned task (`tokio::spawn` needs `'static`).
    pub async fn acquire_owned(&self) -> Result<Permit<'static>, AdmissionError> {
        self.acquire().await.map(Permit::into_owned)
    }

    /// [`Breaker::acquire`] for code without an async runtime.
    #[inline]
    pub fn acquire_blocking(&self) -> Result<Permit<'_>, AdmissionError> {
        match self.gate() {
            Gate::Closed(generation) => {
                Ok(Permit::new(&self.inner, Admitted::Closed { generation }))
            }
            Gate::Rejected(rejected) => Err(Error::Rejected(rejected)),
            Gate::Slow => self.acquire_slow_blocking(),
        }
    }

    #[cold]
    #[inline(never)]
    fn acquire_slow_blocking(&self) -> Result<Permit<'_>, AdmissionError> {
        futures_executor::block_on(self.acquire_slow())
    }

    /// Runs `f` under the breaker, classified by the breaker's own classifier for its result
    /// type ([`BreakerBuilder::classifier`]); without one, `Ok` is a success, `Err` a
    /// failure.
    pub async fn call<T: 'static, E: 'static, F, Fut>(&self, f: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_with(&self.inner.classifiers, f).await
    }

    /// Runs `f` under the breaker, classifying its result with `classifier`. A panic in `f`
    /// is recorded as a failure and then resumed; a cancelled call is ignored.
    #[inline]
    pub async fn call_with<T, E, F, Fut, C>(&self, classifier: &C, f: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classifier<T, E> + ?Sized,
    {
        let permit = match self.gate() {
            // The common case needs no permit: nothing to time, nothing to give back.
            Gate::Closed(generation) if !self.inner.times_calls => {
                let call = ClosedCall {
                    inner: &self.inner,
                    generation,
                };
                let timer = crate::observe::CallTimer::start();
                let result = f().await;
                let outcome = classifier.classify(&result);
                let inner = call.finish();
                timer.finish(inner.name, inner.backend, outcome);
                if let Some(deferred) = inner.settle_closed(generation, outcome, false) {
                    Box::pin(inner.report(deferred, inner.deadline())).await;
                }
                return result.map_err(Error::Call);
            }
            Gate::Closed(generation) => Permit::new(&self.inner, Admitted::Closed { generation }),
            Gate::Rejected(rejected) => return Err(Error::Rejected(rejected)),
            Gate::Slow => Box::pin(self.acquire_slow()).await.map_err(widen)?,
        };
        // Should `f` or its future panic, the permit is dropped while unwinding and reports a
        // failure; should the call be cancelled, it reports ignored. No `catch_unwind` on the
        // hot path.
        let result = f().await;
        permit.record(classifier.classify(&result)).await;
        result.map_err(Error::Call)
    }

    /// Runs `f` under the breaker on this thread, classified as [`Breaker::call`] does.
    pub fn call_blocking<T: 'static, E: 'static>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, Error<E>> {
        self.call_blocking_with(&self.inner.classifiers, f)
    }

    /// Runs `f` under the breaker on this thread, classifying its result with `classifier`.
    /// A panic in `f` is recorded as a failure and then resumed.
    #[inline]
    pub fn call_blocking_with<T, E, C>(
        &self,
        classifier: &C,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, Error<E>>
    where
        C: Classifier<T, E> + ?Sized,
    {
        let permit = match self.gate() {
            // The common case needs no permit: nothing to time, nothing to give back.
            Gate::Closed(generation) if !self.inner.times_calls => {
                let inner = &self.inner;
                let timer = crate::observe::CallTimer::start();
                return match std::panic::catch_unwind(AssertUnwindSafe(f)) {
                    Ok(result) => {
                        let outcome = classifier.classify(&result);
                        timer.finish(inner.name, inner.backend, outcome);
                        if let Some(deferred) = inner.settle_closed(generation, outcome, false) {
                            inner.report_blocking(deferred);
                        }
                        result.map_err(Error::Call)
                    }
                    Err(panic) => {
                        if let Some(deferred) =
                            inner.settle_closed(generation, Outcome::Failure, false)
                        {
                            inner.report_blocking(deferred);
                        }
                        std::panic::resume_unwind(panic)
                    }
                };
            }
            Gate::Closed(generation) => Permit::new(&self.inner, Admitted::Closed { generation }),
            Gate::Rejected(rejected) => return Err(Error::Rejected(rejected)),
            Gate::Slow => self.acquire_slow_blocking().map_err(widen)?,
        };
        match std::panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(result) => {
                permit.record_blocking(classifier.classify(&result));
                result.map_err(Error::Call)
            }
            Err(panic) => {
                permit.record_blocking(Outcome::Failure);
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Writes pending outcomes and reloads the shared record now (for shutdown and tests;
    /// [`Breaker::refresh`] only reads).
    pub async fn flush(&self) -> Result<(), BackendError> {
        self.inner.sync(true, self.inner.deadline()).await
    }

    /// [`Breaker::flush`] for code without an async runtime.
    pub fn flush_blocking(&self) -> Result<(), BackendError> {
        futures_executor::block_on(self.flush())
    }

    /// Waits until what this agent's calls handed to the background writer is written
    /// (within the back-end deadline): in the cached mode a failing or slow call returns
    /// without waiting for its write, and a dropped probe permit is given back the same way.
    /// Batched successes wait for their flush; [`Breaker::flush`] writes those too.
    pub async fn written(&self) {
        self.inner.drain_queued(self.inner.deadline()).await;
    }

    /// [`Breaker::written`] for code without an async runtime.
    pub fn written_blocking(&self) {
        futures_executor::block_on(self.written());
    }

    /// Opens the breaker for the whole fleet until [`Breaker::reset`].
    pub async fn force_open(&self) -> Result<(), BackendError> {
        self.operator(|rec, now| machine::force(rec, now, Forced::Open))
            .await
    }

    /// Closes (disables) the breaker for the whole fleet until [`Breaker::reset`].
    pub async fn force_closed(&self) -> Result<(), BackendError> {
        self.operator(|rec, now| machine::force(rec, now, Forced::Closed))
            .await
    }

    /// Resets the breaker to closed, with fresh counters, for the whole fleet.
    pub async fn reset(&self) -> Result<(), BackendError> {
        self.operator(machine::reset).await
    }

    /// An operator action: written to the back-end or not at all, never to a local fallback.
    async fn operator(
        &self,
        f: impl Fn(&mut Record, Timestamp) + Sync,
    ) -> Result<(), BackendError> {
        let dl = self.inner.deadline();
        if self.inner.lock().degraded() {
            self.inner.connect(true, dl).await?;
        }
        self.inner.update(&mut |rec, now| f(rec, now), dl).await
    }

    /// The hot path: admission decided from the cached view, when it can be.
    #[inline(always)]
    fn gate(&self) -> Gate {
        let inner = &self.inner;
        let now = inner.clock.recent();
        match inner.hot.decide(inner.strict, now) {
            Fast::Admit {
                generation,
                maintain: false,
            } => Gate::Closed(generation),
            Fast::Reject { state, until } => Gate::Rejected(self.reject(state, until, now)),
            Fast::Admit { maintain: true, .. } | Fast::Slow => Gate::Slow,
        }
    }

    fn reject(&self, state: State, until: Option<Timestamp>, now: Timestamp) -> Rejected {
        let retry_after = until.map(|u| u.saturating_duration_since(now));
        crate::observe::rejected(self.inner.name, self.inner.backend, state);
        if self.inner.events.active() {
            self.emit_rejected(state, retry_after);
        }
        Rejected::new(self.inner.name, state, retry_after)
    }

    #[cold]
    fn emit_rejected(&self, state: State, retry_after: Option<std::time::Duration>) {
        self.inner.events.emit(Event::Rejected {
            breaker: self.inner.name,
            state,
            retry_after,
        });
    }

    async fn acquire_slow(&self) -> Result<Permit<'_>, AdmissionError> {
        let inner = &self.inner;
        // One deadline for the whole admission: upkeep, reconnection, the read, the claim.
        let dl = inner.deadline();
        // A failure of this agent's is on its way: wait for it (or write it), so that no
        // call is admitted past a failure that trips.
        if inner.hot.write_in_flight() {
            inner.drain_queued(dl).await;
        }
        // Upkeep rides on calls (the core has no runtime to schedule it): queued outcomes,
        // batched successes, and a refresh when the view may be stale.
        if inner.hot.maintenance_due(inner.clock.now()) {
            inner.maintain(dl).await;
            match self.gate() {
                Gate::Closed(generation) => {
                    return Ok(Permit::new(inner, Admitted::Closed { generation }));
                }
                Gate::Rejected(rejected) => return Err(Error::Rejected(rejected)),
                Gate::Slow => {}
            }
        }
        // Under a quorum, the agent's own breaker when it tripped alone.
        let own = inner.admit_own(|state, until| self.reject(state, until, inner.clock.now()));
        if let Some(decided) = own {
            return decided.map_err(Error::Rejected);
        }
        let degraded = inner.lock().degraded();
        if degraded && !inner.try_recover(dl).await {
            return self.admit_degraded();
        }
        // Strict mode admits by the back-end's state as of this call's start: one read per
        // admission, never the cached view.
        let ready = if inner.policy.strict {
            inner.refresh(dl).await
        } else {
            inner.ensure_ready(dl).await
        };
        if ready.is_err() {
            return self.admit_degraded();
        }
        let now = inner.clock.now();
        let (admission, state) = {
            let s = inner.lock();
            (machine::admission(&s.record, now), s.record.state)
        };
        match admission {
            Admission::Admit { generation } => {
                Ok(Permit::new(inner, Admitted::Closed { generation }))
            }
            Admission::Reject { retry_at } => {
                Err(Error::Rejected(self.reject(state, retry_at, now)))
            }
            Admission::Probe => {
                let policy = &inner.policy;
                match inner
                    .update(&mut |rec, now| machine::claim_probe(rec, policy, now), dl)
                    .await
                {
                    Ok(claim) => self.admit_claim(claim),
                    Err(_) => self.admit_degraded(),
                }
            }
        }
    }

    fn admit_claim(&self, claim: Claim) -> Result<Permit<'_>, AdmissionError> {
        let inner = &self.inner;
        match claim {
            Claim::Admit { generation } => Ok(Permit::new(inner, Admitted::Closed { generation })),
            Claim::Probe { generation, lease } => {
                Ok(Permit::new(inner, Admitted::Probe { generation, lease }))
            }
            Claim::Reject { retry_at } => {
                let state = inner.lock().record.state;
                Err(Error::Rejected(self.reject(
                    state,
                    retry_at,
                    inner.clock.now(),
                )))
            }
        }
    }

    /// Admission while the back-end is unreachable, by the policy. A forced state seen before
    /// the outage is obeyed whatever the policy.
    fn admit_degraded(&self) -> Result<Permit<'_>, AdmissionError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut s = inner.lock();
        match s.record.state {
            State::ForcedOpen => {
                drop(s);
                return Err(Error::Rejected(self.reject(State::ForcedOpen, None, now)));
            }
            State::ForcedClosed => return Ok(Permit::new(inner, Admitted::Unprotected)),
            _ => {}
        }
        match inner.policy.on_backend_failure {
            BackendFailure::FailOpen => Ok(Permit::new(inner, Admitted::Unprotected)),
            BackendFailure::FailClosed => {
                let err = s
                    .last_error
                    .clone()
                    .expect("degraded breakers keep their last error");
                Err(Error::Backend(err))
            }
            BackendFailure::LocalFallback => {
                let local = s.local_record();
                let mut rec = local.clone();
                let claim = machine::claim_probe(&mut rec, &inner.policy, now);
                if rec != local {
                    inner.install_local(&mut s, rec);
                }
                drop(s);
                self.admit_claim(claim)
            }
        }
    }
}

/// An async call admitted while closed, without a permit. Dropped before it finishes, the
/// call panicked (dropped while unwinding: a failure, queued for the next maintenance) or
/// was cancelled (ignored: nothing to do).
struct ClosedCall<'a> {
    inner: &'a Arc<Inner>,
    generation: u64,
}

impl<'a> ClosedCall<'a> {
    #[inline]
    fn finish(self) -> &'a Arc<Inner> {
        let inner = self.inner;
        std::mem::forget(self);
        inner
    }
}

impl Drop for ClosedCall<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.inner.queue_failure(self.generation);
        }
    }
}

/// What the hot path decided.
enum Gate {
    /// Admitted while closed, in this generation.
    Closed(u64),
    Rejected(Rejected),
    /// Needs the slow path.
    Slow,
}

/// Turns an admission error into the error type of a call.
fn widen<E>(e: AdmissionError) -> Error<E> {
    match e {
        Error::Rejected(r) => Error::Rejected(r),
        Error::Backend(b) => Error::Backend(b),
        Error::Call(never) => match never {},
    }
}
