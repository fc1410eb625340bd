//! Redis outages with a real server: killed while agents are calling, then restarted on the
//! same port (without persistence, so its data is gone). No call waits past the deadline,
//! each back-end failure policy applies, the agents return to shared mode by themselves,
//! and a forced-open state set before the outage is still in force after it.

use std::time::Duration;

use breaker_core::{BackendFailure, Breaker, Error, ManualClock, Policy, State, Timestamp};
use breaker_driver_redis::RedisDriver;
use breaker_testing::servers::RedisServer;

const DEADLINE: Duration = Duration::from_millis(200);
/// Scheduling slack on a busy 2-core machine; a hang would be seconds.
const MARGIN: Duration = Duration::from_millis(1_500);

fn agent(server: &RedisServer, clock: &ManualClock, on_failure: BackendFailure) -> Breaker {
    let policy = Policy::builder()
        .failures_within(2, Duration::from_secs(60))
        .backend_timeout(DEADLINE)
        .reconnect(Duration::from_secs(1), Duration::from_secs(1))
        .on_backend_failure(on_failure)
        .build()
        .unwrap();
    Breaker::builder("inventory", RedisDriver::open(&server.url()).unwrap())
        .policy(policy)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// A call, timed: it must never take longer than the deadline and the margin.
async fn timed(b: &Breaker, ok: bool) -> Result<(), Error<&'static str>> {
    breaker_testing::calls::within(b, ok, DEADLINE + MARGIN).await
}

/// Restarts `server`, then lets the agents' reconnect delays pass until each is back in
/// shared mode. A first attempt may still fail while a connection notices the restart; the
/// agent then waits out its reconnect delay again, by itself.
async fn restart(server: &mut RedisServer, clock: &ManualClock, agents: &[&Breaker]) {
    server.restart();
    for _ in 0..50 {
        clock.advance(Duration::from_millis(1_100));
        for a in agents {
            let _ = a.call(|| async { Ok::<(), &str>(()) }).await;
        }
        if agents.iter().all(|a| !a.is_degraded()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the agents did not return to shared mode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_lets_calls_through_and_recovers() {
    let mut server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let a = agent(&server, &clock, BackendFailure::FailOpen);
    timed(&a, true).await.unwrap();
    server.kill();
    for _ in 0..5 {
        assert!(
            matches!(timed(&a, false).await, Err(Error::Call(_))),
            "fail open: the call runs"
        );
    }
    assert!(a.is_degraded());
    restart(&mut server, &clock, &[&a]).await;
    timed(&a, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_calls_and_recovers() {
    let mut server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let a = agent(&server, &clock, BackendFailure::FailClosed);
    timed(&a, true).await.unwrap();
    server.kill();
    let _ = timed(&a, false).await;
    for _ in 0..5 {
        match timed(&a, true).await {
            Err(Error::Backend(e)) => {
                let text = e.to_string();
                assert!(
                    text.contains("inventory") && text.contains("redis"),
                    "{text}"
                );
            }
            other => panic!("fail closed: expected a back-end error, got {other:?}"),
        }
    }
    restart(&mut server, &clock, &[&a]).await;
    timed(&a, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fallback_protects_and_shared_state_returns() {
    let mut server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let a = agent(&server, &clock, BackendFailure::LocalFallback);
    let b = agent(&server, &clock, BackendFailure::LocalFallback);
    timed(&a, true).await.unwrap();
    timed(&b, true).await.unwrap();
    server.kill();
    let _ = timed(&a, false).await;
    let _ = timed(&a, false).await;
    let r = timed(&a, true).await;
    assert!(
        matches!(r, Err(Error::Rejected(ref rej)) if rej.state() == State::Open),
        "{r:?}"
    );
    restart(&mut server, &clock, &[&a, &b]).await;
    assert_eq!(
        a.state(),
        Some(State::Closed),
        "the shared record is authoritative again"
    );
    let _ = timed(&b, false).await;
    let _ = timed(&b, false).await;
    // b's calls did not wait for their failures' writes.
    b.written().await;
    a.flush().await.unwrap();
    assert_eq!(
        a.state(),
        Some(State::Open),
        "b's trip reaches a: they share state again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_open_survives_an_outage_and_a_restart_that_lost_the_data() {
    for on_failure in [
        BackendFailure::FailOpen,
        BackendFailure::FailClosed,
        BackendFailure::LocalFallback,
    ] {
        let mut server = RedisServer::start();
        let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
        let a = agent(&server, &clock, on_failure);
        let b = agent(&server, &clock, on_failure);
        a.force_open().await.unwrap();
        b.flush().await.unwrap();
        server.kill();
        for agent in [&a, &b] {
            let r = timed(agent, true).await;
            assert!(
                matches!(r, Err(Error::Rejected(ref rej)) if rej.state() == State::ForcedOpen),
                "{on_failure:?} during the outage: {r:?}"
            );
        }
        restart(&mut server, &clock, &[&a, &b]).await;
        for agent in [&a, &b] {
            let r = timed(agent, true).await;
            assert!(
                matches!(r, Err(Error::Rejected(ref rej)) if rej.state() == State::ForcedOpen),
                "{on_failure:?} after the restart: {r:?}"
            );
        }
        let fresh = agent(&server, &clock, on_failure);
        let r = timed(&fresh, true).await;
        assert!(
            matches!(r, Err(Error::Rejected(ref rej)) if rej.state() == State::ForcedOpen),
            "{on_failure:?}: the forced state was written back for agents that never saw it: {r:?}"
        );
    }
}
