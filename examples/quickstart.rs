//! The first example: a fleet of processes sharing one breaker in front of a service that
//! goes down for a while, compared in the same run with as many breakers that share nothing.
//!
//! `cargo run --example quickstart` starts three agent processes that share their breaker
//! through a SQLite file in a temporary directory: nothing to install, no server. It prints
//! every transition and every call that reached the service while it was down, then a
//! summary: how many calls the dead service received from the fleet, and from the same
//! number of unshared breakers (threads of this process, one memory driver each) that ran
//! alongside against the same service.
//!
//! `-- --agents N` changes the number of processes (1 to 16), `-- --verbose` prints every
//! call, `-- --memory` runs one agent on the in-process memory driver instead; `-- --help`
//! says so too.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use shared_breaker::memory::MemoryDriver;
use shared_breaker::{Breaker, Cause, Error, Event, Policy, State};

const CALLS: u32 = 60;
const NAME: &str = "quickstart-downstream";
/// The service is down from this many milliseconds after the start...
const DOWN_FROM: u64 = 1_500;
/// ...until this many.
const DOWN_UNTIL: u64 = 4_000;

/// A fleet of agent processes sharing one breaker, against as many unshared breakers.
#[derive(Parser, Debug)]
#[command(name = "quickstart")]
struct Args {
    /// Agent processes in the fleet.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    agents: u32,
    /// Print every call, not only transitions and calls that reached the dead service.
    #[arg(long)]
    verbose: bool,
    /// One agent on the in-process memory driver instead of a fleet.
    #[arg(long, conflicts_with = "agents")]
    memory: bool,
    /// Internal: run as agent N of a fleet (started by the example itself).
    #[arg(long, hide = true, requires_all = ["db", "start"])]
    child: Option<u32>,
    /// Internal: the shared SQLite file.
    #[arg(long, hide = true)]
    db: Option<PathBuf>,
    /// Internal: the fleet's common start time, in epoch milliseconds.
    #[arg(long, hide = true)]
    start: Option<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The downstream service: healthy, then down between `DOWN_FROM` and `DOWN_UNTIL` after
/// `start`, then healthy again. Every agent sees the same service, since they share `start`.
fn service(start: u64) -> Result<&'static str, String> {
    let t = now_ms().saturating_sub(start);
    if (DOWN_FROM..DOWN_UNTIL).contains(&t) {
        Err("503 Service Unavailable".to_owned())
    } else {
        Ok("200 OK")
    }
}

fn policy() -> Result<Policy, shared_breaker::PolicyError> {
    Policy::builder()
        .failures_within(3, Duration::from_secs(10))
        .open_for(Duration::from_millis(800))
        .build()
}

/// What one agent's calls came to.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    passed: u32,
    failed: u32,
    rejected: u32,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.rejected += other.rejected;
    }
}

/// One agent: `CALLS` calls, one every 100 ms from `start`. Prints what `verbose` asks for
/// when `print` is set (the unshared comparison runs silently).
fn agent(id: u32, breaker: Breaker, start: u64, print: bool, verbose: bool) -> Counts {
    let mut events = breaker.subscribe();
    let mut counts = Counts::default();
    sleep(Duration::from_millis(start.saturating_sub(now_ms())));
    for call in 1..=CALLS {
        let result = breaker.call_blocking(|| service(start));
        let at = now_ms().saturating_sub(start) as f64 / 1000.0;
        let (line, notable) = match result {
            Ok(body) => {
                counts.passed += 1;
                (format!("passed    {body}"), false)
            }
            Err(Error::Call(e)) => {
                counts.failed += 1;
                (
                    format!("failed    {e} (the call reached the dead service)"),
                    true,
                )
            }
            Err(Error::Rejected(r)) => {
                counts.rejected += 1;
                let retry = r
                    .retry_after()
                    .map_or("only after an operator reset".into(), |d| {
                        format!("in {d:?}")
                    });
                (
                    format!("rejected  breaker {}, retry {retry}", r.state()),
                    false,
                )
            }
            Err(e) => (format!("error     {e}"), true),
        };
        if print && (verbose || notable) {
            println!("{at:6.2}s  agent {id}  call {call:2}  {line}");
        }
        for event in events.drain() {
            if let (
                true,
                Event::Transition {
                    from,
                    to,
                    generation,
                    cause,
                    ..
                },
            ) = (print, event)
            {
                let who = if cause == Cause::Caused {
                    "caused by this agent"
                } else {
                    "seen"
                };
                // An agent that did not look while a probe ran sees open follow open: the
                // probe failed and the breaker opened again, in a later generation.
                let what = if from == to && to == State::Open {
                    "open again after a failed probe".to_owned()
                } else {
                    format!("{from} -> {to}")
                };
                println!(
                    "{at:6.2}s  agent {id}  ------- breaker {what} (generation {generation}, {who})"
                );
            }
        }
        sleep(Duration::from_millis(100));
    }
    counts
}

/// A fleet agent process: reports its counts on its last line for the parent to add up.
fn child(id: u32, db: &Path, start: u64, verbose: bool) -> Result<(), Box<dyn std::error::Error>> {
    let breaker = shared_breaker::sqlite::breaker(db, NAME, policy()?)?;
    let c = agent(id, breaker, start, true, verbose);
    println!("counts {} {} {}", c.passed, c.failed, c.rejected);
    Ok(())
}

fn fleet(agents: u32, db: &Path, verbose: bool) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "{agents} agent processes share one breaker through {} (a SQLite file);",
        db.display()
    );
    println!(
        "it trips after 3 failures within 10s, fleet-wide, opens for 800ms, then lets one \
         probe through.\nThe service is down from {:.1}s to {:.1}s. Alongside, {agents} unshared \
         breakers make the same calls.\n",
        DOWN_FROM as f64 / 1000.0,
        DOWN_UNTIL as f64 / 1000.0
    );
    let start = now_ms() + 500;
    let me = std::env::current_exe()?;
    let mut children = Vec::new();
    for id in 1..=agents {
        let mut command = Command::new(&me);
        command
            .args(["--child", &id.to_string(), "--db"])
            .arg(db)
            .args(["--start", &start.to_string()]);
        if verbose {
            command.arg("--verbose");
        }
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let out = child.stdout.take().expect("piped");
        let relay = std::thread::spawn(move || {
            let mut counts = Counts::default();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                match line.strip_prefix("counts ") {
                    Some(numbers) => {
                        let n: Vec<u32> =
                            numbers.split(' ').filter_map(|n| n.parse().ok()).collect();
                        if let [passed, failed, rejected] = n[..] {
                            counts = Counts {
                                passed,
                                failed,
                                rejected,
                            };
                        }
                    }
                    None => println!("{line}"),
                }
            }
            counts
        });
        children.push((child, relay));
    }
    // The comparison: the same calls through breakers that share nothing, at the same time.
    let unshared: Vec<_> = (1..=agents)
        .map(|id| {
            let breaker = Breaker::builder(NAME, MemoryDriver::new())
                .policy(policy()?)
                .build()?;
            Ok(std::thread::spawn(move || {
                agent(id, breaker, start, false, false)
            }))
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    let mut shared = Counts::default();
    for (mut child, relay) in children {
        child.wait()?;
        shared.add(relay.join().expect("the relay thread"));
    }
    let mut alone = Counts::default();
    for thread in unshared {
        alone.add(thread.join().expect("an unshared agent"));
    }
    let calls = agents * CALLS;
    println!("\nsummary of {calls} calls per side, made at the same times:");
    let shared_label = "one shared breaker";
    let alone_label = format!("{agents} unshared breakers");
    for (label, c) in [(shared_label, shared), (alone_label.as_str(), alone)] {
        println!(
            "  {label:>20}: {:3} calls reached the dead service, {:3} rejected, {:3} passed",
            c.failed, c.rejected, c.passed
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if let (Some(id), Some(db), Some(start)) = (args.child, &args.db, args.start) {
        return child(id, db, start, args.verbose);
    }
    if args.memory {
        println!("one agent, its breaker in this process's memory\n");
        let breaker = shared_breaker::memory::breaker(NAME, policy()?)?;
        let c = agent(1, breaker, now_ms(), true, args.verbose);
        println!(
            "\nsummary: {} calls reached the dead service, {} rejected, {} passed",
            c.failed, c.rejected, c.passed
        );
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    fleet(args.agents, &dir.path().join("breakers.db"), args.verbose)
}
