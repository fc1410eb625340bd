//! Counting outcomes by appending them to the log beside the record
//! ([`crate::Policy::append_outcomes`]), and folding a stored log into the view.
//!
//! Under compare-and-swap every outcome's write races the other writers' of the breaker,
//! so an outcome costs more round trips with every writer. An append never conflicts: one
//! round trip per batch of outcomes, returning the record and its log as stored, which the
//! agent folds into its view. A trip is written as the record at once, by a compaction of
//! the view (`Driver::compact`, which keeps the deltas appended meanwhile and conflicts
//! only with a write of the record): by the agent whose view foresees it, or whose append
//! folds to it, so that the open period's expiry, operators' tools and agents at rest see
//! it as the record. Probes and operators' forces are written by compare-and-swap, of the
//! folded view, so that they empty the log too.

use std::sync::Arc;

use crate::error::Operation;
use crate::machine::{self, Tally};
use crate::policy::Policy;
use crate::record::{Delta, Record};
use crate::time::Timestamp;

use super::shared::{Deadline, Inner, Read};

/// Every this many deltas, the agent whose append made the log that long writes the view
/// as the record (compacts it, keeping the deltas appended meanwhile): one agent per so
/// many appends, so compactions cost a thirty-second of a round trip per outcome and never
/// race each other; the bound keeps what every reader loads and folds small.
pub(crate) const LOG_BOUND: usize = 32;

/// A log this long is compacted by any agent that reads it, at its next upkeep: should the
/// designated compactions have failed (a write of the record came between, or the agent
/// went away).
const LOG_LIMIT: usize = 4 * LOG_BOUND;

/// What folding a stored log made of the record it was appended to.
pub(crate) struct Folded {
    /// Whether the view should be written as the record (compacted) by whoever holds it:
    /// the fold made a transition, the log reached [`LOG_LIMIT`], or a delta had to be
    /// dropped.
    pub(crate) compact: bool,
    /// Why the first delta dropped was, if one was: bytes this build cannot read, or a time
    /// beyond what any clock of the fleet could say.
    pub(crate) dropped: Option<String>,
}

/// What counting outcomes takes ([`Inner::what_to_write`]).
enum Write {
    /// Nothing: they change nothing.
    Nothing,
    /// A compare-and-swap through [`Inner::apply`].
    Swap,
    /// A trip: `rec`, revised at `now` from the view at `version` folded from `through`
    /// deltas.
    Trip {
        rec: Record,
        version: Option<u64>,
        through: usize,
        now: Timestamp,
    },
    /// A delta to append, with the record's time to live and the view's install count.
    Delta {
        delta: Vec<u8>,
        ttl: Option<std::time::Duration>,
        seq: u64,
    },
}

impl Inner {
    /// Counts closed-state outcomes of `generation`, as `write_tally` and the flush do:
    /// appended to the log where this breaker appends, else (or where they trip the
    /// breaker, or nothing is stored yet) written into the record. With `only_if_read`,
    /// outcomes that no rule would read in the record as it stands are not written.
    pub(crate) async fn count(
        self: &Arc<Self>,
        generation: u64,
        tally: Tally,
        only_if_read: bool,
        dl: Deadline,
    ) {
        let agent = self.agent;
        let op = |rec: &mut Record, now: Timestamp, policy: &Policy| {
            if only_if_read && !machine::successes_matter(rec, policy, now) {
                return false;
            }
            machine::record_tally_from(rec, policy, now, generation, tally, agent)
        };
        if self.appends && self.append(generation, tally, op, dl).await {
            return;
        }
        self.apply(op, dl).await;
    }

    /// Appends the outcomes, unless they must be written by compare-and-swap: returns
    /// whether they were dealt with (appended, or found to change nothing).
    async fn append(
        self: &Arc<Self>,
        generation: u64,
        tally: Tally,
        op: impl Fn(&mut Record, Timestamp, &Policy) -> bool,
        dl: Deadline,
    ) -> bool {
        // The write to make, judged with the lock held: a trip, or a delta.
        let (delta, ttl, seq) = match self.what_to_write(generation, tally, op) {
            Write::Nothing => return true,
            Write::Swap => return false,
            Write::Trip {
                rec,
                version,
                through,
                now,
            } => {
                // Written as the record, so that the open period begins in the record
                // itself; by a compaction of the view, which outcomes appended since (of
                // the generation that ends) cannot make conflict. Only a write of the
                // record can: then by compare-and-swap from the record that won.
                return match self
                    .swap_once(rec, version, now, Vec::new(), Some(through), dl)
                    .await
                {
                    Ok(landed) => landed,
                    Err(e) => {
                        self.fail(Operation::CompareAndSwap, e);
                        false
                    }
                };
            }
            Write::Delta { delta, ttl, seq } => (delta, ttl, seq),
        };
        let started = self.write_timer();
        // What another agent acts on in a delta that trips nothing (a trip is written as
        // the record, and pushed as such) is whether its own successes matter, which a
        // failure or slow call can change under a rule that reads successes. Successes
        // alone never do (an agent that does not know them writes its own a little longer
        // than it must), and under a rule that reads none nothing in a delta does: such
        // deltas wake no one, and the others' views of the counts catch up at their next
        // read or write.
        let notify = self.needs_successes && (tally.failures > 0 || tally.slow > 0);
        let appended = crate::observe::backend_op(
            self.name,
            self.backend,
            Operation::Append,
            self.driver
                .append(&self.name, delta, ttl, notify, dl.left()),
        )
        .await;
        self.note_write_time(started);
        let compact = match appended {
            Ok(Some(stored)) => {
                let designated = stored.log.len().is_multiple_of(LOG_BOUND);
                let mut s = self.lock();
                let overtaken = s.installs != seq;
                // A push that came while the append ran holds this delta or a compaction of
                // it: a reply no newer is the normal race with other writers, not a store
                // that went back, and needs no read to tell. Otherwise the reply is the
                // store's word as of now.
                if !overtaken || s.version.is_none_or(|cur| cur < stored.version) {
                    self.install_stored(&mut s, Some(stored), false, Read::Conflict);
                }
                s.compact_due || designated
            }
            // Nothing stored any more (expired), or the driver will not append now.
            Ok(None) => return false,
            Err(e) => {
                // Unreachable now: the failure policy takes the outcomes (local fallback).
                self.fail(Operation::Append, e);
                return false;
            }
        };
        if compact {
            self.compact(dl).await;
        }
        true
    }

    /// What counting `tally` takes, judged on the view: nothing (it changes nothing), a
    /// compare-and-swap (degraded, or no record yet), a trip, or a delta to append.
    fn what_to_write(
        &self,
        generation: u64,
        tally: Tally,
        op: impl Fn(&mut Record, Timestamp, &Policy) -> bool,
    ) -> Write {
        let s = self.lock();
        if s.degraded() || s.version.is_none() {
            // The local fallback counts in memory; a record yet to be made is made by
            // compare-and-swap.
            return Write::Swap;
        }
        let now = self.clock.now();
        let mut rec = s.record.clone();
        if !op(&mut rec, now, &self.policy) || rec == s.record {
            return Write::Nothing;
        }
        if rec.generation != s.record.generation {
            return Write::Trip {
                rec,
                version: s.version,
                through: s.log_len,
                now,
            };
        }
        Write::Delta {
            delta: Delta::new(now, generation, tally, self.agent).encode(),
            ttl: machine::record_ttl(&rec, &self.policy, now),
            seq: s.installs,
        }
    }

    /// Writes the view, folded from a log, as the record, keeping the deltas appended
    /// since ([`crate::Driver::compact`]; a driver without a log swaps, which empties it).
    /// One attempt: a conflict means another writer wrote the record meanwhile, whose
    /// record is installed instead, and the next compaction due tries again.
    pub(crate) async fn compact(self: &Arc<Self>, dl: Deadline) {
        let (rec, version, through) = {
            let s = self.lock();
            (s.record.clone(), s.version, s.log_len)
        };
        let now = self.clock.now();
        // On a driver without a log, `compact` is the compare-and-swap it stands for.
        if let Err(e) = self
            .swap_once(rec, version, now, Vec::new(), Some(through), dl)
            .await
        {
            self.fail(Operation::CompareAndSwap, e);
        }
    }

    /// Notes that the view was folded from `log`, whose compaction is now `due`; reports
    /// a delta that had to be dropped.
    pub(crate) fn note_log(
        &self,
        s: &mut super::shared::Shared,
        log: &[Vec<u8>],
        due: bool,
        dropped: Option<String>,
    ) {
        s.compact_due = due;
        s.log_len = log.len();
        s.log_tail = super::shared::log_tail(log);
        if let Some(reason) = dropped {
            self.report_corrupt(reason);
        }
    }

    /// Whether the view holds a log that its upkeep should write into the record: one due
    /// ([`Folded::compact`]), or any log once the record is quiet (nothing in it can come
    /// due), so that an idle breaker holds no log in the back-end.
    pub(crate) fn log_to_compact(&self, s: &super::shared::Shared, now: Timestamp) -> bool {
        s.compact_due || s.log_len > 0 && machine::quiet(&s.record, &self.policy, now)
    }

    /// Folds the deltas of a stored `log` from index `from` on onto `rec`: the record they
    /// were appended to with the deltas before `from` folded, as read at `now`.
    pub(crate) fn fold_log(
        &self,
        rec: &mut Record,
        log: &[Vec<u8>],
        from: usize,
        now: Timestamp,
    ) -> Folded {
        let generation = rec.generation;
        let latest = now.saturating_add(machine::CLOCK_MARGIN);
        let mut dropped = None;
        let mut deltas = Vec::with_capacity(log.len().saturating_sub(from));
        for (i, bytes) in log.iter().enumerate().skip(from) {
            match Delta::decode(bytes) {
                Ok(d) if d.at <= latest => deltas.push(d),
                Ok(d) => {
                    dropped.get_or_insert_with(|| {
                        format!(
                            "delta {i} of the log dropped: counted {:?} from now, beyond any \
                             clock of the fleet",
                            d.at.saturating_duration_since(now)
                        )
                    });
                }
                Err(e) => {
                    let why = match e {
                        crate::RecordError::Malformed { reason, bytes } => {
                            format!("{reason} ({bytes} bytes)")
                        }
                        other => other.to_string(),
                    };
                    dropped.get_or_insert_with(|| format!("delta {i} of the log dropped: {why}"));
                }
            }
        }
        machine::fold(rec, &self.policy, &deltas);
        Folded {
            compact: rec.generation != generation || log.len() >= LOG_LIMIT || dropped.is_some(),
            dropped,
        }
    }
}
