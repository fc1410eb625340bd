//! What the two scale benches share: the libraries under test, built with `n` breakers and
//! called round-robin, and which of them and which breaker counts a run asks for.

use std::hint::black_box;
use std::time::Duration;

use failsafe::failure_policy::ConsecutiveFailures;
use failsafe::{CircuitBreaker as _, Config, StateMachine, backoff, failure_policy};
use recloser::Recloser;
use shared_breaker::memory::MemoryDriver;
use shared_breaker::{Breaker, Policy, RecordEncoding};

/// A library under test: builds `n` breakers, then calls them round-robin.
pub trait Subject {
    /// The name the bench prints.
    const NAME: &'static str;
    /// Builds `n` breakers.
    fn build(n: usize) -> Self;
    /// One call on breaker `i`, failing when `fail` is set.
    fn call(&self, i: usize, fail: bool);
}

/// Ours on the memory driver, writing JSON records or (`COMPACT`) compact ones, and
/// counting outcomes into the record or (`APPEND`) appending them to its log.
pub struct Ours<const COMPACT: bool, const APPEND: bool = false>(Vec<Breaker>);

impl<const COMPACT: bool, const APPEND: bool> Subject for Ours<COMPACT, APPEND> {
    const NAME: &'static str = match (COMPACT, APPEND) {
        (true, true) => "breaker (compact, appended)",
        (true, false) => "breaker (compact)",
        (false, _) => "breaker (memory)",
    };
    fn build(n: usize) -> Self {
        let encoding = if COMPACT {
            RecordEncoding::Compact
        } else {
            RecordEncoding::Json
        };
        let driver = MemoryDriver::new();
        // A rule that every other call failing never trips, over a window that holds the run.
        // One copy of the policy for every breaker, as an application that hands each
        // builder the same `Arc<Policy>` has.
        let policy = std::sync::Arc::new(
            Policy::builder()
                .failures_within(u32::MAX, Duration::from_secs(3600))
                .record_encoding(encoding)
                .append_outcomes(APPEND)
                .build()
                .expect("a valid policy"),
        );
        let pid = std::process::id();
        Ours(
            (0..n)
                .map(|i| {
                    Breaker::builder(&format!("scale-{pid}-{n}-{i}"), driver.clone())
                        .policy(policy.clone())
                        .build()
                        .expect("a breaker")
                })
                .collect(),
        )
    }
    fn call(&self, i: usize, fail: bool) {
        let r = self.0[i].call_blocking(|| if fail { Err(()) } else { Ok(i) });
        black_box(r.is_ok());
    }
}

pub struct Reclosers(Vec<Recloser>);

impl Subject for Reclosers {
    const NAME: &'static str = "recloser";
    fn build(n: usize) -> Self {
        // Trips at a failure rate of 100%: every other call failing never does.
        Reclosers(
            (0..n)
                .map(|_| {
                    Recloser::custom()
                        .error_rate(1.0)
                        .closed_len(100)
                        .open_wait(Duration::from_secs(3600))
                        .build()
                })
                .collect(),
        )
    }
    fn call(&self, i: usize, fail: bool) {
        let r = self.0[i].call(|| if fail { Err(()) } else { Ok(i) });
        black_box(r.is_ok());
    }
}

pub struct Failsafes(Vec<StateMachine<ConsecutiveFailures<backoff::Constant>, ()>>);

impl Subject for Failsafes {
    const NAME: &'static str = "failsafe";
    fn build(n: usize) -> Self {
        Failsafes(
            (0..n)
                .map(|_| {
                    Config::new()
                        .failure_policy(failure_policy::consecutive_failures(
                            u32::MAX,
                            backoff::constant(Duration::from_secs(3600)),
                        ))
                        .build()
                })
                .collect(),
        )
    }
    fn call(&self, i: usize, fail: bool) {
        let r = self.0[i].call(|| if fail { Err(()) } else { Ok(i) });
        black_box(r.is_ok());
    }
}

/// Builds `n` breakers of `S` and calls each once, so that each holds what a breaker in use
/// holds (for ours, a record in the store).
pub fn built<S: Subject>(n: usize) -> S {
    let subject = S::build(n);
    for i in 0..n {
        subject.call(i, false);
    }
    subject
}

/// A bench's measurement of one library at one breaker count.
pub trait Measure {
    /// Measures library `S` with `n` breakers.
    fn measure<S: Subject>(&mut self, n: usize);
}

/// Runs `bench` over the breaker counts and libraries the command line asks for: `cargo
/// bench` passes `--bench`; any other argument is a breaker count to run, or a word of the
/// libraries' names (`compact`, `recloser`: for a profiler); all of both by default.
pub fn run_selected(bench: &mut impl Measure) {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let wanted: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let words: Vec<&String> = args
        .iter()
        .filter(|a| a.parse::<usize>().is_err())
        .collect();
    let run = |name: &str| words.is_empty() || words.iter().any(|w| name.contains(w.as_str()));
    let counts = if wanted.is_empty() {
        vec![1, 1_000, 10_000, 100_000]
    } else {
        wanted
    };
    for n in counts {
        if run(Ours::<false>::NAME) {
            bench.measure::<Ours<false>>(n);
        }
        if run(Ours::<true>::NAME) {
            bench.measure::<Ours<true>>(n);
        }
        if run(Ours::<true, true>::NAME) {
            bench.measure::<Ours<true, true>>(n);
        }
        if run(Reclosers::NAME) {
            bench.measure::<Reclosers>(n);
        }
        if run(Failsafes::NAME) {
            bench.measure::<Failsafes>(n);
        }
    }
}
