//! How the cost per call grows with the number of breakers in one process: breaker (memory
//! driver, one driver for all breakers; JSON records and compact ones) against `recloser` and `failsafe`, side by side in
//! one run, for 1, 1,000, 10,000 and 100,000 breakers called round-robin.
//!
//! For each count: nanoseconds per successful call, nanoseconds per call when every other
//! call fails (a rule that never trips, so the failure path is measured, not the open one),
//! and the heap each breaker holds once created and called (counted by the allocator; for
//! breaker this includes the shared store's record and the driver's watch), and what is
//! still held once the breakers (and their driver) are dropped.
//! Each figure is the median of three passes, with the lowest and highest beside it.
//!
//! Run with `cargo xtask bench scale` (or `cargo bench -p breaker-benches --bench scale`);
//! `-- COUNT…` runs only those breaker counts, `-- WORD…` only the libraries whose name holds
//! one of them (`-- 1 compact`, to profile one). Figures go to BENCHMARKS.md.

use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

use failsafe::failure_policy::ConsecutiveFailures;
use failsafe::{CircuitBreaker as _, Config, StateMachine, backoff, failure_policy};
use recloser::Recloser;
use shared_breaker::memory::MemoryDriver;
use shared_breaker::{Breaker, Policy, RecordEncoding};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

/// Calls per pass: enough that every breaker is called several times, and at least a
/// second's worth of the fastest library.
fn calls_per_pass(breakers: usize) -> usize {
    (breakers * 5).max(2_000_000)
}

/// Counts every allocation, so that memory per breaker is the heap it holds, exactly.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes allocated and not freed since `region` began.
fn held_bytes(region: &Region<'_, System>) -> usize {
    let change = region.change();
    change
        .bytes_allocated
        .saturating_sub(change.bytes_deallocated)
}

/// A library under test: builds `n` breakers, then calls them round-robin.
trait Subject {
    const NAME: &'static str;
    fn build(n: usize) -> Self;
    /// One call on breaker `i`, failing when `fail` is set.
    fn call(&self, i: usize, fail: bool);
}

/// Ours on the memory driver, writing JSON records or (`COMPACT`) compact ones.
struct Ours<const COMPACT: bool>(Vec<Breaker>);

impl<const COMPACT: bool> Subject for Ours<COMPACT> {
    const NAME: &'static str = if COMPACT {
        "breaker (compact)"
    } else {
        "breaker (memory)"
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

struct Reclosers(Vec<Recloser>);

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

struct Failsafes(Vec<StateMachine<ConsecutiveFailures<backoff::Constant>, ()>>);

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

/// Median, lowest and highest of three.
fn spread(mut passes: [f64; 3]) -> String {
    passes.sort_by(f64::total_cmp);
    format!("{:.1} ({:.1}-{:.1})", passes[1], passes[0], passes[2])
}

fn measure<S: Subject>(n: usize) {
    let region = Region::new(GLOBAL);
    let subject = S::build(n);
    for i in 0..n {
        subject.call(i, false);
    }
    let per_breaker = held_bytes(&region) / n;
    let calls = calls_per_pass(n);
    let pass = |failing: bool| {
        let started = Instant::now();
        for k in 0..calls {
            // Every other round of the breakers fails, so each breaker sees both outcomes.
            subject.call(k % n, failing && (k / n) % 2 == 1);
        }
        started.elapsed().as_nanos() as f64 / calls as f64
    };
    let ok = [pass(false), pass(false), pass(false)];
    let mixed = [pass(true), pass(true), pass(true)];
    drop(subject);
    // What outlives the breakers (and, for ours, their driver): interned names, say.
    let kept = held_bytes(&region) / n;
    println!(
        "{:>7} breakers  {:<17} success {:>18} ns  half failing {:>18} ns  {:>7} B/breaker  {:>5} B/breaker kept after drop",
        n,
        S::NAME,
        spread(ok),
        spread(mixed),
        per_breaker,
        kept
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a breaker count to run, or a
    // word of the libraries to run (`compact`, `recloser`: for a profiler), all by default.
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
            measure::<Ours<false>>(n);
        }
        if run(Ours::<true>::NAME) {
            measure::<Ours<true>>(n);
        }
        if run(Reclosers::NAME) {
            measure::<Reclosers>(n);
        }
        if run(Failsafes::NAME) {
            measure::<Failsafes>(n);
        }
    }
}
