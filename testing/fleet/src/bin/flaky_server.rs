//! The flaky HTTP test server: answers each `GET /call` through the intermittent failer, and
//! counts the requests that reached it, so a test can read how many calls a fleet of
//! breakers let through.
//!
//! Endpoints: `GET /call` (200 or 503), `GET /stats` (JSON: requests, failures, mode),
//! `POST /reset` (counters and pattern start again), `POST /mode/normal` and
//! `POST /mode/failing` (every call fails). It listens on 127.0.0.1 only and prints
//! `listening 127.0.0.1:PORT` once ready.

use breaker_testing::IntermittentFailer;
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Answer through the failure pattern.
    Normal,
    /// Fail every call.
    Failing,
}

/// A test server that fails at predictable times.
#[derive(Parser, Debug)]
#[command(name = "flaky-server")]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Every `frequency`-th call starts a run of failures (`frequency - 1` successes first).
    #[arg(long, default_value_t = 5)]
    frequency: u32,
    /// Failures in each run.
    #[arg(long, default_value_t = 1)]
    fail_count: u32,
    /// Starting mode.
    #[arg(long, value_enum, default_value_t = Mode::Normal)]
    mode: Mode,
}

fn main() {
    let args = Args::parse();
    let failer = match IntermittentFailer::new(args.frequency, args.fail_count) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("flaky-server: {e}");
            std::process::exit(2);
        }
    };
    let failing = matches!(args.mode, Mode::Failing);
    match breaker_testing::flaky::FlakyService::bind(args.port, failer, failing) {
        Ok(service) => {
            println!("listening {}", service.addr());
            service.serve();
        }
        Err(e) => {
            eprintln!(
                "flaky-server: cannot listen on 127.0.0.1:{}: {e}",
                args.port
            );
            std::process::exit(1);
        }
    }
}
