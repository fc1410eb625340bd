//! Conformance cases of records that a hostile or broken writer planted through the driver:
//! records that decode but break the record's invariants must be reported as corrupt and
//! repaired, never wedge or defeat the breaker, and never overflow any arithmetic.

use std::sync::Arc;
use std::time::Duration;

use breaker_core::{Bucket, Clock, Driver, Event, Lease, ManualClock, Name, Policy, Record, State};

use super::{Harness, START, agent, stored_record};
use crate::calls::{fail, succeed};
use crate::unique_name;

const T: Duration = Duration::from_secs(5);

/// Three failures within ten seconds trip; open for five seconds; one probe closes.
pub(crate) fn policy() -> Policy {
    Policy::builder()
        .failures_within(3, Duration::from_secs(10))
        .open_for(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The bucket index of `at` under [`policy`]'s window (a tenth of ten seconds).
fn bucket_at(at: breaker_core::Timestamp) -> u64 {
    at.as_millis() / 1_000
}

/// Writes `rec` under `name` as a writer of its own would, through the driver.
async fn plant<H: Harness>(h: &H, name: &str, rec: &Record) {
    let driver = h.driver().await;
    let n = Name::new(name).unwrap();
    let current = driver.load(&n, T).await.unwrap().map(|v| v.version);
    driver
        .compare_and_swap(&n, current, rec.encode(), None, T)
        .await
        .unwrap();
}

/// Records that decode but make no sense: each is reported as corrupt, repaired, and the
/// breaker then behaves as its policy says (admits while closed, trips after three failures).
pub async fn insane_records_are_reported_and_repaired<H: Harness>(h: Arc<H>) {
    let hour = Duration::from_secs(3_600);
    let mut cases: Vec<(&str, Record)> = Vec::new();
    let mut huge_generation = Record::new();
    huge_generation.generation = 1 << 56;
    cases.push(("a generation the hot path cannot hold", huge_generation));
    let mut wedged = Record::new();
    (wedged.generation, wedged.state, wedged.probe_successes) = (4, State::HalfOpen, 1);
    cases.push(("half-open with enough successes to have closed", wedged));
    let mut too_many = Record::new();
    (too_many.generation, too_many.state) = (4, State::HalfOpen);
    too_many.leases = (1..=3)
        .map(|id| Lease::new(id, START.saturating_add(Duration::from_secs(1))))
        .collect();
    cases.push(("more probe leases than permits", too_many));
    let mut skewed = Record::new();
    (skewed.generation, skewed.state) = (2, State::Open);
    skewed.open_until = Some(START.saturating_add(hour));
    cases.push(("an open period an hour too long", skewed));
    let mut held = Record::new();
    (held.generation, held.state) = (2, State::HalfOpen);
    held.leases = vec![Lease::new(1, START.saturating_add(hour))];
    cases.push(("a probe lease held for an hour", held));
    let mut future = Record::new();
    future.generation = 3;
    let mut bucket = Bucket::default();
    (bucket.index, bucket.failures) = (bucket_at(START.saturating_add(hour)), 2);
    future.buckets = vec![bucket];
    cases.push(("failures in a bucket an hour ahead", future));

    for (what, rec) in cases {
        let clock = ManualClock::new(START);
        let name = unique_name("insane");
        plant(&*h, &name, &rec).await;
        let a = agent(&*h, &name, &policy(), &clock).await;
        let mut events = a.subscribe();
        assert!(
            succeed(&a).await.is_ok(),
            "{what}: the breaker admits (a fresh closed record replaced it)"
        );
        let reported = events.drain().into_iter().any(|e| {
            matches!(e, Event::CorruptRecord(ref err) if err.to_string().contains("insane record"))
        });
        assert!(reported, "{what}: reported as an insane record");
        let _ = fail(&a).await;
        assert_eq!(
            a.state(),
            Some(State::Closed),
            "{what}: one failure is one, whatever the planted record said"
        );
        let _ = fail(&a).await;
        let _ = fail(&a).await;
        assert_eq!(
            a.state(),
            Some(State::Open),
            "{what}: then it trips as usual"
        );
        let repaired = stored_record(&*h, &name).await.expect("a record");
        assert!(
            repaired.generation < 1 << 50,
            "{what}: generation {}",
            repaired.generation
        );
    }
}

/// Counts whose sum passes `u64::MAX` saturate: no panic, no wrap. A window that says every
/// call was slow (three buckets of `u64::MAX` calls, all slow) reads full, so the slow-call
/// rate trips the breaker at the next write.
pub async fn counts_that_overflow_saturate<H: Harness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("overflow");
    let mut rec = Record::new();
    let now = bucket_at(START);
    rec.buckets = (0..3)
        .map(|i| {
            let mut b = Bucket::default();
            (b.index, b.successes, b.slow) = (now - 2 + i, u64::MAX, u64::MAX);
            b
        })
        .collect();
    plant(&*h, &name, &rec).await;
    let rate = Policy::builder()
        .failures_within(3, Duration::from_secs(10))
        .slow_calls(Duration::from_secs(1), false)
        .slow_call_rate(0.5, 10)
        .build()
        .unwrap();
    let a = agent(&*h, &name, &rate, &clock).await;
    succeed(&a).await.unwrap();
    a.flush().await.unwrap();
    let counts = breaker_core::machine::window_counts(&rec, &rate, clock.now());
    assert_eq!((counts.successes, counts.slow), (u64::MAX, u64::MAX));
    assert_eq!(
        a.state(),
        Some(State::Open),
        "the full slow window tripped it"
    );
}
