//! No secret in any output: every way a back-end address with a password reaches the CLI or
//! the configuration, mistyped or not, reachable or not, with the password searched for in
//! everything printed (stdout, stderr, `Display` and `Debug` of errors and drivers, events).

use std::process::Command;
use std::time::Duration;

use breaker_testing::servers::free_port;
use shared_breaker::{Breaker, Event, Policy};

const SECRET: &str = "Pa55-unseen-7q";

/// The back-end addresses to try: well-formed and unreachable, and mistyped.
fn addresses() -> Vec<String> {
    let port = free_port();
    vec![
        format!("redis://app:{SECRET}@127.0.0.1:{port}"),
        format!("rediss://app:{SECRET}@127.0.0.1:{port}/0"),
        format!("redis-cluster://app:{SECRET}@127.0.0.1:{port}"),
        format!("etcd://root:{SECRET}@127.0.0.1:{port}"),
        format!("etcds://root:{SECRET}@127.0.0.1:"),
        format!("redis:/app:{SECRET}@127.0.0.1:{port}"),
        format!("redis//app:{SECRET}@127.0.0.1"),
        format!("gopher://app:{SECRET}@host"),
        format!("redis://app:{SECRET}@[::1:6379"),
        format!("redis://app:{SECRET}@127.0.0.1:{port}?prefx=a"),
    ]
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the password: {text}");
}

#[test]
fn the_cli_never_prints_a_password() {
    let cli = env!("CARGO_BIN_EXE_breaker");
    for url in addresses() {
        for args in [
            &["list"][..],
            &["show", "payments", "--json"],
            &["trip", "payments"],
        ] {
            let out = Command::new(cli)
                .args(["--backend", &url, "--timeout", "300ms"])
                .args(args)
                .output()
                .unwrap();
            assert!(!out.status.success(), "{url} {args:?} succeeded");
            assert_clean(
                &format!("{url} {args:?} stdout"),
                &String::from_utf8_lossy(&out.stdout),
            );
            assert_clean(
                &format!("{url} {args:?} stderr"),
                &String::from_utf8_lossy(&out.stderr),
            );
        }
        // The variable the CLI reads, shown by `--help` unless it hides its value.
        let out = Command::new(cli)
            .arg("--help")
            .env("BREAKER_BACKEND", &url)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_clean("--help", &String::from_utf8_lossy(&out.stdout));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_drivers_and_events_never_show_a_password() {
    let policy = Policy::builder()
        .backend_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for url in addresses() {
        match shared_breaker::config::open_backend(&url) {
            Err(e) => {
                assert_clean(&url, &e.to_string());
                assert_clean(&url, &format!("{e:?}"));
            }
            Ok(driver) => {
                let b = Breaker::builder_dyn("secrets", driver)
                    .policy(policy.clone())
                    .build()
                    .unwrap();
                assert_clean(&url, &format!("{b:?}"));
                let mut events = b.subscribe();
                let _ = b.call(|| async { Ok::<(), &str>(()) }).await;
                let refreshed = b.refresh().await;
                assert!(refreshed.is_err(), "{url}: nothing listens there");
                let e = refreshed.unwrap_err();
                assert_clean(&url, &format!("{e} {e:?}"));
                for event in events.drain() {
                    if let Event::BackendError(e) = &event {
                        assert_clean(&url, &e.to_string());
                    }
                    assert_clean(&url, &format!("{event:?}"));
                }
            }
        }
    }
}
