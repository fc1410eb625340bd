//! Conformance cases of contents in the store that the driver did not write: foreign bytes
//! planted at the keys or rows it owns (by a hostile or broken writer, bypassing the driver),
//! values too large to read, and the breakers of a neighbouring namespace. None may wedge a
//! breaker, fail an operator's action, break `list` for the other breakers, or reach
//! another namespace.

use std::sync::Arc;
use std::time::Duration;

use breaker_core::{
    Driver, DriverErrorKind, Event, MAX_RECORD_BYTES, ManualClock, Name, Policy, Record,
    RecordEncoding, SCHEMA_VERSION, State,
};

use super::{HostileHarness, START, agent, stored_record};
use crate::calls::fail;
use crate::unique_name;

const T: Duration = Duration::from_secs(5);

/// One failure within a minute trips.
fn one_failure_trips() -> Policy {
    Policy::builder()
        .failures_within(1, Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A sane breaker beside the planted one: a record of its own, written through the driver.
async fn neighbour<H: HostileHarness>(h: &H, clock: &ManualClock) -> String {
    let name = unique_name("sane");
    let lenient = Policy::builder()
        .failures_within(100, Duration::from_secs(60))
        .build()
        .unwrap();
    let b = agent(h, &name, &lenient, clock).await;
    let _ = fail(&b).await;
    name
}

/// The breaker `name`, whose stored contents were planted (`what`), keeps working: it
/// admits, reports a corrupt record where `at_record`, trips on its first failure and stores
/// a record of its own over the planted one, is never degraded, and takes an operator's reset
/// and force; `list` still shows the sane breaker `sane` beside it.
async fn survives<H: HostileHarness>(
    h: &H,
    clock: &ManualClock,
    name: &str,
    sane: &str,
    at_record: bool,
    what: &str,
) {
    let listed = h.driver().await.list(T).await;
    let listed = listed.unwrap_or_else(|e| panic!("{what}: list fails: {e}"));
    assert!(
        listed.iter().any(|(n, _)| n.as_str() == sane),
        "{what}: the sane breaker is still listed"
    );
    let b = agent(h, name, &one_failure_trips(), clock).await;
    let mut events = b.subscribe();
    assert!(
        crate::calls::succeed(&b).await.is_ok(),
        "{what}: the breaker admits"
    );
    if at_record {
        let corrupt = events
            .drain()
            .into_iter()
            .any(|e| matches!(e, Event::CorruptRecord(_)));
        assert!(corrupt, "{what}: reported as a corrupt record");
    }
    let _ = fail(&b).await;
    assert_eq!(b.state(), Some(State::Open), "{what}: it trips as usual");
    let stored = stored_record(h, name).await.expect("a record");
    assert_eq!(
        stored.state,
        State::Open,
        "{what}: its own record replaced it"
    );
    b.reset().await.expect("an operator's reset succeeds");
    b.force_open().await.expect("and a force-open");
    assert_eq!(
        stored_record(h, name).await.unwrap().state,
        State::ForcedOpen
    );
    assert!(!b.is_degraded(), "{what}: never degraded");
}

/// Every kind of foreign contents the harness can plant, one breaker each.
pub async fn foreign_contents_never_wedge_a_breaker<H: HostileHarness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let sane = neighbour(&*h, &clock).await;
    for (which, foreign) in h.foreign().into_iter().enumerate() {
        let name = unique_name("foreign");
        h.plant_foreign(&name, which).await;
        survives(&*h, &clock, &name, &sane, foreign.at_record, foreign.what).await;
    }
}

/// A value far larger than a record may be (here a valid record padded with spaces to 16
/// times the limit): refused unread, reported as corrupt and replaced.
pub async fn a_value_too_large_to_read_is_corrupt_and_replaced<H: HostileHarness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let sane = neighbour(&*h, &clock).await;
    let name = unique_name("oversize");
    let mut bytes = Record::new().encode();
    bytes.resize(16 * MAX_RECORD_BYTES, b' ');
    h.plant_value(&name, bytes).await;
    survives(&*h, &clock, &name, &sane, true, "a 1 MiB value").await;
}

/// Pairs of (prefix, name) that a naive `PREFIX:NAME` or `PREFIX.NAME` mapping would send to
/// one key. A breaker forced open in one is not seen in the other, and neither namespace
/// lists the other's breakers.
pub async fn namespace_neighbours_never_meet<H: HostileHarness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let tail = unique_name("n");
    let pairs = [
        (("a", "b:c"), ("a:b", "c")),
        (("a", "b.c"), ("a.b", "c")),
        (("a", "b-c"), ("a-b", "c")),
        (("a", "b_c"), ("a_b", "c")),
        (("breaker", "x:y"), ("breaker:x", "y")),
    ];
    for ((p1, n1), (p2, n2)) in pairs {
        let (n1, n2) = (format!("{n1}-{tail}"), format!("{n2}-{tail}"));
        let (d1, d2) = (h.driver_under(p1).await, h.driver_under(p2).await);
        let breaker = |d: H::Driver, n: &str| {
            breaker_core::Breaker::builder(n, d)
                .policy(one_failure_trips())
                .clock(clock.clone())
                .build()
                .expect("a valid breaker")
        };
        let (b1, b2) = (breaker(d1.clone(), &n1), breaker(d2.clone(), &n2));
        let what = format!("{p1} + {n1} against {p2} + {n2}");
        b1.force_open().await.unwrap();
        assert_eq!(b2.refresh().await.unwrap(), State::Closed, "{what}");
        b2.force_closed().await.unwrap();
        assert_eq!(b1.refresh().await.unwrap(), State::ForcedOpen, "{what}");
        let names = |listed: Vec<(Name, breaker_core::Versioned)>| -> Vec<String> {
            listed
                .into_iter()
                .map(|(n, _)| n.as_str().to_owned())
                .collect()
        };
        let (l1, l2) = (
            names(d1.list(T).await.unwrap()),
            names(d2.list(T).await.unwrap()),
        );
        assert!(l1.contains(&n1) && !l1.contains(&n2), "{what}: {l1:?}");
        assert!(l2.contains(&n2) && !l2.contains(&n1), "{what}: {l2:?}");
    }
}

/// A record of a newer schema than this build reads (written by a newer build during a
/// rolling upgrade) is never misread and never written over: it is reported as an
/// incompatibility, the back-end failure policy applies (here the local fallback: the call
/// is admitted), and once the record is one this build reads, the breaker is shared again.
pub async fn a_newer_schema_is_refused_and_left_alone<H: HostileHarness>(h: Arc<H>) {
    let current = String::from_utf8(Record::new().encode()).unwrap();
    let newer_json = current
        .replace(
            "\"schema\":1",
            &format!("\"schema\":{}", SCHEMA_VERSION + 1),
        )
        .into_bytes();
    // A compact record's schema is its second byte (a one-byte varint below 128).
    let mut newer_compact = Record::new().encode_as(RecordEncoding::Compact);
    newer_compact[1] = u8::try_from(SCHEMA_VERSION + 1).unwrap();
    for newer in [newer_json, newer_compact] {
        let clock = ManualClock::new(START);
        let name = unique_name("newer");
        h.plant_value(&name, newer.clone()).await;
        let b = agent(&*h, &name, &one_failure_trips(), &clock).await;
        let mut events = b.subscribe();
        assert!(
            crate::calls::succeed(&b).await.is_ok(),
            "the local fallback admits"
        );
        assert!(b.is_degraded(), "the failure policy applies");
        let reported = events.drain().into_iter().any(|e| {
            matches!(e, Event::BackendError(ref err) if err.kind() == DriverErrorKind::Incompatible)
        });
        assert!(reported, "reported as an incompatible record");
        let _ = fail(&b).await;
        let n = Name::new(&name).unwrap();
        let stored = h
            .driver()
            .await
            .load(&n, T)
            .await
            .unwrap()
            .expect("still there");
        assert_eq!(stored.value, newer, "never written over");
        // The fleet's record becomes one this build reads (the newer agents went back, or
        // wrote in the older layout): shared again at the next retry.
        h.plant_value(&name, current.clone().into_bytes()).await;
        clock.advance(Duration::from_secs(10));
        assert!(crate::calls::succeed(&b).await.is_ok());
        assert!(!b.is_degraded(), "shared again");
        let _ = fail(&b).await;
        assert_eq!(stored_record(&*h, &name).await.unwrap().state, State::Open);
    }
}
