//! Losing members of a real 3-member etcd cluster while agents call: one member (the
//! leader) down leaves quorum, so nothing reaches the callers and shared state is intact;
//! two down leave no quorum, so the back-end failure policy applies within the deadline;
//! restarting the members brings shared mode back by itself.

use std::time::{Duration, Instant};

use breaker_core::{BackendFailure, Breaker, Error, ManualClock, Policy, State, Timestamp};
use breaker_driver_etcd::{EtcdDriver, EtcdOptions};
use breaker_testing::servers::EtcdCluster;

/// Longer than an election of the test cluster (election timeout 500 ms): while a new
/// leader is elected no member can serve a linearizable read, so a leader's loss is invisible
/// to callers only when the deadline can wait out the election.
const DEADLINE: Duration = Duration::from_millis(2_000);
/// Scheduling slack on a busy 2-core machine; a hang would be many seconds.
const MARGIN: Duration = Duration::from_millis(2_000);

fn agent(cluster: &EtcdCluster, clock: &ManualClock, on_failure: BackendFailure) -> Breaker {
    let endpoints = cluster.endpoints();
    let endpoints: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let policy = Policy::builder()
        .failures_within(2, Duration::from_secs(60))
        .backend_timeout(DEADLINE)
        .reconnect(Duration::from_secs(1), Duration::from_secs(1))
        .on_backend_failure(on_failure)
        .build()
        .unwrap();
    Breaker::builder(
        "ledger",
        EtcdDriver::open(&endpoints, EtcdOptions::default()).unwrap(),
    )
    .policy(policy)
    .clock(clock.clone())
    .build()
    .unwrap()
}

async fn timed(b: &Breaker, ok: bool) -> Result<(), Error<&'static str>> {
    breaker_testing::calls::within(b, ok, DEADLINE + MARGIN).await
}

/// The index of the member that leads, asked of each member alone.
async fn leader(cluster: &EtcdCluster) -> usize {
    for (i, endpoint) in cluster.endpoints().iter().enumerate() {
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .unwrap();
        let status = client.status().await.unwrap();
        if status.header().map(|h| h.member_id()) == Some(status.leader()) {
            return i;
        }
    }
    panic!("no member leads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_leader_is_invisible_and_losing_quorum_applies_the_policy() {
    let mut cluster = EtcdCluster::start(3);
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let a = agent(&cluster, &clock, BackendFailure::FailClosed);
    let b = agent(&cluster, &clock, BackendFailure::FailClosed);
    timed(&a, true).await.unwrap();
    timed(&b, true).await.unwrap();

    // One member down, the leader: a new one is elected; callers see nothing of it.
    let first = leader(&cluster).await;
    cluster.kill(first);
    let mut failures = 0;
    for _ in 0..20 {
        match timed(&a, false).await {
            Err(Error::Call(_)) | Err(Error::Rejected(_)) => failures += 1,
            other => panic!("with quorum, no back-end error reaches the caller: {other:?}"),
        }
        // The failure's write, which the call did not wait for, may land on the dead member.
        a.written().await;
        if a.is_degraded() {
            // A request may land on the dead member once; the agent retries after its delay.
            clock.advance(Duration::from_secs(1));
        }
    }
    assert!(failures > 0);
    b.flush().await.unwrap();
    assert_eq!(
        b.state(),
        Some(State::Open),
        "the trip reached the other agent: shared state intact"
    );

    // Two members down: no quorum. The policy applies within the deadline.
    let second = (0..3).find(|&i| i != first).unwrap();
    cluster.kill(second);
    clock.advance(Duration::from_secs(2));
    let _ = b.flush().await;
    let mut refused = 0;
    for _ in 0..5 {
        clock.advance(Duration::from_secs(1));
        if let Err(Error::Backend(e)) = timed(&b, true).await {
            assert!(e.to_string().contains("etcd"), "{e}");
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "without quorum, fail-closed refuses calls with a back-end error"
    );

    // Both back: shared mode returns by itself.
    cluster.restart(first);
    cluster.restart(second);
    cluster.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        clock.advance(Duration::from_secs(2));
        let _ = timed(&b, true).await;
        if !b.is_degraded() {
            break;
        }
        assert!(Instant::now() < deadline, "shared mode never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The restarted members may still be electing a leader: a write can miss its deadline
    // once or twice before the cluster settles.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = b.reset().await {
        assert!(Instant::now() < deadline, "the reset never landed: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.flush().await.is_err() {
        assert!(Instant::now() < deadline, "the other agent never came back");
        clock.advance(Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        a.state(),
        Some(State::Closed),
        "a reset after the outage reaches every agent"
    );
}
