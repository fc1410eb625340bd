//! Conformance cases of the back-end failure policy: the driver under test wrapped in
//! [`crate::Faulty`], switched off and on.

use crate::calls::{fail, succeed};
use std::sync::Arc;
use std::time::Duration;

use breaker_core::{
    BackendFailure, Breaker, DriverErrorKind, Error, Event, ManualClock, Policy, State,
};

use super::{Harness, START, agent, faulty_agent};
use crate::unique_name;

fn clock() -> ManualClock {
    ManualClock::new(START)
}

fn policy(on_failure: BackendFailure) -> Policy {
    Policy::builder()
        .failures_within(2, Duration::from_secs(10))
        .open_for(Duration::from_secs(5))
        .reconnect(Duration::from_secs(1), Duration::from_secs(8))
        .on_backend_failure(on_failure)
        .build()
        .unwrap()
}

/// Fail open: while the back-end is down every call runs, and nothing trips.
pub async fn fail_open_admits_everything<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let (a, faulty) = faulty_agent(
        &*h,
        &unique_name("fail-open"),
        &policy(BackendFailure::FailOpen),
        &clock,
    )
    .await;
    let mut events = a.subscribe();
    succeed(&a).await.unwrap();
    faulty.set_down(true);
    for _ in 0..10 {
        assert!(
            matches!(fail(&a).await, Err(Error::Call(_))),
            "every call runs"
        );
    }
    assert!(a.is_degraded());
    let errors = events
        .drain()
        .into_iter()
        .filter(|e| matches!(e, Event::BackendError(_)))
        .count();
    assert!(errors >= 1, "the outage is visible in events");
}

/// Fail closed: while the back-end is down every call is refused with a back-end error that
/// names the breaker and the back-end.
pub async fn fail_closed_rejects_with_backend_error<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let name = unique_name("fail-closed");
    let (a, faulty) = faulty_agent(&*h, &name, &policy(BackendFailure::FailClosed), &clock).await;
    succeed(&a).await.unwrap();
    faulty.set_down(true);
    // The agent learns of the outage at its next back-end operation: here, a failure.
    assert!(matches!(fail(&a).await, Err(Error::Call(_))));
    let ran = std::sync::atomic::AtomicBool::new(false);
    let r = a
        .call(|| async {
            ran.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok::<(), &str>(())
        })
        .await;
    match r {
        Err(Error::Backend(e)) => {
            assert_eq!(e.kind(), DriverErrorKind::Unavailable);
            let text = e.to_string();
            assert!(
                text.contains(&name) && text.contains(a_backend(&a)),
                "{text}"
            );
        }
        other => panic!("expected a back-end error, got {other:?}"),
    }
    assert!(
        !ran.load(std::sync::atomic::Ordering::SeqCst),
        "the call did not run"
    );
}

fn a_backend(b: &Breaker) -> &'static str {
    // Every driver names itself; the kit only needs it to appear in the error text.
    match format!("{b:?}") {
        s if s.contains("memory") => "memory",
        s if s.contains("redis") => "redis",
        s if s.contains("etcd") => "etcd",
        s if s.contains("sqlite") => "sqlite",
        _ => "",
    }
}

/// Local fallback: the agent keeps protecting the service on its own, never writes its local
/// state to the back-end, and takes the shared record again once the back-end answers.
pub async fn local_fallback_protects_and_shared_state_returns<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let p = policy(BackendFailure::LocalFallback);
    let name = unique_name("fallback");
    let (a, faulty) = faulty_agent(&*h, &name, &p, &clock).await;
    let other = agent(&*h, &name, &p, &clock).await;
    let mut events = a.subscribe();
    succeed(&a).await.unwrap();
    faulty.set_down(true);
    let _ = fail(&a).await;
    let _ = fail(&a).await;
    let ran = std::sync::atomic::AtomicU32::new(0);
    let r = a
        .call(|| async {
            ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<(), &str>(())
        })
        .await;
    assert!(
        matches!(r, Err(Error::Rejected(ref rej)) if rej.state() == State::Open),
        "{r:?}"
    );
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 0);
    other.flush().await.unwrap();
    assert_eq!(
        other.state(),
        Some(State::Closed),
        "the local trip never reached the back-end"
    );
    faulty.set_down(false);
    clock.advance(Duration::from_secs(1));
    assert!(
        succeed(&a).await.is_ok(),
        "back in shared mode, where the breaker is closed"
    );
    assert!(!a.is_degraded());
    assert_eq!(a.state(), Some(State::Closed));
    assert!(
        events
            .drain()
            .iter()
            .any(|e| matches!(e, Event::BackendRecovered { .. }))
    );
}

/// A forced-open state seen before an outage is obeyed during it, under every policy, and is
/// still in force after it.
pub async fn forced_open_survives_an_outage<H: Harness>(h: Arc<H>) {
    for on_failure in [
        BackendFailure::FailOpen,
        BackendFailure::FailClosed,
        BackendFailure::LocalFallback,
    ] {
        let clock = clock();
        let p = policy(on_failure);
        let (a, faulty) = faulty_agent(&*h, &unique_name("forced-outage"), &p, &clock).await;
        a.force_open().await.unwrap();
        faulty.set_down(true);
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            let r = succeed(&a).await;
            assert!(
                matches!(r, Err(Error::Rejected(ref rej)) if rej.state() == State::ForcedOpen),
                "{on_failure:?}: {r:?}"
            );
        }
        faulty.set_down(false);
        clock.advance(Duration::from_secs(60));
        a.flush().await.unwrap();
        assert_eq!(a.state(), Some(State::ForcedOpen), "{on_failure:?}");
    }
}

/// A dead back-end is tried again only after the reconnect delay, not on every call.
pub async fn dead_backend_is_not_retried_on_every_call<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let (a, faulty) = faulty_agent(
        &*h,
        &unique_name("backoff"),
        &policy(BackendFailure::LocalFallback),
        &clock,
    )
    .await;
    succeed(&a).await.unwrap();
    faulty.set_down(true);
    let _ = fail(&a).await;
    let after_detection = faulty.attempts();
    for _ in 0..100 {
        let _ = succeed(&a).await;
    }
    assert_eq!(
        faulty.attempts(),
        after_detection,
        "no retry before the delay"
    );
    clock.advance(Duration::from_secs(1));
    for _ in 0..100 {
        let _ = succeed(&a).await;
    }
    assert_eq!(
        faulty.attempts(),
        after_detection + 1,
        "one retry after the delay"
    );
    clock.advance(Duration::from_secs(1));
    let _ = succeed(&a).await;
    assert_eq!(faulty.attempts(), after_detection + 1, "the delay doubled");
    clock.advance(Duration::from_secs(1));
    let _ = succeed(&a).await;
    assert_eq!(faulty.attempts(), after_detection + 2);
}

/// A back-end that does not answer within the deadline is an outage too, reported as a
/// timeout.
pub async fn timeouts_count_as_outages<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let (a, faulty) = faulty_agent(
        &*h,
        &unique_name("timeout"),
        &policy(BackendFailure::FailClosed),
        &clock,
    )
    .await;
    succeed(&a).await.unwrap();
    faulty.set_timing_out(true);
    let _ = fail(&a).await;
    match succeed(&a).await {
        Err(Error::Backend(e)) => assert_eq!(e.kind(), DriverErrorKind::Timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// A back-end that answers every operation just under the deadline: each caller-visible
/// operation (a first call that connects, a failure's write, an operator action, a flush)
/// shares one deadline among all its steps and retries, so no caller is held longer than
/// `backend_timeout`, however many steps it takes. Measured as the time the back-end held
/// the operations (each at most the timeout it was given), not by a clock in the test.
pub async fn a_backend_just_under_the_deadline_holds_no_caller_past_it<H: Harness>(h: Arc<H>) {
    let clock = clock();
    let budget = Duration::from_millis(200);
    let policy = Policy::builder()
        .failures_within(2, Duration::from_secs(10))
        .backend_timeout(budget)
        .build()
        .unwrap();
    let (a, faulty) = faulty_agent(&*h, &unique_name("slow"), &policy, &clock).await;
    faulty.set_latency(budget.mul_f64(0.9));
    // One millisecond per step is the floor each step is given once the budget is spent.
    let slack = Duration::from_millis(10);
    let steps: [(&str, _); 4] = [
        ("the first call (clock, load, watch)", 0),
        ("a failure's write", 1),
        ("an operator's reset", 2),
        ("a flush", 3),
    ];
    for (what, step) in steps {
        let before = faulty.held();
        match step {
            0 => drop(succeed(&a).await),
            1 => drop(fail(&a).await),
            2 => drop(a.reset().await),
            _ => drop(a.flush().await),
        }
        let held = faulty.held() - before;
        assert!(
            held <= budget + slack,
            "{what} held the caller {held:?}, beyond the {budget:?} deadline"
        );
    }
}
