//! A delta: one batch of closed-state outcomes appended to the log beside a breaker's record
//! ([`crate::Driver::append`]) instead of written into it, so that writers of one breaker
//! never conflict over an outcome. Every reader folds the log onto the record with
//! [`crate::machine::fold`], the same function an outcome's compare-and-swap runs, so every
//! reader derives the same state, a trip included.
//!
//! The encoding is one marker byte, then the fields in a fixed order as `postcard` varints,
//! the layout number first: as for compact records, a field is never moved, removed or
//! retyped, and a later layout is refused clearly rather than misread.

use serde::{Deserialize, Serialize};

use super::RecordError;
use crate::machine::Tally;
use crate::time::Timestamp;

/// The first byte of an encoded delta: neither JSON nor a compact record starts with it.
const MARKER: u8 = 0xBD;

/// The layout of a delta this build writes and reads.
pub const DELTA_LAYOUT: u32 = 1;

/// The most bytes a delta this build reads may take: its fields at their largest, with room.
pub const MAX_DELTA_BYTES: usize = 96;

/// One batch of closed-state outcomes of one agent, as appended to a breaker's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delta {
    /// When the outcomes were counted, on the agent's (the fleet's) clock: they fall in the
    /// window's slice of this time, and a trip they cause begins at it.
    pub at: Timestamp,
    /// The generation the calls were admitted in; a delta of another changes nothing.
    pub generation: u64,
    /// The outcomes.
    pub tally: Tally,
    /// The agent that counted them (for a quorum's distinct failing agents).
    pub agent: u64,
}

/// The fields as written, in wire order.
#[derive(Serialize, Deserialize)]
struct Fields {
    layout: u32,
    at: Timestamp,
    generation: u64,
    successes: u64,
    failures: u64,
    slow: u64,
    agent: u64,
}

impl Delta {
    /// The outcomes `tally` of `agent`, counted at `at` in `generation`.
    pub fn new(at: Timestamp, generation: u64, tally: Tally, agent: u64) -> Self {
        Delta {
            at,
            generation,
            tally,
            agent,
        }
    }

    /// The delta's bytes as a log holds them.
    pub fn encode(&self) -> Vec<u8> {
        let fields = Fields {
            layout: DELTA_LAYOUT,
            at: self.at,
            generation: self.generation,
            successes: self.tally.successes,
            failures: self.tally.failures,
            slow: self.tally.slow,
            agent: self.agent,
        };
        let mut bytes = Vec::with_capacity(MAX_DELTA_BYTES);
        bytes.push(MARKER);
        postcard::to_extend(&fields, bytes).expect("a delta always serialises")
    }

    /// Reads a delta, refusing foreign bytes, another layout and anything that is not
    /// exactly one delta.
    pub fn decode(bytes: &[u8]) -> Result<Delta, RecordError> {
        let malformed = |reason: String| RecordError::Malformed {
            reason,
            bytes: bytes.len(),
        };
        if bytes.len() > MAX_DELTA_BYTES {
            return Err(malformed(format!(
                "a delta larger than the {MAX_DELTA_BYTES} bytes one may take"
            )));
        }
        let body = bytes
            .strip_prefix(&[MARKER])
            .ok_or_else(|| malformed("not a delta".into()))?;
        let (layout, _) = postcard::take_from_bytes::<u32>(body)
            .map_err(|e| malformed(format!("delta: layout: {e}")))?;
        if layout != DELTA_LAYOUT {
            return Err(malformed(format!(
                "delta of layout {layout}, this build reads layout {DELTA_LAYOUT}: upgrade \
                 this agent"
            )));
        }
        let (fields, rest) = postcard::take_from_bytes::<Fields>(body)
            .map_err(|e| malformed(format!("delta: {e}")))?;
        if !rest.is_empty() {
            return Err(malformed(format!(
                "delta: {} bytes after its last field",
                rest.len()
            )));
        }
        Ok(Delta {
            at: fields.at,
            generation: fields.generation,
            tally: Tally::new(fields.successes, fields.failures, fields.slow),
            agent: fields.agent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_delta_is_a_few_bytes_and_reads_back() {
        let d = Delta::new(
            Timestamp::from_millis(1_700_000_000_000),
            7,
            Tally::new(3, 1, 0),
            42,
        );
        let bytes = d.encode();
        assert!(bytes.len() <= 16, "{} bytes", bytes.len());
        assert_eq!(Delta::decode(&bytes), Ok(d));
    }

    #[test]
    fn foreign_bytes_and_other_layouts_are_refused_by_name() {
        let d = Delta::new(Timestamp::from_millis(5), 1, Tally::new(0, 1, 0), 1);
        let mut bytes = d.encode();
        let err = Delta::decode(b"{\"schema\":1}").unwrap_err();
        assert!(err.to_string().contains("not a delta"), "{err}");
        bytes[1] = 9;
        let err = Delta::decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("layout 9"), "{err}");
        let mut long = d.encode();
        long.push(0);
        let err = Delta::decode(&long).unwrap_err();
        assert!(err.to_string().contains("after its last field"), "{err}");
        let err = Delta::decode(&[MARKER; MAX_DELTA_BYTES + 1]).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    proptest! {
        #[test]
        fn any_delta_round_trips_within_the_size_limit(
            at in any::<u64>(), generation in any::<u64>(), s in any::<u64>(),
            f in any::<u64>(), slow in any::<u64>(), agent in any::<u64>(),
        ) {
            let d = Delta::new(Timestamp::from_millis(at), generation, Tally::new(s, f, slow), agent);
            let bytes = d.encode();
            prop_assert!(bytes.len() <= MAX_DELTA_BYTES);
            prop_assert_eq!(Delta::decode(&bytes), Ok(d));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = Delta::decode(&bytes);
            let mut marked = vec![MARKER];
            marked.extend_from_slice(&bytes);
            let _ = Delta::decode(&marked);
        }
    }
}
