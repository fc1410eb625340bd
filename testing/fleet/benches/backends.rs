//! Back-end benchmarks with real processes and servers: SQLite compare-and-swap operations
//! per second from one and from four processes on one record (with the worst process's
//! wait percentiles); Redis round trips per call counted by Redis itself, in default and
//! strict mode, and calls per second through one breaker from four processes; etcd round
//! trips per call counted by etcd itself; and for each, the time from one process's trip to
//! another process's first rejection; with 1 to 10,000 breakers watched on one SQLite
//! driver, how long another connection's change takes to reach its watcher and what a flush
//! costs meanwhile. Then how far a breaker's clock is from Redis's own (and
//! the host's coarse clock from its exact one), idle and with every core loaded; and what a
//! failing call costs its caller on each back-end; and what one sick agent of three does to
//! the healthy ones, without a quorum and with one.
//!
//! Run with `cargo xtask bench backends` (or `cargo bench -p breaker-fleet --bench
//! backends`); `-- NAME…` runs only the sections named (`sqlite`, `redis`, `etcd`, `clock`,
//! `failure`, `quorum`, `scale`). `scale` is also what `cargo xtask bench scale` runs after
//! the in-process figures: one Redis driver with 1 to 100,000 breakers (time per call,
//! bytes per idle breaker in Redis), and Redis operations per second for 1 to 16 agent
//! processes by 1 to 10,000 breakers, healthy, failing without tripping, and in an outage.
//! Figures go to BENCHMARKS.md.

use breaker_fleet::measure::{self, Spread};
use breaker_fleet::scenario::Bins;
use breaker_testing::servers::{EtcdCluster, RedisServer};
use shared_breaker::RecordEncoding;
use std::time::Duration;

/// The pause between calls where round trips per call are counted at a steady rate.
const GAP: Duration = Duration::from_micros(100);

/// What a failing call that does not trip costs its caller on each back-end, one every
/// 2 ms: the caller does not wait for a networked back-end's write.
fn failure(_: &Bins) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let redis = RedisServer::start();
    let etcd = EtcdCluster::single();
    let urls = [
        "memory://".to_string(),
        format!("sqlite://{}", dir.path().join("failure.db").display()),
        redis.url(),
        format!(
            "etcd://{}",
            etcd.endpoints()[0].trim_start_matches("http://")
        ),
    ];
    println!("\ncalls one every 2 ms, time to return: failing (never tripping), succeeding");
    for url in &urls {
        let scheme = url.split("://").next().unwrap_or(url);
        for (what, failing) in [("failing", true), ("succeeding", false)] {
            show(
                &format!("  {scheme}, {what}"),
                measure::call_latency(url, 500, Duration::from_millis(2), failing),
            );
        }
    }
}

/// Three agents on one SQLite file and on one Redis, one of them sick (its endpoint refuses
/// every connection), for 5 s: without a quorum and with `min_agents(2)`, what the healthy
/// agents had rejected and what reached the sick one's broken endpoint.
fn quorum(bins: &Bins) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let redis = RedisServer::start();
    let urls = [
        format!("sqlite://{}", dir.path().join("quorum.db").display()),
        redis.url(),
    ];
    println!("\none sick agent of three, 5 failures trip, open 300 ms, a call every 5 ms, 5 s");
    for url in &urls {
        let scheme = url.split("://").next().unwrap_or(url);
        for min_agents in [1, 2] {
            let reports = breaker_fleet::scenario::run_sick_agents(
                bins,
                url,
                1,
                min_agents,
                Duration::from_secs(5),
            );
            let healthy = &reports[1..];
            let (rejected, calls): (u64, u64) = healthy
                .iter()
                .map(|r| (r.rejected, r.rejected + r.admitted))
                .fold((0, 0), |(a, b), (r, c)| (a + r, b + c));
            println!(
                "  {scheme}, min_agents {min_agents}: healthy agents rejected {rejected} of {calls} \
                 calls ({:.1}%); the sick agent's calls that reached its endpoint: {}, its own \
                 openings: {}",
                100.0 * rejected as f64 / calls.max(1) as f64,
                reports[0].failed,
                reports[0].local_openings,
            );
        }
    }
}

/// A named part of the benchmark, run alone with `-- NAME`.
type Section = (&'static str, fn(&Bins));

fn show(what: &str, s: Spread) {
    println!("{what}: p50 {:?}, p99 {:?}, max {:?}", s.p50, s.p99, s.max);
}

/// The commands a driver sends (scripts, `TIME`, `PING`, `SCAN`, subscriptions), not the
/// ones scripts run inside.
const SENT_BY_DRIVERS: [&str; 7] = [
    "evalsha",
    "eval",
    "time",
    "ping",
    "scan",
    "script|load",
    "subscribe",
];

/// Redis's own count of each command it served (`INFO commandstats`) and of the
/// connections it accepted (`INFO stats`, as `connections`).
fn redis_commands(port: u16) -> std::collections::BTreeMap<String, u64> {
    let info = |section: &str| redis_cli(port, &["INFO", section]);
    let mut counts: std::collections::BTreeMap<String, u64> = info("commandstats")
        .lines()
        .filter_map(|l| {
            let (cmd, stats) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((cmd.to_owned(), calls))
        })
        .collect();
    if let Some(n) = info("stats").lines().find_map(|l| {
        l.strip_prefix("total_connections_received:")?
            .trim()
            .parse()
            .ok()
    }) {
        counts.insert("connections".to_owned(), n);
    }
    counts
}

/// Round trips Redis has served to drivers: [`SENT_BY_DRIVERS`], from `INFO commandstats`.
fn redis_round_trips(port: u16) -> u64 {
    let counts = redis_commands(port);
    SENT_BY_DRIVERS
        .iter()
        .filter_map(|cmd| counts.get(*cmd))
        .sum()
}

/// What `redis-cli` answers to `args` on the server at `port`.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Bytes Redis holds for its data set (`used_memory` less the start-up overhead, from
/// `INFO memory`).
fn redis_dataset_bytes(port: u16) -> u64 {
    let text = redis_cli(port, &["INFO", "memory"]);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(':')?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    field("used_memory").saturating_sub(field("used_memory_startup"))
}

/// Many breakers over Redis: in one process (one driver), what a call costs and what an
/// idle breaker holds in Redis; across processes, what the fleet costs Redis per second.
fn scale(bins: &Bins) {
    println!("\nscale over Redis: one process, one driver, B breakers");
    // JSON records, then 10,000 of them again with Redis keeping hashes of values up to 512
    // bytes (a JSON record) as a listpack, not a hashtable: the setting an operator short of
    // memory can change; then compact records, which fit Redis's default listpack.
    let (json, compact) = (RecordEncoding::Json, RecordEncoding::Compact);
    let rows = [
        (1, json, None),
        (1_000, json, None),
        (10_000, json, None),
        (100_000, json, None),
        (10_000, json, Some("512")),
        (1, compact, None),
        (1_000, compact, None),
        (10_000, compact, None),
        (100_000, compact, None),
    ];
    for (breakers, encoding, listpack) in rows {
        let redis = RedisServer::start();
        if let Some(bytes) = listpack {
            redis_cli(
                redis.port(),
                &["CONFIG", "SET", "hash-max-listpack-value", bytes],
            );
            println!("  with hash-max-listpack-value {bytes}:");
        }
        let before = redis_dataset_bytes(redis.port());
        let r = measure::one_driver_many_breakers(&redis.url(), breakers, encoding, || {
            redis_round_trips(redis.port())
        });
        let bytes = redis_dataset_bytes(redis.port()).saturating_sub(before);
        println!(
            "  {breakers:>7} breakers, {:<7} records: built and first call {:.0} us each; \
             round-robin healthy call {:.1} ns; {:.5} round trips per call; Redis holds {} B \
             per idle breaker",
            encoding.as_str(),
            r.build_micros,
            r.call_nanos,
            r.round_trips_per_call,
            bytes / breakers as u64
        );
    }
    println!(
        "\nscale over Redis: N agent processes by B breakers (shared by name), a call every \
         ms per agent, the back-end counted for 3 s after a settle of 1 s or one round over the breakers"
    );
    let redis = RedisServer::start();
    for (mode, fail, threshold, append) in [
        ("healthy", false, 5, false),
        ("failing, never tripping", true, u32::MAX, false),
        ("failing, never tripping, appended", true, u32::MAX, true),
        ("outage (5 failures trip, open 1 s)", true, 5, false),
        ("outage, appended", true, 5, true),
    ] {
        for agents in [1, 4, 16] {
            for breakers in [1, 100, 10_000] {
                let shape = measure::LoadShape {
                    agents,
                    breakers,
                    fail,
                    threshold,
                    // Counted for three seconds after the settle.
                    run: (measure::settle(breakers) + Duration::from_secs(3))
                        .max(Duration::from_secs(4)),
                    append,
                };
                // The window's first and last readings, per command.
                let mut readings = Vec::new();
                let load = measure::fleet_load(bins, &redis.url(), shape, || {
                    let counts = redis_commands(redis.port());
                    let total = SENT_BY_DRIVERS.iter().filter_map(|c| counts.get(*c)).sum();
                    readings.push(counts);
                    total
                });
                // What the counted window's operations were, where there were any.
                let (before, after) = (&readings[0], &readings[readings.len() - 1]);
                let spent: Vec<String> = after
                    .iter()
                    .filter_map(|(cmd, n)| {
                        let d = n.saturating_sub(before.get(cmd).copied().unwrap_or(0));
                        (d > 0 && cmd != "info").then(|| format!("{cmd} {d}"))
                    })
                    .collect();
                println!(
                    "  {mode}, {agents:>2} agents x {breakers:>6} breakers: {:.0} Redis ops/s \
                     for {:.0} calls/s ({:.4} per call), {:.1}% rejected",
                    load.ops_per_second,
                    load.calls_per_second,
                    load.ops_per_second / load.calls_per_second.max(1.0),
                    load.rejected * 100.0
                );
                if load.ops_per_second > 0.0 {
                    println!("      counted: {}", spent.join(", "));
                }
            }
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument names a section to run.
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let bins: Bins = breaker_fleet::bins!();
    let sections: [Section; 7] = [
        ("sqlite", sqlite),
        ("redis", redis),
        ("etcd", etcd),
        ("clock", clock),
        ("failure", failure),
        ("quorum", quorum),
        ("scale", scale),
    ];
    for (name, run) in sections {
        if wanted.is_empty() || wanted.iter().any(|w| w == name) {
            run(&bins);
        }
    }
}

/// A new driver to the back-end `url` names.
fn opened(url: &str) -> std::sync::Arc<dyn shared_breaker::DynDriver> {
    shared_breaker::config::open_backend(url).expect("the back-end opens")
}

/// Strict writers on one breaker in a SQLite file, each over its own driver (its own
/// connection and worker), every operation of theirs counted on the way (SQLite has no
/// server to count them): a conflicting write retried by an update (which no writer can
/// come before again) and, as the peer in the same run, by compare-and-swap alone.
fn sqlite_strict_writers(dir: &std::path::Path) {
    use breaker_testing::Faulty;
    use shared_breaker::sqlite::SqliteDriver;
    for load in measure::StrictLoad::ALL {
        for writers in [1, 2, 4] {
            for swaps_only in [false, true] {
                let path = dir.join(format!("strict-{writers}-{load:?}-{swaps_only}.db"));
                let drivers = std::sync::Mutex::new(Vec::<Faulty<SqliteDriver>>::new());
                let open = || -> std::sync::Arc<dyn shared_breaker::DynDriver> {
                    let driver = Faulty::new(SqliteDriver::open(&path).expect("the file opens"));
                    driver.set_swaps_only(swaps_only);
                    drivers.lock().unwrap().push(driver.clone());
                    std::sync::Arc::new(driver)
                };
                let operations = || drivers.lock().unwrap().iter().map(Faulty::attempts).sum();
                let (per_call, rate) =
                    measure::strict_writers(open, writers, 2_000, load, false, operations);
                let retry = if swaps_only {
                    "compare-and-swap"
                } else {
                    "update"
                };
                println!(
                    "strict mode, {}, {writers} writers on one breaker, conflicts retried by \
                     {retry}: {per_call:.3} operations per call, {rate:.0} calls/s in all",
                    load.label()
                );
            }
        }
    }
}

fn sqlite(bins: &Bins) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    println!("sqlite ({url})");
    let (ops, spread) = measure::swap_throughput(bins, &url, 1, 2_000);
    println!("compare-and-swap, 1 process: {ops:.0} ops/s");
    show("  wait per increment", spread);
    let (ops, spread) = measure::swap_throughput(bins, &url, 4, 1_000);
    println!("compare-and-swap, 4 processes on one record: {ops:.0} ops/s in all");
    show("  wait per increment (worst process)", spread);
    let latency = measure::trip_to_rejection(bins, &url, 50);
    show(
        "trip to another process's first rejection (poll every 25 ms)",
        latency,
    );
    sqlite_strict_writers(dir.path());
    for breakers in [1, 1_000, 10_000] {
        let path = dir.path().join(format!("watched-{breakers}.db"));
        let (reach, flush) = measure::many_watched_sqlite(&path, breakers, 40);
        show(
            &format!("{breakers} watched breakers on one driver: a change reaches its watcher"),
            reach,
        );
        show("  a flush of another breaker right after the change", flush);
    }
}

fn redis(bins: &Bins) {
    let redis = RedisServer::start();
    let url = redis.url();
    println!("\nredis ({url})");
    for strict in [false, true] {
        let (per_call, rate) = measure::round_trips_per_call(&url, strict, 20_000, GAP, || {
            redis_round_trips(redis.port())
        });
        let mode = if strict { "strict" } else { "default" };
        println!("round trips per call, {mode} mode, closed, {rate:.0} calls/s: {per_call:.4}");
    }
    for load in measure::StrictLoad::ALL {
        for writers in [1, 2, 4] {
            // Outcomes by compare-and-swap, then appended to the log, side by side.
            for append in [false, true] {
                let (per_call, rate) = measure::strict_writers(
                    || opened(&url),
                    writers,
                    2_000,
                    load,
                    append,
                    || redis_round_trips(redis.port()),
                );
                let how = if append { "appended" } else { "swapped" };
                println!(
                    "strict mode, {}, {writers} writers on one breaker, outcomes {how}: \
                     {per_call:.3} round trips per call, {rate:.0} calls/s in all",
                    load.label()
                );
            }
        }
    }
    let calls = measure::fleet_throughput(bins, &url, 4, 2_000_000);
    println!("calls through one breaker from 4 agent processes: {calls:.0} calls/s in all");
    let latency = measure::trip_to_rejection(bins, &url, 50);
    show(
        "trip to another process's first rejection (pub/sub)",
        latency,
    );
}

fn etcd(bins: &Bins) {
    let etcd = EtcdCluster::single();
    let url = format!(
        "etcd://{}",
        etcd.endpoints()[0].trim_start_matches("http://")
    );
    println!("\netcd ({url}, one member)");
    for strict in [false, true] {
        let (per_call, rate) =
            measure::round_trips_per_call(&url, strict, 10_000, GAP, || etcd.unary_requests(0));
        let mode = if strict { "strict" } else { "default" };
        println!("round trips per call, {mode} mode, closed, {rate:.0} calls/s: {per_call:.4}");
    }
    for load in measure::StrictLoad::ALL {
        for writers in [1, 2, 4] {
            let (per_call, rate) = measure::strict_writers(
                || opened(&url),
                writers,
                1_000,
                load,
                false,
                || etcd.unary_requests(0),
            );
            println!(
                "strict mode, {}, {writers} writers on one breaker: {per_call:.3} round \
                 trips per call, {rate:.0} calls/s in all",
                load.label()
            );
        }
    }
    let latency = measure::trip_to_rejection(bins, &url, 50);
    show("trip to another process's first rejection (watch)", latency);
    let (seen, per_trip) =
        measure::open_period_as_seen(&url, Duration::from_secs(2), 10, || etcd.unary_requests(0));
    println!("round trips per trip (lease grant and transaction): {per_trip:.2}");
    show(
        "open period of 2 s (an etcd lease), trip to another agent's probe",
        seen,
    );
}

/// Deadlines are judged within a few milliseconds of the back-end's time, however loaded the
/// host is; the coarse clock that only the cached hot path reads may lag.
fn clock(_: &Bins) {
    let redis = RedisServer::start();
    let url = redis.url();
    println!("\nclocks ({url})");
    for (load, threads) in [("idle", 0), ("loaded: 4 busy threads on 2 cores", 4)] {
        let _load = measure::Load::start(threads);
        let (error, uncertainty) = measure::clock_error(&url, 20, 50);
        show(
            &format!("breaker clock against Redis TIME, 20 fresh agents, {load}"),
            error,
        );
        show("  (half the best sample's round trip)", uncertainty);
        show(
            &format!("coarse host clock behind the exact one, {load}"),
            measure::coarse_clock_lag(500, Duration::from_millis(3)),
        );
    }
}
