//! The operator CLI end to end, as a process, against real back-ends the test starts: a
//! SQLite file shared with a running agent, and a redis-server.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use breaker_testing::servers::{RedisServer, free_port};
use shared_breaker::{Breaker, Error, Policy, State};

fn cli(backend: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_breaker"))
        .args(["--backend", backend])
        .args(args)
        .output()
        .expect("the CLI runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Waits until the agent's call ends in `state` (a rejection's state, or closed when admitted).
fn agent_sees(agent: &Breaker, state: State) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = match agent.call_blocking(|| Ok::<(), ()>(())) {
            Err(Error::Rejected(r)) => r.state(),
            _ => agent
                .state()
                .expect("an agent that called has read the record"),
        };
        if seen == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never saw {state}, still {seen}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The operator's verbs as processes against `backend`, where `agent` (a running breaker
/// named `payments`, writing records in either encoding) obeys them: list, show, watch,
/// trip, the refused `close`, disable, reset.
fn operates_a_running_agent(backend: &str, agent: &Breaker) {
    agent.call_blocking(|| Ok::<(), ()>(())).unwrap();
    agent.flush_blocking().unwrap();

    let listed: serde_json::Value =
        serde_json::from_str(&ok(&cli(backend, &["list", "--json"]))).unwrap();
    assert_eq!(listed[0]["name"], "payments");
    assert_eq!(listed[0]["state"], "closed");
    assert_eq!(listed[0]["successes"], 1);
    let encoding = agent.policy().record_encoding.as_str();
    assert_eq!(listed[0]["encoding"], encoding);

    let shown = ok(&cli(backend, &["show", "payments"]));
    assert!(
        shown.contains("payments") && shown.contains("closed"),
        "{shown}"
    );

    let mut watcher = Command::new(env!("CARGO_BIN_EXE_breaker"))
        .args(["--backend", backend, "watch", "--for", "20s", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        use std::io::BufRead;
        let out = watcher.stdout.take().unwrap();
        let seen = seen.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                seen.lock()
                    .unwrap()
                    .push(v["to"].as_str().unwrap().to_owned());
            }
        })
    };
    let watch_shows = |state: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen.lock().unwrap().iter().any(|s| s == state) {
            assert!(
                Instant::now() < deadline,
                "watch never showed {state}: {:?}",
                seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    watch_shows("closed");

    let tripped: serde_json::Value =
        serde_json::from_str(&ok(&cli(backend, &["trip", "payments", "--json"]))).unwrap();
    assert_eq!(tripped[0]["state"], "forced_open");
    agent_sees(agent, State::ForcedOpen);
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&cli(backend, &["show", "payments", "--json"]))).unwrap();
    assert!(
        shown[0]["since_ms"].as_u64().is_some() && shown[0]["writer"].is_string(),
        "since when and whose write: {shown}"
    );
    assert_eq!(shown[0]["openings"], 0, "an operator's trip is no opening");
    watch_shows("forced_open");

    let ambiguous = failed(&cli(backend, &["close", "payments"]));
    assert!(
        ambiguous.contains("reset payments") && ambiguous.contains("disable payments"),
        "{ambiguous}"
    );
    assert_eq!(
        agent.state(),
        Some(State::ForcedOpen),
        "`close` changed nothing"
    );
    ok(&cli(backend, &["disable", "payments"]));
    agent_sees(agent, State::ForcedClosed);
    // Before the reset: a watch on a polling back-end delivers two writes that land within
    // one poll as one line, the last transition.
    watch_shows("forced_closed");
    ok(&cli(backend, &["reset", "payments"]));
    agent_sees(agent, State::Closed);
    // The watch process was started by this test; it is stopped by its own process id.
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    reader.join().unwrap();
}

#[test]
fn list_show_trip_disable_reset_and_watch_on_sqlite_with_a_running_agent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("breakers.db");
    // This agent writes compact records, the Redis one below JSON: the CLI reads both.
    let compact = Policy::builder()
        .record_encoding(shared_breaker::RecordEncoding::Compact)
        .build()
        .unwrap();
    let agent = shared_breaker::sqlite::breaker(&path, "payments", compact).unwrap();
    operates_a_running_agent(&format!("sqlite://{}", path.display()), &agent);
}

/// On Redis, and under a prefix as the README's examples use one: given as `--prefix` or in
/// the URL, and the breakers under another prefix (the default one here) stay out of sight.
#[test]
fn list_show_trip_disable_reset_and_watch_on_redis_under_a_prefix() {
    use shared_breaker::redis::{RedisDriver, RedisOptions};
    let redis = RedisServer::start();
    let url = redis.url();
    let driver = RedisDriver::open_with(&[&url], RedisOptions::default().prefix("checkout"));
    let agent = Breaker::builder("payments", driver.unwrap())
        .build()
        .unwrap();
    let elsewhere = Breaker::builder("search", RedisDriver::open(&url).unwrap())
        .build()
        .unwrap();
    futures_executor::block_on(elsewhere.force_closed()).unwrap();

    operates_a_running_agent(&format!("{url}?prefix=checkout"), &agent);

    let by_flag = ok(&cli(&url, &["--prefix", "checkout", "list"]));
    assert!(
        by_flag.contains("payments") && !by_flag.contains("search"),
        "{by_flag}"
    );
    let default = ok(&cli(&url, &["list"]));
    assert!(
        default.contains("search") && !default.contains("payments"),
        "{default}"
    );
    let twice = failed(&cli(&format!("{url}?prefix=a"), &["--prefix", "b", "list"]));
    assert!(twice.contains("prefix is given twice"), "{twice}");
    let bad = failed(&cli(&url, &["--prefix", "a&b=c", "list"]));
    assert!(bad.contains("--prefix"), "{bad}");
    for verb in ["show", "trip", "disable", "reset"] {
        let err = failed(&cli(&url, &["--prefix", "checkout", verb, "search"]));
        assert!(err.contains("no breaker named `search`"), "{verb}: {err}");
    }
    assert_eq!(
        futures_executor::block_on(elsewhere.refresh()).unwrap(),
        State::ForcedClosed,
        "nothing under the other prefix changed"
    );
}

#[test]
fn unknown_names_wrong_urls_and_unreachable_back_ends_are_clear_failures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    shared_breaker::sqlite::SqliteDriver::open(&path).expect("the agents' database");
    let backend = format!("sqlite://{}", path.display());
    let err = failed(&cli(&backend, &["show", "nosuch"]));
    assert!(err.contains("no breaker named `nosuch`"), "{err}");
    let err = failed(&cli(&backend, &["trip", "nosuch"]));
    assert!(err.contains("no breaker named `nosuch`"), "{err}");
    let err = failed(&cli(&backend, &["show", "bad/name"]));
    assert!(err.contains("invalid breaker name"), "{err}");
    let err = failed(&cli("ftp://somewhere", &["list"]));
    assert!(err.contains("unknown scheme `ftp`"), "{err}");
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let err = failed(&cli(&dead, &["list", "--timeout", "500ms"]));
    assert!(err.contains("redis") && err.contains("127.0.0.1"), "{err}");
    // An etcd that is not there: one line naming it, not the client's debug dump.
    let dead = format!("etcd://127.0.0.1:{}", free_port());
    let err = failed(&cli(&dead, &["list", "--timeout", "500ms"]));
    assert!(err.contains("etcd") && err.contains("127.0.0.1"), "{err}");
    assert!(
        err.trim().lines().count() == 1 && !err.contains("Status {") && !err.contains("source:"),
        "{err}"
    );
}

/// On SQLite too, breakers under a prefix are listed with `--prefix` or `?prefix=`, and
/// only they.
#[test]
fn breakers_under_a_prefix_on_sqlite() {
    use shared_breaker::sqlite::{SqliteDriver, SqliteOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prefixed.db");
    let options = SqliteOptions::default().prefix("checkout");
    let agent = Breaker::builder("payments", SqliteDriver::open_with(&path, options).unwrap())
        .build()
        .unwrap();
    futures_executor::block_on(agent.force_open()).unwrap();
    let other = Breaker::builder("search", SqliteDriver::open(&path).unwrap())
        .build()
        .unwrap();
    futures_executor::block_on(other.force_closed()).unwrap();
    let url = format!("sqlite://{}", path.display());
    for listed in [
        ok(&cli(&url, &["--prefix", "checkout", "list"])),
        ok(&cli(&format!("{url}?prefix=checkout"), &["list"])),
    ] {
        assert!(
            listed.contains("payments")
                && listed.contains("forced_open")
                && !listed.contains("search"),
            "{listed}"
        );
    }
    let default = ok(&cli(&url, &["list"]));
    assert!(
        default.contains("search") && !default.contains("payments"),
        "{default}"
    );
    ok(&cli(&url, &["--prefix", "checkout", "reset", "payments"]));
    assert_eq!(
        futures_executor::block_on(agent.refresh()).unwrap(),
        State::Closed
    );
}

#[test]
fn lists_a_redis_server() {
    let redis = RedisServer::start();
    let driver = shared_breaker::redis::RedisDriver::open(&redis.url()).unwrap();
    let agent = Breaker::builder("search", driver).build().unwrap();
    let _ = agent.call_blocking(|| Err::<(), _>("down"));
    agent.written_blocking();
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&cli(&redis.url(), &["list", "--json"]))).unwrap();
    assert_eq!(listed[0]["name"], "search");
    assert_eq!(listed[0]["failures"], 1);
}

#[test]
fn read_only_verbs_create_nothing_and_refuse_what_cannot_be_meant() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo.db");
    let url = format!("sqlite://{}", missing.display());
    for args in [&["list"][..], &["show", "x"], &["watch", "--for", "10ms"]] {
        let err = failed(&cli(&url, args));
        assert!(err.contains("no database at"), "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no database, -wal or -shm file was created"
    );
    let err = failed(&cli("memory://", &["list"]));
    assert!(err.contains("one process"), "{err}");
}

/// `breaker list | head -1`: a reader that goes away after the first line, five times (the
/// panic it used to cause came one run in three), against `backend` holding `driver`'s 300
/// breakers.
fn a_reader_that_goes_away(backend: &str, driver: impl shared_breaker::Driver + Clone) {
    use std::io::Read;
    use std::process::Stdio;
    for i in 0..300 {
        let b = Breaker::builder(&format!("breaker-{i:03}"), driver.clone())
            .build()
            .unwrap();
        futures_executor::block_on(b.force_closed()).unwrap();
    }
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_breaker"))
            .args(["--backend", backend, "list"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read one line, as `head -1` would, then go away.
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 16];
        stdout.read_exact(&mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.db");
    let driver = shared_breaker::sqlite::SqliteDriver::open(&path).unwrap();
    a_reader_that_goes_away(&format!("sqlite://{}", path.display()), driver);
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly_on_redis() {
    let redis = RedisServer::start();
    let driver = shared_breaker::redis::RedisDriver::open(&redis.url()).unwrap();
    a_reader_that_goes_away(&redis.url(), driver);
}

/// `watch` as a process, following the back-end's push: every transition of a breaker that
/// trips, turns half-open when its open period ends (by the clock: nothing is written then),
/// and closes after a probe, each with its wall-clock time, generation and writer.
fn watch_shows_every_transition(backend: &str, agent: &Breaker) {
    use std::io::BufRead;
    let mut watcher = Command::new(env!("CARGO_BIN_EXE_breaker"))
        .args(["--backend", backend, "watch", "--for", "30s", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let reader = {
        let out = watcher.stdout.take().unwrap();
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        })
    };
    let wait_for = |from: Option<&str>, to: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = lines.lock().unwrap().iter().any(|l| {
                l["to"] == to && from.is_none_or(|f| l["from"] == f) && l["breaker"] == "orders"
            });
            if found {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "watch never showed {from:?} -> {to}: {:?}",
                lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(None, "closed");
    let _ = agent.call_blocking(|| Err::<(), ()>(()));
    agent.written_blocking();
    wait_for(Some("closed"), "open");
    wait_for(Some("open"), "half_open");
    agent.call_blocking(|| Ok::<(), ()>(())).expect("the probe");
    wait_for(Some("half_open"), "closed");
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    reader.join().unwrap();
    let lines = lines.lock().unwrap();
    let by_clock = lines.iter().find(|l| l["to"] == "half_open").unwrap();
    assert_eq!(by_clock["by"], "clock", "nothing was written: {by_clock}");
    let trip = lines.iter().find(|l| l["to"] == "open").unwrap();
    assert_eq!(trip["by"], "write");
    assert!(trip["writer"].is_string(), "names the agent: {trip}");
    assert!(trip["generation"].as_u64().unwrap() >= 1);
    for l in lines.iter() {
        let at = l["at"].as_str().unwrap();
        humantime::parse_rfc3339(at).unwrap_or_else(|e| panic!("{at}: {e}"));
    }
}

fn tripping_policy() -> Policy {
    Policy::builder()
        .failures_within(1, Duration::from_secs(60))
        .open_for(Duration::from_millis(500))
        .build()
        .unwrap()
}

#[test]
fn watch_shows_every_transition_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("watched.db");
    let agent = shared_breaker::sqlite::breaker(&path, "orders", tripping_policy()).unwrap();
    agent.call_blocking(|| Ok::<(), ()>(())).unwrap();
    agent.flush_blocking().unwrap();
    watch_shows_every_transition(&format!("sqlite://{}", path.display()), &agent);
}

#[test]
fn watch_shows_every_transition_on_redis() {
    let redis = RedisServer::start();
    let driver = shared_breaker::redis::RedisDriver::open(&redis.url()).unwrap();
    let agent = Breaker::builder("orders", driver)
        .policy(tripping_policy())
        .build()
        .unwrap();
    agent.call_blocking(|| Ok::<(), ()>(())).unwrap();
    agent.flush_blocking().unwrap();
    watch_shows_every_transition(&redis.url(), &agent);
}

#[test]
fn completions_for_each_shell_and_a_clear_error_without_a_back_end() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_breaker"))
            .args(["completions", shell])
            .env_remove("BREAKER_BACKEND")
            .output()
            .unwrap();
        let script = ok(&out);
        for verb in ["list", "show", "trip", "disable", "reset", "watch"] {
            assert!(script.contains(verb), "{shell} completes `{verb}`");
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_breaker"))
        .arg("list")
        .env_remove("BREAKER_BACKEND")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(failed(&out).contains("--backend"));
    let help = ok(&Command::new(env!("CARGO_BIN_EXE_breaker"))
        .arg("--help")
        .output()
        .unwrap());
    assert!(
        help.contains("Examples:") && help.contains("etcds://"),
        "{help}"
    );
}
