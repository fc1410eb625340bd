//! The breaker's state machine as pure functions over a [`Record`]: no I/O, no clock reads.
//! The agent, the local fallback and any server-side fast path all go through these.

use std::time::Duration;

use crate::policy::{Policy, TripRule};
use crate::record::{Bucket, Lease, Record, State};
use crate::time::{Timestamp, millis_of};
use crate::timers::RunningTimers;

/// Counts of outcomes recorded in one generation, written as one batch. Within a batch the
/// successes are taken to come before the failures: a failure is written at once, together
/// with the successes batched before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tally {
    /// Successful calls.
    pub successes: u64,
    /// Failed calls (including slow calls that count as failures).
    pub failures: u64,
    /// Slow calls among them.
    pub slow: u64,
}

impl Tally {
    /// The tally of one call's outcome (nothing for an ignored call).
    pub fn of(outcome: crate::Outcome, slow: bool) -> Self {
        let slow = u64::from(slow);
        match outcome {
            crate::Outcome::Success => Tally::new(1, 0, slow),
            crate::Outcome::Failure => Tally::new(0, 1, slow),
            crate::Outcome::Ignored => Tally::default(),
        }
    }

    /// Both tallies together, saturating.
    pub fn plus(self, other: Tally) -> Self {
        Tally {
            successes: self.successes.saturating_add(other.successes),
            failures: self.failures.saturating_add(other.failures),
            slow: self.slow.saturating_add(other.slow),
        }
    }

    /// A tally of these counts.
    pub fn new(successes: u64, failures: u64, slow: u64) -> Self {
        Tally {
            successes,
            failures,
            slow,
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.successes == 0 && self.failures == 0 && self.slow == 0
    }
}

/// What a record says about admitting a call, judged without changing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Let the call through; it belongs to this generation.
    Admit {
        /// Generation the call is admitted in.
        generation: u64,
    },
    /// Reject; a retry may succeed at `retry_at` (never, for a forced-open breaker).
    Reject {
        /// When the open period ends, if it ends by itself.
        retry_at: Option<Timestamp>,
    },
    /// The call may only go through as a half-open probe, claimed with [`claim_probe`].
    Probe,
}

/// The state a reader reports at `now`: the stored state, except that an open breaker whose
/// open period is over is half-open (the end is inclusive), whether or not a probe was
/// claimed yet, since a call made now would be admitted as a probe. Every reader of state
/// (the API, the CLI, metrics) goes through this one function.
pub fn effective_state(rec: &Record, now: Timestamp) -> State {
    match rec.state {
        State::Open if rec.open_period_over(now) => State::HalfOpen,
        state => state,
    }
}

/// The highest generation a sane record holds: 2^50, which a breaker changing state a
/// thousand times a second reaches in 35,000 years. Far inside what the hot path packs into
/// its one word, so every generation of a sane record is represented exactly there.
pub const MAX_GENERATION: u64 = 1 << 50;

/// How far ahead of a reader's clock a sane record's deadlines and buckets may lie beyond
/// what its policy allows, for clocks that differ a little between hosts.
pub const CLOCK_MARGIN: Duration = Duration::from_secs(10);

/// Checks the invariants that a record decoded from the back-end must hold for this policy
/// at `now` before any agent acts on it; the error says which one it breaks. Every byte in
/// the back-end is untrusted, and a record that decodes but breaks one of these would
/// otherwise wedge the breaker (a half-open period that can never admit or close, an open
/// period an hour too long written by a skewed writer, failures in buckets of the future) or
/// defeat it (generations the hot path cannot represent). A record that fails the check is
/// reported as corrupt and replaced, as one that cannot be decoded.
pub fn check(rec: &Record, policy: &Policy, now: Timestamp) -> Result<(), String> {
    if rec.generation > MAX_GENERATION {
        return Err(format!(
            "generation {} is beyond {MAX_GENERATION}",
            rec.generation
        ));
    }
    let judged_by_clock = rec.timers.is_none();
    let latest = |period: Duration| now.saturating_add(period.saturating_add(CLOCK_MARGIN));
    if rec.state == State::Open
        && judged_by_clock
        && let Some(until) = rec.open_until
    {
        let longest = policy.longest_open_period();
        if until > latest(longest) {
            return Err(format!(
                "its open period ends {:?} from now, beyond the policy's longest ({longest:?})",
                until.saturating_duration_since(now)
            ));
        }
    }
    if rec.state == State::HalfOpen {
        let permits = usize::try_from(policy.half_open_permits).unwrap_or(usize::MAX);
        if rec.leases.len() > permits {
            return Err(format!(
                "{} probe leases, more than the {permits} permits",
                rec.leases.len()
            ));
        }
        if rec.probe_successes >= policy.success_threshold {
            return Err(format!(
                "half-open with {} probe successes, enough to have closed",
                rec.probe_successes
            ));
        }
        if judged_by_clock
            && let Some(lease) = rec
                .leases
                .iter()
                .find(|l| l.expires_at > latest(policy.probe_lease))
        {
            return Err(format!(
                "probe lease {} lapses {:?} from now, beyond the policy's lease",
                lease.id,
                lease.expires_at.saturating_duration_since(now)
            ));
        }
    }
    let current = now.as_millis() / bucket_millis(policy);
    let margin = millis_of(CLOCK_MARGIN) / bucket_millis(policy);
    let in_the_future = |index: u64| index > current.saturating_add(margin);
    if let Some(b) = rec.buckets.iter().find(|b| in_the_future(b.index)) {
        return Err(format!(
            "window bucket {} lies in the future (now is bucket {current})",
            b.index
        ));
    }
    if rec.buckets.len() > MAX_BUCKETS {
        return Err(format!(
            "{} window buckets, more than a window holds",
            rec.buckets.len()
        ));
    }
    if rec.failing_agents.len() > crate::policy::MAX_MIN_AGENTS as usize {
        return Err(format!(
            "{} failing agents, more than any quorum keeps",
            rec.failing_agents.len()
        ));
    }
    if let Some(a) = rec.failing_agents.iter().find(|a| in_the_future(a.bucket)) {
        return Err(format!(
            "agent {} failed in bucket {}, which lies in the future (now is bucket {current})",
            a.agent, a.bucket
        ));
    }
    Ok(())
}

/// More buckets than any writer keeps (ten live ones, plus slack for clocks that differ).
const MAX_BUCKETS: usize = 64;

/// Judges admission from a record (for example an agent's cached view).
pub fn admission(rec: &Record, now: Timestamp) -> Admission {
    match rec.state {
        State::Closed | State::ForcedClosed => Admission::Admit {
            generation: rec.generation,
        },
        State::ForcedOpen => Admission::Reject { retry_at: None },
        State::Open if !rec.open_period_over(now) => Admission::Reject {
            retry_at: rec.open_until,
        },
        State::Open => Admission::Probe,
        State::HalfOpen => Admission::Probe,
    }
}

/// The answer to a probe claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The breaker is closed after all: an ordinary call in this generation.
    Admit {
        /// Generation the call is admitted in.
        generation: u64,
    },
    /// A probe permit, held as a lease.
    Probe {
        /// Generation of the half-open period.
        generation: u64,
        /// The lease to settle with [`settle_probe`].
        lease: u64,
    },
    /// No permit is free.
    Reject {
        /// When one may be, if known.
        retry_at: Option<Timestamp>,
    },
}

/// Claims a half-open probe permit: moves an open breaker whose period has ended to
/// half-open, drops lapsed leases, and grants a lease if fewer than `half_open_permits`
/// probes were admitted in this half-open period.
pub fn claim_probe(rec: &mut Record, policy: &Policy, now: Timestamp) -> Claim {
    match admission(rec, now) {
        Admission::Admit { generation } => return Claim::Admit { generation },
        Admission::Reject { retry_at } => return Claim::Reject { retry_at },
        Admission::Probe => {}
    }
    if rec.state == State::Open {
        begin(rec, State::HalfOpen, now);
    }
    let live: Vec<Lease> = rec
        .leases
        .iter()
        .filter(|l| rec.lease_live(l, now))
        .copied()
        .collect();
    rec.leases = live;
    let admitted = rec.leases.len() as u64 + u64::from(rec.probe_successes);
    if admitted < u64::from(policy.half_open_permits) {
        let lease = Lease {
            id: rec.next_lease_id,
            expires_at: now.saturating_add(policy.probe_lease),
        };
        rec.next_lease_id = rec.next_lease_id.saturating_add(1);
        rec.leases.push(lease);
        // The write that grants the lease starts its timer.
        if let Some(timers) = &mut rec.timers {
            timers.leases.push(lease.id);
        }
        Claim::Probe {
            generation: rec.generation,
            lease: lease.id,
        }
    } else {
        Claim::Reject {
            retry_at: half_open_retry_at(rec, policy, now),
        }
    }
}

/// When a call rejected while half-open may be admitted: the probes out now settle first.
/// Should one succeed, the breaker closes at once; should it fail, the breaker reopens for
/// its next open period; should its holder vanish, its lease lapses. The hint is the
/// earlier of the last two, so a client told to come back then is not sent away for the
/// whole lease (10 s by default) when the next probe is due sooner.
fn half_open_retry_at(rec: &Record, policy: &Policy, now: Timestamp) -> Option<Timestamp> {
    let lapse = rec.leases.iter().map(|l| l.expires_at).min();
    let reopened = now.saturating_add(policy.open_period(rec.openings.saturating_add(1)));
    Some(lapse.map_or(reopened, |lapse| lapse.min(reopened)))
}

/// Settles a probe with its outcome. Returns `false`, changing nothing, when the report is
/// stale: another generation, or a lease that lapsed or is unknown.
pub fn settle_probe(
    rec: &mut Record,
    policy: &Policy,
    now: Timestamp,
    generation: u64,
    lease: u64,
    outcome: crate::Outcome,
) -> bool {
    if rec.generation != generation || rec.state != State::HalfOpen {
        return false;
    }
    let Some(pos) = rec
        .leases
        .iter()
        .position(|l| l.id == lease && rec.lease_live(l, now))
    else {
        return false;
    };
    rec.leases.remove(pos);
    match outcome {
        crate::Outcome::Success => {
            rec.probe_successes = rec.probe_successes.saturating_add(1);
            if rec.probe_successes >= policy.success_threshold {
                begin(rec, State::Closed, now);
                rec.openings = 0;
            }
        }
        crate::Outcome::Failure => trip(rec, policy, now),
        crate::Outcome::Ignored => {}
    }
    true
}

/// [`record_tally_from`] by an agent of no known id ([`UNKNOWN_AGENT`]): for tools and tests.
pub fn record_tally(
    rec: &mut Record,
    policy: &Policy,
    now: Timestamp,
    generation: u64,
    tally: Tally,
) -> bool {
    record_tally_from(rec, policy, now, generation, tally, UNKNOWN_AGENT)
}

/// The agent id of a writer that has none; under a quorum it counts as one agent.
pub const UNKNOWN_AGENT: u64 = 0;

/// Adds a batch of closed-state outcomes of `agent` and trips the breaker if a rule says so
/// (and, under a quorum, enough distinct agents failed within the window). Returns `false`,
/// changing nothing, when the batch is from another generation or the breaker is not
/// closed.
pub fn record_tally_from(
    rec: &mut Record,
    policy: &Policy,
    now: Timestamp,
    generation: u64,
    tally: Tally,
    agent: u64,
) -> bool {
    if rec.generation != generation || !matches!(rec.state, State::Closed | State::ForcedClosed) {
        return false;
    }
    if tally.is_empty() {
        return true;
    }
    let bucket_ms = bucket_millis(policy);
    let index = now.as_millis() / bucket_ms;
    prune(rec, index);
    match rec.buckets.last_mut() {
        Some(b) if b.index == index => add(b, tally),
        _ => {
            let mut b = Bucket {
                index,
                ..Bucket::default()
            };
            add(&mut b, tally);
            // A writer whose clock lags may add to an older slice; keep the list ordered.
            let at = rec.buckets.partition_point(|x| x.index < index);
            if rec.buckets.get(at).is_some_and(|x| x.index == index) {
                add(&mut rec.buckets[at], tally);
            } else {
                rec.buckets.insert(at, b);
            }
        }
    }
    if tally.failures > 0 && policy.min_agents > 1 {
        note_failing_agent(rec, policy, agent, index);
    }
    if tally.failures > 0 {
        let run = u32::try_from(tally.failures).unwrap_or(u32::MAX);
        rec.consecutive_failures = if tally.successes > 0 {
            run
        } else {
            rec.consecutive_failures.saturating_add(run)
        };
    } else if tally.successes > 0 {
        rec.consecutive_failures = 0;
    }
    if rec.state == State::Closed && should_trip(rec, policy, now) {
        trip(rec, policy, now);
    }
    true
}

/// Folds a breaker's log onto its record: each delta, in the order appended, counted as
/// [`record_tally_from`] counts it, at the delta's own time. The record then holds what it
/// would had each delta been written into it by compare-and-swap as it was appended, so
/// every reader of one record and log derives the same state, a trip included (it begins at
/// the time of the delta that caused it); deltas of an older generation, and those after a
/// trip, change nothing. Returns how many deltas counted.
pub fn fold(rec: &mut Record, policy: &Policy, deltas: &[crate::record::Delta]) -> usize {
    let mut counted = 0;
    for d in deltas {
        let generation = rec.generation;
        if !d.tally.is_empty()
            && record_tally_from(rec, policy, d.at, d.generation, d.tally, d.agent)
        {
            counted += 1;
            if rec.generation != generation {
                // The transition is the doing of the agent whose outcomes caused it.
                rec.writer = d.agent;
            }
        }
    }
    counted
}

/// A stored record with its log folded onto it ([`fold`]), as a breaker of `policy` reads
/// it: for tools and tests that read the store directly. A delta this build cannot read is
/// an error here (a breaker drops it, reporting it, and counts the rest).
pub fn read_stored(
    value: &[u8],
    log: &[Vec<u8>],
    policy: &Policy,
) -> Result<Record, crate::RecordError> {
    let mut rec = Record::decode(value)?;
    let deltas = log
        .iter()
        .map(|d| crate::record::Delta::decode(d))
        .collect::<Result<Vec<_>, _>>()?;
    fold(&mut rec, policy, &deltas);
    Ok(rec)
}

/// Whether writing successes to `rec` at `now` could change what a trip rule decides: a
/// success resets a run of consecutive failures, and it lowers a failure (or slow-call) rate
/// once the window holds failures (slow calls). Under a rule that counts failures alone, or
/// with nothing for a success to dilute, successes change nothing and a healthy fleet need
/// not write them. Only a closed breaker's successes count at all.
pub fn successes_matter(rec: &Record, policy: &Policy, now: Timestamp) -> bool {
    if rec.state != State::Closed {
        return false;
    }
    let window = window_counts(rec, policy, now);
    policy.trip_rules.iter().any(|rule| match rule {
        TripRule::FailuresInWindow { .. } => false,
        TripRule::ConsecutiveFailures { .. } => rec.consecutive_failures > 0,
        TripRule::FailureRate { .. } => window.failures > 0,
        TripRule::SlowCallRate { .. } => window.slow > 0,
    })
}

/// Whether `rec` is closed with nothing a rule could build on: no failure or slow call in
/// the window at `now`, no run of consecutive failures, no failing agent. Such a record
/// changes only by a new outcome, so nothing about it comes due with time.
pub fn quiet(rec: &Record, policy: &Policy, now: Timestamp) -> bool {
    let window = window_counts(rec, policy, now);
    rec.state == State::Closed
        && window.failures == 0
        && window.slow == 0
        && rec.consecutive_failures == 0
        && rec.failing_agents.is_empty()
}

/// Counts in the sliding window at `now`.
pub fn window_counts(rec: &Record, policy: &Policy, now: Timestamp) -> Tally {
    let oldest = oldest_live_index(now.as_millis() / bucket_millis(policy));
    rec.buckets
        .iter()
        .filter(|b| b.index >= oldest)
        // Saturating: the counts come from a record, which any writer may have planted.
        .fold(Tally::default(), |t, b| Tally {
            successes: t.successes.saturating_add(b.successes),
            failures: t.failures.saturating_add(b.failures),
            slow: t.slow.saturating_add(b.slow),
        })
}

/// An operator's force-open or force-closed. Starts a new generation with fresh counters.
pub fn force(rec: &mut Record, now: Timestamp, state: Forced) {
    begin(
        rec,
        match state {
            Forced::Open => State::ForcedOpen,
            Forced::Closed => State::ForcedClosed,
        },
        now,
    );
    rec.openings = 0;
    rec.operator = true;
}

/// A state an operator can force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Forced {
    /// Reject every call.
    Open,
    /// Admit every call; nothing trips.
    Closed,
}

/// Resets the breaker to closed with fresh counters and no backoff history.
pub fn reset(rec: &mut Record, now: Timestamp) {
    begin(rec, State::Closed, now);
    rec.openings = 0;
    rec.operator = true;
}

/// The longest expiry or timer a breaker asks of a back-end: ten years. Every valid policy
/// must work on every back-end, and back-ends have limits (Redis keeps expiry times as
/// milliseconds in a signed 64-bit integer, etcd refuses leases over 9·10⁹ s), so a longer
/// period, up to `Duration::MAX`, is asked for as this; a breaker open for ten years is open
/// for good as far as anyone can tell.
pub const MAX_BACKEND_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3_600);

/// How long the back-end should keep the record: forced states forever, an open breaker at
/// least until its open period ends, others for the idle expiry; never longer than
/// [`MAX_BACKEND_TTL`].
pub fn record_ttl(rec: &Record, policy: &Policy, now: Timestamp) -> Option<Duration> {
    let ttl = match rec.state {
        State::ForcedOpen | State::ForcedClosed => return None,
        State::Open => rec
            .open_until
            .map_or(Duration::ZERO, |u| u.saturating_duration_since(now))
            .saturating_add(policy.record_ttl),
        State::Closed | State::HalfOpen => policy.record_ttl,
    };
    Some(ttl.min(MAX_BACKEND_TTL))
}

/// The jitter added to the open period of `generation`: the same for every agent.
pub fn jitter(policy: &Policy, generation: u64) -> Duration {
    let max = millis_of(policy.jitter);
    if max == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(splitmix64(generation) % (max + 1))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Enters `state` as a new generation with fresh counters.
fn begin(rec: &mut Record, state: State, now: Timestamp) {
    rec.generation = rec.generation.saturating_add(1);
    rec.state = state;
    rec.since = now;
    rec.open_until = None;
    rec.consecutive_failures = 0;
    rec.buckets.clear();
    rec.leases.clear();
    rec.probe_successes = 0;
    rec.operator = false;
    rec.failing_agents.clear();
    // A new generation has no timers running yet.
    if let Some(timers) = &mut rec.timers {
        *timers = RunningTimers::default();
    }
}

fn trip(rec: &mut Record, policy: &Policy, now: Timestamp) {
    begin(rec, State::Open, now);
    rec.openings = rec.openings.saturating_add(1);
    let period = policy
        .open_period(rec.openings)
        .saturating_add(jitter(policy, rec.generation));
    rec.open_until = Some(now.saturating_add(period));
    // The write that opens the breaker starts the timer (none for a zero period).
    if let Some(timers) = &mut rec.timers {
        timers.open_period = !period.is_zero();
    }
}

/// Records that `agent` failed in slice `index`: its entry moves to the end (the newest),
/// and the oldest entry makes room when the list holds a quorum already, since a quorum of
/// `min_agents` needs no more ids than that.
fn note_failing_agent(rec: &mut Record, policy: &Policy, agent: u64, index: u64) {
    rec.failing_agents.retain(|a| a.agent != agent);
    let room = usize::try_from(policy.min_agents)
        .unwrap_or(usize::MAX)
        .max(1);
    while rec.failing_agents.len() >= room {
        rec.failing_agents.remove(0);
    }
    rec.failing_agents
        .push(crate::record::FailingAgent::new(agent, index));
}

/// The distinct agents that failed within the window at `now`, as the record knows them.
pub fn failing_agents(rec: &Record, policy: &Policy, now: Timestamp) -> usize {
    let oldest = oldest_live_index(now.as_millis() / bucket_millis(policy));
    let mut live: Vec<u64> = rec
        .failing_agents
        .iter()
        .filter(|a| a.bucket >= oldest)
        .map(|a| a.agent)
        .collect();
    live.sort_unstable();
    live.dedup();
    live.len()
}

/// Whether the quorum of [`Policy::min_agents`] holds at `now` (always, without one).
pub fn quorum_met(rec: &Record, policy: &Policy, now: Timestamp) -> bool {
    policy.min_agents <= 1
        || failing_agents(rec, policy, now)
            >= usize::try_from(policy.min_agents).unwrap_or(usize::MAX)
}

fn should_trip(rec: &Record, policy: &Policy, now: Timestamp) -> bool {
    rule_met(rec, policy, now) && quorum_met(rec, policy, now)
}

/// Whether a trip rule's own condition holds on `rec` at `now`, quorum aside.
pub fn rule_met(rec: &Record, policy: &Policy, now: Timestamp) -> bool {
    let counts = window_counts(rec, policy, now);
    let calls = counts.successes.saturating_add(counts.failures);
    policy.trip_rules.iter().any(|rule| match *rule {
        TripRule::FailuresInWindow { failures } => counts.failures >= u64::from(failures),
        TripRule::ConsecutiveFailures { failures } => rec.consecutive_failures >= failures,
        TripRule::FailureRate { rate, min_calls } => {
            calls >= u64::from(min_calls) && counts.failures as f64 >= rate * calls as f64
        }
        TripRule::SlowCallRate { rate, min_calls } => {
            calls >= u64::from(min_calls) && counts.slow as f64 >= rate * calls as f64
        }
    })
}

fn bucket_millis(policy: &Policy) -> u64 {
    (millis_of(policy.window) / 10).max(1)
}

/// The oldest slice still inside a window whose newest slice is `current`.
fn oldest_live_index(current: u64) -> u64 {
    current.saturating_sub(9)
}

fn prune(rec: &mut Record, current: u64) {
    let oldest = oldest_live_index(current);
    rec.buckets.retain(|b| b.index >= oldest);
    rec.failing_agents.retain(|a| a.bucket >= oldest);
}

fn add(b: &mut Bucket, t: Tally) {
    b.successes = b.successes.saturating_add(t.successes);
    b.failures = b.failures.saturating_add(t.failures);
    b.slow = b.slow.saturating_add(t.slow);
}

#[cfg(test)]
mod tests;
