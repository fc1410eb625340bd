//! Conformance cases of the breaker's end-to-end behaviour through a driver: several agents
//! (breakers of one name, each over its own driver) on one manual clock.

use crate::calls::{fail, succeed};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breaker_core::{
    Breaker, Cause, Clock, Driver, DriverError, Error, Event, ManualClock, Name, Policy, Record,
    RecordEncoding, Reviser, State, Subscription, Swap, Updated, Versioned, machine,
};

use super::{Harness, START, agent, faulty_agent, pushes, stored_record, stored_view};
use crate::{Faulty, IntermittentFailer, unique_name};

const T: Duration = Duration::from_secs(5);

fn clock() -> ManualClock {
    ManualClock::new(START)
}

/// Three failures within ten seconds, open for five seconds.
fn base() -> breaker_core::PolicyBuilder {
    Policy::builder()
        .failures_within(3, Duration::from_secs(10))
        .open_for(Duration::from_secs(5))
}

/// Two probes per half-open period, both needed to close.
fn two_probes_to_close() -> Policy {
    base()
        .half_open_permits(2)
        .success_threshold(2)
        .build()
        .unwrap()
}

/// Writes every agent's pending outcomes, then refreshes every agent's view, so that each
/// agent has seen every other agent's writes whatever the driver's push latency.
async fn flush_all(agents: &[Breaker]) {
    for _pass in 0..2 {
        for a in agents {
            a.flush().await.expect("flush");
        }
    }
}

async fn agents<H: Harness>(
    h: &H,
    name: &str,
    policy: &Policy,
    clock: &ManualClock,
    n: usize,
) -> Vec<Breaker> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(agent(h, name, policy, clock).await);
    }
    out
}

/// Transitions to `to` reported as caused, across subscriptions.
fn caused(subs: &mut [Subscription], to: State) -> usize {
    subs.iter_mut()
        .flat_map(|s| s.drain())
        .filter(|e| matches!(e, Event::Transition { to: t, cause: Cause::Caused, .. } if *t == to))
        .count()
}

fn rejected_state<E: std::fmt::Debug>(r: Result<(), Error<E>>) -> State {
    match r {
        Err(Error::Rejected(rej)) => rej.state(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// The original project's scenario: threshold 2, open 5 s, a callee that succeeds, fails,
/// fails, repeating.
pub async fn original_scenario<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = Policy::builder()
        .failures_within(2, Duration::from_secs(60))
        .open_for(Duration::from_secs(5))
        .build()
        .unwrap();
    let b = agent(&*h, &unique_name("original"), &policy, &clock).await;
    let callee = IntermittentFailer::from_pattern([true, false, false]).unwrap();
    let call = || b.call(|| async { callee.call() });
    assert!(call().await.is_ok());
    assert!(matches!(call().await, Err(Error::Call(_))));
    assert!(
        matches!(call().await, Err(Error::Call(_))),
        "the tripping call returns its own error"
    );
    for _ in 0..3 {
        let r = call().await;
        assert!(
            matches!(&r, Err(Error::Rejected(rej)) if rej.retry_after() == Some(Duration::from_secs(5))),
            "{r:?}"
        );
    }
    assert_eq!(callee.calls(), 3, "rejections never reach the callee");
    clock.advance(Duration::from_secs(6));
    assert!(call().await.is_ok(), "the probe is admitted and succeeds");
    assert_eq!(b.state(), Some(State::Closed));
    assert!(
        matches!(call().await, Err(Error::Call(_))),
        "one failure does not trip"
    );
    assert_eq!(b.state(), Some(State::Closed));
    assert_eq!(callee.calls(), 5);
}

/// Agents failing at once trip the breaker once: one generation step, one caused event.
pub async fn fleet_trips_exactly_once<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = base().build().unwrap();
    let name = unique_name("fleet");
    let fleet = agents(&*h, &name, &policy, &clock, 4).await;
    flush_all(&fleet).await;
    let mut subs: Vec<Subscription> = fleet.iter().map(Breaker::subscribe).collect();
    let mut tasks = Vec::new();
    for a in fleet.clone() {
        tasks.push(tokio::spawn(async move {
            for _ in 0..2 {
                let _ = fail(&a).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    flush_all(&fleet).await;
    assert_eq!(
        caused(&mut subs, State::Open),
        1,
        "exactly one agent caused the trip"
    );
    for a in &fleet {
        let rec = a.snapshot();
        assert_eq!((rec.state, rec.generation), (State::Open, 1));
        assert_eq!(rejected_state(succeed(a).await), State::Open);
    }
}

async fn tripped<H: Harness>(
    h: &H,
    policy: &Policy,
    clock: &ManualClock,
    n: usize,
) -> Vec<Breaker> {
    let fleet = agents(h, &unique_name("probe"), policy, clock, n).await;
    for _ in 0..3 {
        let _ = fail(&fleet[0]).await;
    }
    flush_all(&fleet).await;
    assert!(fleet.iter().all(|a| a.state() == Some(State::Open)));
    fleet
}

/// After the open period, exactly `half_open_permits` probes are admitted fleet-wide.
pub async fn half_open_admits_exactly_the_permits_fleet_wide<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = two_probes_to_close();
    let fleet = tripped(&*h, &policy, &clock, 5).await;
    clock.advance(Duration::from_secs(5));
    let mut tasks = Vec::new();
    for a in fleet.clone() {
        tasks.push(tokio::spawn(async move {
            match a.acquire().await {
                Ok(p) => {
                    assert!(p.is_probe());
                    // Hold the permit: the probe is still running.
                    std::mem::forget(p);
                    true
                }
                Err(Error::Rejected(r)) => {
                    assert_eq!(r.state(), State::HalfOpen);
                    false
                }
                Err(e) => panic!("{e}"),
            }
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    assert_eq!(admitted, 2, "two permits, two probes");
    flush_all(&fleet).await;
    assert_eq!(fleet[0].snapshot().leases.len(), 2);
}

/// `success_threshold` probe successes close the breaker for every agent, reported caused by
/// exactly one.
pub async fn probe_successes_close_for_everyone<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = two_probes_to_close();
    let fleet = tripped(&*h, &policy, &clock, 3).await;
    let mut subs: Vec<Subscription> = fleet.iter().map(Breaker::subscribe).collect();
    clock.advance(Duration::from_secs(5));
    let p1 = fleet[1].acquire().await.expect("first probe");
    let p2 = fleet[2].acquire().await.expect("second probe");
    p1.success().await;
    fleet[0].flush().await.unwrap();
    assert_eq!(
        fleet[0].state(),
        Some(State::HalfOpen),
        "one success of two"
    );
    p2.success().await;
    flush_all(&fleet).await;
    assert!(fleet.iter().all(|a| a.state() == Some(State::Closed)));
    assert_eq!(caused(&mut subs, State::Closed), 1);
    assert_eq!(
        fleet[0].snapshot().generation,
        3,
        "closed, open, half-open, closed"
    );
    assert!(succeed(&fleet[0]).await.is_ok());
}

/// A probe failure reopens the breaker in a new generation, for every agent.
pub async fn probe_failure_reopens_with_a_new_generation<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = base().build().unwrap();
    let fleet = tripped(&*h, &policy, &clock, 2).await;
    clock.advance(Duration::from_secs(5));
    assert!(
        matches!(fail(&fleet[1]).await, Err(Error::Call(_))),
        "the probe ran"
    );
    flush_all(&fleet).await;
    for a in &fleet {
        let rec = a.snapshot();
        assert_eq!(
            (rec.state, rec.generation, rec.openings),
            (State::Open, 3, 2)
        );
        assert_eq!(rejected_state(succeed(a).await), State::Open);
    }
}

/// A probe holder that never reports loses its lease when it lapses; its late report is
/// ignored and another agent probes.
pub async fn dead_probe_holder_lease_lapses<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = base().probe_lease(Duration::from_secs(2)).build().unwrap();
    let fleet = tripped(&*h, &policy, &clock, 2).await;
    clock.advance(Duration::from_secs(5));
    let hung = fleet[0].acquire().await.expect("a probe");
    assert_eq!(rejected_state(succeed(&fleet[1]).await), State::HalfOpen);
    clock.advance(Duration::from_secs(2));
    let fresh = fleet[1]
        .acquire()
        .await
        .expect("the lapsed slot is free again");
    assert!(fresh.is_probe());
    hung.success().await;
    fleet[1].flush().await.unwrap();
    assert_eq!(
        fleet[1].state(),
        Some(State::HalfOpen),
        "the late report changed nothing"
    );
    fresh.success().await;
    flush_all(&fleet).await;
    assert!(fleet.iter().all(|a| a.state() == Some(State::Closed)));
}

/// A probe permit dropped unreported is ignored and gives its slot back at once.
pub async fn dropped_probe_permit_gives_its_slot_back<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = base().build().unwrap();
    let fleet = tripped(&*h, &policy, &clock, 2).await;
    clock.advance(Duration::from_secs(5));
    let probe = fleet[0].acquire().await.expect("a probe");
    assert_eq!(rejected_state(succeed(&fleet[1]).await), State::HalfOpen);
    drop(probe);
    flush_all(&fleet).await;
    let again = fleet[1].acquire().await.expect("the slot came back");
    assert!(again.is_probe());
    again.ignore();
    fleet[1].flush().await.unwrap();
    assert!(fleet[1].snapshot().leases.is_empty());
    assert_eq!(
        fleet[1].snapshot().probe_successes,
        0,
        "ignored changes no counter"
    );
}

/// An outcome admitted in an older generation changes nothing.
pub async fn stale_outcomes_change_nothing<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = base().build().unwrap();
    let name = unique_name("stale");
    let fleet = agents(&*h, &name, &policy, &clock, 2).await;
    let old = fleet[0].acquire().await.unwrap();
    assert_eq!(old.generation(), Some(0));
    for _ in 0..3 {
        let _ = fail(&fleet[1]).await;
    }
    fleet[1].reset().await.unwrap();
    flush_all(&fleet).await;
    let before = fleet[0].snapshot();
    assert_eq!((before.state, before.generation), (State::Closed, 2));
    old.failure().await;
    flush_all(&fleet).await;
    let after = fleet[1].snapshot();
    assert_eq!(after.generation, 2);
    assert_eq!(
        machine::window_counts(&after, &policy, clock.now()).failures,
        0
    );
}

/// Forced open rejects on every agent, for ever; forced closed never trips; reset closes.
pub async fn forced_states_bind_every_agent<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = base().build().unwrap();
    let fleet = agents(&*h, &unique_name("forced"), &policy, &clock, 3).await;
    fleet[0].force_open().await.unwrap();
    flush_all(&fleet).await;
    clock.advance(Duration::from_secs(3600));
    for a in &fleet {
        match a.acquire().await {
            Err(Error::Rejected(r)) => {
                assert_eq!((r.state(), r.retry_after()), (State::ForcedOpen, None))
            }
            other => panic!("{other:?}"),
        }
    }
    fleet[1].force_closed().await.unwrap();
    flush_all(&fleet).await;
    for _ in 0..10 {
        assert!(matches!(fail(&fleet[2]).await, Err(Error::Call(_))));
    }
    flush_all(&fleet).await;
    assert!(fleet.iter().all(|a| a.state() == Some(State::ForcedClosed)));
    fleet[2].reset().await.unwrap();
    flush_all(&fleet).await;
    assert!(fleet.iter().all(|a| a.state() == Some(State::Closed)));
    for _ in 0..3 {
        let _ = fail(&fleet[0]).await;
    }
    fleet[1].flush().await.unwrap();
    assert_eq!(
        fleet[1].state(),
        Some(State::Open),
        "a reset breaker trips again"
    );
}

/// Successes are counted locally without a round trip, and reach the shared record in
/// batches, once a rule reads them (a failure rate, with a failure in the window).
pub async fn batched_successes_reach_the_record<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = Policy::builder().failure_rate(0.5, 4).build().unwrap();
    let name = unique_name("batched");
    let (a, faulty) = faulty_agent(&*h, &name, &policy, &clock).await;
    let b = agent(&*h, &name, &policy, &clock).await;
    fail(&a).await.unwrap_err();
    succeed(&a).await.unwrap();
    a.flush().await.unwrap();
    let before = faulty.attempts();
    for _ in 0..20 {
        succeed(&a).await.unwrap();
        succeed(&b).await.unwrap();
    }
    assert_eq!(
        faulty.attempts(),
        before,
        "successes while closed cost no round trip"
    );
    flush_all(&[a.clone(), b.clone()]).await;
    a.flush().await.unwrap();
    let counts = machine::window_counts(&a.snapshot(), &policy, clock.now());
    assert_eq!(counts.successes, 41);
    // Maintenance writes them by itself once the flush interval passes.
    succeed(&b).await.unwrap();
    clock.advance(policy.flush_interval);
    succeed(&b).await.unwrap();
    a.flush().await.unwrap();
    let counts = machine::window_counts(&a.snapshot(), &policy, clock.now());
    assert_eq!(counts.successes, 42);
}

/// A healthy breaker whose record holds nothing a rule builds on rests: its upkeep comes
/// every `max_staleness`, not every flush interval. Another agent's failure, once its push
/// arrives (no read of the resting agent's own), ends the rest: under a rate rule the
/// resting agent's successes from then on are written at the next flush interval, as
/// they always were.
pub async fn another_agents_failure_ends_a_rest<H: Harness>(h: Arc<H>) {
    // Outcomes written into the record, then appended to its log: a's appended failure is
    // pushed like any write, b's successes are appended once they matter.
    for append in [false, true] {
        let clock = clock();
        // A rate that a handful of calls never reaches.
        let policy = Policy::builder()
            .failure_rate(0.9, 100)
            .append_outcomes(append)
            .build()
            .unwrap();
        let name = unique_name("rest");
        let a = agent(&*h, &name, &policy, &clock).await;
        let b = agent(&*h, &name, &policy, &clock).await;
        succeed(&a).await.unwrap();
        succeed(&b).await.unwrap();
        // Both records read, nothing in the window: both at rest.
        flush_all(&[a.clone(), b.clone()]).await;
        fail(&a).await.unwrap_err();
        a.written().await;
        let stored = |rec: Option<Record>| {
            machine::window_counts(&rec.expect("a stored record"), &policy, clock.now())
        };
        let before = stored(stored_view(&*h, &name, &policy).await);
        assert_eq!(before.failures, 1, "append {append}: a's failure is stored");
        if pushes(&*h).await {
            let waited = std::time::Instant::now();
            while machine::window_counts(&b.snapshot(), &policy, clock.now()).failures == 0 {
                assert!(
                    waited.elapsed() < Duration::from_secs(10),
                    "append {append}: a's failure never reached b by its watch"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else {
            // Without a watch nothing rests; b reads the record (nothing of its own pending).
            b.flush().await.unwrap();
        }
        for _ in 0..3 {
            succeed(&b).await.unwrap();
        }
        clock.advance(policy.flush_interval);
        // This call's upkeep is due again and writes the three successes before it.
        succeed(&b).await.unwrap();
        let after = stored(stored_view(&*h, &name, &policy).await);
        assert_eq!(
            after.successes,
            before.successes + 3,
            "append {append}: b's successes were not written at the flush interval once a \
             failure was in the window"
        );
    }
}

/// In the cached mode a failing call on a back-end whose writes are slow (as a networked
/// one's are) returns without waiting for its write: while the back-end holds every write,
/// the call has come back and its write is still waiting; once writes flow, the failure is
/// in the shared record.
pub async fn a_failing_call_does_not_wait_for_its_write<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = Policy::builder()
        .failures_within(3, Duration::from_secs(60))
        .backend_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let name = unique_name("unwaited");
    let (a, faulty) = faulty_agent(&*h, &name, &policy, &clock).await;
    // Writes of 2 ms or more, as over a network: more than a hand-off to the writer costs.
    faulty.set_latency(Duration::from_millis(2));
    for _ in 0..3 {
        a.reset().await.unwrap();
    }
    faulty.set_latency(Duration::ZERO);
    a.flush().await.unwrap();
    faulty.hold_writes(true);
    let r = a.call(|| async { Err::<(), _>("boom") }).await;
    assert!(matches!(r, Err(Error::Call("boom"))), "{r:?}");
    // Had the call waited for its write, it would have come back only once the write gave
    // up (30 s), and no write would be waiting now.
    let waiting = (0..10_000).any(|_| {
        std::thread::sleep(Duration::from_millis(1));
        faulty.writes_waiting() == 1
    });
    assert!(waiting, "the call returned, but its write never started");
    assert_eq!(a.state(), Some(State::Closed), "nothing written yet");
    faulty.hold_writes(false);
    a.written().await;
    let counts = machine::window_counts(&a.snapshot(), &policy, clock.now());
    assert_eq!(counts.failures, 1, "the failure reached the record");
    let stored = stored_record(&*h, &name).await.expect("a stored record");
    assert_eq!(
        machine::window_counts(&stored, &policy, clock.now()).failures,
        1
    );
}

/// Under a rule that counts failures alone, a healthy agent's successes are never written:
/// flush intervals pass, upkeep runs, and the back-end sees no operation at all.
pub async fn a_healthy_fleet_writes_nothing<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = Policy::default();
    let name = unique_name("healthy");
    let (a, faulty) = faulty_agent(&*h, &name, &policy, &clock).await;
    let b = agent(&*h, &name, &policy, &clock).await;
    succeed(&a).await.unwrap();
    a.flush().await.unwrap();
    let before = faulty.attempts();
    // Within `max_staleness`, so that a driver without push need not poll either.
    for _ in 0..4 {
        for _ in 0..10 {
            succeed(&a).await.unwrap();
            succeed(&b).await.unwrap();
        }
        clock.advance(policy.flush_interval);
    }
    succeed(&a).await.unwrap();
    assert_eq!(
        faulty.attempts(),
        before,
        "successes that no rule reads were written"
    );
    // The rule still trips on failures, with nothing of the successes in the record.
    for _ in 0..5 {
        let _ = fail(&a).await;
    }
    assert_eq!(a.state(), Some(State::Open));
    b.flush().await.unwrap();
    assert_eq!(b.state(), Some(State::Open));
}

/// A success from any agent resets the fleet's consecutive-failure count.
pub async fn consecutive_failures_reset_by_any_agent<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = Policy::builder().consecutive_failures(3).build().unwrap();
    let fleet = agents(&*h, &unique_name("consecutive"), &policy, &clock, 2).await;
    let _ = fail(&fleet[0]).await;
    let _ = fail(&fleet[0]).await;
    succeed(&fleet[1]).await.unwrap();
    flush_all(&fleet).await;
    assert_eq!(fleet[0].snapshot().consecutive_failures, 0);
    let _ = fail(&fleet[0]).await;
    let _ = fail(&fleet[1]).await;
    flush_all(&fleet).await;
    assert_eq!(fleet[0].state(), Some(State::Closed));
    let _ = fail(&fleet[1]).await;
    flush_all(&fleet).await;
    assert!(fleet.iter().all(|a| a.state() == Some(State::Open)));
}

/// In strict mode every admission reads the back-end and every outcome that a rule reads is
/// written at once, never more: a failure is the read and a write; a success is the read
/// alone unless it can change what a rule decides in the record as read (it breaks a run of
/// consecutive failures), and then the read and a write. The first success still creates the
/// record, so that operators see the breaker.
pub async fn strict_mode_writes_every_outcome<H: Harness>(h: Arc<H>) {
    for (rule, reads_successes) in [("consecutive", true), ("window", false)] {
        let clock = clock();
        let policy = if reads_successes {
            Policy::builder().consecutive_failures(3)
        } else {
            base()
        };
        let policy = policy.strict(true).build().unwrap();
        let name = unique_name(&format!("strict-{rule}"));
        let (a, faulty) = faulty_agent(&*h, &name, &policy, &clock).await;
        succeed(&a).await.unwrap();
        assert!(
            stored_record(&*h, &name).await.is_some(),
            "{rule}: the first success created the record"
        );
        let round_trips = |before: u64| faulty.attempts() - before;
        let before = faulty.attempts();
        for _ in 0..10 {
            succeed(&a).await.unwrap();
        }
        assert_eq!(
            round_trips(before),
            10,
            "{rule}: a success that changes nothing a rule reads is the admission's read alone"
        );
        let before = faulty.attempts();
        let _ = fail(&a).await;
        assert_eq!(
            round_trips(before),
            2,
            "{rule}: a failure is read and written"
        );
        let written = stored_record(&*h, &name).await.unwrap();
        assert_eq!(
            machine::window_counts(&written, &policy, clock.now()).failures,
            1,
            "{rule}: a failure is written at once, whatever the rule"
        );
        let before = faulty.attempts();
        succeed(&a).await.unwrap();
        let per_call = if reads_successes { 2 } else { 1 };
        assert_eq!(
            round_trips(before),
            per_call,
            "{rule}: a success after a failure is written only where it breaks a run"
        );
        let written = stored_record(&*h, &name).await.unwrap();
        assert_eq!(
            written.consecutive_failures,
            if reads_successes { 0 } else { 1 },
            "{rule}: the run as the store holds it"
        );
        let before = faulty.attempts();
        succeed(&a).await.unwrap();
        assert_eq!(round_trips(before), 1, "{rule}: the run is broken already");
    }
}

/// Two strict agents admitted before either wrote, each failing: both failures reach the
/// record, and the second writer's stale view costs it at most one conflict (a driver that
/// updates atomically settles it with an update, which cannot conflict again).
pub async fn writers_admitted_together_lose_no_outcome<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = base().strict(true).build().unwrap();
    let name = unique_name("writers");
    let (a, _) = faulty_agent(&*h, &name, &policy, &clock).await;
    let (b, b_driver) = faulty_agent(&*h, &name, &policy, &clock).await;
    succeed(&a).await.unwrap();
    succeed(&b).await.unwrap();
    let first = a.acquire().await.unwrap();
    let second = b.acquire().await.unwrap();
    first.failure().await;
    a.written().await;
    let before = b_driver.attempts();
    second.failure().await;
    b.written().await;
    let writes = b_driver.attempts() - before;
    assert!((1..=2).contains(&writes), "{writes} writes for one failure");
    let stored = stored_record(&*h, &name).await.unwrap();
    assert_eq!(
        machine::window_counts(&stored, &policy, clock.now()).failures,
        2,
        "both failures are counted"
    );
    assert_eq!(
        b.snapshot(),
        stored,
        "the second writer's view is what it wrote"
    );
}

/// A driver that another writer always beats: before each of its compare-and-swaps, a
/// rival driver of the same store writes the stored record again (same bytes, a new
/// version), so the swap's expected version is always stale. Counts the swaps and updates
/// that reach it; `inner` can hide the driver's atomic update ([`Faulty::set_swaps_only`]).
struct Beaten<D> {
    inner: Faulty<D>,
    rival: D,
    swaps: AtomicU64,
    updates: AtomicU64,
}

impl<D: Driver> Driver for Beaten<D> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn load(&self, name: &Name, timeout: Duration) -> Result<Option<Versioned>, DriverError> {
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
        self.swaps.fetch_add(1, Ordering::SeqCst);
        if let Some(current) = self.rival.load(name, timeout).await? {
            let again = Some(current.version);
            let swapped = self
                .rival
                .compare_and_swap(name, again, current.value, None, timeout);
            assert!(matches!(swapped.await?, Swap::Swapped { .. }));
        }
        self.inner
            .compare_and_swap(name, expected, value, ttl, timeout)
            .await
    }
    async fn list(&self, timeout: Duration) -> Result<Vec<(Name, Versioned)>, DriverError> {
        self.inner.list(timeout).await
    }
    fn updates_atomically(&self) -> bool {
        self.inner.updates_atomically()
    }
    async fn update<'a>(
        &'a self,
        name: &'a Name,
        revise: &'a mut Reviser<'_>,
        timeout: Duration,
    ) -> Result<Updated, DriverError> {
        self.updates.fetch_add(1, Ordering::SeqCst);
        self.inner.update(name, revise, timeout).await
    }
}

/// A breaker whose every compare-and-swap another writer beats: on a driver that updates
/// atomically its failure lands in two writes (the beaten swap, then one update, which no
/// writer can come before); by compare-and-swap alone (every driver, the atomic update
/// hidden) the breaker gives up after its bounded retries and the outcome is lost to the
/// rival, with a back-end error, never a hang.
pub async fn a_writer_always_beaten_lands_its_outcome_by_one_update<H: Harness>(h: Arc<H>) {
    let policy = base().build().unwrap();
    let clock = clock();
    for swaps_only in [false, true] {
        let inner = Faulty::new(h.driver().await);
        inner.set_swaps_only(swaps_only);
        let driver = Arc::new(Beaten {
            inner,
            rival: h.driver().await,
            swaps: AtomicU64::new(0),
            updates: AtomicU64::new(0),
        });
        let atomic = driver.updates_atomically();
        let name = unique_name("beaten");
        let b = Breaker::builder_dyn(&name, driver.clone())
            .policy(policy.clone())
            .clock(clock.clone())
            .build()
            .unwrap();
        succeed(&b).await.unwrap();
        b.flush().await.unwrap();
        let swaps = driver.swaps.load(Ordering::SeqCst);
        let _ = fail(&b).await;
        let stored = stored_record(&*h, &name).await.unwrap();
        let failures = machine::window_counts(&stored, &policy, clock.now()).failures;
        let tried = driver.swaps.load(Ordering::SeqCst) - swaps;
        if atomic {
            assert_eq!(failures, 1, "the outcome landed");
            assert_eq!(tried, 1, "one swap, beaten");
            assert_eq!(driver.updates.load(Ordering::SeqCst), 1, "then one update");
        } else {
            assert_eq!(failures, 0, "the outcome was lost to the rival");
            assert!(tried > 1, "{tried} swaps");
            assert_eq!(driver.updates.load(Ordering::SeqCst), 0);
            assert!(b.is_degraded(), "giving up is a back-end failure");
        }
    }
}

/// Agents that write the record in different encodings ([`RecordEncoding`]) are one fleet,
/// as during a fleet's switch to compact records one agent at a time: each reads what the
/// other wrote (neither reports it corrupt nor writes over it), their failures add up to one
/// trip, and the record is in the encoding of its last writer.
pub async fn agents_of_either_encoding_share_a_breaker<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let name = unique_name("encodings");
    let json = base().build().unwrap();
    let compact = base()
        .record_encoding(RecordEncoding::Compact)
        .build()
        .unwrap();
    let a = agent(&*h, &name, &compact, &clock).await;
    let b = agent(&*h, &name, &json, &clock).await;
    let (mut a_events, mut b_events) = (a.subscribe(), b.subscribe());
    let raw = h.driver().await;
    let n = Name::new(&name).unwrap();
    let stored_in = || async {
        let stored = raw.load(&n, T).await.unwrap().expect("a record");
        RecordEncoding::of(&stored.value)
    };
    let writes = [
        (&a, RecordEncoding::Compact),
        (&b, RecordEncoding::Json),
        (&a, RecordEncoding::Compact),
    ];
    for (failures, (writer, encoding)) in (1..).zip(writes) {
        let _ = fail(writer).await;
        flush_all(&[a.clone(), b.clone()]).await;
        assert_eq!(stored_in().await, encoding, "written by its last writer");
        let rec = stored_record(&*h, &name).await.unwrap();
        if failures < 3 {
            let counted = machine::window_counts(&rec, &json, clock.now()).failures;
            assert_eq!(counted, failures, "each added to what the other wrote");
        } else {
            assert_eq!((rec.state, rec.generation), (State::Open, 1), "one trip");
        }
    }
    assert_eq!(a.state(), Some(State::Open));
    assert_eq!(b.state(), Some(State::Open));
    // An operator's reset through the JSON agent closes the breaker for both.
    b.reset().await.unwrap();
    flush_all(&[a.clone(), b.clone()]).await;
    assert_eq!(stored_in().await, RecordEncoding::Json);
    assert_eq!(a.state(), Some(State::Closed));
    for events in [&mut a_events, &mut b_events] {
        let corrupt: Vec<Event> = events
            .drain()
            .into_iter()
            .filter(|e| matches!(e, Event::CorruptRecord(_) | Event::BackendError(_)))
            .collect();
        assert!(corrupt.is_empty(), "{corrupt:?}");
    }
}

/// A value under the breaker's name that is not a record (garbage, a schema no build wrote,
/// a compact record cut short) is reported as corrupt; the breaker keeps working and
/// replaces it with its next write.
pub async fn corrupt_record_is_reported_and_replaced<H: Harness>(h: Arc<H>) {
    let garbage = b"\xff\x00 not a record".to_vec();
    // A schema older than any build wrote is corrupt; a newer one is an incompatibility,
    // left alone (`foreign::a_newer_schema_is_refused_and_left_alone`).
    let mut older = String::from_utf8(Record::new().encode()).unwrap();
    older = older.replace("\"schema\":1", "\"schema\":0");
    let mut cut = Record::new().encode_as(RecordEncoding::Compact);
    cut.pop();
    for bytes in [garbage, older.into_bytes(), cut] {
        let clock = clock();
        let policy = base().build().unwrap();
        let name = unique_name("corrupt");
        let raw = h.driver().await;
        let n = Name::new(&name).unwrap();
        assert!(matches!(
            raw.compare_and_swap(&n, None, bytes, None, T)
                .await
                .unwrap(),
            Swap::Swapped { .. }
        ));
        let a = agent(&*h, &name, &policy, &clock).await;
        let mut events = a.subscribe();
        assert!(
            succeed(&a).await.is_ok(),
            "a corrupt record does not wedge the breaker"
        );
        let corrupt = events.drain().into_iter().find_map(|e| match e {
            Event::CorruptRecord(err) => Some(err),
            _ => None,
        });
        let err = corrupt.expect("the corrupt record is reported");
        assert_eq!(err.kind(), breaker_core::DriverErrorKind::Corrupt);
        assert!(err.to_string().contains(&name), "{err}");
        for _ in 0..3 {
            let _ = fail(&a).await;
        }
        let stored = raw.load(&n, T).await.unwrap().expect("a record");
        let rec = Record::decode(&stored.value).expect("replaced by a valid record");
        assert_eq!(rec.state, State::Open);
    }
}

/// An agent that joins reads the shared record and never resets it.
pub async fn joining_agent_keeps_the_shared_record<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = base().build().unwrap();
    let fleet = tripped(&*h, &policy, &clock, 1).await;
    let late = agent(&*h, fleet[0].name().as_str(), &policy, &clock).await;
    assert_eq!(rejected_state(succeed(&late).await), State::Open);
    assert_eq!(late.snapshot().generation, 1);
}

/// A call that panics is a failure, in the blocking and the async API; the panic still
/// reaches the caller.
pub async fn panicking_calls_are_failures<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = Policy::builder()
        .failures_within(2, Duration::from_secs(10))
        .build()
        .unwrap();
    let a = agent(&*h, &unique_name("panics"), &policy, &clock).await;
    succeed(&a).await.unwrap();
    let blocking = {
        let a = a.clone();
        tokio::task::spawn_blocking(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = a.call_blocking(|| -> Result<(), &str> { panic!("callee blew up") });
            }))
        })
        .await
        .unwrap()
    };
    assert!(blocking.is_err(), "the panic reaches the caller");
    // Written now, so that the next call is admitted on the hot path (no permit), whose
    // panic is queued by the call's drop guard: with the failure still queued, the call
    // would take the slow path and its permit would record the panic instead.
    a.flush().await.unwrap();
    let task = {
        let a = a.clone();
        tokio::spawn(async move {
            let _ = a
                .call(|| async {
                    if true {
                        panic!("future blew up");
                    }
                    Ok::<(), &str>(())
                })
                .await;
        })
    };
    assert!(task.await.unwrap_err().is_panic());
    a.flush().await.unwrap();
    assert_eq!(a.state(), Some(State::Open), "two panics, two failures");
}

/// A cancelled call is ignored: a closed-state call changes no counter, and a cancelled
/// probe gives its slot back.
pub async fn cancelled_calls_are_ignored<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = Policy::builder()
        .failures_within(1, Duration::from_secs(10))
        .open_for(Duration::from_secs(5))
        .build()
        .unwrap();
    let fleet = agents(&*h, &unique_name("cancelled"), &policy, &clock, 2).await;
    succeed(&fleet[0]).await.unwrap();
    cancel_once_running(&fleet[0]).await;
    fleet[0].flush().await.unwrap();
    assert_eq!(
        fleet[0].state(),
        Some(State::Closed),
        "a cancelled call is no failure"
    );
    let _ = fail(&fleet[0]).await;
    clock.advance(Duration::from_secs(5));
    cancel_once_running(&fleet[0]).await;
    fleet[0].flush().await.unwrap();
    assert!(
        succeed(&fleet[1]).await.is_ok(),
        "the cancelled probe's slot went to another agent"
    );
    flush_all(&fleet).await;
    assert!(fleet.iter().all(|a| a.state() == Some(State::Closed)));
}

/// Starts a call that never finishes and cancels it once the callee runs, so the call was
/// admitted (a probe claimed, where half-open) before it is dropped.
async fn cancel_once_running(b: &Breaker) {
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let call = b.call(|| async move {
        let _ = started.send(());
        std::future::pending::<Result<(), &str>>().await
    });
    tokio::select! {
        _ = call => panic!("the call never ends by itself"),
        r = running => r.expect("the callee started"),
    }
}

/// Slow calls, measured on the breaker's clock, count as failures when the policy says so,
/// and feed the slow-call rate; the caller still gets the value.
pub async fn slow_calls_count<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let as_failure = Policy::builder()
        .failures_within(2, Duration::from_secs(60))
        .slow_calls(Duration::from_millis(500), true)
        .build()
        .unwrap();
    let a = agent(&*h, &unique_name("slow"), &as_failure, &clock).await;
    let slow = || {
        let clock = clock.clone();
        async move {
            clock.advance(Duration::from_millis(501));
            Ok::<u32, &str>(7)
        }
    };
    assert_eq!(
        a.call(slow).await.unwrap(),
        7,
        "a slow success returns its value"
    );
    assert_eq!(a.call(|| async { Ok::<u32, &str>(8) }).await.unwrap(), 8);
    a.flush().await.unwrap();
    assert_eq!(a.state(), Some(State::Closed));
    assert_eq!(a.call(slow).await.unwrap(), 7);
    a.flush().await.unwrap();
    assert_eq!(
        a.state(),
        Some(State::Open),
        "two slow calls are two failures"
    );

    let by_rate = Policy::builder()
        .slow_calls(Duration::from_millis(500), false)
        .slow_call_rate(0.5, 4)
        .build()
        .unwrap();
    let b = agent(&*h, &unique_name("slow-rate"), &by_rate, &clock).await;
    for _ in 0..2 {
        b.call(|| async { Ok::<u32, &str>(1) }).await.unwrap();
    }
    b.call(slow).await.unwrap();
    b.flush().await.unwrap();
    assert_eq!(
        b.state(),
        Some(State::Closed),
        "3 calls, fewer than min_calls"
    );
    b.call(slow).await.unwrap();
    b.flush().await.unwrap();
    assert_eq!(b.state(), Some(State::Open), "2 slow of 4");
}

/// Without push, an agent's view is at most `max_staleness` old once it makes a call: it
/// polls the record on its own, with no flush.
pub async fn polling_bounds_staleness_without_push<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = base()
        .max_staleness(Duration::from_secs(1))
        .build()
        .unwrap();
    let name = unique_name("polling");
    let tripper = agent(&*h, &name, &policy, &clock).await;
    let (poller, faulty) = faulty_agent(&*h, &name, &policy, &clock).await;
    faulty.set_no_push(true);
    succeed(&poller).await.unwrap();
    for _ in 0..3 {
        let _ = fail(&tripper).await;
    }
    let before = faulty.attempts();
    assert!(
        succeed(&poller).await.is_ok(),
        "still fresh enough: no read yet"
    );
    assert_eq!(faulty.attempts(), before, "no round trip within the bound");
    clock.advance(Duration::from_secs(1));
    let _ = succeed(&poller).await;
    assert_eq!(
        rejected_state(succeed(&poller).await),
        State::Open,
        "polled within the bound"
    );
}
