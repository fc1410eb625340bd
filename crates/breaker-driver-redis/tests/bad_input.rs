//! Bad input against a real `redis-server`: a value far too large to read, and malformed
//! URLs, unreachable servers and wrong credentials, each with a clear error that never shows
//! the password. Foreign contents at our keys and namespace neighbours are the conformance
//! kit's hostile-back-end cases (tests/conformance.rs).

use std::process::Command;
use std::time::Duration;

use breaker_core::{Breaker, DriverErrorKind, Error, Event, Policy, Record, State};
use breaker_driver_redis::RedisDriver;
use breaker_testing::servers::{RedisServer, free_port};

const T: Duration = Duration::from_secs(2);

/// `total_net_output_bytes` of the server: what it has sent to all clients so far.
async fn bytes_sent(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO stats reports the bytes sent")
}

/// A 100 MB value at a record's key: measured by the server (HSTRLEN), never sent to the
/// breaker, reported as corrupt and replaced by its next write; the breaker never times out
/// on it. (The kit's `a_value_too_large_to_read_is_corrupt_and_replaced` plants 1 MiB on
/// every driver; this is the size the issue measured on Redis.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_value_is_corrupt_without_being_transferred() {
    let server = RedisServer::start();
    // 100 MB take a while to send on a loaded machine: no response timeout for the plant.
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await
        .unwrap();
    let big = vec![b'x'; 100 * 1024 * 1024];
    let () = redis::cmd("HSET")
        .arg("{breaker/big}:r")
        .arg("v")
        .arg(5)
        .arg("d")
        .arg(big)
        .query_async(&mut con)
        .await
        .unwrap();
    let before = bytes_sent(&mut con).await;
    let policy = Policy::builder()
        .failures_within(1, Duration::from_secs(60))
        .build()
        .unwrap();
    let driver = RedisDriver::open(&server.url()).unwrap();
    let b = Breaker::builder("big", driver.clone())
        .policy(policy)
        .build()
        .unwrap();
    let mut events = b.subscribe();
    assert!(b.call(|| async { Ok::<(), &str>(()) }).await.is_ok());
    assert!(
        events.drain().iter().any(
            |e| matches!(e, Event::CorruptRecord(err) if err.kind() == DriverErrorKind::Corrupt)
        ),
        "reported as corrupt"
    );
    assert!(!b.is_degraded(), "no timeout on the big value");
    assert!(matches!(
        b.call(|| async { Err::<(), _>("boom") }).await,
        Err(Error::Call(_))
    ));
    b.written().await;
    let sent = bytes_sent(&mut con).await - before;
    assert!(sent < 1024 * 1024, "the server sent {sent} bytes in all");
    let stored = breaker_core::Driver::load(&driver, &breaker_core::Name::new("big").unwrap(), T)
        .await
        .unwrap()
        .expect("a record");
    assert_eq!(Record::decode(&stored.value).unwrap().state, State::Open);
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
