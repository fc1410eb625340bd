//! Deadlines a back-end keeps itself: the open period and half-open probe leases run as
//! back-end timers (etcd leases) where the driver offers them, so that no agent's clock
//! decides when they end.
//!
//! A breaker whose driver keeps timers ([`crate::Driver::keeps_timers`]) and that was given
//! no clock starts a timer in the same atomic write that starts the open period or grants a
//! probe lease, and judges those two deadlines by whether the back-end still runs the timer,
//! not by comparing the record's timestamps with its own clock. The timestamps stay in the
//! record as estimates (for `retry_after`) and for agents that judge by a clock.

use std::time::Duration;

use crate::policy::Policy;
use crate::record::{Record, State};
use crate::time::Timestamp;

/// A timer a back-end keeps for one breaker's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Timer {
    /// The open period of `generation`: the breaker may probe once it has run out.
    OpenPeriod {
        /// The generation that opened the breaker.
        generation: u64,
    },
    /// A half-open probe lease: its slot may be claimed again once it has run out.
    ProbeLease {
        /// The half-open period's generation.
        generation: u64,
        /// The lease's id within the record.
        lease: u64,
    },
}

/// Which of a record's deadlines are still running, as the back-end that keeps them says.
/// Only the record's own generation counts: timers of older generations mean nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunningTimers {
    /// The open period of the record's generation is still running.
    pub open_period: bool,
    /// Ids of the record's probe leases that are still running.
    pub leases: Vec<u64>,
}

impl RunningTimers {
    /// The timers among `running` that belong to `generation`.
    pub fn of(generation: u64, running: &[Timer]) -> Self {
        let mut out = RunningTimers::default();
        for timer in running {
            match *timer {
                Timer::OpenPeriod { generation: g } if g == generation => out.open_period = true,
                Timer::ProbeLease {
                    generation: g,
                    lease,
                } if g == generation => out.leases.push(lease),
                _ => {}
            }
        }
        out
    }
}

/// The timers a write from `before` to `after` starts, with how long each runs: the open
/// period of a new opening (none when it is zero: the breaker may probe at once), and each
/// newly granted probe lease.
pub fn started(
    before: &Record,
    after: &Record,
    policy: &Policy,
    now: Timestamp,
) -> Vec<(Timer, Duration)> {
    let mut out = Vec::new();
    let new_generation = after.generation != before.generation;
    if after.state == State::Open && new_generation {
        let period = after
            .open_until
            .map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
        if !period.is_zero() {
            out.push((
                Timer::OpenPeriod {
                    generation: after.generation,
                },
                period.min(crate::machine::MAX_BACKEND_TTL),
            ));
        }
    }
    if after.state == State::HalfOpen {
        for lease in &after.leases {
            let known = !new_generation && before.leases.iter().any(|l| l.id == lease.id);
            if !known {
                out.push((
                    Timer::ProbeLease {
                        generation: after.generation,
                        lease: lease.id,
                    },
                    policy.probe_lease.min(crate::machine::MAX_BACKEND_TTL),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{self, Claim};

    fn policy() -> Policy {
        Policy::builder()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(30))
            .half_open_permits(2)
            .probe_lease(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    fn timed(mut rec: Record) -> Record {
        rec.timers = Some(RunningTimers::default());
        rec
    }

    #[test]
    fn a_trip_starts_the_open_period_and_a_claim_its_lease() {
        let policy = policy();
        let t0 = Timestamp::from_millis(1_000);
        let closed = timed(Record::new());
        let mut open = closed.clone();
        machine::record_tally(&mut open, &policy, t0, 0, machine::Tally::new(0, 1, 0));
        assert_eq!(
            started(&closed, &open, &policy, t0),
            vec![(Timer::OpenPeriod { generation: 1 }, Duration::from_secs(30))]
        );
        // Judged by the timer, not by the clock: long after the record's deadline, the
        // breaker is still open while the back-end runs the timer.
        let late = t0.saturating_add(Duration::from_secs(3_600));
        assert!(matches!(
            machine::admission(&open, late),
            machine::Admission::Reject { .. }
        ));
        let mut ended = open.clone();
        ended.timers = Some(RunningTimers::of(ended.generation, &[]));
        let mut half = ended.clone();
        let claim = machine::claim_probe(&mut half, &policy, t0);
        assert!(matches!(claim, Claim::Probe { lease: 1, .. }), "{claim:?}");
        assert_eq!(
            started(&ended, &half, &policy, t0),
            vec![(
                Timer::ProbeLease {
                    generation: 2,
                    lease: 1
                },
                Duration::from_secs(10)
            )]
        );
        // A second claim starts only its own lease.
        let mut second = half.clone();
        machine::claim_probe(&mut second, &policy, t0);
        assert_eq!(
            started(&half, &second, &policy, t0),
            vec![(
                Timer::ProbeLease {
                    generation: 2,
                    lease: 2
                },
                Duration::from_secs(10)
            )]
        );
    }

    #[test]
    fn a_lease_whose_timer_ran_out_frees_its_slot_whatever_the_clock_says() {
        let policy = Policy::builder()
            .consecutive_failures(1)
            .half_open_permits(1)
            .build()
            .unwrap();
        let t0 = Timestamp::from_millis(1_000);
        let mut rec = timed(Record::new());
        rec.state = State::Open;
        rec.generation = 4;
        rec.timers = Some(RunningTimers::default());
        assert!(matches!(
            machine::claim_probe(&mut rec, &policy, t0),
            Claim::Probe { .. }
        ));
        // The slot is held while its timer runs, even on a clock far past its expiry.
        let far = t0.saturating_add(Duration::from_secs(3_600));
        let mut other = rec.clone();
        assert!(matches!(
            machine::claim_probe(&mut other, &policy, far),
            Claim::Reject { .. }
        ));
        // Once the back-end says it ran out, the slot is free, even at the same instant.
        let mut lapsed = rec.clone();
        lapsed.timers = Some(RunningTimers::of(lapsed.generation, &[]));
        assert!(matches!(
            machine::claim_probe(&mut lapsed, &policy, t0),
            Claim::Probe { lease: 2, .. }
        ));
        // And the late holder's report is ignored.
        assert!(!machine::settle_probe(
            &mut lapsed,
            &policy,
            t0,
            5,
            1,
            crate::Outcome::Success
        ));
    }

    #[test]
    fn only_the_records_generation_counts() {
        let running = [
            Timer::OpenPeriod { generation: 3 },
            Timer::ProbeLease {
                generation: 4,
                lease: 7,
            },
            Timer::ProbeLease {
                generation: 5,
                lease: 8,
            },
        ];
        assert_eq!(
            RunningTimers::of(4, &running),
            RunningTimers {
                open_period: false,
                leases: vec![7]
            }
        );
    }

    #[test]
    fn a_zero_open_period_starts_no_timer() {
        let policy = Policy::builder()
            .consecutive_failures(1)
            .open_for(Duration::ZERO)
            .build()
            .unwrap();
        let t0 = Timestamp::from_millis(1_000);
        let closed = timed(Record::new());
        let mut open = closed.clone();
        machine::record_tally(&mut open, &policy, t0, 0, machine::Tally::new(0, 1, 0));
        assert_eq!(open.state, State::Open);
        assert!(started(&closed, &open, &policy, t0).is_empty());
        assert!(matches!(
            machine::admission(&open, t0),
            machine::Admission::Probe
        ));
    }
}
