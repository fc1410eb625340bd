//! Conformance cases of a quorum ([`Policy::min_agents`]): one sick agent cannot open the
//! fleet's breaker, and opens one of its own; enough distinct agents failing within the
//! window open the fleet's; agents count only within the window; probes stay fleet-wide once
//! the fleet's breaker is open.

use std::sync::Arc;
use std::time::Duration;

use breaker_core::{Cause, Error, Event, ManualClock, Policy, State};

use super::{Harness, START, agent, stored_record, two_agents};
use crate::calls::{fail, succeed};
use crate::unique_name;

/// Three failures within ten seconds from at least two agents trip; open for five seconds.
fn quorum() -> Policy {
    Policy::builder()
        .failures_within(3, Duration::from_secs(10))
        .open_for(Duration::from_secs(5))
        .min_agents(2)
        .build()
        .unwrap()
}

/// Whether `events` hold a transition to `to` of the agent's own breaker.
fn local_transition(events: &[Event], to: State) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Transition { to: t, cause: Cause::Local, .. } if *t == to))
}

/// One agent whose calls all fail meets the rule alone: the fleet's breaker stays closed
/// (the healthy agent is never rejected), and the sick agent opens its own: its calls are
/// rejected, its probe is its own, and a good probe closes it.
pub async fn one_agent_failing_alone_opens_only_its_own<H: Harness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("quorum-alone");
    let (sick, healthy) = two_agents(&*h, &name, &quorum(), &clock).await;
    let mut events = sick.subscribe();
    assert!(matches!(fail(&sick).await, Err(Error::Call(_))));
    let local = |events: &[Event]| {
        events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Transition {
                        cause: Cause::Local,
                        ..
                    }
                )
            })
            .count()
    };
    assert_eq!(local(&events.drain()), 0, "one failure is no transition");
    for _ in 0..2 {
        assert!(matches!(fail(&sick).await, Err(Error::Call(_))));
    }
    assert_eq!(sick.state(), Some(State::Open), "its own breaker opened");
    assert!(
        local_transition(&events.drain(), State::Open),
        "reported as local"
    );
    assert!(
        matches!(fail(&sick).await, Err(Error::Rejected(_))),
        "rejected, locally"
    );
    let stored = stored_record(&*h, &name)
        .await
        .expect("its failures were written");
    assert_eq!(
        stored.state,
        State::Closed,
        "the fleet's breaker stays closed"
    );
    assert!(
        succeed(&healthy).await.is_ok(),
        "the healthy agent is admitted"
    );
    assert_eq!(healthy.refresh().await.unwrap(), State::Closed);
    clock.advance(Duration::from_secs(5));
    let probe = sick.acquire().await.expect("its own probe");
    assert!(probe.is_probe());
    assert!(
        local_transition(&events.drain(), State::HalfOpen),
        "its own half-open"
    );
    assert!(sick.acquire().await.is_err(), "one probe at a time");
    probe.success().await;
    assert_eq!(sick.state(), Some(State::Closed), "closed by its own probe");
    assert!(local_transition(&events.drain(), State::Closed));
    assert_eq!(
        healthy.refresh().await.unwrap(),
        State::Closed,
        "and the fleet never opened"
    );
}

/// Failures from two agents within the window make the quorum: the fleet's breaker opens
/// for every agent, a fresh one included.
pub async fn a_quorum_of_agents_opens_the_fleet<H: Harness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("quorum-met");
    let (a, b) = two_agents(&*h, &name, &quorum(), &clock).await;
    let _ = fail(&a).await;
    let _ = fail(&a).await;
    assert_eq!(a.state(), Some(State::Closed), "two failures meet no rule");
    let _ = fail(&b).await;
    assert_eq!(
        b.state(),
        Some(State::Open),
        "three failures from two agents trip"
    );
    let fresh = agent(&*h, &name, &quorum(), &clock).await;
    assert_eq!(
        fresh.refresh().await.unwrap(),
        State::Open,
        "for the whole fleet"
    );
    a.flush().await.unwrap();
    assert_eq!(a.state(), Some(State::Open));
}

/// A sick agent that opened its own breaker stays in the window through its probes' failures,
/// so that a second agent failing makes the quorum.
pub async fn a_second_sick_agent_makes_the_quorum<H: Harness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("quorum-second");
    let (first, second) = two_agents(&*h, &name, &quorum(), &clock).await;
    for _ in 0..3 {
        let _ = fail(&first).await;
    }
    assert_eq!(first.state(), Some(State::Open), "its own");
    // Its own open period passes and its probe fails; the window moves on past its first
    // failures, but the probe's failure keeps it in the window.
    clock.advance(Duration::from_secs(8));
    assert!(
        matches!(fail(&first).await, Err(Error::Call(_))),
        "its own probe"
    );
    clock.advance(Duration::from_secs(5));
    let _ = fail(&second).await;
    assert_eq!(
        second.state(),
        Some(State::Closed),
        "two failures in the window"
    );
    let _ = fail(&second).await;
    assert_eq!(
        second.state(),
        Some(State::Open),
        "the probe's failure and the second agent's two make the quorum"
    );
    assert_eq!(stored_record(&*h, &name).await.unwrap().state, State::Open);
}

/// Agents count only within the window: an agent that failed more than a window ago does
/// not make the quorum with one failing now.
pub async fn failing_agents_expire_with_the_window<H: Harness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("quorum-expiry");
    let (early, late) = two_agents(&*h, &name, &quorum(), &clock).await;
    let _ = fail(&early).await;
    clock.advance(Duration::from_secs(11));
    for _ in 0..3 {
        let _ = fail(&late).await;
    }
    assert_eq!(late.state(), Some(State::Open), "its own breaker");
    let stored = stored_record(&*h, &name).await.unwrap();
    assert_eq!(
        stored.state,
        State::Closed,
        "no quorum: the early agent has expired"
    );
    let ids: Vec<u64> = stored.failing_agents.iter().map(|a| a.agent).collect();
    assert_eq!(ids.len(), 1, "one agent in the window: {ids:?}");
}

/// Once a quorum opened the fleet's breaker, probes are the fleet's: one permit for all
/// agents, and its success closes the breaker for everyone.
pub async fn probes_stay_fleet_wide_under_a_quorum<H: Harness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("quorum-probe");
    let (a, b) = two_agents(&*h, &name, &quorum(), &clock).await;
    let _ = fail(&a).await;
    let _ = fail(&b).await;
    let _ = fail(&a).await;
    assert_eq!(a.state(), Some(State::Open));
    clock.advance(Duration::from_secs(5));
    let probe = a.acquire().await.expect("the fleet's one probe");
    assert!(probe.is_probe() && probe.generation().is_some());
    b.flush().await.unwrap();
    assert!(b.acquire().await.is_err(), "no second probe fleet-wide");
    probe.success().await;
    b.flush().await.unwrap();
    assert_eq!(b.state(), Some(State::Closed), "closed for everyone");
}

/// While the back-end is unreachable, the local fallback protects the agent by the policy
/// without the quorum (one agent alone could never make it), and its own breaker counts
/// nothing: once the back-end answers again, its calls are admitted and its own count
/// starts afresh.
pub async fn under_a_quorum_an_outage_still_protects_and_leaves_nothing_behind<H: Harness>(
    h: Arc<H>,
) {
    let clock = ManualClock::new(START);
    let name = unique_name("quorum-outage");
    let (a, driver) = super::faulty_agent(&*h, &name, &quorum(), &clock).await;
    assert!(succeed(&a).await.is_ok());
    // Two failures while the back-end is down: the local fallback counts them, the agent's
    // own breaker does not.
    driver.set_down(true);
    for _ in 0..2 {
        let _ = fail(&a).await;
    }
    assert!(a.is_degraded());
    driver.set_down(false);
    clock.advance(Duration::from_secs(6));
    assert!(succeed(&a).await.is_ok(), "shared again");
    assert!(!a.is_degraded());
    let _ = fail(&a).await;
    assert_eq!(
        a.state(),
        Some(State::Closed),
        "one failure after the outage: its own breaker counted none during it"
    );
    // Three failures while down: the local fallback trips on them, quorum or not.
    driver.set_down(true);
    clock.advance(Duration::from_secs(11));
    for _ in 0..3 {
        let _ = fail(&a).await;
    }
    assert!(a.is_degraded());
    assert!(
        matches!(succeed(&a).await, Err(Error::Rejected(_))),
        "the local fallback tripped on three failures"
    );
}
