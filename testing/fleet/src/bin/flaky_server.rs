//! The flaky HTTP test server: answers each `GET /call` through the intermittent failer, and
//! counts the requests that reached it, so a test can read how many calls a fleet of
//! breakers let through.
//!
//! Endpoints: `GET /call` (200 or 503), `GET /stats` (JSON: requests, failures, mode),
//! `POST /reset` (counters and pattern start again), `POST /mode/normal` and
//! `POST /mode/failing` (every call fails). It listens on 127.0.0.1 only and prints
//! `listening 127.0.0.1:PORT` once ready.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use breaker_testing::IntermittentFailer;
use clap::{Parser, ValueEnum};
use tiny_http::{Header, Method, Response, Server};

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
    let server = match Server::http(("127.0.0.1", args.port)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "flaky-server: cannot listen on 127.0.0.1:{}: {e}",
                args.port
            );
            std::process::exit(1);
        }
    };
    let addr = server
        .server_addr()
        .to_ip()
        .expect("an IP listener has an IP address");
    println!("listening {addr}");
    let failing = AtomicBool::new(matches!(args.mode, Mode::Failing));
    let requests = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let json = Header::from_bytes("Content-Type", "application/json").expect("a valid header");
    for request in server.incoming_requests() {
        let response = match (request.method(), request.url()) {
            (Method::Get, "/call") => {
                requests.fetch_add(1, Ordering::SeqCst);
                let ok = !failing.load(Ordering::SeqCst) && failer.call().is_ok();
                if ok {
                    Response::from_string("ok").with_status_code(200)
                } else {
                    failures.fetch_add(1, Ordering::SeqCst);
                    Response::from_string("injected failure").with_status_code(503)
                }
            }
            (Method::Get, "/stats") => {
                let body = serde_json::json!({
                    "requests": requests.load(Ordering::SeqCst),
                    "failures": failures.load(Ordering::SeqCst),
                    "mode": if failing.load(Ordering::SeqCst) { "failing" } else { "normal" },
                });
                Response::from_string(body.to_string()).with_header(json.clone())
            }
            (Method::Post, "/reset") => {
                requests.store(0, Ordering::SeqCst);
                failures.store(0, Ordering::SeqCst);
                failer.reset();
                Response::from_string("reset")
            }
            (Method::Post, "/mode/normal") => {
                failing.store(false, Ordering::SeqCst);
                Response::from_string("normal")
            }
            (Method::Post, "/mode/failing") => {
                failing.store(true, Ordering::SeqCst);
                Response::from_string("failing")
            }
            _ => Response::from_string("not found").with_status_code(404),
        };
        let _ = request.respond(response);
    }
}
