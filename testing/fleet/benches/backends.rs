//! Back-end benchmarks with real processes: compare-and-swap operations per second from one
//! and from four processes on one record (with the worst process's wait percentiles), and
//! the time from one process's trip to another process's first rejection.
//!
//! Run with `cargo xtask bench backends` (or `cargo bench -p breaker-fleet --bench
//! backends`). Figures go to BENCHMARKS.md.

use breaker_fleet::measure::{self, Spread};
use breaker_fleet::scenario::Bins;

fn show(what: &str, s: Spread) {
    println!("{what}: p50 {:?}, p99 {:?}, max {:?}", s.p50, s.p99, s.max);
}

fn main() {
    // `cargo bench` passes `--bench`; there are no other options.
    let bins = Bins {
        agent: env!("CARGO_BIN_EXE_breaker-agent").into(),
        server: env!("CARGO_BIN_EXE_flaky-server").into(),
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    println!("sqlite ({url})");
    let (ops, spread) = measure::swap_throughput(&bins, &url, 1, 2_000);
    println!("compare-and-swap, 1 process: {ops:.0} ops/s");
    show("  wait per increment", spread);
    let (ops, spread) = measure::swap_throughput(&bins, &url, 4, 1_000);
    println!("compare-and-swap, 4 processes on one record: {ops:.0} ops/s in all");
    show("  wait per increment (worst process)", spread);
    let latency = measure::trip_to_rejection(&bins, &url, 50);
    show(
        "trip to another process's first rejection (poll every 25 ms)",
        latency,
    );
}
