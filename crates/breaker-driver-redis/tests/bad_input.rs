//! Bad input against a real `redis-server`: values under our keys that are not ours, and
//! malformed URLs, unreachable servers and wrong credentials, each with a clear error that
//! never shows the password.

use std::process::Command;
use std::time::Duration;

use breaker_core::{Breaker, DriverErrorKind, Error, Event, Policy, Record, State};
use breaker_driver_redis::RedisDriver;
use breaker_testing::servers::{RedisServer, free_port};

const T: Duration = Duration::from_secs(2);

/// Feeds bytes to a command's standard input and says whether it succeeded.
trait StdinBytes {
    fn stdin_bytes(&mut self, input: &[u8]) -> bool;
}

impl StdinBytes for Command {
    fn stdin_bytes(&mut self, input: &[u8]) -> bool {
        use std::io::Write;
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-cli runs");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait().unwrap().success()
    }
}

fn cli(server: &RedisServer, args: &[&str]) {
    let out = Command::new("redis-cli")
        .args(["-p", &server.port().to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(out.status.success(), "redis-cli {args:?}");
}

/// Plants `args` (a redis-cli command) and checks that a breaker of `name` reports the value
/// as corrupt, keeps working, replaces it with its next write, and that operator actions
/// succeed against it.
async fn survives(server: &RedisServer, name: &str, plants: &[&[&str]]) {
    for args in plants {
        cli(server, args);
    }
    let policy = Policy::builder()
        .failures_within(1, Duration::from_secs(60))
        .build()
        .unwrap();
    let driver = RedisDriver::open(&server.url()).unwrap();
    let b = Breaker::builder(name, driver.clone())
        .policy(policy)
        .build()
        .unwrap();
    let mut events = b.subscribe();
    assert!(
        b.call(|| async { Ok::<(), &str>(()) }).await.is_ok(),
        "{name}: a foreign value does not wedge the breaker"
    );
    let corrupt = events.drain().into_iter().any(
        |e| matches!(e, Event::CorruptRecord(ref err) if err.kind() == DriverErrorKind::Corrupt),
    );
    assert!(corrupt, "{name}: reported as corrupt");
    assert!(matches!(
        b.call(|| async { Err::<(), _>("boom") }).await,
        Err(Error::Call(_))
    ));
    b.written().await;
    let stored = breaker_core::Driver::load(&driver, &breaker_core::Name::new(name).unwrap(), T)
        .await
        .unwrap()
        .expect("a record");
    let rec = Record::decode(&stored.value).expect("replaced by a record of ours");
    assert_eq!(rec.state, State::Open, "{name}");
    b.reset().await.expect("an operator's reset succeeds");
    b.force_open().await.expect("and a force-open");
    assert!(
        !b.is_degraded(),
        "{name}: never degraded by a foreign value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_values_are_reported_as_corrupt_and_replaced() {
    let server = RedisServer::start();
    let cases: [(&str, &[&[&str]]); 4] = [
        (
            "garbage",
            &[&["SET", "{breaker/garbage}:r", "\u{1}\u{2}not ours"]],
        ),
        ("list", &[&["RPUSH", "{breaker/list}:r", "a", "b"]]),
        (
            "hash",
            &[&["HSET", "{breaker/hash}:r", "owner", "someone else"]],
        ),
        (
            "schema",
            &[&[
                "HSET",
                "{breaker/schema}:r",
                "v",
                "3",
                "d",
                "{\"schema\":42}",
            ]],
        ),
    ];
    for (name, plants) in cases {
        survives(&server, name, plants).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_and_counters_that_are_not_ours_are_corrupt() {
    let server = RedisServer::start();
    // A version field that Rust would parse but is not what the script writes, or that no
    // script could compare: each must read as corrupt, not wedge or loop on conflicts.
    for (i, v) in [
        "abc",
        "-1",
        "1e3",
        "18446744073709551616",
        "+7",
        "007",
        "0",
        "",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("version-{i}");
        let key = format!("{{breaker/{name}}}:r");
        survives(&server, &name, &[&["HSET", &key, "v", v, "d", "{}"]]).await;
    }
    // A version counter that is not a counter, or one at its limit.
    let max = i64::MAX.to_string();
    let seq_cases: [(&str, &[&str]); 3] = [
        (
            "seq-garbage",
            &["SET", "{breaker/seq-garbage}:seq", "garbage"],
        ),
        ("seq-max", &["SET", "{breaker/seq-max}:seq", &max]),
        ("seq-list", &["RPUSH", "{breaker/seq-list}:seq", "a"]),
    ];
    for (name, plant) in seq_cases {
        cli(&server, plant);
        let driver = RedisDriver::open(&server.url()).unwrap();
        let b = Breaker::builder(name, driver).build().unwrap();
        b.force_open()
            .await
            .expect("a write despite the foreign counter");
        b.reset().await.expect("and another");
        assert_eq!(b.refresh().await.unwrap(), State::Closed, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_value_is_corrupt_without_being_transferred() {
    let server = RedisServer::start();
    // Over the record size limit; redis-cli takes it from a file, not the command line.
    let big = "x".repeat(breaker_core::MAX_RECORD_BYTES + 1);
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &server.port().to_string(),
            "-x",
            "HSET",
            "{breaker/big}:r",
            "d",
        ])
        .stdin_bytes(big.as_bytes());
    assert!(out, "planted the oversize value");
    cli(&server, &["HSET", "{breaker/big}:r", "v", "5"]);
    survives(&server, "big", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbours_in_the_namespace_never_share_a_key() {
    let server = RedisServer::start();
    let open = |prefix: &str| {
        RedisDriver::open_with(
            &[server.url().as_str()],
            breaker_driver_redis::RedisOptions::default().prefix(prefix),
        )
        .unwrap()
    };
    // `a` + `b:c` and `a:b` + `c` would both be `{a:b:c}` with a `:` separator.
    let one = Breaker::builder("b:c", open("a")).build().unwrap();
    let two = Breaker::builder("c", open("a:b")).build().unwrap();
    let default = Breaker::builder("x:y", open("breaker")).build().unwrap();
    let nested = Breaker::builder("y", open("breaker:x")).build().unwrap();
    one.force_open().await.unwrap();
    default.force_open().await.unwrap();
    assert_eq!(two.refresh().await.unwrap(), State::Closed);
    assert_eq!(nested.refresh().await.unwrap(), State::Closed);
    let listed = breaker_core::Driver::list(&open("breaker"), T)
        .await
        .unwrap();
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x:y"], "the prefix `breaker` lists only its own");
}

#[test]
fn malformed_urls_are_refused_with_the_problem_named() {
    for url in [
        "redis//127.0.0.1",
        "http://127.0.0.1:6379",
        "redis://:pw@127.0.0.1:notaport",
    ] {
        let err = RedisDriver::open(url).unwrap_err();
        assert_eq!(err.kind(), DriverErrorKind::Config, "{url}: {err}");
        let text = err.to_string();
        assert!(text.contains("invalid URL"), "{text}");
        assert!(
            !text.contains(":pw@"),
            "the password is never shown: {text}"
        );
    }
    assert!(RedisDriver::open_with(&[], Default::default()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_a_clear_error() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let err = RedisDriver::connect(&url, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            DriverErrorKind::Unavailable | DriverErrorKind::Timeout
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&url), "names the server: {err}");
    let shortcut = breaker_driver_redis::Breaker::builder("x", RedisDriver::open(&url).unwrap())
        .build()
        .unwrap();
    let r = shortcut.call(|| async { Ok::<(), &str>(()) }).await;
    assert!(
        r.is_ok(),
        "local fallback by default while Redis cannot be reached"
    );
    assert!(shortcut.is_degraded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_clear_error_without_the_password() {
    let server = RedisServer::start_with(&["--requirepass", "right-secret"]);
    let port = server.port();
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &port.to_string(),
            "--no-auth-warning",
            "-a",
            "right-secret",
        ])
        .args([
            "ACL",
            "SETUSER",
            "alice",
            "on",
            ">alice-secret",
            "~*",
            "&*",
            "+@all",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    for url in [
        format!("redis://:wrong-secret@127.0.0.1:{port}"),
        format!("redis://alice:wrong-secret@127.0.0.1:{port}"),
        format!("redis://127.0.0.1:{port}"),
    ] {
        let err = RedisDriver::connect(&url, T).await.unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("wrong-secret"), "{text}");
        assert!(
            text.to_lowercase().contains("auth")
                || text.contains("NOAUTH")
                || text.contains("WRONGPASS"),
            "says it is about authentication: {text}"
        );
        let debug = format!("{:?}", RedisDriver::open(&url).unwrap());
        assert!(!debug.contains("wrong-secret"), "{debug}");
    }
    RedisDriver::connect(&format!("redis://:right-secret@127.0.0.1:{port}"), T)
        .await
        .expect("the default user's password");
    RedisDriver::connect(&format!("redis://alice:alice-secret@127.0.0.1:{port}/0"), T)
        .await
        .expect("an ACL user with a database index");
}
