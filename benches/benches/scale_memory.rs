//! The heap each breaker holds in one process, for 1, 1,000, 10,000 and 100,000 breakers:
//! breaker (memory driver, one driver for all breakers; JSON records and compact ones)
//! against `recloser` and `failsafe`, each built and called once (for breaker this includes
//! the shared store's record and the driver's watch), and what is still held once the
//! breakers (and their driver) are dropped: the interned names, say.
//!
//! Every allocation of this process is counted, which is why the times per call are the
//! `scale` bench's, in a process of its own. Run with `cargo xtask bench scale` (or `cargo
//! bench -p breaker-benches --bench scale_memory`), with the same `-- COUNT…` and `-- WORD…`
//! selection as `scale`. Figures go to BENCHMARKS.md.

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[path = "common/subjects.rs"]
mod subjects;

use subjects::{Measure, Subject, built, run_selected};

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

/// Heap per breaker while held, and after the drop.
struct Heap;

impl Measure for Heap {
    fn measure<S: Subject>(&mut self, n: usize) {
        let region = Region::new(GLOBAL);
        let subject = built::<S>(n);
        let held = held_bytes(&region) / n;
        drop(subject);
        let kept = held_bytes(&region) / n;
        println!(
            "{:>7} breakers  {:<17} {:>7} B/breaker  {:>5} B/breaker kept after drop",
            n,
            S::NAME,
            held,
            kept
        );
    }
}

fn main() {
    run_selected(&mut Heap);
}
