//! Metrics and tracing, with the `metrics` and `tracing` features: what a breaker reports
//! about calls, rejections, transitions and back-end trouble, each labelled with the breaker
//! and the back-end.
//!
//! The recorder and the subscriber are installed process-wide, as an application does: a
//! breaker writes its failures (and reports what follows from them) on its background
//! writer's thread as well as on the caller's.
#![cfg(all(feature = "metrics", feature = "tracing", feature = "memory"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use shared_breaker::memory::MemoryDriver;
use shared_breaker::{Breaker, ManualClock, Policy, Timestamp};

type Snapshot = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// The counters called `name` of this file's metrics test's breaker, with their labels.
fn counters(snapshot: &Snapshot, name: &str) -> Vec<(Vec<(String, String)>, u64)> {
    let of_this_test = |k: &metrics_util::CompositeKey| {
        k.key()
            .labels()
            .any(|l| l.key() == "breaker" && l.value() == "observed")
    };
    snapshot
        .iter()
        .filter(|(k, _, _, _)| k.key().name() == name && of_this_test(k))
        .filter_map(|(k, _, _, v)| match v {
            DebugValue::Counter(n) => Some((
                k.key()
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect(),
                *n,
            )),
            _ => None,
        })
        .collect()
}

/// The `breaker_state` series of `breaker`: (state label, value), sorted by state.
fn gauges(snapshot: &Snapshot, breaker: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = snapshot
        .iter()
        .filter(|(k, _, _, _)| {
            k.key().name() == "breaker_state"
                && k.key()
                    .labels()
                    .any(|l| l.key() == "breaker" && l.value() == breaker)
        })
        .filter_map(|(k, _, _, v)| match v {
            DebugValue::Gauge(g) => Some((
                k.key()
                    .labels()
                    .find(|l| l.key() == "state")?
                    .value()
                    .to_owned(),
                g.into_inner(),
            )),
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The one series called `name` of `breaker`.
fn gauge(snapshot: &Snapshot, name: &str, breaker: &str) -> Option<f64> {
    snapshot.iter().find_map(|(k, _, _, v)| match v {
        DebugValue::Gauge(g)
            if k.key().name() == name
                && k.key()
                    .labels()
                    .any(|l| l.key() == "breaker" && l.value() == breaker) =>
        {
            Some(g.into_inner())
        }
        _ => None,
    })
}

/// The window's gauges of a breaker judged by a failure rate: the rule's own figures, fleet-
/// wide, and they age with the clock without a new record.
fn window_gauges(snapshotter: &metrics_util::debugging::Snapshotter) {
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let policy = Policy::builder()
        .failure_rate(0.9, 10)
        .window(Duration::from_secs(10))
        .build()
        .unwrap();
    let b = Breaker::builder("rated", MemoryDriver::new())
        .policy(policy)
        .clock(clock.clone())
        .build()
        .unwrap();
    // Both gauges from one snapshot (a snapshot drains what it read).
    let read = || {
        let snapshot = snapshotter.snapshot().into_vec();
        let of = |name| gauge(&snapshot, name, "rated");
        (of("breaker_window_failures"), of("breaker_failure_rate"))
    };
    b.call_blocking(|| Ok::<(), ()>(())).unwrap();
    b.flush_blocking().unwrap();
    assert_eq!(read(), (Some(0.0), Some(0.0)), "healthy");
    let _ = b.call_blocking(|| Err::<(), ()>(()));
    b.written_blocking();
    for _ in 0..3 {
        b.call_blocking(|| Ok::<(), ()>(())).unwrap();
    }
    b.flush_blocking().unwrap();
    // One failure in five calls (the first success was shared as it made the record).
    assert_eq!(read(), (Some(1.0), Some(0.2)));
    clock.advance(Duration::from_secs(11));
    b.call_blocking(|| Ok::<(), ()>(())).unwrap();
    b.flush_blocking().unwrap();
    assert_eq!(read(), (Some(0.0), Some(0.0)), "the failure aged out");
}

#[test]
fn metrics_count_calls_rejections_transitions_and_backend_errors() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");
    window_gauges(&snapshotter);
    {
        let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
        let driver = MemoryDriver::new();
        let policy = Policy::builder()
            .failures_within(2, Duration::from_secs(60))
            .build()
            .unwrap();
        let b = Breaker::builder("observed", driver.clone())
            .policy(policy)
            .clock(clock)
            .build()
            .unwrap();
        // A healthy breaker has its state series from its first read on. (A snapshot drains
        // the counters: taken before the breaker under test calls.)
        let healthy = Breaker::builder("healthy", driver.clone()).build().unwrap();
        healthy.call_blocking(|| Ok::<(), ()>(())).unwrap();
        let early: Snapshot = snapshotter.snapshot().into_vec();
        assert_eq!(
            gauges(&early, "healthy"),
            vec![
                ("closed".to_owned(), 1.0),
                ("forced_closed".to_owned(), 0.0),
                ("forced_open".to_owned(), 0.0),
                ("half_open".to_owned(), 0.0),
                ("open".to_owned(), 0.0)
            ]
        );
        b.call_blocking(|| Ok::<(), ()>(())).unwrap();
        let _ = b.call_blocking(|| Err::<(), ()>(()));
        let _ = b.call_blocking(|| Err::<(), ()>(()));
        assert!(
            b.call_blocking(|| Ok::<(), ()>(()))
                .unwrap_err()
                .is_rejected()
        );
        driver.set_unavailable(true);
        let _ = b.flush_blocking();
    }
    let snapshot: Snapshot = snapshotter.snapshot().into_vec();
    let calls = counters(&snapshot, "breaker_calls_total");
    let by = |outcome: &str| {
        calls
            .iter()
            .find(|(labels, _)| labels.contains(&("outcome".into(), outcome.into())))
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!((by("success"), by("failure")), (1, 2));
    assert!(
        calls
            .iter()
            .all(|(l, _)| l.contains(&("breaker".into(), "observed".into()))
                && l.contains(&("backend".into(), "memory".into())))
    );
    assert!(
        gauges(&snapshot, "observed").contains(&("open".to_owned(), 1.0)),
        "one series per state: open now"
    );
    for (name, _, _) in shared_breaker::METRICS {
        let described = snapshot
            .iter()
            .any(|(k, _, help, _)| k.key().name() == *name && help.is_some());
        let emitted = snapshot.iter().any(|(k, _, _, _)| k.key().name() == *name);
        assert!(!emitted || described, "{name} has no help text");
    }
    let durations = snapshot
        .iter()
        .filter(|(k, _, _, _)| {
            k.key().name() == "breaker_call_duration_seconds"
                && k.key().labels().any(|l| l.value() == "observed")
        })
        .map(|(_, _, _, v)| match v {
            DebugValue::Histogram(samples) => samples.len(),
            _ => 0,
        })
        .sum::<usize>();
    assert_eq!(durations, 3, "one duration per admitted call");
    let rejections = counters(&snapshot, "breaker_not_permitted_calls_total");
    assert_eq!(rejections.iter().map(|(_, n)| n).sum::<u64>(), 1);
    let transitions = counters(&snapshot, "breaker_transitions_total");
    assert!(transitions.iter().any(|(l, n)| *n == 1
        && l.contains(&("to".into(), "open".into()))
        && l.contains(&("cause".into(), "caused".into()))));
    let errors = counters(&snapshot, "breaker_backend_errors_total");
    assert!(
        errors
            .iter()
            .any(|(l, _)| l.contains(&("kind".into(), "unavailable".into()))),
        "{errors:?}"
    );
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn tracing_reports_transitions_and_backend_trouble() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    {
        let driver = MemoryDriver::new();
        let policy = Policy::builder()
            .failures_within(1, Duration::from_secs(60))
            .build()
            .unwrap();
        let b = Breaker::builder("traced", driver.clone())
            .policy(policy)
            .build()
            .unwrap();
        let _ = b.call_blocking(|| Err::<(), ()>(()));
        b.written_blocking();
        driver.set_unavailable(true);
        let _ = b.flush_blocking();
    }
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("breaker transition")
            && text.contains("breaker=\"traced\"")
            && text.contains("to=\"open\"")
            && text.contains("reason=\"trip rule met: 1 failure within 60s\""),
        "what tripped it, with its threshold: {text}"
    );
    assert!(
        text.contains("breaker back-end trouble") && text.contains("backend=\"memory\""),
        "{text}"
    );
}
