//! Conformance cases of what agents report and what strict mode guarantees: the effective
//! state at the open period's end, an agent that has not read the record yet, strict
//! admission by the back-end's state, views that never go backwards under a race, a dropped
//! probe permit's slot freed without its holder's help, the longest open period, and
//! batched successes that stay in their generation. Several agents, one manual clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use breaker_core::{
    Breaker, Cause, Clock, Driver, Error, Event, ManualClock, Name, Policy, State, machine,
};

use super::{Harness, START, agent, pushes, stored_record, two_agents};
use crate::calls::{fail, succeed};
use crate::unique_name;

const T: Duration = Duration::from_secs(5);

fn clock() -> ManualClock {
    ManualClock::new(START)
}

/// One failure trips; open for five seconds; one probe.
fn one_failure_trips() -> breaker_core::PolicyBuilder {
    Policy::builder()
        .failures_within(1, Duration::from_secs(10))
        .open_for(Duration::from_secs(5))
}

/// Every agent reports the effective state: once the open period is over (at its very last
/// instant, inclusive) an open breaker reads half-open, before anyone has called.
pub async fn effective_state_at_the_open_periods_end<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = one_failure_trips().build().unwrap();
    let name = unique_name("effective");
    let (a, b) = two_agents(&*h, &name, &policy, &clock).await;
    b.refresh().await.unwrap();
    let _ = fail(&a).await;
    b.flush().await.unwrap();
    let until = a.snapshot().open_until.expect("open until");
    let before = until.as_millis() - clock.now().as_millis() - 1;
    clock.advance(Duration::from_millis(before));
    for x in [&a, &b] {
        assert_eq!(
            x.state(),
            Some(State::Open),
            "one millisecond before the end"
        );
    }
    clock.advance(Duration::from_millis(1));
    for x in [&a, &b] {
        assert_eq!(
            x.state(),
            Some(State::HalfOpen),
            "at the end of the open period, with no probe claimed"
        );
        assert_eq!(
            x.snapshot().state,
            State::Open,
            "the stored state is unchanged"
        );
    }
    assert_eq!(b.refresh().await.unwrap(), State::HalfOpen);
}

/// An agent that has not read the record does not guess: its state is unknown until it
/// reads, and `refresh` reads the fleet's state within the deadline.
pub async fn a_never_called_agent_does_not_guess<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = Policy::default();
    let name = unique_name("never-called");
    let operator = agent(&*h, &name, &policy, &clock).await;
    operator.force_open().await.unwrap();
    let fresh = agent(&*h, &name, &policy, &clock).await;
    assert_eq!(fresh.state(), None, "nothing read yet, so nothing reported");
    assert_eq!(fresh.refresh().await.unwrap(), State::ForcedOpen);
    assert_eq!(fresh.state(), Some(State::ForcedOpen));
    let rejected = fresh.acquire().await.unwrap_err();
    assert!(rejected.is_rejected(), "{rejected:?}");
}

/// Strict agents admit by the back-end's state as of the call's start: with no settling
/// between steps (no flush, no waiting for a push), no call is admitted that the stored
/// record would reject, and no probe permit is granted that it does not allow.
pub async fn strict_agents_never_admit_from_a_stale_view<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = one_failure_trips().strict(true).build().unwrap();
    let name = unique_name("strict-stale");
    let (a, b) = two_agents(&*h, &name, &policy, &clock).await;
    succeed(&b).await.unwrap();
    let _ = fail(&a).await;
    let r = b.acquire().await;
    assert!(
        matches!(&r, Err(Error::Rejected(rej)) if rej.state() == State::Open),
        "b must see a's trip at once: {r:?}"
    );
    drop(r);
    clock.advance(Duration::from_secs(5));
    let probe = a.acquire().await.expect("a claims the one probe");
    assert!(probe.is_probe());
    let r = b.acquire().await;
    assert!(
        matches!(&r, Err(Error::Rejected(rej)) if rej.state() == State::HalfOpen),
        "the only permit is taken: {r:?}"
    );
    drop(r);
    probe.success().await;
    let admitted = b.acquire().await.expect("closed again, as stored");
    assert!(!admitted.is_probe());
    admitted.success().await;
    a.force_open().await.unwrap();
    let r = b.acquire().await;
    assert!(
        matches!(&r, Err(Error::Rejected(rej)) if rej.state() == State::ForcedOpen),
        "an operator's force-open binds at once: {r:?}"
    );
}

/// Many fresh agents race their first calls (and their watches' first reloads) against the
/// write that trips the breaker: no agent's view ever goes back (generations only grow in
/// what it reports), and exactly one agent reports the trip as caused.
pub async fn fresh_agents_racing_a_trip_never_go_back<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = one_failure_trips().build().unwrap();
    for round in 0..4 {
        let name = unique_name(&format!("race-{round}"));
        let mut fleet = Vec::new();
        for _ in 0..12 {
            fleet.push(agent(&*h, &name, &policy, &clock).await);
        }
        let mut subs: Vec<_> = fleet.iter().map(Breaker::subscribe).collect();
        let calls: Vec<_> = fleet
            .iter()
            .map(|a| {
                let a = a.clone();
                tokio::spawn(async move {
                    let _ = fail(&a).await;
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        for a in &fleet {
            a.flush().await.unwrap();
        }
        let mut caused = 0;
        for (i, sub) in subs.iter_mut().enumerate() {
            let mut last = 0;
            for event in sub.drain() {
                if let Event::Transition {
                    generation,
                    cause,
                    to,
                    ..
                } = event
                {
                    assert!(
                        generation > last,
                        "agent {i} went back to generation {generation} after {last}"
                    );
                    last = generation;
                    if cause == Cause::Caused && to == State::Open {
                        caused += 1;
                    }
                }
            }
        }
        assert_eq!(
            caused, 1,
            "round {round}: exactly one agent caused the trip"
        );
        assert!(fleet.iter().all(|a| a.state() == Some(State::Open)));
    }
}

/// A probe permit dropped unreported frees its slot for other agents without its holder
/// calling again: within a push where the driver pushes, else within `max_staleness`.
pub async fn a_dropped_probe_frees_its_slot_promptly<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = one_failure_trips().build().unwrap();
    let name = unique_name("dropped-probe");
    let (holder, other) = two_agents(&*h, &name, &policy, &clock).await;
    other.refresh().await.unwrap();
    let _ = fail(&holder).await;
    clock.advance(Duration::from_secs(5));
    let permit = holder.acquire().await.expect("the probe");
    assert!(permit.is_probe());
    other.flush().await.unwrap();
    assert!(other.acquire().await.is_err(), "the slot is taken");
    drop(permit);
    // The holder makes no further call. A driver that pushes tells the other agent; for one
    // that cannot, the release must reach the store by itself, and the other agent learns of
    // it within `max_staleness` on its clock.
    let deadline = Instant::now() + Duration::from_secs(10);
    if !pushes(&*h).await {
        let reader = h.driver().await;
        let key = Name::new(&name).unwrap();
        loop {
            let stored = reader.load(&key, T).await.unwrap().expect("the record");
            let rec = breaker_core::Record::decode(&stored.value).unwrap();
            if rec.leases.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the dropped probe's lease never left the store"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        clock.advance(policy.max_staleness);
    }
    loop {
        match other.acquire().await {
            Ok(permit) => {
                assert!(permit.is_probe(), "the freed slot, as a probe");
                permit.success().await;
                break;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "the dropped probe's slot never came free: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    holder.flush().await.unwrap();
    assert_eq!(holder.state(), Some(State::Closed));
}

/// The longest valid open period works on every back-end: the breaker trips, the record is
/// stored (the back-end's expiry limits are respected) and every agent stays open.
pub async fn the_longest_open_period_trips_and_stays_open<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = Policy::builder()
        .failures_within(1, Duration::from_secs(10))
        .open_for(Duration::from_millis(u64::MAX))
        .probe_lease(Duration::from_millis(u64::MAX))
        .record_ttl(Duration::from_millis(u64::MAX))
        .build()
        .unwrap();
    let name = unique_name("longest");
    let (a, b) = two_agents(&*h, &name, &policy, &clock).await;
    let _ = fail(&a).await;
    a.flush().await.expect("the trip was written");
    assert_eq!(b.refresh().await.unwrap(), State::Open);
    let stored = stored_record(&*h, &name).await;
    assert_eq!(
        stored.map(|r| r.state),
        Some(State::Open),
        "the open record is stored"
    );
    clock.advance(Duration::from_secs(365 * 24 * 3_600));
    b.flush().await.unwrap();
    assert_eq!(b.state(), Some(State::Open), "a year later, still open");
    assert!(b.acquire().await.is_err());
}

/// A success counted in one generation is not written into the next: a reset (or any
/// transition) leaves the new generation's counts empty.
pub async fn batched_successes_stay_in_their_generation<H: Harness>(h: Arc<H>) {
    let clock = clock();
    // A rule that reads successes once the window holds a failure.
    let policy = Policy::builder().failure_rate(0.9, 100).build().unwrap();
    let a = agent(&*h, &unique_name("successes-gen"), &policy, &clock).await;
    fail(&a).await.unwrap_err();
    a.flush().await.unwrap();
    for _ in 0..3 {
        succeed(&a).await.unwrap();
    }
    a.reset().await.unwrap();
    a.flush().await.unwrap();
    let counts = machine::window_counts(&a.snapshot(), &policy, clock.now());
    assert_eq!(
        counts.successes, 0,
        "successes of the old generation leaked"
    );
    fail(&a).await.unwrap_err();
    succeed(&a).await.unwrap();
    a.flush().await.unwrap();
    let counts = machine::window_counts(&a.snapshot(), &policy, clock.now());
    assert_eq!(counts.successes, 1, "the new generation counts its own");
}

/// Every transition is announced once to each agent, as caused by the agent whose write it
/// was and observed by the others, and a first read announces nothing: an agent that joins
/// reads the fleet's state, it does not see it change. An agent that did not look while a
/// probe ran sees the breaker go from open to open, in a later generation.
pub async fn transitions_are_announced_once_and_first_reads_never<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let policy = one_failure_trips().build().unwrap();
    let name = unique_name("announced");
    let (a, b) = two_agents(&*h, &name, &policy, &clock).await;
    let (mut ea, mut eb) = (a.subscribe(), b.subscribe());
    b.refresh().await.unwrap();
    let transitions = |events: Vec<Event>| -> Vec<(State, State, u64, Cause)> {
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Transition {
                    from,
                    to,
                    generation,
                    cause,
                    ..
                } => Some((from, to, generation, cause)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(transitions(eb.drain()), [], "a first read is no transition");
    let _ = fail(&a).await;
    b.flush().await.unwrap();
    assert_eq!(
        transitions(ea.drain()),
        [(State::Closed, State::Open, 1, Cause::Caused)]
    );
    assert_eq!(
        transitions(eb.drain()),
        [(State::Closed, State::Open, 1, Cause::Observed)]
    );
    clock.advance(Duration::from_secs(5));
    let _ = fail(&a).await;
    b.flush().await.unwrap();
    assert_eq!(
        transitions(ea.drain()),
        [
            (State::Open, State::HalfOpen, 2, Cause::Caused),
            (State::HalfOpen, State::Open, 3, Cause::Caused)
        ]
    );
    let seen = transitions(eb.drain());
    assert!(
        seen == [(State::Open, State::Open, 3, Cause::Observed)]
            || seen
                == [
                    (State::Open, State::HalfOpen, 2, Cause::Observed),
                    (State::HalfOpen, State::Open, 3, Cause::Observed)
                ],
        "each transition once, or the two as one reopening: {seen:?}"
    );
    let late = agent(&*h, &name, &policy, &clock).await;
    let mut el = late.subscribe();
    assert_eq!(late.refresh().await.unwrap(), State::Open);
    assert_eq!(transitions(el.drain()), [], "joining is no transition");
}
