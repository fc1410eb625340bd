//! TLS (`rediss://`) against a real `redis-server` that speaks TLS, with a certificate
//! authority made for the test.

use std::time::Duration;

use breaker_core::{Breaker, Policy, State};
use breaker_driver_redis::{RedisDriver, RedisOptions};
use breaker_testing::servers::RedisServer;

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_works_over_tls_and_an_untrusted_server_is_refused() {
    let (server, ca) = RedisServer::start_tls();
    let url = server.tls_url();
    let untrusted = RedisDriver::open(&url).unwrap().ping(T).await.unwrap_err();
    let text = untrusted.to_string().to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("tls"),
        "{text}"
    );

    let driver =
        RedisDriver::open_with(&[&url], RedisOptions::default().tls_root_cert(ca)).unwrap();
    driver.ping(T).await.expect("a trusted TLS server");
    let policy = Policy::builder()
        .failures_within(1, Duration::from_secs(60))
        .build()
        .unwrap();
    let b = Breaker::builder("over-tls", driver.clone())
        .policy(policy.clone())
        .build()
        .unwrap();
    let other = Breaker::builder("over-tls", driver)
        .policy(policy)
        .build()
        .unwrap();
    assert!(b.call(|| async { Err::<(), _>("boom") }).await.is_err());
    b.written().await;
    other.flush().await.unwrap();
    assert_eq!(
        other.state(),
        Some(State::Open),
        "shared through the TLS connection"
    );
}
