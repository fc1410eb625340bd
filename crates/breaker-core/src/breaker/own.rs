//! The agent's own breaker under a quorum ([`Policy::min_agents`]): one sick agent cannot
//! open the fleet's breaker, but it still protects itself and its callee. It counts its own
//! outcomes in a record of its own, by the same policy without the quorum; when they meet a
//! trip rule while the fleet's breaker stays closed, it opens that breaker for itself alone:
//! its calls are rejected here, its probes are its own, and nothing of it is written for the
//! fleet but the probes' outcomes (so that its id stays in the window, and a second sick
//! agent makes the quorum). Its transitions are reported with [`Cause::Local`]. The fleet's
//! own transitions, and forced states, take over from it.

use std::sync::Arc;

use crate::error::Rejected;
use crate::events::{Cause, Event};
use crate::machine::{self, Admission, Claim, Tally};
use crate::outcome::Outcome;
use crate::policy::Policy;
use crate::record::{Record, State};

use super::permit::{Admitted, Permit};
use super::shared::{Inner, Shared};

/// The policy of an agent's own breaker: the fleet's, without the quorum; `None` when the
/// fleet's policy has none (and the agent keeps no breaker of its own).
pub(crate) fn own_policy(policy: &Policy) -> Option<Box<Policy>> {
    (policy.min_agents > 1).then(|| {
        Box::new(Policy {
            min_agents: 1,
            ..policy.clone()
        })
    })
}

impl Shared {
    /// Whether the agent's own breaker is the one in charge: it tripped, and the fleet's is
    /// closed and reachable (an open or forced fleet breaker, or the local fallback of an
    /// unreachable back-end, decides instead).
    pub(crate) fn own_in_charge(&self) -> bool {
        self.own
            .as_ref()
            .is_some_and(|own| own.state != State::Closed)
            && self.record.state == State::Closed
            && !self.degraded()
    }

    /// The record that admission and [`crate::Breaker::state`] go by.
    pub(crate) fn view(&self) -> &Record {
        match &self.own {
            Some(own) if self.own_in_charge() => own,
            _ => &self.record,
        }
    }

    /// The agent's own breaker, made closed at its first outcome (a breaker without a quorum
    /// never has one, and holds no record for it).
    fn own_mut(&mut self) -> &mut Record {
        self.own.get_or_insert_with(Box::default)
    }
}

impl Inner {
    /// Counts this agent's own closed-state outcomes in its own breaker, and opens it for
    /// this agent alone when they meet a trip rule while the fleet's breaker stays closed.
    pub(crate) fn count_own(&self, tally: Tally) {
        let Some(policy) = &self.own_policy else {
            return;
        };
        if tally.is_empty() {
            return;
        }
        let now = self.clock.now();
        let mut s = self.lock();
        if s.record.state != State::Closed || s.degraded() {
            return;
        }
        let own = s.own_mut();
        let generation = own.generation;
        // Counted only while its own breaker is closed (a probe's outcome settles it instead).
        let counted = machine::record_tally(own, policy, now, generation, tally);
        if counted && own.state == State::Open {
            self.own_transition(&mut s, State::Closed);
        }
    }

    /// Admission by the agent's own breaker while it is in charge (see
    /// [`Shared::own_in_charge`]); `None`: the fleet's breaker decides.
    pub(crate) fn admit_own<'a>(
        self: &'a Arc<Self>,
        reject: impl FnOnce(State, Option<crate::Timestamp>) -> Rejected,
    ) -> Option<Result<Permit<'a>, Rejected>> {
        let policy = self.own_policy.as_ref()?;
        let now = self.clock.now();
        let mut s = self.lock();
        if !s.own_in_charge() {
            return None;
        }
        let own = s.own_mut();
        match machine::admission(own, now) {
            Admission::Admit { .. } => None,
            Admission::Reject { retry_at } => Some(Err(reject(own.state, retry_at))),
            Admission::Probe => {
                let before = own.state;
                let claim = machine::claim_probe(own, policy, now);
                let after = own.state;
                if after != before {
                    self.own_transition(&mut s, before);
                }
                match claim {
                    Claim::Probe { generation, lease } => {
                        Some(Ok(Permit::new(self, Admitted::Own { generation, lease })))
                    }
                    Claim::Reject { retry_at } => Some(Err(reject(after, retry_at))),
                    Claim::Admit { .. } => None,
                }
            }
        }
    }

    /// Settles a probe of the agent's own breaker: it closes or opens again by its outcome.
    /// A failure or a success also goes to the fleet's record as an ordinary outcome of this
    /// agent, so that the quorum still sees it failing.
    pub(crate) fn settle_own(self: &Arc<Self>, generation: u64, lease: u64, outcome: Outcome) {
        let Some(policy) = &self.own_policy else {
            return;
        };
        crate::observe::call(self.name, self.backend, outcome);
        let now = self.clock.now();
        let fleet = {
            let mut s = self.lock();
            let own = s.own_mut();
            let before = own.state;
            machine::settle_probe(own, policy, now, generation, lease, outcome);
            if own.state != before {
                self.own_transition(&mut s, before);
            }
            (s.record.state == State::Closed).then_some(s.record.generation)
        };
        if let (Some(generation), Outcome::Success | Outcome::Failure) = (fleet, outcome) {
            self.send_later(generation, Tally::of(outcome, false));
        }
    }

    /// Reports a transition of the agent's own breaker from `from`, and shows the view that
    /// admission now goes by.
    fn own_transition(&self, s: &mut Shared, from: State) {
        let own = s.own_mut();
        let (to, generation) = (own.state, own.generation);
        crate::observe::transition(
            self.name,
            self.backend,
            from,
            to,
            generation,
            Cause::Local,
            false,
            &self.policy,
        );
        self.events.emit(Event::Transition {
            breaker: self.name,
            from,
            to,
            generation,
            cause: Cause::Local,
            at: self.clock.now(),
        });
        self.publish_view(s);
    }

    /// Publishes the record admission goes by to the hot path. The agent's own breaker, when
    /// in charge, always takes the slow path (flagged as degraded there), which asks it.
    pub(crate) fn publish_view(&self, s: &Shared) {
        match &s.own {
            Some(own) if s.own_in_charge() => self.hot.publish(own, true, s.version.is_some()),
            _ => self
                .hot
                .publish(&s.record, s.degraded(), s.version.is_some()),
        }
    }
}
