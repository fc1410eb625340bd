//! Conformance cases of outcomes counted by appending them to the log beside the record
//! ([`breaker_core::Policy::append_outcomes`]). On a driver that keeps a log an outcome is
//! one write that never conflicts, however many agents count on the breaker; on one that
//! keeps none (or with the policy's switch off) the same cases hold by compare-and-swap, so
//! every case runs on every driver.

use std::sync::Arc;
use std::time::Duration;

use breaker_core::{
    Breaker, Clock, Delta, Driver, Event, ManualClock, Name, Policy, State, machine, machine::Tally,
};

use super::{Harness, START, faulty_agent, stored_record, stored_view};
use crate::calls::{fail, succeed};
use crate::{Faulty, unique_name};

const T: Duration = Duration::from_secs(5);

/// Strict, so that every outcome is written before the call returns, with a threshold no
/// case reaches unless it means to.
fn counting(failures: u32, append: bool) -> Policy {
    Policy::builder()
        .failures_within(failures, Duration::from_secs(10))
        .open_for(Duration::from_secs(5))
        .strict(true)
        .append_outcomes(append)
        .build()
        .unwrap()
}

async fn appends<H: Harness>(h: &H) -> bool {
    h.driver().await.appends()
}

/// Four appending agents and one that writes by compare-and-swap, admitted together round
/// after round, each reporting a failure (the swapper only in the first round, so that the
/// log then grows past a compaction): every failure is counted, every agent folds the same
/// state, and on a driver that keeps a log each appending agent's report is one write (no
/// conflict, whatever the others wrote since its admission's read), two for the one
/// append in 32 whose appender also writes the log into the record.
pub async fn appended_outcomes_of_every_writer_count_without_conflict<H: Harness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("appended");
    let mut agents: Vec<(Breaker, Faulty<H::Driver>)> = Vec::new();
    for append in [true, true, true, true, false] {
        agents.push(faulty_agent(&*h, &name, &counting(1_000, append), &clock).await);
    }
    for (a, _) in &agents {
        succeed(a).await.unwrap();
    }
    let appends = appends(&*h).await;
    let rounds = 12;
    let (mut failures, mut appended, mut appenders_writes) = (0u64, 0u64, 0u64);
    for round in 0..rounds {
        let mut permits = Vec::new();
        for (a, _) in &agents {
            permits.push(a.acquire().await.unwrap());
        }
        for (i, ((a, faulty), permit)) in agents.iter().zip(permits).enumerate() {
            if i == 4 && round > 0 {
                permit.ignore();
                continue;
            }
            let before = faulty.attempts();
            permit.failure().await;
            a.written().await;
            failures += 1;
            let writes = faulty.attempts() - before;
            assert!(
                writes >= 1,
                "round {round}, agent {i}: the failure was written"
            );
            if appends && i < 4 {
                assert!(writes <= 2, "round {round}, agent {i}: {writes} writes");
                appended += 1;
                appenders_writes += writes;
            }
        }
    }
    if appends {
        assert_eq!(
            appenders_writes,
            appended + (appended - 4) / 32,
            "one write per appended failure and one per 32 deltas"
        );
    }
    let policy = counting(1_000, true);
    let stored = stored_view(&*h, &name, &policy).await.unwrap();
    assert_eq!(
        machine::window_counts(&stored, &policy, clock.now()).failures,
        failures,
        "every failure of every writer is counted"
    );
    assert_eq!(stored.state, State::Closed);
    // Every agent folds the same record from the same log, however it came to it (its own
    // appends' replies folded from where it left off, pushes, a full read).
    for (i, (a, _)) in agents.iter().enumerate() {
        a.refresh().await.unwrap();
        assert_eq!(a.snapshot(), stored, "agent {i}'s view is the stored one");
    }
}

/// Appended failures that trip the breaker: the agent whose failure folds to the trip
/// writes the open record itself (not only a log that folds to it), every agent is open,
/// and the trip is announced as caused by that agent alone.
pub async fn a_trip_by_appended_failures_is_written_as_the_record<H: Harness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("append-trip");
    let policy = counting(3, true);
    let mut agents = Vec::new();
    for _ in 0..3 {
        agents.push(faulty_agent(&*h, &name, &policy, &clock).await.0);
    }
    for a in &agents {
        succeed(a).await.unwrap();
    }
    let mut events: Vec<_> = agents.iter().map(Breaker::subscribe).collect();
    for a in &agents {
        let _ = fail(a).await;
    }
    let stored = stored_record(&*h, &name)
        .await
        .expect("a record with an empty log");
    assert_eq!(stored.state, State::Open, "the trip is the record's own");
    assert_eq!(stored.generation, 1);
    for a in &agents {
        a.refresh().await.unwrap();
        assert_eq!(a.snapshot().state, State::Open);
    }
    let caused: Vec<bool> = events
        .iter_mut()
        .map(|e| {
            e.drain().into_iter().any(|e| {
                matches!(
                    e,
                    Event::Transition {
                        to: State::Open,
                        cause: breaker_core::Cause::Caused,
                        ..
                    }
                )
            })
        })
        .collect();
    assert_eq!(caused, [false, false, true], "the third failure tripped it");
}

/// One agent appending far more outcomes than a log may hold: the log never grows past
/// its bound (the agent whose append made it that long writes the view as the record, and
/// with no other writer nothing makes that conflict), and nothing is lost on the way.
pub async fn a_log_stays_bounded_and_loses_nothing<H: Harness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("append-bound");
    let policy = counting(1_000, true);
    let (a, _) = faulty_agent(&*h, &name, &policy, &clock).await;
    let raw = h.driver().await;
    let n = Name::new(&name).unwrap();
    succeed(&a).await.unwrap();
    let mut longest = 0;
    for _ in 0..100 {
        let _ = fail(&a).await;
        let stored = raw.load(&n, T).await.unwrap().unwrap();
        longest = longest.max(stored.log.len());
    }
    assert!(longest <= 32, "a log of {longest} deltas");
    if appends(&*h).await {
        assert!(longest > 1, "outcomes were appended");
    }
    let stored = stored_view(&*h, &name, &policy).await.unwrap();
    assert_eq!(
        machine::window_counts(&stored, &policy, clock.now()).failures,
        100
    );
}

/// Deltas no agent wrote (bytes that are not one, a layout from the future, one counted an
/// hour ahead of every clock) are reported as corrupt and dropped, never a panic, and the
/// rest of the log counts; the next write leaves no trace of them. A driver that keeps no
/// log refuses the append, and a breaker that asks for appends over it writes by
/// compare-and-swap.
pub async fn foreign_deltas_are_reported_and_dropped<H: Harness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("append-foreign");
    let policy = counting(1_000, true);
    let (a, _) = faulty_agent(&*h, &name, &policy, &clock).await;
    succeed(&a).await.unwrap();
    let _ = fail(&a).await;
    let raw = h.driver().await;
    let n = Name::new(&name).unwrap();
    if !appends(&*h).await {
        assert!(raw.append(&n, vec![1], None, true, T).await.is_err());
        assert!(raw.load(&n, T).await.unwrap().unwrap().log.is_empty());
        return;
    }
    let mut newer = Delta::new(clock.now(), 0, Tally::new(0, 1, 0), 7).encode();
    newer[1] = 2;
    let later = clock.now().saturating_add(Duration::from_secs(3600));
    let ahead = Delta::new(later, 0, Tally::new(0, 1_000, 0), 7).encode();
    let good = Delta::new(clock.now(), 0, Tally::new(0, 1, 0), 7).encode();
    let mut events = a.subscribe();
    for planted in [b"\xff not a delta".to_vec(), newer, ahead, good] {
        assert!(
            raw.append(&n, planted, None, true, T)
                .await
                .unwrap()
                .is_some()
        );
    }
    // A strict admission reads the record and its log (if no push brought them first).
    succeed(&a).await.unwrap();
    let corrupt = events.drain().into_iter().find_map(|e| match e {
        Event::CorruptRecord(err) => Some(err),
        _ => None,
    });
    let err = corrupt.expect("the foreign deltas are reported");
    assert!(err.to_string().contains("of the log dropped"), "{err}");
    assert_eq!(
        a.snapshot().state,
        State::Closed,
        "the hour-ahead delta was dropped"
    );
    assert_eq!(
        machine::window_counts(&a.snapshot(), &policy, clock.now()).failures,
        2,
        "the agent's failure and the one good planted delta"
    );
    let _ = fail(&a).await;
    let stored = raw.load(&n, T).await.unwrap().unwrap();
    assert!(
        stored.log.iter().all(|d| Delta::decode(d).is_ok()),
        "the foreign deltas were written over"
    );
    let view = stored_view(&*h, &name, &policy).await.unwrap();
    assert_eq!(
        machine::window_counts(&view, &policy, clock.now()).failures,
        3
    );
}

/// A breaker whose window empties keeps no log in the back-end: once its record is quiet
/// (nothing in it can come due), the next upkeep writes the view as the record, so an idle
/// breaker costs the store what one without appends does.
pub async fn a_quiet_breaker_keeps_no_log<H: Harness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("append-quiet");
    // Successes count while the window holds a failure, so they are appended too.
    let policy = Policy::builder()
        .failure_rate(0.9, 100)
        .window(Duration::from_secs(10))
        .strict(true)
        .append_outcomes(true)
        .build()
        .unwrap();
    let (a, _) = faulty_agent(&*h, &name, &policy, &clock).await;
    let raw = h.driver().await;
    let n = Name::new(&name).unwrap();
    succeed(&a).await.unwrap();
    let _ = fail(&a).await;
    for _ in 0..3 {
        succeed(&a).await.unwrap();
    }
    let logged = raw.load(&n, T).await.unwrap().unwrap().log.len();
    if appends(&*h).await {
        assert_eq!(logged, 4, "the failure and three successes were appended");
    } else {
        assert_eq!(logged, 0);
    }
    clock.advance(policy.window + policy.flush_interval);
    // This call's upkeep finds the record quiet.
    succeed(&a).await.unwrap();
    let stored = raw.load(&n, T).await.unwrap().unwrap();
    assert!(stored.log.is_empty(), "{} deltas left", stored.log.len());
    let view = stored_view(&*h, &name, &policy).await.unwrap();
    assert!(machine::quiet(&view, &policy, clock.now()));
}

/// The store contract of a compaction: written in place of the record at the version
/// expected and the deltas it folds, it keeps the deltas appended since (so no appender
/// loses an outcome to it, and it never conflicts with them); a write of the record since
/// the version expected makes it conflict, as a compare-and-swap does. On a driver without
/// a log it is that compare-and-swap.
pub async fn a_compaction_keeps_the_deltas_appended_since<H: Harness>(h: Arc<H>) {
    use breaker_core::{Record, Swap};
    let d = h.driver().await;
    let n = Name::new(&unique_name("compaction")).unwrap();
    let base = Record::new().encode();
    let Swap::Swapped { version: v0 } = d
        .compare_and_swap(&n, None, base.clone(), None, T)
        .await
        .unwrap()
    else {
        panic!("a first write lands");
    };
    if !d.appends() {
        assert!(matches!(
            d.compact(&n, v0, 0, base.clone(), None, T).await.unwrap(),
            Swap::Swapped { .. }
        ));
        assert!(matches!(
            d.compact(&n, v0, 0, base, None, T).await.unwrap(),
            Swap::Conflict { .. }
        ));
        return;
    }
    let delta = |i: u64| Delta::new(START, 0, Tally::new(0, i, 0), i).encode();
    let seen = d
        .append(&n, delta(1), None, true, T)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.log, vec![delta(1)]);
    // Appended after the compactor's read.
    let later = d
        .append(&n, delta(2), None, true, T)
        .await
        .unwrap()
        .unwrap();
    assert!(later.version > seen.version);
    let folded = Record::new().encode_as(breaker_core::RecordEncoding::Compact);
    let Swap::Swapped { version } = d
        .compact(&n, seen.version, 1, folded.clone(), None, T)
        .await
        .unwrap()
    else {
        panic!("a compaction does not conflict with an append");
    };
    assert!(version > later.version, "versions only grow");
    let stored = d.load(&n, T).await.unwrap().unwrap();
    assert_eq!(stored.version, version);
    assert_eq!(stored.value, folded);
    assert_eq!(stored.log, vec![delta(2)], "the later delta is kept");
    // A compaction from before that write conflicts, and shows the record as it is.
    match d.compact(&n, seen.version, 1, base, None, T).await.unwrap() {
        Swap::Conflict {
            current: Some(current),
        } => assert_eq!(current, stored),
        other => panic!("a compaction over a newer write: {other:?}"),
    }
    // A compare-and-swap empties the log.
    let Swap::Swapped { .. } = d
        .compare_and_swap(&n, Some(version), folded, None, T)
        .await
        .unwrap()
    else {
        panic!("a swap from the current version lands");
    };
    assert!(d.load(&n, T).await.unwrap().unwrap().log.is_empty());
}

/// Two agents admitted together, each failing once under a rule that two failures meet:
/// neither's view (read at its admission) foresees the trip, so both append, and the
/// second's append folds to it. That agent writes the open record at once, and a third
/// agent's strict admission is rejected: a trip that no writer foresaw binds the fleet as
/// one that was swapped in.
pub async fn a_trip_no_writer_foresaw_binds_at_once<H: Harness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("append-unforeseen");
    let policy = counting(2, true);
    let (a, _) = faulty_agent(&*h, &name, &policy, &clock).await;
    let (b, _) = faulty_agent(&*h, &name, &policy, &clock).await;
    let (c, _) = faulty_agent(&*h, &name, &policy, &clock).await;
    for x in [&a, &b, &c] {
        succeed(x).await.unwrap();
    }
    let first = a.acquire().await.unwrap();
    let second = b.acquire().await.unwrap();
    first.failure().await;
    second.failure().await;
    a.written().await;
    b.written().await;
    assert_eq!(
        b.snapshot().state,
        State::Open,
        "b's append folded to the trip"
    );
    let stored = stored_record(&*h, &name)
        .await
        .expect("the open record, its log written into it");
    assert_eq!((stored.state, stored.generation), (State::Open, 1));
    let r = c.acquire().await;
    assert!(
        matches!(&r, Err(breaker_core::Error::Rejected(rej)) if rej.state() == State::Open),
        "c is rejected at once: {r:?}"
    );
}

/// An agent whose view foresees the trip writes it in one write, even though another
/// agent appended after its admission's read: the trip is a compaction of its view, which
/// appends cannot make conflict (a compare-and-swap would, and be retried). The delta
/// appended meanwhile stays in the log, of the generation that ended.
pub async fn a_foreseen_trip_lands_in_one_write_past_appends<H: Harness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("append-foreseen");
    let policy = counting(3, true);
    let (a, _) = faulty_agent(&*h, &name, &policy, &clock).await;
    let (c, faulty) = faulty_agent(&*h, &name, &policy, &clock).await;
    succeed(&a).await.unwrap();
    succeed(&c).await.unwrap();
    let _ = fail(&a).await;
    let _ = fail(&a).await;
    let permit = c.acquire().await.unwrap();
    // Another agent's success, appended after c's admission read (where there is a log).
    let raw = h.driver().await;
    let n = Name::new(&name).unwrap();
    let appends = appends(&*h).await;
    if appends {
        let success = Delta::new(clock.now(), 0, Tally::new(1, 0, 0), 99).encode();
        assert!(
            raw.append(&n, success, None, false, T)
                .await
                .unwrap()
                .is_some()
        );
    }
    let before = faulty.attempts();
    permit.failure().await;
    c.written().await;
    let writes = faulty.attempts() - before;
    assert_eq!(c.snapshot().state, State::Open);
    let view = stored_view(&*h, &name, &policy).await.unwrap();
    assert_eq!((view.state, view.generation), (State::Open, 1));
    if appends {
        assert_eq!(writes, 1, "the foreseen trip is one write");
        let stored = raw.load(&n, T).await.unwrap().unwrap();
        assert_eq!(
            stored.log.len(),
            1,
            "the success appended meanwhile is kept"
        );
    }
}
