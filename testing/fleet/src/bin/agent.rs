//! An agent process: one breaker over a real back-end, calling the flaky test server in a
//! loop and printing its breaker's transitions as JSON lines, for the fleet tests. With
//! `--hammer N` it instead makes N compare-and-swap increments of one record, straight
//! through the driver, and prints how long each took.
//!
//! Output lines: `{"event":"ready"}` after the first call, then
//! `{"event":"transition","from":..,"to":..,"generation":..,"cause":"caused"|"observed"|"local"}`,
//! and with `--run-ms` a last `{"event":"summary",..}` line.

use std::time::{Duration, Instant};

use clap::Parser;
use shared_breaker::{Breaker, Cause, DynDriver, Event, Name, Policy, RecordEncoding, Swap};

/// A breaker agent for fleet tests.
#[derive(Parser, Debug)]
#[command(name = "breaker-agent")]
struct Args {
    /// The back-end: `memory://`, `sqlite://PATH`, `redis://HOST:PORT`,
    /// `redis-cluster://HOST:PORT,...` or `etcd://HOST:PORT,...`.
    #[arg(long)]
    backend: String,
    /// The breaker's name.
    #[arg(long, default_value = "fleet")]
    name: String,
    /// Base URL of the flaky server (`http://127.0.0.1:PORT`).
    #[arg(long)]
    target: Option<String>,
    /// Pause between calls, in milliseconds.
    #[arg(long, default_value_t = 5)]
    interval_ms: u64,
    /// Failures within 60 s that trip the breaker.
    #[arg(long, default_value_t = 3)]
    threshold: u32,
    /// Open period, in milliseconds.
    #[arg(long, default_value_t = 300)]
    open_for_ms: u64,
    /// Probes per half-open period.
    #[arg(long, default_value_t = 1)]
    permits: u32,
    /// Deadline of each back-end operation, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    backend_timeout_ms: u64,
    /// Make this many compare-and-swap increments instead of calls, once a line arrives on
    /// standard input.
    #[arg(long)]
    hammer: Option<u32>,
    /// Call a no-op instead of the server, every 200 microseconds, and print when the
    /// breaker starts and stops rejecting (`rejected`/`admitted`, with the wall-clock time in
    /// microseconds): for measuring how fast a trip reaches this agent.
    #[arg(long)]
    noop: bool,
    /// Make this many no-op calls as fast as possible, once a line arrives on standard
    /// input, and print the rate.
    #[arg(long)]
    throughput: Option<u32>,
    /// Write every outcome at once (strict mode).
    #[arg(long)]
    strict: bool,
    /// How long a claimed probe permit stays claimed, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    probe_lease_ms: u64,
    /// Wait for a half-open probe permit, print `probe-held`, and hang on to it without
    /// ever reporting (until killed): a probe holder that dies.
    #[arg(long)]
    hold_probe: bool,
    /// A quorum: distinct agents whose failures a fleet-wide trip needs (`min_agents`).
    #[arg(long, default_value_t = 1)]
    min_agents: u32,
    /// Write the record in the compact encoding instead of JSON (`record_encoding`).
    #[arg(long)]
    compact_records: bool,
    /// Append outcomes to the record's log where the driver keeps one
    /// (`append_outcomes`).
    #[arg(long)]
    append_outcomes: bool,
    /// Call this many breakers (NAME-0 to NAME-(N-1)) round-robin, a call every
    /// `--interval-ms` (0: a call every 100 microseconds), each call failing with `--fail`,
    /// until `--run-ms` passes; then print `{"event":"load","calls":..,"rejected":..}`. The
    /// breakers are built and called once each before `ready` is printed; the calls begin
    /// once a line arrives on standard input.
    #[arg(long)]
    breakers: Option<usize>,
    /// With `--breakers`: every call fails.
    #[arg(long)]
    fail: bool,
    /// Stop calling after this many milliseconds, print a summary line
    /// (`{"event":"summary","admitted":..,"rejected":..,"failed":..}`) and exit.
    #[arg(long)]
    run_ms: Option<u64>,
}

fn main() {
    let args = Args::parse();
    let driver = match shared_breaker::config::open_backend(&args.backend) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("breaker-agent: {e}");
            std::process::exit(2);
        }
    };
    let timeout = Duration::from_millis(args.backend_timeout_ms);
    match (args.hammer, args.throughput) {
        _ if args.breakers.is_some() => load(&args, driver),
        (Some(n), _) => hammer(&*driver, &args.name, n, timeout),
        (None, Some(n)) => throughput(&args, driver, n),
        (None, None) if args.noop => noop(&args, driver),
        (None, None) if args.hold_probe => hold_probe(&args, driver),
        (None, None) => run(args, driver),
    }
}

/// Many breakers under load: see `--breakers`.
fn load(args: &Args, driver: std::sync::Arc<dyn DynDriver>) {
    let count = args.breakers.unwrap_or(1).max(1);
    let breakers: Vec<Breaker> = (0..count)
        .map(|i| named(args, driver.clone(), &format!("{}-{i}", args.name)))
        .collect();
    for b in &breakers {
        let _ = b.call_blocking(|| Ok::<(), ()>(()));
    }
    for b in &breakers {
        let _ = b.flush_blocking();
    }
    println!("{}", serde_json::json!({"event": "ready"}));
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let gap = Duration::from_micros(if args.interval_ms == 0 {
        100
    } else {
        args.interval_ms * 1_000
    });
    let stop = Instant::now() + Duration::from_millis(args.run_ms.unwrap_or(1_000));
    let (mut calls, mut rejected) = (0u64, 0u64);
    let mut next = Instant::now();
    while Instant::now() < stop {
        let b = &breakers[calls as usize % count];
        let fail = args.fail;
        let r = b.call_blocking(|| if fail { Err(()) } else { Ok(()) });
        rejected += u64::from(r.is_err_and(|e| e.is_rejected()));
        calls += 1;
        next += gap;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    println!(
        "{}",
        serde_json::json!({"event": "load", "calls": calls, "rejected": rejected})
    );
}

fn breaker(args: &Args, driver: std::sync::Arc<dyn DynDriver>) -> Breaker {
    named(args, driver, &args.name)
}

/// A breaker called `name` with the policy the arguments give.
fn named(args: &Args, driver: std::sync::Arc<dyn DynDriver>, name: &str) -> Breaker {
    let policy = Policy::builder()
        .failures_within(args.threshold, Duration::from_secs(60))
        .open_for(Duration::from_millis(args.open_for_ms))
        .half_open_permits(args.permits)
        .success_threshold(1)
        .backend_timeout(Duration::from_millis(args.backend_timeout_ms))
        .strict(args.strict)
        .probe_lease(Duration::from_millis(args.probe_lease_ms))
        .min_agents(args.min_agents)
        .append_outcomes(args.append_outcomes)
        .record_encoding(if args.compact_records {
            RecordEncoding::Compact
        } else {
            RecordEncoding::Json
        })
        .build()
        .unwrap_or_else(|e| {
            eprintln!("breaker-agent: {e}");
            std::process::exit(2)
        });
    Breaker::builder_dyn(name, driver)
        .policy(policy)
        .build()
        .unwrap_or_else(|e| {
            eprintln!("breaker-agent: {e}");
            std::process::exit(2)
        })
}

fn epoch_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// Calls a no-op as often as it can and prints the edges between admitted and rejected.
fn noop(args: &Args, driver: std::sync::Arc<dyn DynDriver>) {
    let breaker = breaker(args, driver);
    let mut rejecting = None;
    loop {
        let rejected = breaker
            .call_blocking(|| Ok::<(), ()>(()))
            .is_err_and(|e| e.is_rejected());
        if rejecting != Some(rejected) {
            let event = if rejected { "rejected" } else { "admitted" };
            println!(
                "{}",
                serde_json::json!({"event": event, "at_us": epoch_micros() as u64})
            );
            rejecting = Some(rejected);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Claims a probe permit and never reports it.
fn hold_probe(args: &Args, driver: std::sync::Arc<dyn DynDriver>) {
    let breaker = breaker(args, driver);
    loop {
        if let Ok(permit) = breaker.acquire_blocking()
            && permit.is_probe()
        {
            println!("{}", serde_json::json!({"event": "probe-held"}));
            // Hang on to it until killed: a probe whose holder died.
            std::mem::forget(permit);
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Makes `n` no-op calls back to back and prints how many went through per second.
fn throughput(args: &Args, driver: std::sync::Arc<dyn DynDriver>, n: u32) {
    let breaker = breaker(args, driver);
    let _ = breaker.call_blocking(|| Ok::<(), ()>(()));
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let started = Instant::now();
    let mut admitted = 0u32;
    for _ in 0..n {
        admitted += u32::from(breaker.call_blocking(|| Ok::<(), ()>(())).is_ok());
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = breaker.flush_blocking();
    println!(
        "{}",
        serde_json::json!({"event": "throughput", "calls": n, "admitted": admitted, "seconds": seconds})
    );
}

fn run(args: Args, driver: std::sync::Arc<dyn DynDriver>) {
    let breaker = breaker(&args, driver);
    let target = format!(
        "{}/call",
        args.target.unwrap_or_else(|| {
            eprintln!("breaker-agent: --target is required without --hammer");
            std::process::exit(2)
        })
    );
    let http: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let mut events = breaker.subscribe();
    let mut ready = false;
    let stop = args
        .run_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let (mut admitted, mut rejected, mut failed) = (0u64, 0u64, 0u64);
    loop {
        if stop.is_some_and(|at| Instant::now() >= at) {
            let line = serde_json::json!({
                "event": "summary",
                "admitted": admitted,
                "rejected": rejected,
                "failed": failed,
            });
            println!("{line}");
            return;
        }
        match breaker.call_blocking(|| http.get(&target).call().map(|_| ())) {
            Ok(()) => admitted += 1,
            Err(e) if e.is_rejected() => rejected += 1,
            Err(_) => (admitted, failed) = (admitted + 1, failed + 1),
        }
        if !ready {
            println!("{}", serde_json::json!({"event": "ready"}));
            ready = true;
        }
        for event in events.drain() {
            if let Event::Transition {
                from,
                to,
                generation,
                cause,
                ..
            } = event
            {
                let cause = match cause {
                    Cause::Caused => "caused",
                    Cause::Local => "local",
                    _ => "observed",
                };
                let line = serde_json::json!({
                    "event": "transition",
                    "from": from.as_str(),
                    "to": to.as_str(),
                    "generation": generation,
                    "cause": cause,
                });
                println!("{line}");
            }
        }
        std::thread::sleep(Duration::from_millis(args.interval_ms));
    }
}

/// Increments the counter stored under `name` `n` times with compare-and-swap, and prints
/// the wait of each increment (retries included) as percentiles.
fn hammer(driver: &dyn DynDriver, name: &str, n: u32, timeout: Duration) {
    let name = Name::new(name).unwrap_or_else(|e| {
        eprintln!("breaker-agent: {e}");
        std::process::exit(2)
    });
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let mut waits = Vec::with_capacity(n as usize);
    let (mut errors, mut conflicts) = (0u64, 0u64);
    let started = Instant::now();
    for _ in 0..n {
        let begin = Instant::now();
        let mut current = futures_executor::block_on(driver.load(&name, timeout))
            .ok()
            .flatten();
        loop {
            let (expected, count) = match &current {
                Some(v) => (Some(v.version), parse(&v.value)),
                None => (None, 0),
            };
            let next = (count + 1).to_string().into_bytes();
            match futures_executor::block_on(
                driver.compare_and_swap(&name, expected, next, None, timeout),
            ) {
                Ok(Swap::Swapped { .. }) => break,
                Ok(Swap::Conflict { current: now }) => {
                    conflicts += 1;
                    current = now;
                }
                Ok(_) => unreachable!("a swap either succeeds or conflicts"),
                Err(e) => {
                    eprintln!("breaker-agent: {e}");
                    errors += 1;
                    current = futures_executor::block_on(driver.load(&name, timeout))
                        .ok()
                        .flatten();
                }
            }
        }
        waits.push(begin.elapsed().as_micros() as u64);
    }
    let total = started.elapsed();
    waits.sort_unstable();
    let pct = |p: f64| waits[((waits.len() - 1) as f64 * p).round() as usize];
    let line = serde_json::json!({
        "event": "hammered",
        "wins": n,
        "errors": errors,
        "conflicts": conflicts,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "max_us": waits.last().copied().unwrap_or(0),
        "seconds": total.as_secs_f64(),
    });
    println!("{line}");
}

fn parse(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
