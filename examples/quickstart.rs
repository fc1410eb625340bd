//! The first example: a breaker protecting calls to a service that goes down for a while.
//!
//! Run it with `cargo run --example quickstart`. It needs no server: the breaker lives in
//! this process's memory. Every line shows one call (passed, failed, or rejected without
//! reaching the service) and every state transition, with the time since the start.

use std::thread::sleep;
use std::time::{Duration, Instant};

use breaker::{Error, Event, Policy};

/// A downstream service that is healthy, then down between 1.5 s and 4 s, then healthy.
fn service(started: Instant, reached: &mut u32) -> Result<&'static str, String> {
    *reached += 1;
    let t = started.elapsed();
    if t >= Duration::from_millis(1_500) && t < Duration::from_secs(4) {
        Err("503 Service Unavailable".to_owned())
    } else {
        Ok("200 OK")
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy = Policy::builder()
        .failures_within(3, Duration::from_secs(10))
        .open_for(Duration::from_millis(800))
        .backoff(2.0, Duration::from_secs(4))
        .build()?;
    println!(
        "breaker: trips after 3 failures within 10s, open for 800ms (doubling while the service stays down)"
    );
    let breaker = breaker::memory::breaker("quickstart-downstream", policy)?;
    let mut events = breaker.subscribe();

    let started = Instant::now();
    let (mut passed, mut failed, mut rejected, mut reached) = (0u32, 0u32, 0u32, 0u32);
    for call in 1..=60 {
        let result = breaker.call_blocking(|| service(started, &mut reached));
        let at = started.elapsed().as_secs_f64();
        match result {
            Ok(body) => {
                passed += 1;
                println!("{at:6.2}s  call {call:2}  passed    {body}");
            }
            Err(Error::Call(e)) => {
                failed += 1;
                println!("{at:6.2}s  call {call:2}  failed    {e}");
            }
            Err(Error::Rejected(r)) => {
                rejected += 1;
                let retry = r.retry_after().map_or("never".into(), |d| format!("{d:?}"));
                println!(
                    "{at:6.2}s  call {call:2}  rejected  breaker {}, retry in {retry}",
                    r.state()
                );
            }
            Err(e) => println!("{at:6.2}s  call {call:2}  error     {e}"),
        }
        for event in events.drain() {
            if let Event::Transition {
                from,
                to,
                generation,
                ..
            } = event
            {
                println!("{at:6.2}s  ---------  breaker {from} -> {to} (generation {generation})");
            }
        }
        sleep(Duration::from_millis(100));
    }
    println!(
        "\n{passed} passed, {failed} failed, {rejected} rejected; the service was reached {reached} times in 60 calls"
    );
    Ok(())
}
