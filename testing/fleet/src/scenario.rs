//! The scenarios every back-end runs with real processes: a fleet of agents in front of the
//! flaky server (trip once, probes limited fleet-wide, recovery everywhere), and several
//! processes incrementing one record with compare-and-swap.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::procs::Proc;
use crate::server::FlakyServer;

/// Where the test binaries are: [`bins!`](crate::bins) in a test or bench of this package.
#[derive(Clone, Debug)]
pub struct Bins {
    /// The `breaker-agent` binary.
    pub agent: PathBuf,
    /// The `flaky-server` binary.
    pub server: PathBuf,
}

/// The fleet scenario's settings.
#[derive(Clone, Debug)]
pub struct Fleet {
    /// Agent processes.
    pub agents: usize,
    /// Failures that trip the breaker.
    pub threshold: u32,
    /// Probes per half-open period.
    pub permits: u32,
    /// The open period.
    pub open_for: Duration,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            agents: 4,
            threshold: 3,
            permits: 1,
            open_for: Duration::from_millis(300),
        }
    }
}

/// A transition an agent printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Which agent.
    pub agent: usize,
    /// The state entered.
    pub to: String,
    /// The generation entered.
    pub generation: u64,
    /// Whether this agent caused it.
    pub caused: bool,
}

fn transitions(agents: &[Proc]) -> Vec<Seen> {
    let mut out = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        for line in a.lines() {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["event"] == "transition" {
                out.push(Seen {
                    agent: i,
                    to: v["to"].as_str().unwrap_or_default().to_owned(),
                    generation: v["generation"].as_u64().unwrap_or_default(),
                    caused: v["cause"] == "caused",
                });
            }
        }
    }
    out
}

/// The last state each agent reported (`closed` before any transition).
fn last_states(agents: &[Proc]) -> Vec<String> {
    let seen = transitions(agents);
    (0..agents.len())
        .map(|i| {
            seen.iter()
                .rfind(|s| s.agent == i)
                .map_or("closed".to_owned(), |s| s.to.clone())
        })
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the fleet scenario against the back-end at `backend_url`, asserting from the flaky
/// server's own counter of failed requests:
///
/// 1. when the server starts failing, the fleet trips exactly once (one caused transition to
///    open, generation 1), after no more than `threshold` calls plus one per agent (a call
///    admitted before its agent learned of the trip);
/// 2. while it keeps failing, each half-open period lets at most `permits` probes through,
///    fleet-wide, and each transition is caused by exactly one agent;
/// 3. once it recovers, every agent is closed again.
pub fn run_fleet(bins: &Bins, backend_url: &str, fleet: &Fleet) {
    run_mixed_fleet(bins, backend_url, fleet, |_| bins.agent.clone());
}

/// [`run_fleet`] with agent `i` run from the binary `agent(i)`: a fleet of two builds, as
/// in a rolling upgrade.
pub fn run_mixed_fleet(
    bins: &Bins,
    backend_url: &str,
    fleet: &Fleet,
    agent: impl Fn(usize) -> PathBuf,
) {
    run_fleet_with(bins, backend_url, fleet, |i| (agent(i), Vec::new()));
}

/// [`run_fleet`] with agent `i` run from the binary and with the extra arguments that
/// `agent(i)` gives: a fleet of two configurations, as in a setting turned on one agent at
/// a time.
pub fn run_fleet_with(
    bins: &Bins,
    backend_url: &str,
    fleet: &Fleet,
    agent: impl Fn(usize) -> (PathBuf, Vec<String>),
) {
    let server = FlakyServer::start(&bins.server, &["--frequency", "1000", "--fail-count", "0"]);
    let args = |extra: Vec<String>| -> Vec<String> {
        let common = vec![
            "--backend".into(),
            backend_url.into(),
            "--name".into(),
            "fleet".into(),
            "--target".into(),
            server.base().into(),
            "--threshold".into(),
            fleet.threshold.to_string(),
            "--permits".into(),
            fleet.permits.to_string(),
            "--open-for-ms".into(),
            fleet.open_for.as_millis().to_string(),
        ];
        common.into_iter().chain(extra).collect()
    };
    let agents: Vec<Proc> = (0..fleet.agents)
        .map(|i| {
            let (bin, extra) = agent(i);
            Proc::spawn(&format!("agent {i}"), &bin, &args(extra))
        })
        .collect();
    for a in &agents {
        a.wait_for(Duration::from_secs(20), |l| l.contains("\"ready\""))
            .expect("the agent starts calling");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        transitions(&agents).is_empty(),
        "a healthy service trips nothing"
    );

    // 1. The service fails: one trip, fleet-wide.
    server.reset();
    server.set_failing(true);
    wait_until("every agent sees the trip", Duration::from_secs(20), || {
        let seen = transitions(&agents);
        (0..agents.len()).all(|i| seen.iter().any(|s| s.agent == i && s.generation >= 1))
    });
    // Failed requests: calls made while the server was failing, and nothing from before.
    let at_trip = server.stats().failures;
    let first = transitions(&agents);
    let caused_trips: Vec<_> = first
        .iter()
        .filter(|s| s.generation == 1 && s.caused)
        .collect();
    assert_eq!(
        caused_trips.len(),
        1,
        "exactly one agent caused the trip: {first:?}"
    );
    assert_eq!(caused_trips[0].to, "open");
    // Counted up to the moment every agent knew; probes of a half-open period that may have
    // begun since are included, so the bound allows them.
    let bound = u64::from(fleet.threshold) + fleet.agents as u64 + u64::from(fleet.permits);
    assert!(
        at_trip <= bound,
        "{at_trip} calls reached the failing server, at most {bound} expected"
    );

    // 2. It keeps failing for a few open periods: probes are limited fleet-wide.
    let half_open_periods = |seen: &[Seen]| {
        seen.iter()
            .filter(|s| s.to == "half_open" && s.caused)
            .count() as u64
    };
    wait_until(
        "two half-open periods come and go",
        fleet.open_for * 4 + Duration::from_secs(20),
        || half_open_periods(&transitions(&agents)) >= 2,
    );
    let requests = server.stats().failures;
    let seen = transitions(&agents);
    let periods = half_open_periods(&seen);
    let probes = requests.saturating_sub(at_trip);
    eprintln!(
        "fleet: {at_trip} calls reached the failing server by the trip; {probes} probes in {periods} half-open periods"
    );
    assert!(
        probes <= (periods + 1) * u64::from(fleet.permits),
        "{probes} probes in {periods} half-open periods with {} permit(s)",
        fleet.permits
    );

    // 3. It recovers: every agent closes.
    server.set_failing(false);
    wait_until(
        "every agent is closed again",
        Duration::from_secs(20),
        || last_states(&agents).iter().all(|s| s == "closed"),
    );
    let seen = transitions(&agents);
    let mut causes: BTreeMap<u64, usize> = BTreeMap::new();
    for s in seen.iter().filter(|s| s.caused) {
        *causes.entry(s.generation).or_default() += 1;
    }
    assert!(
        causes.values().all(|&n| n == 1),
        "each transition is caused by exactly one agent: {causes:?}"
    );
    let last = *causes.keys().last().expect("transitions were caused");
    assert!(
        seen.iter()
            .any(|s| s.generation == last && s.to == "closed"),
        "the last transition closed the breaker: {seen:?}"
    );
}

/// A probe holder dies: an agent process claims the half-open permit and is killed while
/// holding it. Until the permit's lease lapses nobody else probes; then another agent does,
/// and its success closes the breaker.
pub fn run_probe_holder_dies(bins: &Bins, backend_url: &str) {
    use shared_breaker::{Breaker, Error, Policy, State};
    let lease = Duration::from_millis(1_500);
    let open_for = Duration::from_millis(300);
    let name = format!("probe-holder-{}", std::process::id());
    let policy = Policy::builder()
        .failures_within(1, Duration::from_secs(60))
        .open_for(open_for)
        .probe_lease(lease)
        .build()
        .expect("a policy");
    let driver = shared_breaker::config::open_backend(backend_url).expect("the back-end opens");
    let survivor = Breaker::builder_dyn(&name, driver)
        .policy(policy)
        .build()
        .expect("a breaker");
    let _ = survivor.call_blocking(|| Err::<(), _>("down"));
    survivor.written_blocking();
    assert_eq!(survivor.state(), Some(State::Open));
    let args = [
        "--backend",
        backend_url,
        "--name",
        &name,
        "--threshold",
        "1",
        "--open-for-ms",
        &open_for.as_millis().to_string(),
        "--probe-lease-ms",
        &lease.as_millis().to_string(),
        "--hold-probe",
    ]
    .map(String::from);
    let holder = Proc::spawn("probe holder", &bins.agent, &args);
    holder
        .wait_for(Duration::from_secs(20), |l| l.contains("probe-held"))
        .expect("the agent claims the probe");
    let held_at = Instant::now();
    drop(holder); // killed by its process id, permit unreported
    survivor.flush_blocking().expect("flush");
    let first = survivor.call_blocking(|| Ok::<(), &str>(()));
    assert!(
        matches!(&first, Err(Error::Rejected(r)) if r.state() == State::HalfOpen)
            || held_at.elapsed() >= lease,
        "while the dead agent's lease runs nobody else probes: {first:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match survivor.call_blocking(|| Ok::<(), &str>(())) {
            Ok(()) => break,
            Err(Error::Rejected(_)) => {
                assert!(
                    Instant::now() < deadline,
                    "the lapsed lease was never reclaimed"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        held_at.elapsed() >= lease - Duration::from_millis(100),
        "not before the lease lapsed"
    );
    survivor.flush_blocking().expect("flush");
    assert_eq!(
        survivor.state(),
        Some(State::Closed),
        "the new probe's success closed the breaker"
    );
}

/// Several processes each make `each` compare-and-swap increments of one record at once;
/// the total must add up exactly, and no increment may fail (none waited past the
/// deadline). Returns each process's report line.
pub fn run_hammer(bins: &Bins, backend_url: &str, processes: usize, each: u32) -> Vec<Value> {
    let name = format!("hammer-{}", std::process::id());
    let args = vec![
        "--backend".to_owned(),
        backend_url.to_owned(),
        "--name".to_owned(),
        name.clone(),
        "--hammer".to_owned(),
        each.to_string(),
    ];
    let mut procs: Vec<Proc> = (0..processes)
        .map(|i| Proc::spawn(&format!("hammer {i}"), &bins.agent, &args))
        .collect();
    // All start together, so that they contend.
    std::thread::sleep(Duration::from_millis(300));
    for p in &mut procs {
        p.send_line("go");
    }
    let mut reports = Vec::new();
    for p in &mut procs {
        p.wait_exit(Duration::from_secs(120))
            .expect("the hammer finishes");
        let line = p
            .wait_for(Duration::from_secs(5), |l| l.contains("\"hammered\""))
            .expect("a report");
        reports.push(serde_json::from_str::<Value>(&line).expect("a JSON report"));
    }
    for r in &reports {
        assert_eq!(
            r["errors"], 0,
            "an increment failed (waited past its deadline?): {r}"
        );
    }
    reports
}

/// The test binaries of this package, for its tests and benches (where Cargo tells their
/// paths).
#[macro_export]
macro_rules! bins {
    () => {
        $crate::scenario::Bins {
            agent: env!("CARGO_BIN_EXE_breaker-agent").into(),
            server: env!("CARGO_BIN_EXE_flaky-server").into(),
        }
    };
}

/// What an agent of [`run_sick_agents`] reported: its summary, and its transitions.
#[derive(Clone, Debug)]
pub struct Report {
    /// Calls admitted (made).
    pub admitted: u64,
    /// Calls rejected.
    pub rejected: u64,
    /// Admitted calls that failed.
    pub failed: u64,
    /// The agent's own breaker opened this many times (`cause: local`).
    pub local_openings: u64,
    /// The fleet's breaker opened, as this agent saw it.
    pub fleet_opened: bool,
}

/// Three agents on one breaker under a quorum of `min_agents` (1: none), five failures trip,
/// open for 300 ms, calls every 5 ms for `run`: the first `sick` agents call an endpoint
/// that refuses every connection (their own network path is broken), the others the
/// healthy flaky server. Returns each agent's report.
pub fn run_sick_agents(
    bins: &Bins,
    backend_url: &str,
    sick: usize,
    min_agents: u32,
    run: Duration,
) -> Vec<Report> {
    let server = FlakyServer::start(&bins.server, &["--frequency", "1000", "--fail-count", "0"]);
    // Nothing listens there: a connection refused at once.
    let refused = format!("http://127.0.0.1:{}", breaker_testing::servers::free_port());
    let name = format!("sick-{sick}-of-{min_agents}-{}", std::process::id());
    let agents: Vec<Proc> = (0..3)
        .map(|i| {
            let target = if i < sick { &refused } else { server.base() };
            let args: Vec<String> = [
                "--backend",
                backend_url,
                "--name",
                &name,
                "--target",
                target,
                "--threshold",
                "5",
                "--open-for-ms",
                "300",
                "--min-agents",
                &min_agents.to_string(),
                "--run-ms",
                &run.as_millis().to_string(),
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            Proc::spawn(&format!("agent {i}"), &bins.agent, &args)
        })
        .collect();
    agents
        .iter()
        .map(|a| {
            let summary = a
                .wait_for(run + Duration::from_secs(30), |l| l.contains("\"summary\""))
                .expect("the agent reports");
            let v: Value = serde_json::from_str(&summary).expect("a JSON line");
            let seen: Vec<Value> = a
                .lines()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["event"] == "transition")
                .collect();
            Report {
                admitted: v["admitted"].as_u64().unwrap_or_default(),
                rejected: v["rejected"].as_u64().unwrap_or_default(),
                failed: v["failed"].as_u64().unwrap_or_default(),
                local_openings: seen
                    .iter()
                    .filter(|t| t["cause"] == "local" && t["to"] == "open")
                    .count() as u64,
                fleet_opened: seen
                    .iter()
                    .any(|t| t["cause"] != "local" && t["to"] == "open"),
            }
        })
        .collect()
}

/// [`run_sick_agents`] with one sick agent and then two, asserting: with one, the healthy
/// agents see no rejection and the fleet's breaker never opens, while the sick agent protects
/// itself (its own breaker opens, and its calls to the broken endpoint are at most the
/// threshold plus one probe per opening, plus one in flight); with two, the fleet opens.
pub fn run_one_bad_agent(bins: &Bins, backend_url: &str) {
    let run = Duration::from_secs(3);
    let one = run_sick_agents(bins, backend_url, 1, 2, run);
    eprintln!("one sick agent: {one:?}");
    let (sick, healthy) = (&one[0], &one[1..]);
    for (i, h) in healthy.iter().enumerate() {
        assert_eq!(h.rejected, 0, "healthy agent {i} rejected nothing: {h:?}");
        assert!(!h.fleet_opened, "the fleet never opened: {h:?}");
        assert!(h.admitted > 100, "and kept calling: {h:?}");
    }
    assert!(!sick.fleet_opened, "{sick:?}");
    assert!(
        sick.local_openings >= 1,
        "the sick agent opened its own: {sick:?}"
    );
    // The threshold, then one probe per opening of its own after the first, and one in flight.
    let bound = 5 + sick.local_openings;
    assert!(
        sick.failed <= bound,
        "the sick agent's calls to its broken endpoint: {}, at most {bound}",
        sick.failed
    );
    let two = run_sick_agents(bins, backend_url, 2, 2, run);
    eprintln!("two sick agents: {two:?}");
    assert!(
        two.iter().any(|r| r.fleet_opened),
        "two sick agents open the fleet's breaker: {two:?}"
    );
    assert!(
        two[2].rejected > 0,
        "and the third agent is protected by it: {two:?}"
    );
}
