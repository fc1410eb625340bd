//! What the CLI shows of a breaker's record: one row per breaker, as a table or as JSON.

use breaker::{Record, State, Timestamp, Versioned};
use serde::Serialize;

/// A breaker as an operator sees it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    /// The breaker's name.
    pub name: String,
    /// Its state, or `corrupt` when the stored value is not a record.
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
    /// What went wrong reading the record, if it is corrupt.
    pub error: Option<String>,
}

impl Row {
    /// The row of a stored value, judged at `now`.
    pub fn new(name: &str, stored: &Versioned, now: Timestamp) -> Row {
        match Record::decode(&stored.value) {
            Ok(rec) => Row {
                name: name.to_owned(),
                state: rec.state.as_str().to_owned(),
                generation: rec.generation,
                version: stored.version,
                successes: rec.buckets.iter().map(|b| b.successes).sum(),
                failures: rec.buckets.iter().map(|b| b.failures).sum(),
                consecutive_failures: rec.consecutive_failures,
                next_probe_in_ms: match (rec.state, rec.open_until) {
                    (State::Open, Some(until)) => {
                        Some(until.saturating_duration_since(now).as_millis() as u64)
                    }
                    _ => None,
                },
                probes_held: rec.leases.len(),
                error: None,
            },
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
                error: Some(e.to_string()),
            },
        }
    }
}

/// A human table of `rows`.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<32} {:<13} {:>10} {:>9} {:>9} {:>12}\n",
        "NAME", "STATE", "GENERATION", "SUCCESSES", "FAILURES", "NEXT PROBE"
    );
    for r in rows {
        let next = r
            .next_probe_in_ms
            .map_or("-".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
        out.push_str(&format!(
            "{:<32} {:<13} {:>10} {:>9} {:>9} {:>12}\n",
            r.name, r.state, r.generation, r.successes, r.failures, next
        ));
        if let Some(e) = &r.error {
            out.push_str(&format!("    {e}\n"));
        }
    }
    out
}
