//! The compact encoding of a record ([`super::RecordEncoding::Compact`]): one marker byte,
//! then the record's fields in a fixed order as `postcard` varints.
//!
//! The order below is the wire format: a field is never moved, removed or retyped, and the
//! variants of [`State`] keep their order (postcard writes a variant as its index). A later
//! layout adds fields at the end under a new schema number, which is the first field, so
//! that this build reads the schema alone and refuses a newer one clearly rather than
//! misreading it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{Bucket, FailingAgent, Lease, OLDEST_SCHEMA, Record, RecordError, SCHEMA_VERSION};
use crate::record::State;
use crate::time::Timestamp;

/// The first byte of a compact record. JSON starts with `{` (or white space), and this byte
/// never starts UTF-8 text, so the two encodings cannot be mistaken for each other.
pub(super) const MARKER: u8 = 0xBC;

/// The fields of a [`Record`] as they are written, borrowed on the way out and owned on the
/// way in. Every field is always present: a positional format has no "absent".
#[derive(Serialize, Deserialize)]
struct Compact<'a> {
    schema: u32,
    generation: u64,
    state: State,
    since: Timestamp,
    open_until: Option<Timestamp>,
    openings: u32,
    consecutive_failures: u32,
    buckets: Cow<'a, [Bucket]>,
    leases: Cow<'a, [Lease]>,
    probe_successes: u32,
    next_lease_id: u64,
    writer: u64,
    operator: bool,
    failing_agents: Cow<'a, [FailingAgent]>,
}

/// `rec`'s compact bytes, written under `schema`.
pub(super) fn encode(rec: &Record, schema: u32) -> Vec<u8> {
    let fields = Compact {
        schema,
        generation: rec.generation,
        state: rec.state,
        since: rec.since,
        open_until: rec.open_until,
        openings: rec.openings,
        consecutive_failures: rec.consecutive_failures,
        buckets: Cow::Borrowed(&rec.buckets),
        leases: Cow::Borrowed(&rec.leases),
        probe_successes: rec.probe_successes,
        next_lease_id: rec.next_lease_id,
        writer: rec.writer,
        operator: rec.operator,
        failing_agents: Cow::Borrowed(&rec.failing_agents),
    };
    // Room for the fixed fields (at most ~70 bytes) and every bucket, lease and failing
    // agent at their largest, so that the writer never grows the buffer.
    let guess = 72 + 40 * rec.buckets.len() + 20 * rec.leases.len() + 20 * rec.failing_agents.len();
    let mut bytes = Vec::with_capacity(guess);
    bytes.push(MARKER);
    postcard::to_extend(&fields, bytes).expect("a record always serialises")
}

/// Reads compact `bytes` (marker included), refusing other schemas and anything that is not
/// exactly one record.
pub(super) fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
    let malformed = |reason: String| RecordError::Malformed {
        reason,
        bytes: bytes.len(),
    };
    let body = bytes
        .strip_prefix(&[MARKER])
        .ok_or_else(|| malformed("not a compact record".into()))?;
    // The schema alone first: a newer layout is refused as such, not as garbage.
    let (schema, _) = postcard::take_from_bytes::<u32>(body)
        .map_err(|e| malformed(format!("compact record: schema: {e}")))?;
    if !(OLDEST_SCHEMA..=SCHEMA_VERSION).contains(&schema) {
        return Err(RecordError::SchemaVersion { found: schema });
    }
    let (fields, rest) = postcard::take_from_bytes::<Compact<'_>>(body)
        .map_err(|e| malformed(format!("compact record: {e}")))?;
    if !rest.is_empty() {
        return Err(malformed(format!(
            "compact record: {} bytes after its last field",
            rest.len()
        )));
    }
    Ok(Record {
        schema: fields.schema,
        generation: fields.generation,
        state: fields.state,
        since: fields.since,
        open_until: fields.open_until,
        openings: fields.openings,
        consecutive_failures: fields.consecutive_failures,
        buckets: fields.buckets.into_owned(),
        leases: fields.leases.into_owned(),
        probe_successes: fields.probe_successes,
        next_lease_id: fields.next_lease_id,
        writer: fields.writer,
        operator: fields.operator,
        failing_agents: fields.failing_agents.into_owned(),
        timers: None,
    })
}
