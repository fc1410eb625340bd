//! Bad input against a real `redis-server`: values under our keys that are not ours, and
//! malformed URLs, unreachable servers and wrong credentials, each with a clear error that
//! never shows the password.

use std::process::Command;
use std::time::Duration;

use breaker_core::{Breaker, DriverErrorKind, Error, Event, Policy, Record, State};
use breaker_driver_redis::RedisDriver;
use breaker_testing::servers::{RedisServer, free_port};

const T: Duration = Duration::from_secs(2);

fn cli(server: &RedisServer, args: &[&str]) {
    let out = Command::new("redis-cli")
        .args(["-p", &server.port().to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(out.status.success(), "redis-cli {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_values_are_reported_as_corrupt_and_replaced() {
    let server = RedisServer::start();
    let foreign: [&[&str]; 4] = [
        &["SET", "{breaker:garbage}:r", "\u{1}\u{2}not ours"],
        &["RPUSH", "{breaker:list}:r", "a", "b"],
        &["HSET", "{breaker:hash}:r", "owner", "someone else"],
        &[
            "HSET",
            "{breaker:schema}:r",
            "v",
            "3",
            "d",
            "{\"schema\":42}",
        ],
    ];
    for args in foreign {
        cli(&server, args);
        let name = args[1]
            .trim_start_matches("{breaker:")
            .trim_end_matches("}:r");
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
        let corrupt = events
            .drain()
            .into_iter()
            .any(|e| matches!(e, Event::CorruptRecord(ref err) if err.kind() == DriverErrorKind::Corrupt));
        assert!(corrupt, "{name}: reported as corrupt");
        assert!(matches!(
            b.call(|| async { Err::<(), _>("boom") }).await,
            Err(Error::Call(_))
        ));
        let stored =
            breaker_core::Driver::load(&driver, &breaker_core::Name::new(name).unwrap(), T)
                .await
                .unwrap()
                .expect("a record");
        let rec = Record::decode(&stored.value).expect("replaced by a record of ours");
        assert_eq!(rec.state, State::Open, "{name}");
    }
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
