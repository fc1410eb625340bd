//! The breaker policy: trip rules, open period, half-open probes, back-end behaviour, and the
//! builder that refuses impossible combinations.

use std::time::Duration;

use crate::record::RecordEncoding;

/// One rule that opens the breaker. Several rules may be combined; any one of them trips it.
///
/// Windowed rules share the policy's [`Policy::window`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum TripRule {
    /// At least `failures` failures within the sliding window (the default rule).
    FailuresInWindow {
        /// Failures that trip the breaker.
        failures: u32,
    },
    /// At least `failures` failures in a row, fleet-wide: a success from any agent resets it.
    ConsecutiveFailures {
        /// Consecutive failures that trip the breaker.
        failures: u32,
    },
    /// A failure rate of at least `rate` within the window, once it holds `min_calls` calls.
    FailureRate {
        /// Rate in `(0, 1]`.
        rate: f64,
        /// Calls the window must hold before the rate is judged.
        min_calls: u32,
    },
    /// A rate of slow calls (see [`SlowCall`]) of at least `rate` within the window, once it
    /// holds `min_calls` calls.
    SlowCallRate {
        /// Rate in `(0, 1]`.
        rate: f64,
        /// Calls the window must hold before the rate is judged.
        min_calls: u32,
    },
}

impl TripRule {
    fn kind(&self) -> &'static str {
        match self {
            TripRule::FailuresInWindow { .. } => "failures_in_window",
            TripRule::ConsecutiveFailures { .. } => "consecutive_failures",
            TripRule::FailureRate { .. } => "failure_rate",
            TripRule::SlowCallRate { .. } => "slow_call_rate",
        }
    }
}

/// What makes a call slow, and whether a slow call counts as a failure. Durations are
/// measured on the breaker's clock (millisecond resolution).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlowCall {
    /// A call that takes longer than this is slow.
    pub threshold: Duration,
    /// Whether a slow call also counts as a failure for the failure rules. The caller still
    /// gets the call's value either way.
    pub counts_as_failure: bool,
}

/// Exponential backoff of the open period across consecutive openings.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// Each consecutive opening multiplies the open period by this factor (at least 1).
    pub multiplier: f64,
    /// The open period never exceeds this.
    pub max: Duration,
}

/// What a breaker does while its back-end cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendFailure {
    /// Let every call through (a forced-open state seen before the outage still rejects).
    FailOpen,
    /// Reject every call with a back-end error (a forced-closed state still admits).
    FailClosed,
    /// Keep protecting the service with a local breaker of the same policy, starting from
    /// the last shared state seen, until the back-end answers again; then the shared record
    /// is authoritative again.
    #[default]
    LocalFallback,
}

/// A validated breaker policy. Build one with [`Policy::builder`]; [`Policy::default`] is
/// 5 failures within 10 s, open for 10 s, one probe.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Policy {
    /// Rules that open the breaker; any one trips it.
    pub trip_rules: Vec<TripRule>,
    /// The sliding window of the windowed rules, kept in ten buckets.
    pub window: Duration,
    /// What makes a call slow, if slowness matters.
    pub slow_call: Option<SlowCall>,
    /// How long the breaker stays open before probing.
    pub open_for: Duration,
    /// Backoff of the open period across consecutive openings.
    pub backoff: Option<Backoff>,
    /// The largest random extra added to each open period; the same for every agent.
    pub jitter: Duration,
    /// Probe calls admitted fleet-wide per half-open period.
    pub half_open_permits: u32,
    /// Probe successes that close the breaker.
    pub success_threshold: u32,
    /// How long a probe permit stays claimed if its holder never reports.
    pub probe_lease: Duration,
    /// An idle breaker's record expires from the back-end after this long.
    pub record_ttl: Duration,
    /// How often an agent writes its batched successes (where a trip rule reads them) and
    /// checks for staleness, while its record holds something a rule builds on.
    pub flush_interval: Duration,
    /// The oldest an agent's view of the shared state may get when the back-end pushes no
    /// changes; also how often a breaker at rest (its record closed with nothing a rule
    /// builds on, [`machine::quiet`](crate::machine::quiet), and its watch alive) checks
    /// that its watch still runs.
    pub max_staleness: Duration,
    /// Deadline of every back-end operation.
    pub backend_timeout: Duration,
    /// First wait before retrying an unreachable back-end; it doubles up to `reconnect_max`.
    pub reconnect_initial: Duration,
    /// Longest wait between retries of an unreachable back-end.
    pub reconnect_max: Duration,
    /// What to do while the back-end is unreachable.
    pub on_backend_failure: BackendFailure,
    /// Strict mode: every admission is decided by a read of the back-end (never the cached
    /// view), so no call is admitted that the stored record, read at the call's start,
    /// would reject; and every outcome a rule reads is written before the call returns,
    /// instead of batched (successes) or sent to the background writer (failures). Two round
    /// trips per failure (more when several writers contend; see BENCHMARKS.md); one for a
    /// success that changes nothing a rule reads in the record as read (under the
    /// failures-in-window rule alone, a run of consecutive failures already broken, a rate
    /// with no failure in the window), once the breaker's record exists.
    pub strict: bool,
    /// A quorum: the distinct agents whose failures a fleet-wide trip needs within the
    /// window, besides a trip rule's own condition. `1` (default): any agent's failures
    /// count alone, as if the fleet were one process. With more, one sick agent (its own
    /// network path broken, say) cannot open the fleet's breaker: while its own failures meet
    /// a rule but too few other agents fail, it opens a breaker of the same policy for itself
    /// alone ([`crate::Cause::Local`]). At most [`MAX_MIN_AGENTS`].
    pub min_agents: u32,
    /// How this agent writes the breaker's record ([`RecordEncoding::Json`] by default).
    /// Agents of either encoding share a breaker: every build from 0.2 on reads both. Turn
    /// [`RecordEncoding::Compact`] on once no agent of 0.1 is left on the back-end.
    pub record_encoding: RecordEncoding,
    /// Whether this agent counts closed-state outcomes by appending them to the log beside
    /// the record, on a driver that keeps one ([`crate::Driver::appends`]; Redis and
    /// memory), instead of writing them into the record by compare-and-swap. Appends never
    /// conflict, so an outcome costs one write however many agents count on one breaker
    /// (compare-and-swap costs more with every writer: see BENCHMARKS.md); a trip is
    /// written as the record at once, probes and operators' forces by compare-and-swap, and
    /// every reader folds the log onto the record ([`crate::machine::fold`]). Off by default: builds before 0.2 read the record alone,
    /// so they would not see the appended outcomes (they undercount, never misread). Turn
    /// it on once every agent of the fleet folds logs.
    pub append_outcomes: bool,
}

/// The largest quorum [`Policy::min_agents`] takes: the record keeps up to this many agents'
/// ids in its window.
pub const MAX_MIN_AGENTS: u32 = 64;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            trip_rules: vec![TripRule::FailuresInWindow { failures: 5 }],
            window: Duration::from_secs(10),
            slow_call: None,
            open_for: Duration::from_secs(10),
            backoff: None,
            jitter: Duration::ZERO,
            half_open_permits: 1,
            success_threshold: 1,
            probe_lease: Duration::from_secs(10),
            record_ttl: Duration::from_secs(24 * 3600),
            flush_interval: Duration::from_millis(200),
            max_staleness: Duration::from_secs(1),
            backend_timeout: Duration::from_millis(500),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            on_backend_failure: BackendFailure::LocalFallback,
            strict: false,
            min_agents: 1,
            record_encoding: RecordEncoding::Json,
            append_outcomes: false,
        }
    }
}

/// An impossible policy, naming the field that makes it so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid breaker policy: `{field}` {reason}")]
#[non_exhaustive]
pub struct PolicyError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        field,
        reason: reason.into(),
    }
}

impl Policy {
    /// A builder starting from the defaults, with no trip rule chosen yet (the default rule
    /// applies if none is added).
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// The open period for the `openings`-th consecutive opening (1 for the first), before
    /// jitter: `open_for * multiplier^(openings-1)`, capped by the backoff maximum.
    pub fn open_period(&self, openings: u32) -> Duration {
        let Some(backoff) = self.backoff else {
            return self.open_for;
        };
        let exponent = openings.saturating_sub(1).min(1_000) as i32;
        let secs = self.open_for.as_secs_f64() * backoff.multiplier.powi(exponent);
        let capped = secs.min(backoff.max.as_secs_f64());
        // `try_from_secs_f64` refuses infinity and NaN; the cap keeps us finite anyway.
        Duration::try_from_secs_f64(capped).unwrap_or(backoff.max)
    }

    /// The longest open period this policy can set: the backoff's maximum (or `open_for`),
    /// plus the largest jitter.
    pub fn longest_open_period(&self) -> Duration {
        let base = self
            .backoff
            .map_or(self.open_for, |b| b.max.max(self.open_for));
        base.saturating_add(self.jitter)
    }

    /// Whether any rule needs the count of successes (rates and consecutive failures do; the
    /// failures-in-window rule does not).
    pub fn needs_successes(&self) -> bool {
        self.trip_rules
            .iter()
            .any(|r| !matches!(r, TripRule::FailuresInWindow { .. }))
    }

    /// The trip rules in words, for logs and operators: `5 failures within 10s`, rules
    /// joined by ` or `.
    pub fn trip_rules_text(&self) -> String {
        // Durations as the rejections write them (`10s`, `1.5s`).
        let window = format!("{:?}", self.window);
        let rules: Vec<String> = self
            .trip_rules
            .iter()
            .map(|rule| match *rule {
                TripRule::FailuresInWindow { failures: 1 } => format!("1 failure within {window}"),
                TripRule::FailuresInWindow { failures } => {
                    format!("{failures} failures within {window}")
                }
                TripRule::ConsecutiveFailures { failures } => {
                    format!("{failures} consecutive failures")
                }
                TripRule::FailureRate { rate, min_calls } => format!(
                    "a failure rate of {}% within {window} (from {min_calls} calls)",
                    rate * 100.0
                ),
                TripRule::SlowCallRate { rate, min_calls } => format!(
                    "a slow-call rate of {}% within {window} (from {min_calls} calls)",
                    rate * 100.0
                ),
            })
            .collect();
        rules.join(" or ")
    }

    /// Checks every invariant; the builder calls this.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.trip_rules.is_empty() {
            return Err(invalid(
                "trip_rules",
                "is empty: give at least one trip rule",
            ));
        }
        for (i, rule) in self.trip_rules.iter().enumerate() {
            if self.trip_rules[..i].iter().any(|r| r.kind() == rule.kind()) {
                return Err(invalid(
                    "trip_rules",
                    format!("holds the rule `{}` twice", rule.kind()),
                ));
            }
            match *rule {
                TripRule::FailuresInWindow { failures: 0 } => {
                    return Err(invalid("failures_in_window.failures", "must be at least 1"));
                }
                TripRule::ConsecutiveFailures { failures: 0 } => {
                    return Err(invalid(
                        "consecutive_failures.failures",
                        "must be at least 1",
                    ));
                }
                TripRule::FailureRate { rate, min_calls } => {
                    check_rate("failure_rate.rate", rate)?;
                    if min_calls == 0 {
                        return Err(invalid("failure_rate.min_calls", "must be at least 1"));
                    }
                }
                TripRule::SlowCallRate { rate, min_calls } => {
                    check_rate("slow_call_rate.rate", rate)?;
                    if min_calls == 0 {
                        return Err(invalid("slow_call_rate.min_calls", "must be at least 1"));
                    }
                    if self.slow_call.is_none() {
                        return Err(invalid(
                            "slow_call",
                            "is not set, but the slow_call_rate rule needs a slow-call threshold",
                        ));
                    }
                }
                _ => {}
            }
        }
        if self.window < Duration::from_millis(10) {
            return Err(invalid(
                "window",
                format!(
                    "is {:?}; it must be at least 10ms (ten buckets of 1ms)",
                    self.window
                ),
            ));
        }
        if let Some(slow) = self.slow_call
            && slow.threshold.is_zero()
        {
            return Err(invalid("slow_call.threshold", "must be greater than zero"));
        }
        if let Some(backoff) = self.backoff {
            if !backoff.multiplier.is_finite() || backoff.multiplier < 1.0 {
                return Err(invalid(
                    "backoff.multiplier",
                    format!(
                        "is {}; it must be a finite number of at least 1",
                        backoff.multiplier
                    ),
                ));
            }
            if backoff.max < self.open_for {
                return Err(invalid(
                    "backoff.max",
                    format!(
                        "({:?}) is shorter than open_for ({:?})",
                        backoff.max, self.open_for
                    ),
                ));
            }
        }
        if self.min_agents == 0 || self.min_agents > MAX_MIN_AGENTS {
            return Err(invalid(
                "min_agents",
                format!(
                    "is {}; it must be from 1 (no quorum) to {MAX_MIN_AGENTS}",
                    self.min_agents
                ),
            ));
        }
        if self.half_open_permits == 0 {
            return Err(invalid("half_open_permits", "must be at least 1"));
        }
        if self.success_threshold == 0 {
            return Err(invalid("success_threshold", "must be at least 1"));
        }
        if self.success_threshold > self.half_open_permits {
            return Err(invalid(
                "success_threshold",
                format!(
                    "({}) exceeds half_open_permits ({}): the breaker could never close",
                    self.success_threshold, self.half_open_permits
                ),
            ));
        }
        for (field, d) in [
            ("probe_lease", self.probe_lease),
            ("flush_interval", self.flush_interval),
            ("max_staleness", self.max_staleness),
            ("backend_timeout", self.backend_timeout),
            ("reconnect_initial", self.reconnect_initial),
        ] {
            if d < Duration::from_millis(1) {
                return Err(invalid(field, "must be at least 1ms"));
            }
        }
        if self.reconnect_max < self.reconnect_initial {
            return Err(invalid(
                "reconnect_max",
                "is shorter than reconnect_initial",
            ));
        }
        if self.record_ttl < self.window {
            return Err(invalid(
                "record_ttl",
                format!(
                    "({:?}) is shorter than the window ({:?}): idle expiry would drop live counts",
                    self.record_ttl, self.window
                ),
            ));
        }
        Ok(())
    }
}

fn check_rate(field: &'static str, rate: f64) -> Result<(), PolicyError> {
    if rate.is_finite() && rate > 0.0 && rate <= 1.0 {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("is {rate}; it must be within (0, 1]"),
        ))
    }
}

/// Builds a [`Policy`]; [`PolicyBuilder::build`] refuses impossible ones.
#[derive(Clone, Debug, Default)]
pub struct PolicyBuilder {
    policy: PolicyDraft,
}

#[derive(Clone, Debug, Default)]
struct PolicyDraft {
    rules: Vec<TripRule>,
    window: Option<Duration>,
    window_conflict: Option<(Duration, Duration)>,
    base: Policy,
}

impl PolicyBuilder {
    /// Adds a trip rule.
    pub fn trip(mut self, rule: TripRule) -> Self {
        self.policy.rules.push(rule);
        self
    }

    /// Trips after `failures` failures within `window` (the original project's rule).
    pub fn failures_within(self, failures: u32, window: Duration) -> Self {
        self.window(window)
            .trip(TripRule::FailuresInWindow { failures })
    }

    /// Trips after `failures` consecutive failures, fleet-wide.
    pub fn consecutive_failures(self, failures: u32) -> Self {
        self.trip(TripRule::ConsecutiveFailures { failures })
    }

    /// Trips when at least `rate` of the calls in the window failed, once it holds
    /// `min_calls` calls.
    pub fn failure_rate(self, rate: f64, min_calls: u32) -> Self {
        self.trip(TripRule::FailureRate { rate, min_calls })
    }

    /// Trips when at least `rate` of the calls in the window were slow, once it holds
    /// `min_calls` calls. Needs [`PolicyBuilder::slow_calls`].
    pub fn slow_call_rate(self, rate: f64, min_calls: u32) -> Self {
        self.trip(TripRule::SlowCallRate { rate, min_calls })
    }

    /// Calls slower than `threshold` are slow; with `counts_as_failure` they also count as
    /// failures for the failure rules.
    pub fn slow_calls(mut self, threshold: Duration, counts_as_failure: bool) -> Self {
        self.policy.base.slow_call = Some(SlowCall {
            threshold,
            counts_as_failure,
        });
        self
    }

    /// The sliding window of the windowed rules (default 10 s).
    pub fn window(mut self, window: Duration) -> Self {
        match self.policy.window {
            Some(old) if old != window => self.policy.window_conflict = Some((old, window)),
            _ => self.policy.window = Some(window),
        }
        self
    }

    /// How long the breaker stays open (default 10 s).
    pub fn open_for(mut self, d: Duration) -> Self {
        self.policy.base.open_for = d;
        self
    }

    /// Multiplies the open period by `multiplier` for each consecutive opening, up to `max`.
    pub fn backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.policy.base.backoff = Some(Backoff { multiplier, max });
        self
    }

    /// Adds up to `max` of extra open time, chosen per opening the same way by every agent
    /// (default none).
    pub fn jitter(mut self, max: Duration) -> Self {
        self.policy.base.jitter = max;
        self
    }

    /// Probe calls admitted fleet-wide per half-open period (default 1).
    pub fn half_open_permits(mut self, n: u32) -> Self {
        self.policy.base.half_open_permits = n;
        self
    }

    /// Probe successes that close the breaker (default 1).
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.policy.base.success_threshold = n;
        self
    }

    /// How long a probe permit stays claimed if its holder never reports (default 10 s).
    pub fn probe_lease(mut self, d: Duration) -> Self {
        self.policy.base.probe_lease = d;
        self
    }

    /// Expiry of an idle breaker's record (default 24 h).
    pub fn record_ttl(mut self, d: Duration) -> Self {
        self.policy.base.record_ttl = d;
        self
    }

    /// How often batched successes are written (default 200 ms), where a trip rule reads
    /// them: see [`machine::successes_matter`](crate::machine::successes_matter).
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.policy.base.flush_interval = d;
        self
    }

    /// Bound on the staleness of the agent's view without push (default 1 s), and the
    /// upkeep interval of a breaker at rest (see [`Policy::max_staleness`]).
    pub fn max_staleness(mut self, d: Duration) -> Self {
        self.policy.base.max_staleness = d;
        self
    }

    /// Deadline of each back-end operation (default 500 ms).
    pub fn backend_timeout(mut self, d: Duration) -> Self {
        self.policy.base.backend_timeout = d;
        self
    }

    /// Waits between retries of an unreachable back-end, doubling from `initial` to `max`
    /// (default 100 ms to 5 s).
    pub fn reconnect(mut self, initial: Duration, max: Duration) -> Self {
        self.policy.base.reconnect_initial = initial;
        self.policy.base.reconnect_max = max;
        self
    }

    /// What to do while the back-end is unreachable (default local fallback).
    pub fn on_backend_failure(mut self, f: BackendFailure) -> Self {
        self.policy.base.on_backend_failure = f;
        self
    }

    /// Strict mode (default off): admission by a read of the back-end at every call, and
    /// every outcome that a rule reads written at once; see [`Policy::strict`].
    pub fn strict(mut self, strict: bool) -> Self {
        self.policy.base.strict = strict;
        self
    }

    /// A quorum (default 1, none): a fleet-wide trip also needs failures from `agents`
    /// distinct agents within the window; see [`Policy::min_agents`].
    pub fn min_agents(mut self, agents: u32) -> Self {
        self.policy.base.min_agents = agents;
        self
    }

    /// How this agent writes the record (default [`RecordEncoding::Json`]); see
    /// [`Policy::record_encoding`].
    pub fn record_encoding(mut self, encoding: RecordEncoding) -> Self {
        self.policy.base.record_encoding = encoding;
        self
    }

    /// Counts closed-state outcomes by appending them to the record's log, where the driver
    /// keeps one (default off); see [`Policy::append_outcomes`].
    pub fn append_outcomes(mut self, append: bool) -> Self {
        self.policy.base.append_outcomes = append;
        self
    }

    /// Validates and returns the policy.
    pub fn build(self) -> Result<Policy, PolicyError> {
        let draft = self.policy;
        if let Some((a, b)) = draft.window_conflict {
            return Err(invalid(
                "window",
                format!("was set twice, to {a:?} and to {b:?}; windowed rules share one window"),
            ));
        }
        let mut policy = draft.base;
        if !draft.rules.is_empty() {
            policy.trip_rules = draft.rules;
        }
        if let Some(w) = draft.window {
            policy.window = w;
        }
        policy.validate()?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(b: PolicyBuilder) -> PolicyError {
        b.build().unwrap_err()
    }

    #[test]
    fn default_policy_is_valid() {
        let p = Policy::builder().build().unwrap();
        assert_eq!(p, Policy::default());
        assert_eq!(
            p.trip_rules,
            vec![TripRule::FailuresInWindow { failures: 5 }]
        );
    }

    #[test]
    fn impossible_policies_name_their_field() {
        let cases = [
            (
                Policy::builder().failures_within(0, Duration::from_secs(1)),
                "failures_in_window.failures",
            ),
            (
                Policy::builder().failures_within(3, Duration::ZERO),
                "window",
            ),
            (
                Policy::builder().consecutive_failures(0),
                "consecutive_failures.failures",
            ),
            (Policy::builder().failure_rate(1.5, 10), "failure_rate.rate"),
            (Policy::builder().failure_rate(0.0, 10), "failure_rate.rate"),
            (
                Policy::builder().failure_rate(f64::NAN, 10),
                "failure_rate.rate",
            ),
            (
                Policy::builder().failure_rate(0.5, 0),
                "failure_rate.min_calls",
            ),
            (Policy::builder().slow_call_rate(0.5, 10), "slow_call"),
            (Policy::builder().half_open_permits(0), "half_open_permits"),
            (Policy::builder().success_threshold(0), "success_threshold"),
            (
                Policy::builder().half_open_permits(2).success_threshold(3),
                "success_threshold",
            ),
            (Policy::builder().probe_lease(Duration::ZERO), "probe_lease"),
            (
                Policy::builder().backoff(0.5, Duration::from_secs(60)),
                "backoff.multiplier",
            ),
            (
                Policy::builder().backoff(2.0, Duration::from_secs(1)),
                "backoff.max",
            ),
            (
                Policy::builder().backend_timeout(Duration::ZERO),
                "backend_timeout",
            ),
            (
                Policy::builder().record_ttl(Duration::from_secs(1)),
                "record_ttl",
            ),
            (
                Policy::builder()
                    .failures_within(3, Duration::from_secs(1))
                    .window(Duration::from_secs(2)),
                "window",
            ),
            (
                Policy::builder()
                    .consecutive_failures(2)
                    .consecutive_failures(3),
                "trip_rules",
            ),
            (
                Policy::builder().slow_calls(Duration::ZERO, true),
                "slow_call.threshold",
            ),
        ];
        for (builder, field) in cases {
            let e = err(builder);
            assert_eq!(e.field, field, "{e}");
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn open_period_backs_off_and_caps() {
        let p = Policy::builder()
            .open_for(Duration::from_secs(1))
            .backoff(2.0, Duration::from_secs(5))
            .build()
            .unwrap();
        let periods: Vec<u64> = (1..=5).map(|n| p.open_period(n).as_secs()).collect();
        assert_eq!(periods, vec![1, 2, 4, 5, 5]);
        assert_eq!(p.open_period(u32::MAX), Duration::from_secs(5));
        let flat = Policy::default();
        assert_eq!(flat.open_period(7), flat.open_for);
    }

    #[test]
    fn trip_rules_read_as_words() {
        assert_eq!(Policy::default().trip_rules_text(), "5 failures within 10s");
        let policy = Policy::builder()
            .consecutive_failures(3)
            .failure_rate(0.5, 20)
            .window(Duration::from_millis(1500))
            .build()
            .unwrap();
        assert_eq!(
            policy.trip_rules_text(),
            "3 consecutive failures or a failure rate of 50% within 1.5s (from 20 calls)"
        );
    }

    #[test]
    fn only_rate_and_consecutive_rules_need_successes() {
        assert!(!Policy::default().needs_successes());
        assert!(
            Policy::builder()
                .consecutive_failures(3)
                .build()
                .unwrap()
                .needs_successes()
        );
        assert!(
            Policy::builder()
                .failure_rate(0.5, 4)
                .build()
                .unwrap()
                .needs_successes()
        );
    }

    #[test]
    fn every_bound_itself_is_allowed() {
        let edge = Policy::builder()
            .window(Duration::from_millis(10))
            .open_for(Duration::from_secs(2))
            .backoff(1.0, Duration::from_secs(2))
            .probe_lease(Duration::from_millis(1))
            .flush_interval(Duration::from_millis(1))
            .max_staleness(Duration::from_millis(1))
            .backend_timeout(Duration::from_millis(1))
            .reconnect(Duration::from_millis(1), Duration::from_millis(1))
            .record_ttl(Duration::from_millis(10))
            .build()
            .expect("each bound is inclusive");
        assert_eq!(edge.window, Duration::from_millis(10));
        assert_eq!(edge.flush_interval, Duration::from_millis(1));
        assert_eq!(edge.record_ttl, Duration::from_millis(10));
        assert_eq!(edge.reconnect_max, Duration::from_millis(1));
    }

    #[test]
    fn the_same_window_twice_is_no_conflict() {
        let p = Policy::builder()
            .window(Duration::from_secs(30))
            .window(Duration::from_secs(30))
            .build()
            .expect("the same window twice");
        assert_eq!(p.window, Duration::from_secs(30));
        let e = err(Policy::builder()
            .window(Duration::from_secs(30))
            .window(Duration::from_secs(20)));
        assert_eq!(e.field, "window");
    }

    #[test]
    fn the_longest_open_period_counts_backoff_and_jitter() {
        let p = Policy::builder()
            .open_for(Duration::from_secs(1))
            .backoff(2.0, Duration::from_secs(8))
            .jitter(Duration::from_millis(500))
            .build()
            .unwrap();
        assert_eq!(p.longest_open_period(), Duration::from_millis(8_500));
        let flat = Policy::builder()
            .open_for(Duration::from_secs(3))
            .build()
            .unwrap();
        assert_eq!(flat.longest_open_period(), Duration::from_secs(3));
    }
}
