//! How the cost per call grows with the number of breakers in one process: breaker (memory
//! driver, one driver for all breakers; JSON records and compact ones) against `recloser`
//! and `failsafe`, side by side in one run, for 1, 1,000, 10,000 and 100,000 breakers
//! called round-robin.
//!
//! For each count: nanoseconds per successful call, the breakers called in the order they
//! were built and in one shuffled order, and nanoseconds per call when every other call
//! fails (a rule that never trips, so the failure path is measured, not the open
//! one). Each figure is the median of three passes, with the lowest and highest beside it.
//! The heap per breaker is the `scale_memory` bench's: counting allocations costs a few
//! atomic updates per allocation, which only breaker's failure path makes, so this binary
//! keeps the system allocator as it is.
//!
//! Run with `cargo xtask bench scale` (or `cargo bench -p breaker-benches --bench scale`);
//! `-- COUNT…` runs only those breaker counts, `-- WORD…` only the libraries whose name holds
//! one of them (`-- 1 compact`, to profile one). Figures go to BENCHMARKS.md.

use std::time::Instant;

#[path = "common/subjects.rs"]
mod subjects;

use subjects::{Measure, Subject, built, run_selected};

/// Calls per pass: enough that every breaker is called several times, and at least a
/// second's worth of the fastest library.
fn calls_per_pass(breakers: usize) -> usize {
    (breakers * 5).max(2_000_000)
}

/// Median, lowest and highest of three.
fn spread(mut passes: [f64; 3]) -> String {
    passes.sort_by(f64::total_cmp);
    format!("{:.1} ({:.1}-{:.1})", passes[1], passes[0], passes[2])
}

/// Nanoseconds per call, succeeding and half failing.
struct Timing;

impl Measure for Timing {
    fn measure<S: Subject>(&mut self, n: usize) {
        let subject = built::<S>(n);
        let calls = calls_per_pass(n);
        // The same shuffled order of the breakers for every library: walking them in the
        // order they were built lets the processor's prefetcher guess the next one for a
        // library whose breakers lie in the bench's vector itself, or whose heap happens
        // to lie in order; a shuffled walk takes that luck away.
        let mut shuffled: Vec<usize> = (0..n).collect();
        fastrand::Rng::with_seed(13).shuffle(&mut shuffled);
        let pass = |order: Option<&[usize]>, failing: bool| {
            let started = Instant::now();
            for k in 0..calls {
                let i = order.map_or(k % n, |o| o[k % n]);
                // Every other round of the breakers fails, so each breaker sees both outcomes.
                subject.call(i, failing && (k / n) % 2 == 1);
            }
            started.elapsed().as_nanos() as f64 / calls as f64
        };
        let ok = [0; 3].map(|_| pass(None, false));
        let random = [0; 3].map(|_| pass(Some(&shuffled), false));
        let mixed = [0; 3].map(|_| pass(None, true));
        println!(
            "{:>7} breakers  {:<17} success {:>18} ns  shuffled {:>18} ns  half failing {:>18} ns",
            n,
            S::NAME,
            spread(ok),
            spread(random),
            spread(mixed),
        );
    }
}

fn main() {
    run_selected(&mut Timing);
}
