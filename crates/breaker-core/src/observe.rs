//! Observability: metrics through the `metrics` facade and events through `tracing`, each
//! behind its cargo feature. Without the features every function here is empty and inlined
//! away, so the hot path pays nothing.
//!
//! Metrics, each labelled with `breaker` and `backend`, described (`# HELP`) when the first
//! breaker is built (see [`METRICS`]):
//! - `breaker_calls_total` (`outcome`: success, failure, ignored),
//! - `breaker_call_duration_seconds` histogram (`outcome`): how long admitted calls took,
//! - `breaker_not_permitted_calls_total` (`state`): calls rejected,
//! - `breaker_transitions_total` (`from`, `to`, `cause`: caused, observed, local),
//! - `breaker_state` gauge (`state`): one series per state, 1 for the breaker's state and 0
//!   for the others, from the agent's first read of the record,
//! - `breaker_window_failures` gauge: failures in the sliding window, fleet-wide, as the
//!   agent last read the record (what a failures-in-window rule judges),
//! - `breaker_failure_rate` gauge, for a breaker with a failure-rate rule: the fleet-wide
//!   failure rate over the window that the rule judges (0 to 1),
//! - `breaker_backend_errors_total` (`operation`, `kind`),
//! - `breaker_backend_latency_seconds` histogram (`operation`).

// Each function uses its arguments under one feature or the other, or under none.
#![allow(unused_variables)]

use crate::error::{BackendError, Operation};
use crate::events::Cause;
use crate::name::Name;
use crate::outcome::Outcome;
use crate::record::State;

/// Every metric a breaker reports: name, kind, and help text. The dashboards in
/// `dashboards/` query only these (a test checks it).
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "breaker_calls_total",
        "counter",
        "Calls a breaker admitted, by outcome (success, failure, ignored).",
    ),
    (
        "breaker_call_duration_seconds",
        "histogram",
        "How long the calls a breaker admitted took, by outcome.",
    ),
    (
        "breaker_not_permitted_calls_total",
        "counter",
        "Calls a breaker rejected, by the state that rejected them.",
    ),
    (
        "breaker_transitions_total",
        "counter",
        "State transitions, by from, to and cause (caused by this agent, observed, or local: the agent's own breaker under a quorum).",
    ),
    (
        "breaker_state",
        "gauge",
        "1 for the state the breaker is in, 0 for the others: one series per state.",
    ),
    (
        "breaker_window_failures",
        "gauge",
        "Failures in the breaker's sliding window, fleet-wide, as this agent last read the shared record (they start afresh at every transition).",
    ),
    (
        "breaker_failure_rate",
        "gauge",
        "For a breaker with a failure-rate rule: the fleet-wide failure rate (0 to 1) over its window that the rule judges; successes are shared only while the window holds failures, so it is 0 while healthy.",
    ),
    (
        "breaker_backend_errors_total",
        "counter",
        "Failed back-end operations, by operation and kind.",
    ),
    (
        "breaker_backend_latency_seconds",
        "histogram",
        "Time of back-end operations, by operation.",
    ),
];

/// Every state, as the `state` label spells them.
const STATES: [State; 5] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::ForcedOpen,
    State::ForcedClosed,
];

/// Describes every metric, once per process, so that exporters print `# HELP` lines.
pub(crate) fn describe() {
    #[cfg(feature = "metrics")]
    {
        static DESCRIBED: std::sync::Once = std::sync::Once::new();
        DESCRIBED.call_once(|| {
            for (name, kind, help) in METRICS {
                match *kind {
                    "counter" => metrics::describe_counter!(*name, *help),
                    "gauge" => metrics::describe_gauge!(*name, *help),
                    _ => metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help),
                }
            }
        });
    }
}

/// The breaker is in `now`: its series of `breaker_state` read 1 for it, 0 for the others.
pub(crate) fn state(breaker: Name, backend: &'static str, now: State) {
    #[cfg(feature = "metrics")]
    for state in STATES {
        metrics::gauge!("breaker_state", "breaker" => breaker.as_str(), "backend" => backend, "state" => state.as_str())
            .set(if state == now { 1.0 } else { 0.0 });
    }
    let _ = (STATES, now);
}

/// The sliding window as the agent sees it at `now` in `rec`: `breaker_window_failures`, and
/// `breaker_failure_rate` where a rule judges the rate. Set when the agent installs a record
/// and at each upkeep, so between calls it is as of the latest.
pub(crate) fn window(
    breaker: Name,
    backend: &'static str,
    rec: &crate::Record,
    policy: &crate::Policy,
    now: crate::Timestamp,
) {
    #[cfg(feature = "metrics")]
    {
        let window = crate::machine::window_counts(rec, policy, now);
        metrics::gauge!("breaker_window_failures", "breaker" => breaker.as_str(), "backend" => backend)
            .set(window.failures as f64);
        let judges_rate = policy
            .trip_rules
            .iter()
            .any(|r| matches!(r, crate::TripRule::FailureRate { .. }));
        if judges_rate {
            let calls = window.failures.saturating_add(window.successes);
            let rate = if calls == 0 {
                0.0
            } else {
                window.failures as f64 / calls as f64
            };
            metrics::gauge!("breaker_failure_rate", "breaker" => breaker.as_str(), "backend" => backend)
                .set(rate);
        }
    }
}

/// A call ended with `outcome`.
#[inline]
pub(crate) fn call(breaker: Name, backend: &'static str, outcome: Outcome) {
    #[cfg(feature = "metrics")]
    metrics::counter!("breaker_calls_total", "breaker" => breaker.as_str(), "backend" => backend, "outcome" => outcome_label(outcome))
        .increment(1);
}

/// When an admitted call began, for `breaker_call_duration_seconds`: a clock reading with the
/// `metrics` feature, nothing (and no clock read) without it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallTimer {
    #[cfg(feature = "metrics")]
    began: std::time::Instant,
}

impl CallTimer {
    /// The call begins now.
    #[inline]
    pub(crate) fn start() -> Self {
        CallTimer {
            #[cfg(feature = "metrics")]
            began: std::time::Instant::now(),
        }
    }

    /// The call ended with `outcome`.
    #[inline]
    pub(crate) fn finish(self, breaker: Name, backend: &'static str, outcome: Outcome) {
        #[cfg(feature = "metrics")]
        metrics::histogram!("breaker_call_duration_seconds", "breaker" => breaker.as_str(), "backend" => backend, "outcome" => outcome_label(outcome))
            .record(self.began.elapsed().as_secs_f64());
    }
}

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Ignored => "ignored",
    }
}

/// A call was rejected in `state`.
#[inline]
pub(crate) fn rejected(breaker: Name, backend: &'static str, state: State) {
    #[cfg(feature = "metrics")]
    metrics::counter!("breaker_not_permitted_calls_total", "breaker" => breaker.as_str(), "backend" => backend, "state" => state.as_str())
        .increment(1);
}

/// The breaker moved from `from` to `to`, by an operator's write or by `policy`'s rules.
#[allow(clippy::too_many_arguments)]
pub(crate) fn transition(
    breaker: Name,
    backend: &'static str,
    from: State,
    to: State,
    generation: u64,
    cause: Cause,
    operator: bool,
    policy: &crate::Policy,
) {
    let cause = match cause {
        Cause::Caused => "caused",
        Cause::Observed => "observed",
        Cause::Local => "local",
    };
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("breaker_transitions_total", "breaker" => breaker.as_str(), "backend" => backend, "from" => from.as_str(), "to" => to.as_str(), "cause" => cause)
            .increment(1);
    }
    state(breaker, backend, to);
    #[cfg(feature = "tracing")]
    tracing::info!(
        breaker = breaker.as_str(),
        backend,
        from = from.as_str(),
        to = to.as_str(),
        generation,
        cause,
        reason = reason(from, to, operator, policy),
        "breaker transition"
    );
    let _ = (from, to, generation, cause, operator, policy);
}

/// Why a breaker moved from `from` to `to`, in words: what tripped it names the policy's trip
/// rules, with their thresholds.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
fn reason(from: State, to: State, operator: bool, policy: &crate::Policy) -> String {
    match (from, to) {
        _ if operator => "an operator's write".to_owned(),
        (State::HalfOpen, State::Open) => "a probe failed".to_owned(),
        (_, State::Open) => format!("trip rule met: {}", policy.trip_rules_text()),
        (_, State::HalfOpen) => "the open period ended".to_owned(),
        (State::HalfOpen, State::Closed) => "the probes succeeded".to_owned(),
        _ => "a new record (the first, an expired one, or one that replaced a corrupt one)"
            .to_owned(),
    }
}

/// A back-end operation failed.
pub(crate) fn backend_error(err: &BackendError) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "breaker_backend_errors_total",
        "breaker" => err.breaker().as_str(),
        "backend" => err.backend(),
        "operation" => operation(err.operation()),
        "kind" => format!("{}", err.kind())
    )
    .increment(1);
    #[cfg(feature = "tracing")]
    tracing::warn!(
        breaker = err.breaker().as_str(),
        backend = err.backend(),
        operation = operation(err.operation()),
        error = %err.driver_error(),
        "breaker back-end trouble"
    );
}

/// The back-end answers again.
pub(crate) fn backend_recovered(breaker: Name, backend: &'static str) {
    #[cfg(feature = "tracing")]
    tracing::info!(
        breaker = breaker.as_str(),
        backend,
        "breaker back-end recovered"
    );
}

/// Runs a back-end operation: timed for the latency histogram (with `metrics`), inside a
/// `breaker.backend` debug span (with `tracing`), as is otherwise.
pub(crate) async fn backend_op<T>(
    breaker: Name,
    backend: &'static str,
    op: Operation,
    fut: impl std::future::Future<Output = T>,
) -> T {
    #[cfg(feature = "tracing")]
    let fut = tracing::Instrument::instrument(
        fut,
        tracing::debug_span!(
            "breaker.backend",
            breaker = breaker.as_str(),
            backend,
            operation = operation(op)
        ),
    );
    #[cfg(feature = "metrics")]
    let started = std::time::Instant::now();
    let out = fut.await;
    #[cfg(feature = "metrics")]
    metrics::histogram!("breaker_backend_latency_seconds", "breaker" => breaker.as_str(), "backend" => backend, "operation" => operation(op))
        .record(started.elapsed().as_secs_f64());
    out
}

#[cfg_attr(not(any(feature = "metrics", feature = "tracing")), allow(dead_code))]
fn operation(op: Operation) -> &'static str {
    match op {
        Operation::Load => "load",
        Operation::CompareAndSwap => "compare_and_swap",
        Operation::Append => "append",
        Operation::Watch => "watch",
        Operation::Clock => "clock",
    }
}
