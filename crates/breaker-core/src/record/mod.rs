//! The shared record of one breaker, as every agent and every back-end sees it, and its
//! encoding.

mod compact;
mod delta;
pub use delta::{DELTA_LAYOUT, Delta, MAX_DELTA_BYTES};

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::timers::RunningTimers;

/// The largest stored record a driver hands to a breaker, in bytes. Records are a few hundred
/// bytes; anything far larger is foreign, and a driver that can measure a value in the
/// back-end reports it as corrupt without transferring it.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The record layout this build reads and writes. A record with another version is refused
/// as corrupt rather than misread.
pub const SCHEMA_VERSION: u32 = 2;

/// The oldest record layout this build reads, and the one it writes whenever a record uses
/// nothing newer: schema 1, the layout of 0.1, so that a fleet that does not use a newer
/// feature stays readable by every build during a rolling upgrade. Schema 2 adds
/// [`Record::failing_agents`] (the quorum of [`crate::Policy::min_agents`]).
pub const OLDEST_SCHEMA: u32 = 1;

/// How a breaker writes its record ([`crate::Policy::record_encoding`]). Every build from
/// 0.2 on reads both, whichever a record was written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordEncoding {
    /// JSON (the default): readable with a back-end's own tools (`redis-cli`, `etcdctl`,
    /// `sqlite3`) and by every release, 0.1 included.
    #[default]
    Json,
    /// A binary form of the same fields (`postcard` varints behind one marker byte), a
    /// seventh to a twelfth of the JSON's size (15 bytes for a new breaker's record and 122
    /// for a busy one's, against 184 and 868): a failure's write costs a quarter less, and
    /// an idle breaker's record fits Redis's compact hash encoding (about 230 bytes per
    /// breaker in Redis instead of 700). The CLI shows it as it shows any record; a
    /// back-end's own tools show bytes. Builds before 0.2 cannot read it and write a fresh
    /// record over it, so turn it on once every agent on the back-end runs 0.2 or later.
    Compact,
}

impl RecordEncoding {
    /// The encoding `bytes` are written in, judged by their first byte (a record that is
    /// neither reads as JSON, and [`Record::decode`] says why it is not one).
    pub fn of(bytes: &[u8]) -> RecordEncoding {
        if bytes.first() == Some(&compact::MARKER) {
            RecordEncoding::Compact
        } else {
            RecordEncoding::Json
        }
    }

    /// A short lower-case name (`json`, `compact`), as configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordEncoding::Json => "json",
            RecordEncoding::Compact => "compact",
        }
    }
}

/// The state of a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum State {
    /// Calls go through and are counted.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A limited number of probe calls, fleet-wide, decide whether the breaker closes.
    HalfOpen,
    /// Opened by an operator: every call is rejected until reset.
    ForcedOpen,
    /// Closed by an operator (disabled): every call goes through and nothing trips.
    ForcedClosed,
}

impl State {
    /// A short lower-case name (`closed`, `open`, `half_open`, `forced_open`, `forced_closed`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::ForcedClosed => "forced_closed",
        }
    }

    /// Whether an operator set this state.
    pub fn is_forced(self) -> bool {
        matches!(self, State::ForcedOpen | State::ForcedClosed)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts of one slice (a tenth) of the sliding window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Bucket {
    /// Which slice: the time in milliseconds divided by the slice length.
    pub index: u64,
    /// Successful calls.
    pub successes: u64,
    /// Failed calls.
    pub failures: u64,
    /// Slow calls (successful or not).
    pub slow: u64,
}

/// A claimed half-open probe permit. It is a lease: once `expires_at` passes, its slot may be
/// claimed again and a late report from its holder is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Lease {
    /// Identifies the permit within the record.
    pub id: u64,
    /// When the lease lapses.
    pub expires_at: Timestamp,
}

impl Lease {
    /// A lease `id` that lapses at `expires_at`.
    pub fn new(id: u64, expires_at: Timestamp) -> Self {
        Lease { id, expires_at }
    }
}

/// An agent whose failures count toward a quorum ([`crate::Policy::min_agents`]): its id and
/// the window slice of its latest failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailingAgent {
    /// The agent's id (the writer id it signs its writes with).
    pub agent: u64,
    /// The [`Bucket::index`] of its latest failure.
    pub bucket: u64,
}

impl FailingAgent {
    /// `agent`, whose latest failure fell in slice `bucket`.
    pub fn new(agent: u64, bucket: u64) -> Self {
        FailingAgent { agent, bucket }
    }
}

/// The one shared record of a breaker. Drivers store it as opaque bytes; all logic over it
/// lives in [`crate::machine`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Record {
    /// Layout version: the oldest that holds the record ([`Record::needed_schema`]), from
    /// [`OLDEST_SCHEMA`] to [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Incremented by every transition; outcomes from older generations change nothing.
    pub generation: u64,
    /// Current state.
    pub state: State,
    /// When the current state began.
    pub since: Timestamp,
    /// End of the open period (inclusive: at that instant the breaker is half-open).
    pub open_until: Option<Timestamp>,
    /// Consecutive openings since the breaker last closed or was reset; drives backoff.
    pub openings: u32,
    /// Consecutive failures, fleet-wide.
    pub consecutive_failures: u32,
    /// The sliding window's slices, oldest first.
    pub buckets: Vec<Bucket>,
    /// Probe permits claimed in this half-open period and not yet settled.
    pub leases: Vec<Lease>,
    /// Probe successes in this half-open period.
    pub probe_successes: u32,
    /// Next probe lease id.
    pub next_lease_id: u64,
    /// The agent that wrote this version, so that exactly that agent reports a transition
    /// as caused and every other agent as observed. Zero when unknown.
    #[serde(default)]
    pub writer: u64,
    /// Whether an operator began this generation (a force or a reset), rather than the
    /// breaker's own rules. An agent that obeyed a forced state which the store then lost
    /// writes it back over a newcomer's record, but not over an operator's decision.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub operator: bool,
    /// Under a quorum, the distinct agents that failed within the window, oldest failure
    /// first; at most the policy's `min_agents`. Empty without a quorum. A record that holds
    /// any is written as schema 2 (builds of schema 1 refuse it); one that holds none, as
    /// schema 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing_agents: Vec<FailingAgent>,
    /// The back-end's word on which deadlines still run, when the back-end keeps them as
    /// timers (see [`crate::timers`]); `None`: the breaker's clock judges them. Attached when
    /// the record is loaded, never stored.
    #[serde(skip)]
    pub timers: Option<RunningTimers>,
}

impl Default for Record {
    fn default() -> Self {
        Record::new()
    }
}

impl Record {
    /// A closed breaker at generation 0, as an absent record reads.
    pub fn new() -> Self {
        Record {
            schema: OLDEST_SCHEMA,
            generation: 0,
            state: State::Closed,
            since: Timestamp::ZERO,
            open_until: None,
            openings: 0,
            consecutive_failures: 0,
            buckets: Vec::new(),
            leases: Vec::new(),
            probe_successes: 0,
            next_lease_id: 1,
            writer: 0,
            operator: false,
            failing_agents: Vec::new(),
            timers: None,
        }
    }

    /// Whether the open period is over at `now`: by the back-end's timer when it keeps one,
    /// else by the clock (the end is inclusive). A record that is not open has none running.
    pub fn open_period_over(&self, now: Timestamp) -> bool {
        match &self.timers {
            Some(timers) => !timers.open_period,
            None => self.open_until.is_none_or(|until| now >= until),
        }
    }

    /// Whether `lease` still holds its slot at `now`: by the back-end's timer when it keeps
    /// one, else by the clock.
    pub fn lease_live(&self, lease: &Lease, now: Timestamp) -> bool {
        match &self.timers {
            Some(timers) => timers.leases.contains(&lease.id),
            None => lease.expires_at > now,
        }
    }

    /// The oldest layout that holds everything in this record (see [`OLDEST_SCHEMA`]).
    pub fn needed_schema(&self) -> u32 {
        if self.failing_agents.is_empty() {
            OLDEST_SCHEMA
        } else {
            SCHEMA_VERSION
        }
    }

    /// The record's bytes as drivers store them, in JSON (readable with a back-end's own
    /// tools), under the oldest schema that holds them: [`Record::encode_as`] with
    /// [`RecordEncoding::Json`].
    pub fn encode(&self) -> Vec<u8> {
        self.encode_as(RecordEncoding::Json)
    }

    /// The record's bytes in `encoding`, under the oldest schema that holds them.
    pub fn encode_as(&self, encoding: RecordEncoding) -> Vec<u8> {
        let needed = self.needed_schema();
        match encoding {
            RecordEncoding::Compact => compact::encode(self, needed),
            RecordEncoding::Json => {
                // Room for the fixed fields and every bucket, lease and failing agent at
                // their usual sizes, so that the writer does not grow the buffer on every
                // failure.
                let guess = 256
                    + 64 * self.buckets.len()
                    + 64 * self.leases.len()
                    + 48 * self.failing_agents.len();
                let mut bytes = Vec::with_capacity(guess);
                let written = if self.schema == needed {
                    serde_json::to_writer(&mut bytes, self)
                } else {
                    let mut rec = self.clone();
                    rec.schema = needed;
                    serde_json::to_writer(&mut bytes, &rec)
                };
                written.expect("a record always serialises");
                bytes
            }
        }
    }

    /// Reads a record in either [`RecordEncoding`], refusing foreign bytes and other schema
    /// versions.
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::Malformed {
                reason: format!("larger than the {MAX_RECORD_BYTES} bytes a record may take"),
                bytes: bytes.len(),
            });
        }
        if RecordEncoding::of(bytes) == RecordEncoding::Compact {
            return compact::decode(bytes);
        }
        // One parse for a record this build reads (the common case); only bytes that are
        // not one are parsed again, for their schema alone, to say why.
        let full = match serde_json::from_slice::<Record>(bytes) {
            Ok(rec) if (OLDEST_SCHEMA..=SCHEMA_VERSION).contains(&rec.schema) => return Ok(rec),
            other => other,
        };
        #[derive(Deserialize)]
        struct Header {
            schema: Option<u32>,
        }
        let header: Header = serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed {
            reason: e.to_string(),
            bytes: bytes.len(),
        })?;
        match (header.schema, full) {
            (None, _) => Err(RecordError::Malformed {
                reason: "no `schema` field: not a breaker record".into(),
                bytes: bytes.len(),
            }),
            (Some(found), _) if !(OLDEST_SCHEMA..=SCHEMA_VERSION).contains(&found) => {
                Err(RecordError::SchemaVersion { found })
            }
            (Some(_), full) => full.map_err(|e| RecordError::Malformed {
                reason: e.to_string(),
                bytes: bytes.len(),
            }),
        }
    }
}

/// Why stored bytes are not a record this build can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Not a breaker record at all.
    #[error("corrupt record ({bytes} bytes): {reason}")]
    Malformed {
        /// What the decoder said.
        reason: String,
        /// Size of the stored value.
        bytes: usize,
    },
    /// A record of another layout version.
    #[error(
        "record has schema version {found}, this build reads versions {OLDEST_SCHEMA} to \
         {SCHEMA_VERSION}"
    )]
    SchemaVersion {
        /// The version found.
        found: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_written_under_the_oldest_schema_that_holds_it() {
        let mut r = Record::new();
        assert!(
            String::from_utf8(r.encode())
                .unwrap()
                .contains("\"schema\":1")
        );
        r.failing_agents.push(FailingAgent::new(7, 3));
        let text = String::from_utf8(r.encode()).unwrap();
        assert!(text.contains("\"schema\":2"), "{text}");
        assert_eq!(
            Record::decode(text.as_bytes()).unwrap().failing_agents,
            r.failing_agents
        );
        r.failing_agents.clear();
        assert!(
            String::from_utf8(r.encode())
                .unwrap()
                .contains("\"schema\":1")
        );
    }

    #[test]
    fn round_trips() {
        let mut r = Record::new();
        r.generation = 7;
        r.state = State::HalfOpen;
        r.leases.push(Lease {
            id: 3,
            expires_at: Timestamp::from_millis(99),
        });
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn refuses_foreign_bytes() {
        for bad in [
            &b"\xff\x00garbage"[..],
            b"{}",
            b"[1,2]",
            b"{\"schema\":1}",
            b"",
        ] {
            let e = Record::decode(bad).unwrap_err();
            assert!(matches!(e, RecordError::Malformed { .. }), "{e}");
            assert!(e.to_string().starts_with("corrupt record"), "{e}");
        }
    }

    #[test]
    fn refuses_what_is_over_the_size_limit() {
        let mut padded = Record::new().encode();
        padded.resize(MAX_RECORD_BYTES, b' ');
        assert_eq!(Record::decode(&padded), Ok(Record::new()), "at the limit");
        padded.push(b' ');
        let e = Record::decode(&padded).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        assert_eq!(MAX_RECORD_BYTES, 65_536);
    }

    #[test]
    fn refuses_other_schema_versions() {
        let text = String::from_utf8(Record::new().encode()).unwrap();
        for (found, readable) in [(0, false), (1, true), (2, true), (3, false)] {
            let other = text.replace("\"schema\":1", &format!("\"schema\":{found}"));
            match Record::decode(other.as_bytes()) {
                Ok(rec) => assert!(readable, "schema {found} read: {rec:?}"),
                Err(e) => {
                    assert!(!readable, "schema {found}: {e}");
                    assert_eq!(e, RecordError::SchemaVersion { found });
                }
            }
        }
    }

    /// A record with something in every field, as a failing half-open breaker's might be.
    fn busy() -> Record {
        let mut r = Record::new();
        r.generation = 41;
        r.state = State::HalfOpen;
        r.since = Timestamp::from_millis(1_764_000_000_000);
        r.open_until = Some(Timestamp::from_millis(1_764_000_010_000));
        r.openings = 3;
        r.consecutive_failures = 7;
        r.buckets = (0..10)
            .map(|i| Bucket {
                index: 1_764_000_000 + i,
                successes: 120,
                failures: 9,
                slow: 1,
            })
            .collect();
        r.leases
            .push(Lease::new(5, Timestamp::from_millis(1_764_000_020_000)));
        r.probe_successes = 1;
        r.next_lease_id = 6;
        r.writer = 0x9e37_79b9_7f4a_7c15;
        r.operator = true;
        r
    }

    #[test]
    fn both_encodings_hold_the_same_record_and_each_is_recognised() {
        for rec in [Record::new(), busy(), {
            let mut quorum = busy();
            quorum
                .failing_agents
                .push(FailingAgent::new(3, 1_764_000_009));
            quorum
        }] {
            let json = rec.encode_as(RecordEncoding::Json);
            let compact = rec.encode_as(RecordEncoding::Compact);
            assert_eq!(json, rec.encode(), "JSON is the default");
            assert_eq!(RecordEncoding::of(&json), RecordEncoding::Json);
            assert_eq!(RecordEncoding::of(&compact), RecordEncoding::Compact);
            let mut expected = rec.clone();
            expected.schema = rec.needed_schema();
            assert_eq!(Record::decode(&json), Ok(expected.clone()));
            assert_eq!(Record::decode(&compact), Ok(expected));
            assert!(
                compact.len() * 6 <= json.len(),
                "compact {} bytes, JSON {}",
                compact.len(),
                json.len()
            );
        }
    }

    /// The compact layout is a wire format that agents of different builds share: this pins
    /// its bytes, so that a reordered field or enum variant fails here, not in a fleet.
    #[test]
    fn the_compact_layout_is_pinned() {
        let mut r = Record::new();
        r.generation = 2;
        r.state = State::Open;
        r.since = Timestamp::from_millis(300);
        r.open_until = Some(Timestamp::from_millis(1));
        r.openings = 1;
        r.consecutive_failures = 5;
        r.buckets.push(Bucket {
            index: 4,
            successes: 0,
            failures: 5,
            slow: 1,
        });
        r.next_lease_id = 1;
        r.writer = 9;
        assert_eq!(
            r.encode_as(RecordEncoding::Compact),
            [
                0xBC, // marker
                1,    // schema
                2,    // generation
                1,    // state: open (closed 0, open 1, half_open 2, forced_open 3, forced_closed 4)
                0xAC, 0x02, // since: 300 as a varint
                1, 1, // open_until: Some(1)
                1, // openings
                5, // consecutive_failures
                1, 4, 0, 5, 1, // one bucket: index, successes, failures, slow
                0, // no leases
                0, // probe_successes
                1, // next_lease_id
                9, // writer
                0, // operator: false
                0, // no failing agents
            ]
        );
        let states = [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::ForcedOpen,
            State::ForcedClosed,
        ];
        for (index, state) in states.into_iter().enumerate() {
            r.state = state;
            assert_eq!(usize::from(r.encode_as(RecordEncoding::Compact)[3]), index);
        }
    }

    #[test]
    fn compact_bytes_that_are_not_one_record_are_refused_naming_why() {
        let good = busy().encode_as(RecordEncoding::Compact);
        assert_eq!(good[19], 10, "the bucket count");
        let cases: [(Vec<u8>, &str); 4] = [
            (vec![0xBC], "schema"),
            (good[..good.len() - 1].to_vec(), "compact record"),
            ([&good[..], &[0]].concat(), "1 bytes after its last field"),
            // A bucket count (after the 19 bytes of the fields before it) far beyond the
            // bytes that follow: refused, nothing reserved for it.
            (
                [&good[..19], &[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]].concat(),
                "compact record",
            ),
        ];
        for (bytes, says) in cases {
            let e = Record::decode(&bytes).unwrap_err();
            assert!(matches!(e, RecordError::Malformed { .. }), "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    #[test]
    fn a_compact_record_of_another_schema_is_refused_as_such() {
        for (found, readable) in [(0, false), (1, true), (2, true), (3, false), (300, false)] {
            let mut bytes = vec![0xBC];
            let rest = &Record::new().encode_as(RecordEncoding::Compact)[2..];
            bytes.extend(postcard::to_allocvec(&found).unwrap());
            bytes.extend(rest);
            match Record::decode(&bytes) {
                Ok(rec) => assert!(readable && rec.schema == found, "schema {found}"),
                Err(e) => {
                    assert!(!readable, "schema {found}: {e}");
                    assert_eq!(e, RecordError::SchemaVersion { found });
                }
            }
        }
        // A schema of a later layout is refused even when the rest is not this layout.
        assert_eq!(
            Record::decode(&[0xBC, 3, 0xFF]),
            Err(RecordError::SchemaVersion { found: 3 })
        );
    }
}
