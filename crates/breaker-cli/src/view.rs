//! What the CLI shows of a breaker's record: one row per breaker, as a table or as JSON.

use serde::Serialize;
use shared_breaker::machine::effective_state;
use shared_breaker::{Delta, Record, RecordEncoding, RunningTimers, State, Timestamp, Versioned};

/// A breaker as an operator sees it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    /// The breaker's name.
    pub name: String,
    /// Its effective state at the CLI's clock (an open breaker whose open period is over is
    /// `half_open`, as every agent would report it), or `corrupt` when the stored value is
    /// not a record.
    pub state: String,
    /// The record's generation.
    pub generation: u64,
    /// The stored version.
    pub version: u64,
    /// Successes in the record's window buckets.
    pub successes: u64,
    /// Failures in the record's window buckets.
    pub failures: u64,
    /// Consecutive failures, fleet-wide.
    pub consecutive_failures: u32,
    /// Milliseconds until the next probe may be admitted, while open.
    pub next_probe_in_ms: Option<u64>,
    /// Probe permits held in this half-open period.
    pub probes_held: usize,
    /// Milliseconds since the current generation began (the last transition).
    pub since_ms: Option<u64>,
    /// Consecutive openings since the breaker last closed (drives the backoff).
    pub openings: u32,
    /// The agent that wrote the record last, in hex.
    pub writer: Option<String>,
    /// How the record is written: `json` or `compact` (see `Policy::record_encoding`).
    pub encoding: &'static str,
    /// What went wrong reading the record, if it is corrupt.
    pub error: Option<String>,
}

impl Row {
    /// The row of a stored value, judged at `now`, or by the back-end's running timers
    /// when it keeps them (`timers`), as the breakers themselves judge it.
    pub fn new(name: &str, stored: &Versioned, now: Timestamp, timers: bool) -> Row {
        let encoding = RecordEncoding::of(&stored.value).as_str();
        match Record::decode(&stored.value) {
            Ok(mut rec) => {
                rec.timers = timers.then(|| RunningTimers::of(rec.generation, &stored.timers));
                let mut row = Row::of_record(name, stored.version, &rec, encoding, now);
                // Outcomes appended since the record was written (`append_outcomes`) count
                // too; placing them in the window would need the policy, which a tool lacks.
                for delta in stored.log.iter().filter_map(|d| Delta::decode(d).ok()) {
                    if delta.generation == rec.generation {
                        row.successes = row.successes.saturating_add(delta.tally.successes);
                        row.failures = row.failures.saturating_add(delta.tally.failures);
                    }
                }
                row
            }
            Err(e) => Row {
                name: name.to_owned(),
                state: "corrupt".into(),
                generation: 0,
                version: stored.version,
                successes: 0,
                failures: 0,
                consecutive_failures: 0,
                next_probe_in_ms: None,
                probes_held: 0,
                since_ms: None,
                openings: 0,
                writer: None,
                encoding,
                error: Some(e.to_string()),
            },
        }
    }

    /// The row of a record stored with `version` in `encoding`.
    fn of_record(
        name: &str,
        version: u64,
        rec: &Record,
        encoding: &'static str,
        now: Timestamp,
    ) -> Row {
        Row {
            name: name.to_owned(),
            state: effective_state(rec, now).as_str().to_owned(),
            generation: rec.generation,
            version,
            // Saturating: the counts come from a record, which any writer may have planted.
            successes: rec
                .buckets
                .iter()
                .fold(0u64, |n, b| n.saturating_add(b.successes)),
            failures: rec
                .buckets
                .iter()
                .fold(0u64, |n, b| n.saturating_add(b.failures)),
            consecutive_failures: rec.consecutive_failures,
            next_probe_in_ms: match (rec.state, rec.open_until) {
                (State::Open, _) if rec.open_period_over(now) => Some(0),
                // Held by the back-end's timer: the record's deadline is its estimate,
                // and never reads as due while the timer runs.
                (State::Open, Some(until)) => {
                    Some((until.saturating_duration_since(now).as_millis() as u64).max(1))
                }
                _ => None,
            },
            probes_held: rec.leases.iter().filter(|l| rec.lease_live(l, now)).count(),
            since_ms: (rec.since != Timestamp::ZERO)
                .then(|| now.saturating_duration_since(rec.since).as_millis() as u64),
            openings: rec.openings,
            writer: (rec.writer != 0).then(|| format!("{:x}", rec.writer)),
            encoding,
            error: None,
        }
    }
}

/// A human table of `rows`.
pub fn table(rows: &[Row]) -> String {
    let seconds =
        |ms: Option<u64>| ms.map_or("-".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
    let mut out = format!(
        "{:<32} {:<13} {:>10} {:>9} {:>9} {:>12} {:>10} {:>8}  {}\n",
        "NAME",
        "STATE",
        "GENERATION",
        "SUCCESSES",
        "FAILURES",
        "NEXT PROBE",
        "SINCE",
        "OPENINGS",
        "LAST WRITER"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<32} {:<13} {:>10} {:>9} {:>9} {:>12} {:>10} {:>8}  {}\n",
            r.name,
            r.state,
            r.generation,
            r.successes,
            r.failures,
            seconds(r.next_probe_in_ms),
            seconds(r.since_ms),
            r.openings,
            r.writer.as_deref().unwrap_or("-"),
        ));
        if let Some(e) = &r.error {
            out.push_str(&format!("    {e}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_breaker::Policy;
    use shared_breaker::Timer;
    use shared_breaker::machine::{self, Tally};

    /// A record opened at `at` with a 30-second open period, stored as version 9.
    fn opened(at: Timestamp) -> Versioned {
        let mut rec = Record::new();
        machine::record_tally(&mut rec, &Policy::default(), at, 0, Tally::new(0, 100, 0));
        assert_eq!(rec.state, State::Open);
        Versioned::new(9, rec.encode())
    }

    #[test]
    fn the_next_probe_follows_the_clock_or_the_backends_timer() {
        let at = Timestamp::from_millis(1_000_000);
        let later = at.saturating_add(std::time::Duration::from_secs(3_600));
        let stored = opened(at);
        // Judged by the clock, an hour later the probe is due.
        assert_eq!(
            Row::new("x", &stored, later, false).next_probe_in_ms,
            Some(0)
        );
        // Judged by a back-end whose timer still runs, it is not.
        let generation = Record::decode(&stored.value).unwrap().generation;
        let held = stored
            .clone()
            .with_timers(vec![Timer::OpenPeriod { generation }]);
        assert!(Row::new("x", &held, later, true).next_probe_in_ms >= Some(1));
        // And once the timer ran out, it is due whatever the clock says.
        assert_eq!(Row::new("x", &stored, at, true).next_probe_in_ms, Some(0));
    }

    #[test]
    fn an_open_breaker_whose_period_is_over_shows_half_open() {
        let at = Timestamp::from_millis(1_000_000);
        let stored = opened(at);
        let until = Record::decode(&stored.value).unwrap().open_until.unwrap();
        let just_before = Timestamp::from_millis(until.as_millis() - 1);
        assert_eq!(Row::new("x", &stored, just_before, false).state, "open");
        assert_eq!(Row::new("x", &stored, until, false).state, "half_open");
    }

    #[test]
    fn rows_say_since_when_how_often_and_who() {
        let at = Timestamp::from_millis(1_000_000);
        let stored = opened(at);
        let later = at.saturating_add(std::time::Duration::from_millis(2_500));
        let row = Row::new("x", &stored, later, false);
        assert_eq!(row.since_ms, Some(2_500));
        assert_eq!(row.openings, 1);
        let text = table(&[row]);
        assert!(text.contains("SINCE") && text.contains("2.5s"), "{text}");
    }

    #[test]
    fn a_compact_record_shows_as_its_json_twin_does_and_says_so() {
        let at = Timestamp::from_millis(1_000_000);
        let json = opened(at);
        let rec = Record::decode(&json.value).unwrap();
        let compact = Versioned::new(9, rec.encode_as(RecordEncoding::Compact));
        let (a, b) = (
            Row::new("x", &json, at, false),
            Row::new("x", &compact, at, false),
        );
        assert_eq!((a.encoding, b.encoding), ("json", "compact"));
        assert_eq!(
            Row {
                encoding: "json",
                ..b
            },
            a
        );
    }

    #[test]
    fn counts_that_overflow_saturate() {
        let mut rec = Record::new();
        let mut full = shared_breaker::Bucket::default();
        (full.index, full.successes, full.failures) = (1, u64::MAX, u64::MAX);
        rec.buckets = vec![full; 3];
        let stored = Versioned::new(3, rec.encode());
        let row = Row::new("x", &stored, Timestamp::from_millis(1), false);
        assert_eq!((row.successes, row.failures), (u64::MAX, u64::MAX));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use shared_breaker::{Bucket, Lease, Timer};

    /// Any number a hostile writer could put in a field, edges included.
    fn wide() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0),
            Just(1),
            Just(u64::MAX),
            Just(u64::MAX - 1),
            any::<u64>()
        ]
    }

    /// Records with any values in every field: they decode, but need not make sense.
    fn hostile_record() -> impl Strategy<Value = Record> {
        let state = prop_oneof![
            Just(State::Closed),
            Just(State::Open),
            Just(State::HalfOpen),
            Just(State::ForcedOpen),
            Just(State::ForcedClosed)
        ];
        let bucket = (wide(), wide(), wide(), wide()).prop_map(|(index, s, f, slow)| {
            let mut b = Bucket::default();
            (b.index, b.successes, b.failures, b.slow) = (index, s, f, slow);
            b
        });
        let lease =
            (wide(), wide()).prop_map(|(id, at)| Lease::new(id, Timestamp::from_millis(at)));
        (
            (wide(), state, prop::option::of(wide()), any::<u32>()),
            prop::collection::vec(bucket, 0..12),
            prop::collection::vec(lease, 0..6),
        )
            .prop_map(
                |((generation, state, until, consecutive), buckets, leases)| {
                    let mut rec = Record::new();
                    (rec.generation, rec.state) = (generation, state);
                    rec.open_until = until.map(Timestamp::from_millis);
                    rec.consecutive_failures = consecutive;
                    (rec.buckets, rec.leases) = (buckets, leases);
                    rec
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_048))]

        /// The CLI's part of the fuzz target: whatever record a back-end holds, and whatever
        /// timers it reports, `list` and `show` build their row, table and JSON without a
        /// panic or an overflow (tests build with overflow checks).
        #[test]
        fn any_record_makes_a_row(
            rec in hostile_record(),
            version in wide(),
            now in wide(),
            timers in any::<bool>(),
            running in prop::collection::vec((wide(), wide()), 0..4),
        ) {
            let running = running
                .into_iter()
                .flat_map(|(generation, lease)| {
                    [Timer::OpenPeriod { generation }, Timer::ProbeLease { generation, lease }]
                })
                .collect();
            let stored = Versioned::new(version, rec.encode()).with_timers(running);
            let row = Row::new("fuzzed", &stored, Timestamp::from_millis(now), timers);
            prop_assert_ne!(row.state.as_str(), "corrupt");
            let _ = table(std::slice::from_ref(&row));
            serde_json::to_string(&row).expect("a row serialises");
        }

        /// Bytes that are no record make a `corrupt` row, never a panic.
        #[test]
        fn any_bytes_make_a_row(bytes in prop::collection::vec(any::<u8>(), 0..256), now in wide()) {
            let stored = Versioned::new(1, bytes);
            let row = Row::new("fuzzed", &stored, Timestamp::from_millis(now), false);
            let _ = table(&[row]);
        }
    }
}
