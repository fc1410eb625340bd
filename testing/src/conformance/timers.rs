//! Conformance cases for drivers that keep timers ([`Driver::keeps_timers`]): the open period
//! and probe leases end when the back-end says, whatever any agent's clock says.
//!
//! These cases run on real time (the back-end's timers cannot be driven from outside), with
//! timers of one second, and on breakers that were given no clock: an injected clock would
//! judge every deadline itself. The records they plant are written "by an agent whose clock is
//! off by an hour": judged by a clock, they would give the wrong answer at once.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use breaker_core::{
    Breaker, Change, ChangeSink, Clock, Driver, Error, Name, Policy, Record, State, Swap,
    SystemClock, Timer, Timestamp, machine,
};

use super::Harness;
use crate::calls::{fail, succeed};
use crate::unique_name;

const T: Duration = Duration::from_secs(5);
/// How long a back-end may take past a timer's end to report it (etcd checks its leases
/// every half second, and rounds TTLs up to whole seconds).
const GRACE: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3_600);

/// One failure trips; open and probe leases for one second; one probe closes.
fn policy() -> Policy {
    Policy::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(1))
        .probe_lease(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// A breaker that lets the back-end judge its deadlines: no injected clock.
async fn agent<H: Harness>(h: &H, name: &Name) -> Breaker {
    let driver = h.driver().await;
    assert!(
        driver.keeps_timers(),
        "the timer cases are for drivers that keep timers"
    );
    Breaker::builder(name.as_str(), driver)
        .policy(policy())
        .build()
        .expect("a valid breaker")
}

fn name(prefix: &str) -> Name {
    Name::new(&unique_name(prefix)).expect("a valid name")
}

/// Polls `check` until it holds, failing after [`GRACE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < GRACE, "{what}: not within {GRACE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_rejected(r: &Result<(), Error<&'static str>>, state: State) -> bool {
    matches!(r, Err(Error::Rejected(rej)) if rej.state() == state)
}

/// A record opened at `at` on its writer's clock.
fn opened_at(at: Timestamp) -> Record {
    let mut rec = Record::new();
    let tripped = machine::record_tally(&mut rec, &policy(), at, 0, machine::Tally::new(0, 1, 0));
    assert!(tripped && rec.state == State::Open);
    rec
}

/// Timers start with the write that carries them and only then; each runs out by itself,
/// the record stays, and the watch pushes the change.
pub async fn timers_start_with_their_write<H: Harness>(h: Arc<H>) {
    let d = h.driver().await;
    assert!(d.keeps_timers());
    let n = name("timers");
    let pushed = Arc::new(Mutex::new(Vec::<Change>::new()));
    let sink: ChangeSink = {
        let pushed = pushed.clone();
        Arc::new(move |c| pushed.lock().unwrap().push(c))
    };
    let _watch = d.watch(&n, sink, T).await.unwrap().expect("a watch");
    let open = Timer::OpenPeriod { generation: 1 };
    let started = Instant::now();
    let version = match d
        .compare_and_swap_with_timers(
            &n,
            None,
            b"open".to_vec(),
            Some(Duration::from_secs(60)),
            vec![(open, Duration::from_secs(1))],
            T,
        )
        .await
        .unwrap()
    {
        Swap::Swapped { version } => version,
        other => panic!("expected a swap, got {other:?}"),
    };
    let stored = d.load(&n, T).await.unwrap().expect("stored");
    assert_eq!(stored.timers, vec![open]);
    let listed = d.list(T).await.unwrap();
    let listed = listed.iter().find(|(name, _)| *name == n).expect("listed");
    assert_eq!(listed.1, stored, "list reports the timers too");
    // A write that loses its race starts nothing.
    let probe = Timer::ProbeLease {
        generation: 1,
        lease: 1,
    };
    match d
        .compare_and_swap_with_timers(
            &n,
            Some(version + 1_000),
            b"late".to_vec(),
            None,
            vec![(probe, Duration::from_secs(60))],
            T,
        )
        .await
        .unwrap()
    {
        Swap::Conflict { current } => {
            assert_eq!(current.map(|c| c.timers), Some(vec![open]));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    eventually("the open timer runs out", || async {
        d.load(&n, T)
            .await
            .unwrap()
            .is_some_and(|v| v.timers.is_empty())
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "a timer never ends before its duration"
    );
    let stored = d
        .load(&n, T)
        .await
        .unwrap()
        .expect("the record outlives its timer");
    assert_eq!(
        (stored.version, stored.value.as_slice()),
        (version, &b"open"[..])
    );
    eventually("the timer's end is pushed", || async {
        pushed.lock().unwrap().iter().any(|c| {
            c.record
                .as_ref()
                .is_some_and(|v| v.version == version && v.timers.is_empty())
        })
    })
    .await;
}

/// An open period written by an agent whose clock lags an hour (by its deadline, long over)
/// holds while the back-end's timer runs, and ends for every agent when the timer does,
/// pushed, with no agent refreshing by hand.
pub async fn the_open_period_is_the_backends<H: Harness>(h: Arc<H>) {
    let n = name("open-timer");
    let lagging = SystemClock.now().as_millis() - HOUR.as_millis() as u64;
    let rec = opened_at(Timestamp::from_millis(lagging));
    let d = h.driver().await;
    let open = Timer::OpenPeriod {
        generation: rec.generation,
    };
    let started = Instant::now();
    d.compare_and_swap_with_timers(
        &n,
        None,
        rec.encode(),
        Some(Duration::from_secs(60)),
        vec![(open, Duration::from_secs(1))],
        T,
    )
    .await
    .unwrap();
    let agents = [agent(&*h, &n).await, agent(&*h, &n).await];
    for a in &agents {
        let r = succeed(a).await;
        assert!(is_rejected(&r, State::Open), "held by the timer: {r:?}");
    }
    let first = &agents[0];
    eventually("the probe after the timer ran out", || async {
        !is_rejected(&succeed(first).await, State::Open)
    })
    .await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        first.state(),
        Some(State::Closed),
        "the probe succeeded and closed it"
    );
    eventually("the other agent sees it closed", || async {
        agents[1].state() == Some(State::Closed)
    })
    .await;
}

/// A probe lease whose writer's clock runs an hour ahead (by its deadline, held for an hour)
/// frees its slot when the back-end's timer runs out.
pub async fn the_probe_lease_is_the_backends<H: Harness>(h: Arc<H>) {
    let n = name("lease-timer");
    let ahead = Timestamp::from_millis(SystemClock.now().as_millis()).saturating_add(HOUR);
    let mut rec = opened_at(ahead);
    let claim = machine::claim_probe(&mut rec, &policy(), ahead.saturating_add(HOUR));
    let machine::Claim::Probe { generation, lease } = claim else {
        panic!("expected a probe, got {claim:?}");
    };
    let d = h.driver().await;
    d.compare_and_swap_with_timers(
        &n,
        None,
        rec.encode(),
        Some(Duration::from_secs(60)),
        vec![(
            Timer::ProbeLease { generation, lease },
            Duration::from_secs(1),
        )],
        T,
    )
    .await
    .unwrap();
    let b = agent(&*h, &n).await;
    let r = succeed(&b).await;
    assert!(is_rejected(&r, State::HalfOpen), "the slot is held: {r:?}");
    eventually(
        "the slot is free once the lease's timer ran out",
        || async { succeed(&b).await.is_ok() },
    )
    .await;
    assert_eq!(b.state(), Some(State::Closed));
}

/// End to end: a trip starts the open timer, a probe holder that vanishes (its permit never
/// reported) loses its slot when its lease's timer runs out, and another agent's probe
/// closes the breaker for both.
pub async fn a_vanished_probe_holder_loses_its_slot<H: Harness>(h: Arc<H>) {
    let n = name("holder-timer");
    let a = agent(&*h, &n).await;
    let b = agent(&*h, &n).await;
    assert!(fail(&a).await.is_err());
    assert_eq!(a.state(), Some(State::Open));
    let stored = h.driver().await.load(&n, T).await.unwrap().expect("stored");
    let generation = a.snapshot().generation;
    assert_eq!(stored.timers, vec![Timer::OpenPeriod { generation }]);
    eventually("the holder gets its probe", || async {
        match a.acquire().await {
            Ok(permit) => {
                // The holder dies: its permit is never reported, not even as dropped.
                std::mem::forget(permit);
                true
            }
            Err(_) => false,
        }
    })
    .await;
    let r = succeed(&b).await;
    assert!(is_rejected(&r, State::HalfOpen), "the slot is held: {r:?}");
    eventually("the other agent probes once the lease ran out", || async {
        succeed(&b).await.is_ok()
    })
    .await;
    assert_eq!(b.state(), Some(State::Closed));
    eventually("the holder's agent sees it closed", || async {
        a.state() == Some(State::Closed)
    })
    .await;
}
