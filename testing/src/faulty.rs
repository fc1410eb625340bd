//! `Faulty`: a driver wrapper that makes any back-end unreachable or slow on demand, and
//! counts the operations that reached it and the time they were held, for tests of the
//! back-end failure policy and of deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use breaker_core::{
    ChangeSink, Driver, DriverError, DriverErrorKind, Name, Reviser, Swap, Timer, Timestamp,
    Updated, Versioned, Watch,
};

/// Wraps a driver; while switched down, every operation fails with
/// [`DriverErrorKind::Unavailable`] (or [`DriverErrorKind::Timeout`]) without reaching it.
#[derive(Clone, Debug)]
pub struct Faulty<D> {
    inner: D,
    state: Arc<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    down: AtomicBool,
    timing_out: AtomicBool,
    no_push: AtomicBool,
    swaps_only: AtomicBool,
    attempts: AtomicU64,
    /// Added to every operation, in microseconds.
    latency_micros: AtomicU64,
    /// The time operations were held by the latency, in microseconds.
    held_micros: AtomicU64,
    /// While set, writes wait (up to their timeout) until it is cleared.
    hold_writes: AtomicBool,
    /// Writes waiting on `hold_writes` right now.
    writes_waiting: AtomicU64,
}

impl<D: Driver> Faulty<D> {
    /// Wraps `inner`, up.
    pub fn new(inner: D) -> Self {
        Faulty {
            inner,
            state: Arc::default(),
        }
    }

    /// Makes the back-end unreachable (`true`) or reachable again.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Makes every operation time out (`true`) or answer again.
    pub fn set_timing_out(&self, timing_out: bool) {
        self.state.timing_out.store(timing_out, Ordering::SeqCst);
    }

    /// Makes `watch` answer that the back-end cannot push (`true`), so that breakers poll.
    pub fn set_no_push(&self, no_push: bool) {
        self.state.no_push.store(no_push, Ordering::SeqCst);
    }

    /// Hides the inner driver's atomic update and its log (`true`), so that breakers built
    /// afterwards write by compare-and-swap, as over a driver that has nothing else: the
    /// peer an atomic update or an append is measured against.
    pub fn set_swaps_only(&self, swaps_only: bool) {
        self.state.swaps_only.store(swaps_only, Ordering::SeqCst);
    }

    /// Makes every operation take `latency` before it goes on (or, when its timeout is
    /// shorter, take the whole timeout and fail as a timeout), as a slow back-end would. The
    /// wait blocks the calling thread: fine for tests, which is all this wrapper is for.
    pub fn set_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.state.latency_micros.store(micros, Ordering::SeqCst);
    }

    /// The total time operations were held by the latency, through this wrapper and its
    /// clones: since every operation waits at most the timeout it was given, this bounds
    /// what the breaker let its callers wait.
    pub fn held(&self) -> Duration {
        Duration::from_micros(self.state.held_micros.load(Ordering::SeqCst))
    }

    /// Makes every compare-and-swap wait until released (`false`), or until its timeout has
    /// passed, when it fails as a timeout: a write in flight for as long as a test needs.
    pub fn hold_writes(&self, hold: bool) {
        self.state.hold_writes.store(hold, Ordering::SeqCst);
    }

    /// Writes waiting on [`Faulty::hold_writes`] right now.
    pub fn writes_waiting(&self) -> u64 {
        self.state.writes_waiting.load(Ordering::SeqCst)
    }

    /// Waits while writes are held, up to `timeout`.
    fn write_gate(&self, timeout: Duration) -> Result<(), DriverError> {
        if !self.state.hold_writes.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.state.writes_waiting.fetch_add(1, Ordering::SeqCst);
        let started = std::time::Instant::now();
        while self.state.hold_writes.load(Ordering::SeqCst) && started.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.state.writes_waiting.fetch_sub(1, Ordering::SeqCst);
        if self.state.hold_writes.load(Ordering::SeqCst) {
            return Err(DriverError::new(
                DriverErrorKind::Timeout,
                "compare-and-swap: held past the deadline (injected)",
            ));
        }
        Ok(())
    }

    /// Operations attempted through this wrapper (and its clones), up or down.
    pub fn attempts(&self) -> u64 {
        self.state.attempts.load(Ordering::SeqCst)
    }

    fn gate(&self, what: &str, timeout: Duration) -> Result<(), DriverError> {
        self.state.attempts.fetch_add(1, Ordering::SeqCst);
        let latency = Duration::from_micros(self.state.latency_micros.load(Ordering::SeqCst));
        if !latency.is_zero() {
            let wait = latency.min(timeout);
            std::thread::sleep(wait);
            let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
            self.state.held_micros.fetch_add(micros, Ordering::SeqCst);
            if latency > timeout {
                return Err(DriverError::new(
                    DriverErrorKind::Timeout,
                    format!("{what}: slower than the {timeout:?} deadline (injected)"),
                ));
            }
        }
        if self.state.down.load(Ordering::SeqCst) {
            return Err(DriverError::new(
                DriverErrorKind::Unavailable,
                format!("{what}: connection refused (injected)"),
            ));
        }
        if self.state.timing_out.load(Ordering::SeqCst) {
            return Err(DriverError::new(
                DriverErrorKind::Timeout,
                format!("{what}: no answer within the deadline (injected)"),
            ));
        }
        Ok(())
    }
}

impl<D: Driver> Driver for Faulty<D> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn load(&self, name: &Name, timeout: Duration) -> Result<Option<Versioned>, DriverError> {
        self.gate("load", timeout)?;
        self.inner.load(name, timeout).await
    }

    async fn compare_and_swap(
        &self,
        name: &Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> Result<Swap, DriverError> {
        self.gate("compare-and-swap", timeout)?;
        self.write_gate(timeout)?;
        self.inner
            .compare_and_swap(name, expected, value, ttl, timeout)
            .await
    }

    fn keeps_timers(&self) -> bool {
        self.inner.keeps_timers()
    }

    async fn compare_and_swap_with_timers(
        &self,
        name: &Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timers: Vec<(Timer, Duration)>,
        timeout: Duration,
    ) -> Result<Swap, DriverError> {
        self.gate("compare-and-swap", timeout)?;
        self.write_gate(timeout)?;
        self.inner
            .compare_and_swap_with_timers(name, expected, value, ttl, timers, timeout)
            .await
    }

    fn updates_atomically(&self) -> bool {
        self.inner.updates_atomically() && !self.state.swaps_only.load(Ordering::SeqCst)
    }

    /// One attempt where the inner driver updates in one step; otherwise the loads and
    /// swaps it is made of, each through this wrapper, so each is counted and can fail.
    async fn update<'a>(
        &'a self,
        name: &'a Name,
        revise: &'a mut Reviser<'_>,
        timeout: Duration,
    ) -> Result<Updated, DriverError> {
        if !self.updates_atomically() {
            return breaker_core::update_with_swaps(self, name, revise, timeout).await;
        }
        self.gate("update", timeout)?;
        self.write_gate(timeout)?;
        self.inner.update(name, revise, timeout).await
    }

    fn appends(&self) -> bool {
        self.inner.appends() && !self.state.swaps_only.load(Ordering::SeqCst)
    }

    async fn append(
        &self,
        name: &Name,
        delta: Vec<u8>,
        ttl: Option<Duration>,
        notify: bool,
        timeout: Duration,
    ) -> Result<Option<Versioned>, DriverError> {
        self.gate("append", timeout)?;
        self.write_gate(timeout)?;
        self.inner.append(name, delta, ttl, notify, timeout).await
    }

    async fn compact(
        &self,
        name: &Name,
        expected: u64,
        through: usize,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> Result<Swap, DriverError> {
        self.gate("compact", timeout)?;
        self.write_gate(timeout)?;
        self.inner
            .compact(name, expected, through, value, ttl, timeout)
            .await
    }

    async fn list(&self, timeout: Duration) -> Result<Vec<(Name, Versioned)>, DriverError> {
        self.gate("list", timeout)?;
        self.inner.list(timeout).await
    }

    async fn watch(
        &self,
        name: &Name,
        sink: ChangeSink,
        timeout: Duration,
    ) -> Result<Option<Watch>, DriverError> {
        self.gate("watch", timeout)?;
        if self.state.no_push.load(Ordering::SeqCst) {
            return Ok(None);
        }
        // Changes pushed while switched down are dropped, as a broken connection would.
        let state = self.state.clone();
        let gated: ChangeSink = Arc::new(move |change| {
            if !state.down.load(Ordering::SeqCst) {
                sink(change)
            }
        });
        let watch = self.inner.watch(name, gated, timeout).await?;
        let state = self.state.clone();
        Ok(watch.map(|w| {
            Watch::new(
                move || w.is_alive() && !state.down.load(Ordering::SeqCst),
                (),
            )
        }))
    }

    async fn now(&self, timeout: Duration) -> Result<Option<Timestamp>, DriverError> {
        self.gate("clock", timeout)?;
        self.inner.now(timeout).await
    }
}
