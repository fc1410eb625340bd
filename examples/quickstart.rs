//! The first example: a fleet of processes sharing one breaker in front of a service that
//! goes down for a while.
//!
//! `cargo run --example quickstart` starts three agent processes that share their breaker
//! through a SQLite file in a temporary directory: nothing to install, no server. Every line
//! is one call (passed, failed, or rejected without reaching the service) or one transition,
//! with the time since the start and the agent. Watch the fleet trip once, reject together,
//! send one probe at a time, and close together.
//!
//! `-- --agents N` changes the number of processes; `-- --memory` runs one agent on the
//! in-process memory driver instead.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared_breaker::{Breaker, Cause, Error, Event, Policy};

const CALLS: u32 = 60;
const NAME: &str = "quickstart-downstream";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The downstream service: healthy, then down between 1.5 s and 4 s after `start`, then
/// healthy again. Every agent sees the same service, since they share the start time.
fn service(start: u64) -> Result<&'static str, String> {
    let t = now_ms().saturating_sub(start);
    if (1_500..4_000).contains(&t) {
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

/// One agent: `CALLS` calls, one every 100 ms from `start`, each printed.
fn agent(id: u32, breaker: Breaker, start: u64) {
    let mut events = breaker.subscribe();
    let (mut passed, mut failed, mut rejected, mut reached) = (0u32, 0u32, 0u32, 0u32);
    sleep(Duration::from_millis(start.saturating_sub(now_ms())));
    for call in 1..=CALLS {
        let result = breaker.call_blocking(|| {
            reached += 1;
            service(start)
        });
        let at = now_ms().saturating_sub(start) as f64 / 1000.0;
        let line = match result {
            Ok(body) => {
                passed += 1;
                format!("passed    {body}")
            }
            Err(Error::Call(e)) => {
                failed += 1;
                format!("failed    {e}")
            }
            Err(Error::Rejected(r)) => {
                rejected += 1;
                let retry = r.retry_after().map_or("never".into(), |d| format!("{d:?}"));
                format!("rejected  breaker {}, retry in {retry}", r.state())
            }
            Err(e) => format!("error     {e}"),
        };
        println!("{at:6.2}s  agent {id}  call {call:2}  {line}");
        for event in events.drain() {
            if let Event::Transition {
                from,
                to,
                generation,
                cause,
                ..
            } = event
            {
                let who = if cause == Cause::Caused {
                    "caused by this agent"
                } else {
                    "seen"
                };
                println!(
                    "{at:6.2}s  agent {id}  ------- breaker {from} -> {to} (generation {generation}, {who})"
                );
            }
        }
        sleep(Duration::from_millis(100));
    }
    println!("summary {id} {passed} {failed} {rejected} {reached}");
}

fn child(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let arg = |flag: &str| -> Result<String, String> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
            .ok_or_else(|| format!("missing {flag}"))
    };
    let id: u32 = arg("--child")?.parse()?;
    let start: u64 = arg("--start")?.parse()?;
    let breaker = shared_breaker::sqlite::breaker(arg("--db")?, NAME, policy()?)?;
    agent(id, breaker, start);
    Ok(())
}

fn fleet(agents: u32, db: &Path) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "{agents} agent processes share one breaker through {} (a SQLite file):",
        db.display()
    );
    println!(
        "it trips after 3 failures within 10s, fleet-wide, opens for 800ms, then lets one probe through\n"
    );
    let start = now_ms() + 500;
    let me = std::env::current_exe()?;
    let mut children = Vec::new();
    for id in 1..=agents {
        let mut child = Command::new(&me)
            .args(["--child", &id.to_string(), "--db"])
            .arg(db)
            .args(["--start", &start.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().expect("piped");
        let relay = std::thread::spawn(move || {
            let mut summary = None;
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                match line.strip_prefix("summary ") {
                    Some(counts) => summary = Some(counts.to_owned()),
                    None => println!("{line}"),
                }
            }
            summary
        });
        children.push((child, relay));
    }
    let mut totals = [0u32; 4];
    for (mut child, relay) in children {
        child.wait()?;
        if let Some(counts) = relay.join().expect("the relay thread") {
            let numbers: Vec<u32> = counts.split(' ').filter_map(|n| n.parse().ok()).collect();
            for (t, n) in totals.iter_mut().zip(&numbers[1..]) {
                *t += n;
            }
        }
    }
    let [passed, failed, rejected, reached] = totals;
    println!(
        "\n{passed} passed, {failed} failed, {rejected} rejected; the service was reached {reached} times in {} calls",
        agents * CALLS
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--child") {
        return child(&args);
    }
    if args.iter().any(|a| a == "--memory") {
        println!("one agent, breaker in this process's memory\n");
        let breaker = shared_breaker::memory::breaker(NAME, policy()?)?;
        agent(1, breaker, now_ms());
        return Ok(());
    }
    let agents = match args.iter().position(|a| a == "--agents") {
        Some(i) => args.get(i + 1).ok_or("--agents needs a number")?.parse()?,
        None => 3,
    };
    let dir = tempfile::tempdir()?;
    fleet(agents, &dir.path().join("breakers.db"))
}
