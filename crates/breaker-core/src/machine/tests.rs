//! Unit and property tests of the pure state machine, with explicit times.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::{Outcome, RecordEncoding};

const T0: Timestamp = Timestamp::from_millis(1_000_000);

fn at(ms: u64) -> Timestamp {
    T0.saturating_add(Duration::from_millis(ms))
}

fn policy() -> Policy {
    Policy::builder()
        .failures_within(3, Duration::from_secs(10))
        .open_for(Duration::from_secs(5))
        .half_open_permits(2)
        .success_threshold(2)
        .probe_lease(Duration::from_secs(1))
        .build()
        .unwrap()
}

fn fail(rec: &mut Record, p: &Policy, now: Timestamp) -> bool {
    let g = rec.generation;
    record_tally(rec, p, now, g, Tally::new(0, 1, 0))
}

fn tripped(p: &Policy) -> Record {
    let mut rec = Record::new();
    for i in 0..3 {
        fail(&mut rec, p, at(i));
    }
    assert_eq!(rec.state, State::Open);
    rec
}

#[test]
fn trips_exactly_at_the_threshold() {
    let p = policy();
    let mut rec = Record::new();
    fail(&mut rec, &p, at(0));
    fail(&mut rec, &p, at(1));
    assert_eq!(rec.state, State::Closed);
    assert_eq!(rec.generation, 0);
    fail(&mut rec, &p, at(2));
    assert_eq!(rec.state, State::Open);
    assert_eq!(rec.generation, 1);
    assert_eq!(rec.open_until, Some(at(2 + 5_000)));
    assert_eq!(rec.openings, 1);
    assert!(
        rec.buckets.is_empty(),
        "counts start afresh at every transition"
    );
}

#[test]
fn failures_outside_the_window_do_not_count() {
    let p = policy();
    let mut rec = Record::new();
    fail(&mut rec, &p, at(0));
    fail(&mut rec, &p, at(1));
    fail(&mut rec, &p, at(11_000));
    assert_eq!(rec.state, State::Closed);
    assert_eq!(window_counts(&rec, &p, at(11_000)).failures, 1);
}

#[test]
fn open_period_end_is_inclusive() {
    let p = policy();
    let rec = tripped(&p);
    let until = rec.open_until.unwrap();
    assert_eq!(
        admission(&rec, Timestamp::from_millis(until.as_millis() - 1)),
        Admission::Reject {
            retry_at: Some(until)
        }
    );
    assert_eq!(admission(&rec, until), Admission::Probe);
}

#[test]
fn half_open_grants_exactly_the_permits_and_closes_on_successes() {
    let p = policy();
    let mut rec = tripped(&p);
    let now = rec.open_until.unwrap();
    let a = claim_probe(&mut rec, &p, now);
    let b = claim_probe(&mut rec, &p, now);
    let c = claim_probe(&mut rec, &p, now);
    assert_eq!(rec.state, State::HalfOpen);
    assert_eq!(rec.generation, 2);
    let (Claim::Probe { lease: la, .. }, Claim::Probe { lease: lb, .. }) = (a, b) else {
        panic!("two permits expected: {a:?} {b:?}");
    };
    assert!(matches!(c, Claim::Reject { retry_at: Some(_) }));
    assert!(settle_probe(&mut rec, &p, now, 2, la, Outcome::Success));
    assert_eq!(rec.state, State::HalfOpen, "one success of two needed");
    // The settled success still counts against the period's permits.
    assert!(matches!(
        claim_probe(&mut rec, &p, now),
        Claim::Reject { .. }
    ));
    assert!(settle_probe(&mut rec, &p, now, 2, lb, Outcome::Success));
    assert_eq!(rec.state, State::Closed);
    assert_eq!(rec.generation, 3);
    assert_eq!(rec.openings, 0);
}

#[test]
fn probe_failure_reopens_with_backoff() {
    let p = Policy::builder()
        .failures_within(1, Duration::from_secs(10))
        .open_for(Duration::from_secs(2))
        .backoff(3.0, Duration::from_secs(60))
        .build()
        .unwrap();
    let mut rec = Record::new();
    fail(&mut rec, &p, at(0));
    let now = rec.open_until.unwrap();
    let Claim::Probe { generation, lease } = claim_probe(&mut rec, &p, now) else {
        panic!("probe expected")
    };
    assert!(settle_probe(
        &mut rec,
        &p,
        now,
        generation,
        lease,
        Outcome::Failure
    ));
    assert_eq!(rec.state, State::Open);
    assert_eq!(rec.openings, 2);
    assert_eq!(
        rec.open_until,
        Some(now.saturating_add(Duration::from_secs(6)))
    );
}

#[test]
fn lapsed_lease_frees_its_slot_and_its_late_report_is_ignored() {
    let p = Policy::builder()
        .failures_within(1, Duration::from_secs(10))
        .probe_lease(Duration::from_millis(500))
        .build()
        .unwrap();
    let mut rec = Record::new();
    fail(&mut rec, &p, at(0));
    let now = rec.open_until.unwrap();
    let Claim::Probe { generation, lease } = claim_probe(&mut rec, &p, now) else {
        panic!()
    };
    let later = now.saturating_add(Duration::from_millis(499));
    assert!(matches!(
        claim_probe(&mut rec, &p, later),
        Claim::Reject { .. }
    ));
    let lapsed = now.saturating_add(Duration::from_millis(500));
    let before = rec.clone();
    assert!(!settle_probe(
        &mut rec,
        &p,
        lapsed,
        generation,
        lease,
        Outcome::Success
    ));
    assert_eq!(rec, before, "a late report changes nothing");
    assert!(matches!(
        claim_probe(&mut rec, &p, lapsed),
        Claim::Probe { .. }
    ));
}

#[test]
fn ignored_probe_gives_its_slot_back() {
    let p = policy();
    let mut rec = tripped(&p);
    let now = rec.open_until.unwrap();
    let claims: Vec<_> = (0..2).map(|_| claim_probe(&mut rec, &p, now)).collect();
    let Claim::Probe { generation, lease } = claims[0] else {
        panic!()
    };
    assert!(settle_probe(
        &mut rec,
        &p,
        now,
        generation,
        lease,
        Outcome::Ignored
    ));
    assert_eq!(rec.state, State::HalfOpen);
    assert!(matches!(
        claim_probe(&mut rec, &p, now),
        Claim::Probe { .. }
    ));
}

#[test]
fn consecutive_failures_reset_by_a_success() {
    let p = Policy::builder().consecutive_failures(3).build().unwrap();
    let mut rec = Record::new();
    fail(&mut rec, &p, at(0));
    fail(&mut rec, &p, at(1));
    assert!(record_tally(&mut rec, &p, at(2), 0, Tally::new(1, 0, 0)));
    assert_eq!(rec.consecutive_failures, 0);
    fail(&mut rec, &p, at(3));
    fail(&mut rec, &p, at(4));
    assert_eq!(rec.state, State::Closed);
    // Successes batched before a failure come first: the run restarts at one.
    assert!(record_tally(&mut rec, &p, at(5), 0, Tally::new(4, 1, 0)));
    assert_eq!(rec.consecutive_failures, 1);
    fail(&mut rec, &p, at(6));
    fail(&mut rec, &p, at(7));
    assert_eq!(rec.state, State::Open);
}

#[test]
fn failure_rate_needs_min_calls() {
    let p = Policy::builder().failure_rate(0.5, 4).build().unwrap();
    let mut rec = Record::new();
    assert!(record_tally(&mut rec, &p, at(0), 0, Tally::new(0, 3, 0)));
    assert_eq!(rec.state, State::Closed, "3 calls < min_calls 4");
    let mut other = rec.clone();
    assert!(record_tally(&mut rec, &p, at(1), 0, Tally::new(3, 0, 0)));
    assert_eq!(
        rec.state,
        State::Open,
        "3 of 6 reaches 0.5 with enough calls"
    );
    assert!(record_tally(&mut other, &p, at(1), 0, Tally::new(4, 0, 0)));
    assert_eq!(other.state, State::Closed, "3 of 7 is below 0.5");
    assert!(record_tally(&mut other, &p, at(2), 0, Tally::new(0, 1, 0)));
    assert_eq!(other.state, State::Open, "4 of 8 reaches 0.5");
}

#[test]
fn slow_call_rate_trips() {
    let p = Policy::builder()
        .slow_calls(Duration::from_millis(100), false)
        .slow_call_rate(0.5, 2)
        .build()
        .unwrap();
    let mut rec = Record::new();
    assert!(record_tally(&mut rec, &p, at(0), 0, Tally::new(1, 0, 1)));
    assert_eq!(rec.state, State::Closed);
    assert!(record_tally(&mut rec, &p, at(1), 0, Tally::new(1, 0, 0)));
    assert_eq!(rec.state, State::Open);
}

#[test]
fn forced_states_and_reset() {
    let p = policy();
    let mut rec = tripped(&p);
    force(&mut rec, at(10), Forced::Closed);
    assert_eq!(rec.state, State::ForcedClosed);
    assert_eq!(
        record_ttl(&rec, &p, at(10)),
        None,
        "forced states never expire"
    );
    for i in 0..10 {
        fail(&mut rec, &p, at(11 + i));
    }
    assert_eq!(
        rec.state,
        State::ForcedClosed,
        "a disabled breaker never trips"
    );
    force(&mut rec, at(30), Forced::Open);
    assert_eq!(
        admission(&rec, Timestamp::MAX),
        Admission::Reject { retry_at: None }
    );
    assert!(matches!(
        claim_probe(&mut rec, &p, Timestamp::MAX),
        Claim::Reject { retry_at: None }
    ));
    let g = rec.generation;
    reset(&mut rec, at(40));
    assert_eq!(
        (rec.state, rec.generation, rec.openings),
        (State::Closed, g + 1, 0)
    );
}

#[test]
fn zero_open_period_probes_at_once() {
    let p = Policy::builder()
        .failures_within(1, Duration::from_secs(1))
        .open_for(Duration::ZERO)
        .build()
        .unwrap();
    let mut rec = Record::new();
    fail(&mut rec, &p, at(0));
    assert_eq!(admission(&rec, at(0)), Admission::Probe);
}

#[test]
fn jitter_is_the_same_for_every_agent_and_bounded() {
    let p = Policy::builder()
        .jitter(Duration::from_millis(300))
        .build()
        .unwrap();
    let values: Vec<_> = (0..200).map(|g| jitter(&p, g)).collect();
    assert!(values.iter().all(|j| *j <= Duration::from_millis(300)));
    assert!(
        values.iter().any(|j| *j != values[0]),
        "jitter varies by generation"
    );
    assert_eq!(jitter(&p, 17), jitter(&p.clone(), 17));
    assert_eq!(jitter(&Policy::default(), 17), Duration::ZERO);
}

#[test]
fn open_record_outlives_its_open_period() {
    let p = policy();
    let rec = tripped(&p);
    let ttl = record_ttl(&rec, &p, at(2)).unwrap();
    assert_eq!(ttl, Duration::from_secs(5) + p.record_ttl);
}

/// One step a fleet might take against the record.
#[derive(Clone, Debug)]
enum Step {
    Advance(u64),
    Tally {
        stale: bool,
        successes: u8,
        failures: u8,
    },
    Claim,
    Settle {
        pick: usize,
        stale: bool,
        outcome: u8,
    },
    ForceOpen,
    ForceClosed,
    Reset,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u64..3_000).prop_map(Step::Advance),
        6 => (any::<bool>(), 0u8..3, 0u8..3).prop_map(|(stale, successes, failures)| Step::Tally { stale, successes, failures }),
        4 => Just(Step::Claim),
        4 => (0usize..8, any::<bool>(), 0u8..3).prop_map(|(pick, stale, outcome)| Step::Settle { pick, stale, outcome }),
        1 => Just(Step::ForceOpen),
        1 => Just(Step::ForceClosed),
        1 => Just(Step::Reset),
    ]
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    (1u32..5, 1u32..4, 0u64..3_000, 1u64..2_000, 0u32..2).prop_flat_map(
        |(failures, permits, open_ms, lease_ms, rule)| {
            (1..=permits).prop_map(move |success| {
                let b = Policy::builder()
                    .open_for(Duration::from_millis(open_ms))
                    .half_open_permits(permits)
                    .success_threshold(success)
                    .probe_lease(Duration::from_millis(lease_ms));
                let b = if rule == 0 {
                    b.failures_within(failures, Duration::from_secs(5))
                } else {
                    b.consecutive_failures(failures)
                };
                b.build().unwrap()
            })
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The invariants of DESIGN.md: never more probes than permits per half-open period, the
    /// generation only grows and grows exactly at transitions, outcomes from other
    /// generations and ignored outcomes change nothing, and the breaker trips exactly when
    /// the rule says.
    #[test]
    fn invariants_hold(policy in policy_strategy(), steps in prop::collection::vec(step(), 1..80)) {
        let mut rec = Record::new();
        let mut now = T0;
        let mut held: Vec<(u64, u64)> = Vec::new();
        let mut probes_this_period = 0u32;
        for s in steps {
            let before = rec.clone();
            match s {
                Step::Advance(ms) => now = now.saturating_add(Duration::from_millis(ms)),
                Step::Tally { stale, successes, failures } => {
                    let g = if stale { rec.generation.wrapping_sub(1) } else { rec.generation };
                    let tally = Tally::new(u64::from(successes), u64::from(failures), 0);
                    let closed_before = window_counts(&rec, &policy, now);
                    let applied = record_tally(&mut rec, &policy, now, g, tally);
                    if stale {
                        prop_assert!(!applied);
                        prop_assert_eq!(&rec, &before);
                    }
                    if applied && before.state == State::Closed && !tally.is_empty() {
                        // Trips exactly when the rule says.
                        let failures_in_window = closed_before.failures + tally.failures;
                        let consecutive = if tally.failures == 0 { 0 } else if tally.successes > 0 { tally.failures } else { u64::from(before.consecutive_failures) + tally.failures };
                        let should = policy.trip_rules.iter().any(|r| match *r {
                            TripRule::FailuresInWindow { failures } => failures_in_window >= u64::from(failures),
                            TripRule::ConsecutiveFailures { failures } => consecutive >= u64::from(failures),
                            TripRule::FailureRate { .. } | TripRule::SlowCallRate { .. } => unreachable!("not generated"),
                        });
                        prop_assert_eq!(rec.state == State::Open, should);
                    }
                }
                Step::Claim => {
                    let claim = claim_probe(&mut rec, &policy, now);
                    if rec.generation != before.generation {
                        probes_this_period = 0;
                        held.clear();
                    } else {
                        // Lapsed leases give their slots back: that is the lease's purpose.
                        let lapsed = before.leases.iter().filter(|l| l.expires_at <= now).count() as u32;
                        probes_this_period -= lapsed;
                    }
                    if let Claim::Probe { generation, lease } = claim {
                        probes_this_period += 1;
                        held.push((generation, lease));
                    }
                }
                Step::Settle { pick, stale, outcome } => {
                    if !held.is_empty() {
                        let (g, lease) = held.remove(pick % held.len());
                        let g = if stale { g.wrapping_add(7) } else { g };
                        let outcome = [Outcome::Success, Outcome::Failure, Outcome::Ignored][outcome as usize];
                        let applied = settle_probe(&mut rec, &policy, now, g, lease, outcome);
                        if stale { prop_assert!(!applied); prop_assert_eq!(&rec, &before); }
                        if applied && outcome == Outcome::Ignored {
                            prop_assert_eq!(rec.probe_successes, before.probe_successes);
                            prop_assert_eq!(rec.generation, before.generation);
                            probes_this_period -= 1;
                        }
                    }
                }
                Step::ForceOpen => force(&mut rec, now, Forced::Open),
                Step::ForceClosed => force(&mut rec, now, Forced::Closed),
                Step::Reset => reset(&mut rec, now),
            }
            prop_assert!(rec.generation >= before.generation, "generation only grows");
            if rec.state != before.state {
                prop_assert!(rec.generation > before.generation, "every transition is a new generation");
            }
            if rec.generation != before.generation { held.retain(|(g, _)| *g == rec.generation); }
            if rec.state == State::HalfOpen {
                prop_assert!(probes_this_period <= policy.half_open_permits,
                    "{} probes with {} permits", probes_this_period, policy.half_open_permits);
                prop_assert!(rec.leases.len() as u32 + rec.probe_successes <= policy.half_open_permits);
            }
        }
    }
}

#[test]
fn a_half_open_rejection_hints_at_the_next_probe_not_the_whole_lease() {
    // Open for 800 ms, probe leases of 10 s: with the probe out, the next chance is when it
    // fails and the breaker reopens for 800 ms, not when its lease would lapse.
    let p = Policy::builder()
        .failures_within(1, Duration::from_secs(10))
        .open_for(Duration::from_millis(800))
        .probe_lease(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut rec = Record::new();
    fail(&mut rec, &p, at(0));
    let now = rec.open_until.unwrap();
    assert!(matches!(
        claim_probe(&mut rec, &p, now),
        Claim::Probe { .. }
    ));
    assert_eq!(
        claim_probe(&mut rec, &p, now),
        Claim::Reject {
            retry_at: Some(now.saturating_add(Duration::from_millis(800)))
        }
    );
    // A lease that lapses sooner than the next open period is the hint instead.
    let short = Policy::builder()
        .failures_within(1, Duration::from_secs(10))
        .open_for(Duration::from_secs(30))
        .probe_lease(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut rec = Record::new();
    fail(&mut rec, &short, at(0));
    let now = rec.open_until.unwrap();
    assert!(matches!(
        claim_probe(&mut rec, &short, now),
        Claim::Probe { .. }
    ));
    assert_eq!(
        claim_probe(&mut rec, &short, now),
        Claim::Reject {
            retry_at: Some(now.saturating_add(Duration::from_secs(2)))
        }
    );
}

/// Any record a writer could plant: every field drawn from its whole range, extremes
/// weighted in.
fn hostile_record() -> impl Strategy<Value = Record> {
    let wide = prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(1u64 << 56),
        any::<u64>(),
        0u64..2_000_000
    ];
    let wide32 = prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>(), 0u32..5];
    let state = prop_oneof![
        Just(State::Closed),
        Just(State::Open),
        Just(State::HalfOpen),
        Just(State::ForcedOpen),
        Just(State::ForcedClosed)
    ];
    let bucket = (wide.clone(), wide.clone(), wide.clone(), wide.clone()).prop_map(
        |(index, successes, failures, slow)| Bucket {
            index,
            successes,
            failures,
            slow,
        },
    );
    let lease = (wide.clone(), wide.clone())
        .prop_map(|(id, at)| Lease::new(id, Timestamp::from_millis(at)));
    (
        (
            wide.clone(),
            state,
            wide.clone(),
            prop::option::of(wide.clone()),
        ),
        (wide32.clone(), wide32.clone(), wide32, wide.clone()),
        prop::collection::vec(bucket, 0..12),
        prop::collection::vec(lease, 0..6),
    )
        .prop_map(
            |(
                (generation, state, since, until),
                (openings, consecutive, successes, next),
                buckets,
                leases,
            )| {
                let mut rec = Record::new();
                rec.generation = generation;
                rec.state = state;
                rec.since = Timestamp::from_millis(since);
                rec.open_until = until.map(Timestamp::from_millis);
                rec.openings = openings;
                rec.consecutive_failures = consecutive;
                rec.probe_successes = successes;
                rec.next_lease_id = next;
                rec.buckets = buckets;
                rec.leases = leases;
                rec
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_048))]

    /// The fuzz target of hostile records: decoding, the invariant check and every machine
    /// step over any record, at any time, never panic and never overflow (tests build with
    /// overflow checks), and whatever passes the check keeps generations the hot path holds.
    #[test]
    fn hostile_records_never_panic(
        rec in hostile_record(),
        policy in policy_strategy(),
        now in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>(), 1_000_000u64..2_000_000],
        steps in prop::collection::vec(step(), 0..20),
    ) {
        let bytes = rec.encode();
        let mut rec = Record::decode(&bytes).expect("our own encoding decodes");
        let compact = Record::decode(&rec.encode_as(RecordEncoding::Compact));
        prop_assert_eq!(compact.as_ref(), Ok(&rec), "both encodings hold the same record");
        let mut now = Timestamp::from_millis(now);
        let sane = check(&rec, &policy, now).is_ok();
        if sane {
            prop_assert!(rec.generation <= MAX_GENERATION);
        }
        let _ = effective_state(&rec, now);
        let _ = window_counts(&rec, &policy, now);
        let _ = record_ttl(&rec, &policy, now);
        let _ = admission(&rec, now);
        for s in steps {
            match s {
                Step::Advance(ms) => now = now.saturating_add(Duration::from_millis(ms)),
                Step::Tally { successes, failures, .. } => {
                    let g = rec.generation;
                    record_tally(&mut rec, &policy, now, g, Tally::new(u64::from(successes), u64::from(failures), 1));
                }
                Step::Claim => { let _ = claim_probe(&mut rec, &policy, now); }
                Step::Settle { pick, outcome, .. } => {
                    let lease = rec.leases.get(pick).map_or(0, |l| l.id);
                    let outcome = [Outcome::Success, Outcome::Failure, Outcome::Ignored][usize::from(outcome % 3)];
                    let g = rec.generation;
                    settle_probe(&mut rec, &policy, now, g, lease, outcome);
                }
                Step::ForceOpen => force(&mut rec, now, Forced::Open),
                Step::ForceClosed => force(&mut rec, now, Forced::Closed),
                Step::Reset => reset(&mut rec, now),
            }
            let _ = effective_state(&rec, now);
            let _ = record_ttl(&rec, &policy, now);
        }
    }

    /// Bytes that are not a record never panic the decoder or the check, whichever
    /// encoding their first byte claims.
    #[test]
    fn arbitrary_bytes_never_panic(
        mut bytes in prop::collection::vec(any::<u8>(), 0..256),
        claims_compact in any::<bool>(),
    ) {
        if claims_compact {
            bytes.insert(0, Record::new().encode_as(RecordEncoding::Compact)[0]);
        }
        if let Ok(rec) = Record::decode(&bytes) {
            let _ = check(&rec, &Policy::default(), Timestamp::from_millis(1));
        }
    }
}

#[test]
fn a_tally_is_empty_only_when_it_counts_nothing() {
    assert!(Tally::new(0, 0, 0).is_empty());
    for t in [
        Tally::new(1, 0, 0),
        Tally::new(0, 1, 0),
        Tally::new(0, 0, 1),
    ] {
        assert!(!t.is_empty(), "{t:?}");
    }
    // An empty tally is applied and changes nothing: no bucket is made for it.
    let p = policy();
    let mut rec = Record::new();
    assert!(record_tally(&mut rec, &p, at(0), 0, Tally::default()));
    assert_eq!(rec, Record::new());
}

#[test]
fn buckets_are_one_per_slice_ordered_and_fold_a_lagging_writer_in() {
    // A window of ten seconds: slices of one second.
    let p = policy();
    let mut rec = Record::new();
    let ok = |rec: &mut Record, ms: u64| {
        assert!(record_tally(rec, &p, at(ms), 0, Tally::new(1, 0, 0)));
    };
    ok(&mut rec, 0);
    ok(&mut rec, 100);
    assert_eq!(rec.buckets.len(), 1, "one slice, one bucket");
    assert_eq!(rec.buckets[0].successes, 2);
    ok(&mut rec, 2_000);
    assert_eq!(rec.buckets.len(), 2, "a new slice, a new bucket");
    // A writer whose clock lags by a second writes into the slice between.
    ok(&mut rec, 1_000);
    let indices: Vec<u64> = rec.buckets.iter().map(|b| b.index).collect();
    let first = rec.buckets[0].index;
    assert_eq!(
        indices,
        vec![first, first + 1, first + 2],
        "ordered, no duplicate"
    );
    // And into a slice that has a bucket already, not the newest.
    ok(&mut rec, 1_500);
    assert_eq!(rec.buckets.len(), 3);
    assert_eq!(rec.buckets[1].successes, 2);
    assert_eq!(window_counts(&rec, &p, at(2_000)).successes, 5);
}

#[test]
fn a_slow_only_tally_leaves_the_consecutive_count_alone() {
    let p = policy();
    let mut rec = Record::new();
    let g = rec.generation;
    record_tally(&mut rec, &p, at(0), g, Tally::new(0, 2, 0));
    assert_eq!(rec.consecutive_failures, 2);
    record_tally(&mut rec, &p, at(1), g, Tally::new(0, 0, 1));
    assert_eq!(
        rec.consecutive_failures, 2,
        "neither a success nor a failure"
    );
    record_tally(&mut rec, &p, at(2), g, Tally::new(1, 0, 0));
    assert_eq!(rec.consecutive_failures, 0);
}

#[test]
fn the_checks_bounds_are_exact() {
    let p = policy();
    let now = at(0);
    let sane = |rec: &Record| check(rec, &p, now).is_ok();
    let mut rec = Record::new();
    rec.generation = MAX_GENERATION;
    assert!(sane(&rec));
    rec.generation = MAX_GENERATION + 1;
    assert!(!sane(&rec));

    let longest = p.longest_open_period().saturating_add(CLOCK_MARGIN);
    let mut open = Record::new();
    open.state = State::Open;
    open.open_until = Some(now.saturating_add(longest));
    assert!(sane(&open), "the latest allowed end");
    open.open_until = Some(now.saturating_add(longest + Duration::from_millis(1)));
    assert!(!sane(&open));

    let mut half = Record::new();
    half.state = State::HalfOpen;
    half.leases = vec![Lease::new(
        1,
        now.saturating_add(p.probe_lease + CLOCK_MARGIN),
    )];
    assert!(sane(&half), "the latest allowed lease");
    half.leases = vec![Lease::new(
        1,
        now.saturating_add(p.probe_lease + CLOCK_MARGIN + Duration::from_millis(1)),
    )];
    assert!(!sane(&half));
    half.leases = (1..=2).map(|id| Lease::new(id, now)).collect();
    assert!(sane(&half), "as many leases as permits (two)");
    half.leases = (1..=3).map(|id| Lease::new(id, now)).collect();
    assert!(!sane(&half));

    // Buckets of one second; ten seconds of margin.
    let current = now.as_millis() / 1_000;
    let mut future = Record::new();
    future.buckets = vec![Bucket {
        index: current + 5,
        ..Bucket::default()
    }];
    assert!(sane(&future), "within the margin");
    future.buckets[0].index = current + 10;
    assert!(sane(&future), "at the margin");
    future.buckets[0].index = current + 11;
    assert!(!sane(&future));
    let mut many = Record::new();
    many.buckets = vec![Bucket::default(); 64];
    assert!(sane(&many));
    many.buckets.push(Bucket::default());
    assert!(!sane(&many));
}

#[test]
fn the_longest_expiry_is_ten_years_and_fits_every_back_end() {
    assert!(MAX_BACKEND_TTL >= Duration::from_secs(3_650 * 86_400));
    // Redis keeps expiry times in milliseconds; the script refuses more than 2^48 ms.
    assert!(MAX_BACKEND_TTL < Duration::from_millis(1 << 48));
    let p = Policy::builder()
        .open_for(Duration::from_millis(u64::MAX))
        .build()
        .unwrap();
    let mut rec = Record::new();
    (rec.state, rec.open_until) = (State::Open, Some(Timestamp::MAX));
    assert_eq!(record_ttl(&rec, &p, at(0)), Some(MAX_BACKEND_TTL));
}

#[test]
fn jitter_reaches_both_of_its_bounds_and_is_the_reference_splitmix() {
    // The published SplitMix64 sequence from seed 0 (Vigna): every agent, in every build,
    // computes the same jitter for a generation.
    assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
    let one_ms = Policy::builder()
        .jitter(Duration::from_millis(1))
        .build()
        .unwrap();
    let seen: std::collections::BTreeSet<Duration> = (0..64).map(|g| jitter(&one_ms, g)).collect();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec![Duration::ZERO, Duration::from_millis(1)],
        "0 and the maximum both occur"
    );
}

#[test]
fn buckets_that_left_the_window_are_dropped_from_the_record() {
    let p = policy();
    let mut rec = Record::new();
    record_tally(&mut rec, &p, at(0), 0, Tally::new(1, 0, 0));
    record_tally(&mut rec, &p, at(20_000), 0, Tally::new(1, 0, 0));
    assert_eq!(
        rec.buckets.len(),
        1,
        "the bucket of twenty seconds ago is gone"
    );
}

#[test]
fn the_slow_call_rate_trips_at_its_rate_not_below() {
    let p = Policy::builder()
        .slow_calls(Duration::from_millis(100), false)
        .slow_call_rate(0.5, 4)
        .build()
        .unwrap();
    let mut rec = Record::new();
    record_tally(&mut rec, &p, at(0), 0, Tally::new(4, 0, 1));
    assert_eq!(rec.state, State::Closed, "one slow call in four is 25%");
    let mut rec = Record::new();
    record_tally(&mut rec, &p, at(0), 0, Tally::new(4, 0, 2));
    assert_eq!(rec.state, State::Open, "two in four is the rate");
}

/// Slow calls counted apart, tripping at half of ten.
fn slow_call_rate() -> Policy {
    Policy::builder()
        .slow_calls(Duration::from_millis(100), false)
        .slow_call_rate(0.5, 10)
        .build()
        .unwrap()
}

/// Three failures in ten seconds, or three in a row.
fn window_and_run() -> Policy {
    Policy::builder()
        .failures_within(3, Duration::from_secs(10))
        .consecutive_failures(3)
        .build()
        .unwrap()
}

#[test]
fn successes_matter_only_to_rules_that_read_them() {
    let counting = policy();
    let mut rec = Record::new();
    assert!(!successes_matter(&rec, &counting, T0), "failures alone");
    fail(&mut rec, &counting, T0);
    assert!(
        !successes_matter(&rec, &counting, T0),
        "still failures alone"
    );

    let consecutive = Policy::builder().consecutive_failures(3).build().unwrap();
    let mut rec = Record::new();
    assert!(!successes_matter(&rec, &consecutive, T0), "no run to reset");
    fail(&mut rec, &consecutive, T0);
    assert!(successes_matter(&rec, &consecutive, T0), "a run to reset");

    let rate = Policy::builder().failure_rate(0.5, 10).build().unwrap();
    let mut rec = Record::new();
    assert!(!successes_matter(&rec, &rate, T0), "nothing to dilute");
    fail(&mut rec, &rate, T0);
    assert!(successes_matter(&rec, &rate, T0), "a failure to dilute");
    let later = T0.saturating_add(rate.window + Duration::from_secs(1));
    assert!(
        !successes_matter(&rec, &rate, later),
        "the failure left the window"
    );

    let slow = slow_call_rate();
    let mut rec = Record::new();
    let g = rec.generation;
    record_tally(&mut rec, &slow, T0, g, Tally::new(0, 1, 0));
    assert!(
        !successes_matter(&rec, &slow, T0),
        "a failure, but no slow call"
    );
    record_tally(&mut rec, &slow, T0, g, Tally::new(1, 0, 1));
    assert!(successes_matter(&rec, &slow, T0), "a slow call to dilute");

    // Any rule that reads them is enough; and only a closed breaker's count.
    let both = window_and_run();
    let mut rec = Record::new();
    fail(&mut rec, &both, T0);
    assert!(successes_matter(&rec, &both, T0));
    rec.state = State::ForcedClosed;
    assert!(!successes_matter(&rec, &both, T0));
}

#[test]
fn a_record_is_quiet_with_nothing_a_rule_builds_on() {
    let both = window_and_run();
    let mut rec = Record::new();
    assert!(quiet(&rec, &both, T0), "a new record");
    let g = rec.generation;
    record_tally(&mut rec, &both, T0, g, Tally::new(5, 0, 0));
    assert!(quiet(&rec, &both, T0), "successes alone");
    fail(&mut rec, &both, T0);
    assert!(!quiet(&rec, &both, T0), "a failure in the window");
    // The window passes, but the run of consecutive failures is still unbroken.
    let later = T0.saturating_add(both.window + Duration::from_secs(1));
    assert!(!quiet(&rec, &both, later), "a run to build on");
    record_tally(&mut rec, &both, later, g, Tally::new(1, 0, 0));
    assert!(
        quiet(&rec, &both, later),
        "the run broken, the window empty"
    );
    let slow = slow_call_rate();
    let mut rec = Record::new();
    let g = rec.generation;
    record_tally(&mut rec, &slow, T0, g, Tally::new(1, 0, 1));
    assert!(!quiet(&rec, &slow, T0), "a slow call in the window");
    let mut rec = Record::new();
    rec.state = State::ForcedOpen;
    assert!(!quiet(&rec, &both, T0), "not closed");
}

#[test]
fn tallies_of_outcomes_add_up_and_saturate() {
    assert_eq!(Tally::of(Outcome::Success, false), Tally::new(1, 0, 0));
    assert_eq!(Tally::of(Outcome::Failure, true), Tally::new(0, 1, 1));
    assert_eq!(Tally::of(Outcome::Ignored, true), Tally::default());
    assert_eq!(
        Tally::new(1, 2, 3).plus(Tally::new(10, 20, 30)),
        Tally::new(11, 22, 33)
    );
    assert_eq!(
        Tally::new(u64::MAX, 1, 0).plus(Tally::new(1, u64::MAX, 0)),
        Tally::new(u64::MAX, u64::MAX, 0)
    );
}

/// A quorum counts agents within the window at the time asked, whether or not the record was
/// pruned since: an agent whose last failure is older than the window does not count.
#[test]
fn the_quorum_counts_only_agents_inside_the_window() {
    let p = Policy::builder()
        .failures_within(3, Duration::from_secs(10))
        .min_agents(2)
        .build()
        .unwrap();
    let mut rec = Record::new();
    let g = rec.generation;
    record_tally_from(&mut rec, &p, at(0), g, Tally::new(0, 1, 0), 7);
    record_tally_from(&mut rec, &p, at(5_000), g, Tally::new(0, 1, 0), 8);
    assert_eq!(failing_agents(&rec, &p, at(5_000)), 2);
    assert!(quorum_met(&rec, &p, at(5_000)));
    // Eleven seconds after the first agent's failure, only the second is in the window.
    assert_eq!(failing_agents(&rec, &p, at(11_000)), 1);
    assert!(!quorum_met(&rec, &p, at(11_000)));
    assert_eq!(rec.state, State::Closed, "two failures meet no rule");
}

#[test]
fn a_trip_folded_from_a_log_begins_at_the_delta_that_caused_it() {
    use crate::record::Delta;
    let p = policy();
    let mut rec = Record::new();
    let log = [
        Delta::new(at(0), 0, Tally::new(0, 1, 0), 1),
        Delta::new(at(10), 0, Tally::new(0, 1, 0), 2),
        // A writer whose clock lags adds to an older slice, as a swap would.
        Delta::new(at(5), 0, Tally::new(0, 1, 0), 3),
        // After the trip: of the generation that ended, so it changes nothing.
        Delta::new(at(20), 0, Tally::new(0, 1, 0), 4),
        // Of a generation that never was here.
        Delta::new(at(30), 9, Tally::new(0, 1, 0), 5),
    ];
    assert_eq!(fold(&mut rec, &p, &log), 3);
    assert_eq!(rec.state, State::Open);
    assert_eq!(rec.since, at(5));
    assert_eq!(rec.open_until, Some(at(5 + 5_000)));
}

proptest! {
    /// A log folded onto a record is the record every delta's own compare-and-swap would
    /// have written, in the order appended, however the log is split between a base that
    /// was written (compacted) and the deltas after it.
    #[test]
    fn a_folded_log_is_the_record_swaps_would_write(
        deltas in prop::collection::vec((0u64..30_000, 0u64..3, 0u64..3, 0u64..2, 1u64..4, any::<bool>()), 0..40),
        split in 0usize..40,
    ) {
        use crate::record::Delta;
        let p = policy();
        let mut swapped = Record::new();
        let mut log = Vec::new();
        for (ms, s, f, slow, agent, stale) in deltas {
            let generation = if stale { swapped.generation.wrapping_add(1) } else { swapped.generation };
            let d = Delta::new(at(ms), generation, Tally::new(s, f, slow.min(s + f)), agent);
            let before = swapped.generation;
            record_tally_from(&mut swapped, &p, d.at, d.generation, d.tally, d.agent);
            if swapped.generation != before {
                // A folded record names the agent of its transition as its writer.
                swapped.writer = d.agent;
            }
            log.push(d);
        }
        let split = split.min(log.len());
        let mut base = Record::new();
        fold(&mut base, &p, &log[..split]);
        // The base goes through the store as bytes.
        let mut base = Record::decode(&base.encode_as(RecordEncoding::Compact)).unwrap();
        fold(&mut base, &p, &log[split..]);
        prop_assert_eq!(base, swapped);
    }
}
