//! Measurements across processes, shared by every back-end's benchmark: compare-and-swap
//! throughput and waits, and how long a trip by one process takes to reach another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shared_breaker::{Breaker, DynDriver, Policy};

use crate::procs::Proc;
use crate::scenario::{self, Bins};

/// Percentiles of a sample.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Spread {
    /// The spread of `sample` (not empty).
    pub fn of(mut sample: Vec<Duration>) -> Spread {
        sample.sort_unstable();
        let at = |p: f64| sample[((sample.len() - 1) as f64 * p).round() as usize];
        Spread {
            p50: at(0.5),
            p99: at(0.99),
            max: *sample.last().expect("a sample"),
        }
    }
}

/// Compare-and-swap throughput of `processes` processes making `each` increments of one
/// record at once: total operations per second, and the worst process's wait percentiles.
pub fn swap_throughput(bins: &Bins, url: &str, processes: usize, each: u32) -> (f64, Spread) {
    let reports = scenario::run_hammer(bins, url, processes, each);
    let slowest = reports
        .iter()
        .map(|r| r["seconds"].as_f64().unwrap_or(f64::MAX))
        .fold(0.0, f64::max);
    let micros = |key: &str| {
        Duration::from_micros(
            reports
                .iter()
                .map(|r| r[key].as_u64().unwrap_or(0))
                .max()
                .unwrap_or(0),
        )
    };
    let spread = Spread {
        p50: micros("p50_us"),
        p99: micros("p99_us"),
        max: micros("max_us"),
    };
    (f64::from(each) * processes as f64 / slowest, spread)
}

fn epoch_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn nth_event(agent: &Proc, event: &str, n: usize) -> u64 {
    let needle = format!("\"{event}\"");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<String> = agent
            .lines()
            .into_iter()
            .filter(|l| l.contains(&needle))
            .collect();
        if let Some(line) = found.get(n) {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            return v["at_us"].as_u64().expect("a time");
        }
        assert!(Instant::now() < deadline, "no {event} event #{n}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How long after one process opens the breaker another process, calling all the while,
/// first rejects: `trips` times, on the host's clock (both processes share it).
pub fn trip_to_rejection(bins: &Bins, url: &str, trips: usize) -> Spread {
    let name = format!("latency-{}", std::process::id());
    let agent = Proc::spawn(
        "noop agent",
        &bins.agent,
        &["--backend", url, "--name", &name, "--noop"].map(String::from),
    );
    let driver = shared_breaker::config::open_backend(url).expect("the back-end opens");
    let tripper = Breaker::builder_dyn(&name, driver)
        .policy(Policy::default())
        .build()
        .expect("a breaker");
    nth_event(&agent, "admitted", 0);
    let mut sample = Vec::with_capacity(trips);
    for i in 0..trips {
        // Trip at varied moments, so that the sample does not lock onto the agent's polling
        // phase.
        std::thread::sleep(Duration::from_micros((i as u64 * 7_919) % 30_000));
        let before = epoch_micros();
        futures_executor::block_on(tripper.force_open()).expect("the trip is written");
        let rejected_at = nth_event(&agent, "rejected", i);
        sample.push(Duration::from_micros(rejected_at.saturating_sub(before)));
        futures_executor::block_on(tripper.reset()).expect("the reset is written");
        nth_event(&agent, "admitted", i + 1);
    }
    Spread::of(sample)
}

/// Calls per second through one breaker from `processes` agent processes at once, each
/// making `each` no-op calls back to back: the total over the wall time from the start
/// signal to the last report (the processes share the cores, so their own times overlap
/// only in part).
pub fn fleet_throughput(bins: &Bins, url: &str, processes: usize, each: u32) -> f64 {
    let name = format!("throughput-{}", std::process::id());
    let args = [
        "--backend",
        url,
        "--name",
        &name,
        "--throughput",
        &each.to_string(),
    ]
    .map(String::from);
    let mut procs: Vec<Proc> = (0..processes)
        .map(|i| Proc::spawn(&format!("throughput {i}"), &bins.agent, &args))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    for p in &mut procs {
        p.send_line("go");
    }
    for p in &procs {
        p.wait_for(Duration::from_secs(120), |l| l.contains("\"throughput\""))
            .expect("a report");
    }
    let wall = started.elapsed().as_secs_f64();
    for p in &mut procs {
        p.wait_exit(Duration::from_secs(120))
            .expect("the agent finishes");
    }
    f64::from(each) * processes as f64 / wall
}

/// Back-end round trips per call at a steady call rate: `calls` successful calls, one about
/// every `gap`, through one breaker (default or strict mode), with the back-end's own count
/// of the round trips it served read before and after by `round_trips`.
pub fn round_trips_per_call(
    url: &str,
    strict: bool,
    calls: u32,
    gap: Duration,
    round_trips: impl Fn() -> u64,
) -> (f64, f64) {
    let driver = shared_breaker::config::open_backend(url).expect("the back-end opens");
    let policy = Policy::builder().strict(strict).build().expect("a policy");
    let name = format!("round-trips-{}-{strict}", std::process::id());
    let b = Breaker::builder_dyn(&name, driver)
        .policy(policy)
        .build()
        .expect("a breaker");
    let _ = b.call_blocking(|| Ok::<(), ()>(()));
    b.flush_blocking().expect("flush");
    let before = round_trips();
    let started = Instant::now();
    for _ in 0..calls {
        let _ = b.call_blocking(|| Ok::<(), ()>(()));
        std::thread::sleep(gap);
    }
    let rate = f64::from(calls) / started.elapsed().as_secs_f64();
    let used = round_trips().saturating_sub(before);
    (used as f64 / f64::from(calls), rate)
}

/// What the strict writers of [`strict_writers`] call under.
#[derive(Clone, Copy, Debug)]
pub enum StrictLoad {
    /// Every call succeeds, under the default rule (failures within a window), which reads
    /// no successes: a call is the admission's read alone.
    DefaultRule,
    /// One call in ten fails, under 5 consecutive failures (never reached): every failure
    /// is written, and so is the success that breaks its run.
    ConsecutiveFailures,
    /// One call in ten fails, under a failure rate of 99% (never reached): with failures in
    /// the window every outcome is written, the case where writers contend most.
    FailureRate,
}

impl StrictLoad {
    /// Every load, in the order the bench prints them.
    pub const ALL: [StrictLoad; 3] = [
        StrictLoad::DefaultRule,
        StrictLoad::ConsecutiveFailures,
        StrictLoad::FailureRate,
    ];

    /// How the bench names it.
    pub fn label(self) -> &'static str {
        match self {
            StrictLoad::DefaultRule => "default rule, all succeeding",
            StrictLoad::ConsecutiveFailures => "consecutive failures, 1 in 10 failing",
            StrictLoad::FailureRate => "failure rate, 1 in 10 failing",
        }
    }

    fn policy(self, append: bool) -> Policy {
        let rule = match self {
            StrictLoad::DefaultRule => Policy::builder(),
            StrictLoad::ConsecutiveFailures => Policy::builder().consecutive_failures(5),
            StrictLoad::FailureRate => Policy::builder().failure_rate(0.99, 10),
        };
        rule.strict(true)
            .append_outcomes(append)
            .build()
            .expect("a policy")
    }

    /// Whether call `i` of a writer fails.
    fn fails(self, i: u32) -> bool {
        !matches!(self, StrictLoad::DefaultRule) && i % 10 == 9
    }
}

/// Strict mode with several writers on one breaker: `writers` agents (threads, each over its
/// own driver from `open`, as separate processes would be), each making `each` calls back
/// to back under `load`. Returns the back-end's round trips per call, counted by
/// `round_trips` before and after (a read per admission and a write per outcome a rule
/// reads, plus the retries that conflicts between the writers cost), and the calls per
/// second of all writers together. With `append`, outcomes are appended to the record's
/// log where the driver keeps one ([`Policy::append_outcomes`]).
pub fn strict_writers(
    open: impl Fn() -> Arc<dyn DynDriver>,
    writers: usize,
    each: u32,
    load: StrictLoad,
    append: bool,
    round_trips: impl Fn() -> u64,
) -> (f64, f64) {
    let policy = load.policy(append);
    let name = format!(
        "strict-writers-{}-{writers}-{load:?}-{append}",
        std::process::id()
    );
    let agents: Vec<Breaker> = (0..writers)
        .map(|_| {
            Breaker::builder_dyn(&name, open())
                .policy(policy.clone())
                .build()
                .expect("a breaker")
        })
        .collect();
    for a in &agents {
        let _ = a.call_blocking(|| Ok::<(), ()>(()));
    }
    let before = round_trips();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for a in &agents {
            scope.spawn(move || {
                for i in 0..each {
                    let _ = a.call_blocking(|| if load.fails(i) { Err(()) } else { Ok(()) });
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let calls = f64::from(each) * writers as f64;
    let used = round_trips().saturating_sub(before);
    (used as f64 / calls, calls / elapsed)
}

/// How long an open period of `open_for` really lasts, seen by another agent: `runs` times,
/// one breaker trips on a failure (a back-end that keeps timers starts the open period's
/// timer with that write) and a second breaker over its own driver, polling every
/// millisecond, measures the time from the trip until it is admitted as a probe, which then
/// succeeds and closes the breaker for the next run. Also returns the back-end's round trips
/// per trip, counted by `round_trips` around the tripping call.
pub fn open_period_as_seen(
    url: &str,
    open_for: Duration,
    runs: usize,
    round_trips: impl Fn() -> u64,
) -> (Spread, f64) {
    let policy = Policy::builder()
        .consecutive_failures(1)
        .open_for(open_for)
        .build()
        .expect("a policy");
    let name = format!("open-period-{}", std::process::id());
    let agent = || {
        let driver = shared_breaker::config::open_backend(url).expect("the back-end opens");
        Breaker::builder_dyn(&name, driver)
            .policy(policy.clone())
            .build()
            .expect("a breaker")
    };
    let (tripper, prober) = (agent(), agent());
    prober.flush_blocking().expect("flush");
    let mut sample = Vec::with_capacity(runs);
    let mut trip_round_trips = 0;
    for _ in 0..runs {
        tripper.flush_blocking().expect("flush");
        let before = round_trips();
        let started = Instant::now();
        let _ = tripper.call_blocking(|| Err::<(), ()>(()));
        tripper.written_blocking();
        trip_round_trips += round_trips().saturating_sub(before);
        assert_eq!(
            tripper.state(),
            Some(shared_breaker::State::Open),
            "one failure trips"
        );
        loop {
            match prober.acquire_blocking() {
                Ok(permit) => {
                    sample.push(started.elapsed());
                    permit.record_blocking(shared_breaker::Outcome::Success);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
    (Spread::of(sample), trip_round_trips as f64 / runs as f64)
}

/// Busy threads that keep every core of the machine loaded while they live, so that a
/// measurement sees the scheduling delays of a loaded host.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts `threads` threads that spin until the load is dropped.
    pub fn start(threads: usize) -> Load {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// How far from the back-end's own clock a breaker judges deadlines: `agents` times, a fresh
/// breaker over its own driver makes one call (which aligns its clock with the back-end's),
/// then `samples` times a second driver reads the back-end's clock between two readings of the
/// breaker's. Per agent, the sample with the shortest round trip estimates the breaker's error
/// (the back-end's reading against the middle of the two); the second spread is that sample's
/// half round trip, the estimate's own uncertainty. Both are in whole milliseconds, the
/// resolution of breaker time.
pub fn clock_error(url: &str, agents: usize, samples: usize) -> (Spread, Spread) {
    let reference = shared_breaker::config::open_backend(url).expect("the back-end opens");
    let read_reference = || {
        futures_executor::block_on(reference.now(Duration::from_secs(1)))
            .expect("the back-end's clock")
            .expect("a back-end with a clock")
    };
    read_reference();
    let (mut errors, mut uncertainty) = (Vec::new(), Vec::new());
    for agent in 0..agents {
        let driver = shared_breaker::config::open_backend(url).expect("the back-end opens");
        let b = Breaker::builder_dyn(&format!("clock-{}-{agent}", std::process::id()), driver)
            .build()
            .expect("a breaker");
        let _ = b.call_blocking(|| Ok::<(), ()>(()));
        let mut best: Option<(u64, u64)> = None;
        for _ in 0..samples {
            let before = b.now().as_millis();
            let theirs = read_reference().as_millis();
            let after = b.now().as_millis();
            let round_trip = after.saturating_sub(before);
            let error = theirs.abs_diff(before + round_trip / 2);
            if best.is_none_or(|(rt, _)| round_trip < rt) {
                best = Some((round_trip, error));
            }
        }
        let (round_trip, error) = best.expect("at least one sample");
        errors.push(Duration::from_millis(error));
        uncertainty.push(Duration::from_millis(round_trip.div_ceil(2)));
    }
    (Spread::of(errors), Spread::of(uncertainty))
}

/// How far the host's coarse clock ([`shared_breaker::SystemClock`]'s `now`, which a breaker
/// uses to admit from its cached view) lags behind its exact reading: `samples` readings of
/// both, one every `gap`.
pub fn coarse_clock_lag(samples: usize, gap: Duration) -> Spread {
    use shared_breaker::{Clock, SystemClock};
    let _ = SystemClock.now();
    let lag = (0..samples)
        .map(|_| {
            std::thread::sleep(gap);
            let coarse = SystemClock.now();
            SystemClock::precise().saturating_duration_since(coarse)
        })
        .collect();
    Spread::of(lag)
}

/// What a call costs its caller at a steady rate: `calls` calls through one breaker, one
/// every `gap`, all failing (`failing`, under a rule they never trip) or all succeeding;
/// the time each took to return (the callee itself answers at once). In the cached mode
/// the caller does not wait for a failure's write on a back-end whose writes are slower
/// than a hand-off; succeeding calls show the floor, a call on a thread that just woke.
pub fn call_latency(url: &str, calls: u32, gap: Duration, failing: bool) -> Spread {
    let driver = shared_breaker::config::open_backend(url).expect("the back-end opens");
    let policy = Policy::builder()
        .failures_within(u32::MAX, Duration::from_secs(3600))
        .build()
        .expect("a policy");
    let name = format!("failure-path-{}", std::process::id());
    let b = Breaker::builder_dyn(&name, driver)
        .policy(policy)
        .build()
        .expect("a breaker");
    let _ = b.call_blocking(|| Err::<(), ()>(()));
    b.flush_blocking().expect("flush");
    let sample = (0..calls)
        .map(|_| {
            std::thread::sleep(gap);
            let started = Instant::now();
            let _ = b.call_blocking(|| if failing { Err(()) } else { Ok(()) });
            started.elapsed()
        })
        .collect();
    b.flush_blocking().expect("flush");
    Spread::of(sample)
}

/// What many watched breakers on one SQLite driver cost when another process writes:
/// `breakers` breakers over one driver of the database at `path`, each loaded and watched;
/// then `rounds` times, another driver (a connection of its own, as another process has)
/// forces one of them open and back, and one of the watched breakers flushes at once. Returns
/// the time each change took to reach its watching breaker, and each flush's time.
pub fn many_watched_sqlite(
    path: &std::path::Path,
    breakers: usize,
    rounds: usize,
) -> (Spread, Spread) {
    use shared_breaker::sqlite::SqliteDriver;
    let watching = SqliteDriver::open(path).expect("the database opens");
    let other = SqliteDriver::open(path).expect("the database opens");
    let all: Vec<Breaker> = (0..breakers)
        .map(|i| {
            let b = Breaker::builder(&format!("watched-{i}"), watching.clone())
                .build()
                .expect("a breaker");
            b.refresh_blocking().expect("loaded and watched");
            b
        })
        .collect();
    let (mut reach, mut flush) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let i = round * 7919 % breakers;
        let writer = Breaker::builder(&format!("watched-{i}"), other.clone())
            .build()
            .expect("a breaker");
        let target = if round % 2 == 0 {
            futures_executor::block_on(writer.force_open()).expect("written");
            shared_breaker::State::ForcedOpen
        } else {
            futures_executor::block_on(writer.reset()).expect("written");
            shared_breaker::State::Closed
        };
        let written = Instant::now();
        all[(i + 1) % breakers].flush_blocking().expect("flush");
        flush.push(written.elapsed());
        while all[i].state() != Some(target) {
            assert!(written.elapsed() < Duration::from_secs(30), "never reached");
            std::thread::sleep(Duration::from_micros(200));
        }
        reach.push(written.elapsed());
    }
    (Spread::of(reach), Spread::of(flush))
}

/// What `agents` processes calling `breakers` breakers each did to the back-end.
#[derive(Clone, Copy, Debug)]
pub struct FleetLoad {
    /// Back-end operations per second, all agents together, as `ops` counted them.
    pub ops_per_second: f64,
    /// Calls per second, all agents together.
    pub calls_per_second: f64,
    /// Of the calls, the share rejected.
    pub rejected: f64,
}

/// The shape of a fleet's load: see [`fleet_load`].
#[derive(Clone, Copy, Debug)]
pub struct LoadShape {
    /// Agent processes, each over its own driver.
    pub agents: usize,
    /// Breakers in each agent (the same names in every agent, so they share them).
    pub breakers: usize,
    /// Whether every call fails (else every call succeeds).
    pub fail: bool,
    /// Failures within 60 s that trip a breaker.
    pub threshold: u32,
    /// How long the agents call.
    pub run: Duration,
    /// Whether the agents append their outcomes to the record's log
    /// ([`Policy::append_outcomes`]) rather than swap them into the record.
    pub append: bool,
}

/// How long a fleet's load runs before the back-end's operations are counted: a second,
/// or one round of calls over every breaker if that is longer, so that a breaker whose
/// start-up read timed out (16 processes building 10,000 breakers each at once) has
/// recovered at its next call before counting starts. Callers make `run` longer.
pub fn settle(breakers: usize) -> Duration {
    Duration::from_secs(1).max(Duration::from_millis(breakers as u64))
}

/// `shape.agents` agent processes calling their breakers round-robin, one call every
/// millisecond per agent. The back-end's operations are counted by `ops` from the
/// [`settle`] after every agent has built and called its breakers and begun (at most a
/// second before the end of `run`), to the moment each has made its last call.
pub fn fleet_load(
    bins: &Bins,
    url: &str,
    shape: LoadShape,
    mut ops: impl FnMut() -> u64,
) -> FleetLoad {
    let LoadShape {
        agents,
        breakers,
        fail,
        threshold,
        run,
        append,
    } = shape;
    let name = format!(
        "load-{}-{agents}-{breakers}-{fail}-{threshold}-{append}",
        std::process::id()
    );
    let mut args: Vec<String> = [
        "--backend",
        url,
        "--name",
        &name,
        "--breakers",
        &breakers.to_string(),
        "--interval-ms",
        "1",
        "--threshold",
        &threshold.to_string(),
        "--open-for-ms",
        "1000",
        "--run-ms",
        &run.as_millis().to_string(),
    ]
    .map(String::from)
    .to_vec();
    if fail {
        args.push("--fail".into());
    }
    if append {
        args.push("--append-outcomes".into());
    }
    let mut procs: Vec<Proc> = (0..agents)
        .map(|i| Proc::spawn(&format!("load {i}"), &bins.agent, &args))
        .collect();
    for p in &procs {
        p.wait_for(Duration::from_secs(300), |l| l.contains("\"ready\""))
            .expect("the agent built its breakers");
    }
    let started = Instant::now();
    for p in &mut procs {
        p.send_line("go");
    }
    // The settle takes what starting up left in flight (pushes of the records the agents
    // created, read again where they came late; breakers recovering from a start-up read
    // that timed out): the back-end is counted after it.
    std::thread::sleep(settle(breakers).min(run.saturating_sub(Duration::from_secs(1))));
    let before = ops();
    let counted_from = Instant::now();
    let (mut calls, mut rejected) = (0u64, 0u64);
    for p in &procs {
        let line = p
            .wait_for(run + Duration::from_secs(60), |l| l.contains("\"load\""))
            .expect("a report");
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        calls += v["calls"].as_u64().unwrap_or(0);
        rejected += v["rejected"].as_u64().unwrap_or(0);
    }
    let used = ops().saturating_sub(before);
    let counted = counted_from.elapsed().as_secs_f64();
    let seconds = started.elapsed().as_secs_f64();
    for p in &mut procs {
        let _ = p.wait_exit(Duration::from_secs(60));
    }
    FleetLoad {
        ops_per_second: used as f64 / counted,
        calls_per_second: calls as f64 / seconds,
        rejected: rejected as f64 / calls.max(1) as f64,
    }
}

/// One process, one driver, many breakers: see [`one_driver_many_breakers`].
#[derive(Clone, Copy, Debug)]
pub struct ManyBreakers {
    /// Microseconds to build a breaker and make its first call, on average.
    pub build_micros: f64,
    /// Nanoseconds per successful call, the breakers called round-robin.
    pub call_nanos: f64,
    /// The back-end's round trips per call meanwhile, as `round_trips` counted them.
    pub round_trips_per_call: f64,
}

/// `breakers` breakers over one driver for `url`, writing their records in `encoding`, each
/// built, called once and flushed (so that its record exists), then called round-robin,
/// every call a success, at least 1,000,000 calls and five per breaker.
pub fn one_driver_many_breakers(
    url: &str,
    breakers: usize,
    encoding: shared_breaker::RecordEncoding,
    round_trips: impl Fn() -> u64,
) -> ManyBreakers {
    let driver = shared_breaker::config::open_backend(url).expect("the back-end opens");
    let policy = std::sync::Arc::new(
        shared_breaker::Policy::builder()
            .record_encoding(encoding)
            .build()
            .expect("a valid policy"),
    );
    let started = Instant::now();
    let all: Vec<Breaker> = (0..breakers)
        .map(|i| {
            let b = Breaker::builder_dyn(&format!("many-{i}"), driver.clone())
                .policy(policy.clone())
                .build()
                .expect("a breaker");
            let _ = b.call_blocking(|| Ok::<(), ()>(()));
            b
        })
        .collect();
    for b in &all {
        b.flush_blocking().expect("flush");
    }
    let build_micros = started.elapsed().as_secs_f64() * 1e6 / breakers as f64;
    let calls = (breakers * 5).max(1_000_000);
    let before = round_trips();
    let started = Instant::now();
    for i in 0..calls {
        let r = all[i % breakers].call_blocking(|| Ok::<usize, ()>(i));
        std::hint::black_box(r.is_ok());
    }
    let call_nanos = started.elapsed().as_secs_f64() * 1e9 / calls as f64;
    let used = round_trips().saturating_sub(before);
    ManyBreakers {
        build_micros,
        call_nanos,
        round_trips_per_call: used as f64 / calls as f64,
    }
}
