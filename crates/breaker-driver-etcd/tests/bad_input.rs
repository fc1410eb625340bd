//! Bad input against a real etcd: timer keys that no breaker put, malformed and dead
//! endpoints, and wrong credentials, each with a clear error that never shows the password.
//! Foreign values at record keys are the conformance kit's hostile-back-end cases.

use std::time::Duration;

use breaker_core::{Breaker, Driver, DriverErrorKind, Name, Record, State};
use breaker_driver_etcd::{EtcdDriver, EtcdOptions};
use breaker_testing::calls::succeed;
use breaker_testing::servers::{EtcdCluster, free_port};

const T: Duration = Duration::from_secs(3);

/// A timer key put without an etcd lease would never end: a foreign writer planting
/// `NAME/open/GEN` for the record's generation must not hold the breaker open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_key_without_a_lease_is_no_timer() {
    let cluster = EtcdCluster::single();
    let endpoint = cluster.endpoints()[0].clone();
    let mut raw = etcd_client::Client::connect([endpoint.as_str()], None)
        .await
        .unwrap();
    let now = breaker_core::SystemClock::precise();
    let mut rec = Record::new();
    (rec.generation, rec.state) = (5, State::Open);
    // Its open period ended a second ago by the record's estimate; an agent that believed
    // the planted key (judged by timers, the clock does not count) would reject for good.
    rec.open_until = Some(breaker_core::Timestamp::from_millis(
        now.as_millis() - 1_000,
    ));
    raw.put("breaker/leaseless", rec.encode(), None)
        .await
        .unwrap();
    raw.put("breaker/leaseless/open/5", "", None).await.unwrap();
    raw.put("breaker/leaseless/probe/5/1", "", None)
        .await
        .unwrap();
    let driver = EtcdDriver::open(&[endpoint.as_str()], EtcdOptions::default()).unwrap();
    let name = Name::new("leaseless").unwrap();
    let stored = driver.load(&name, T).await.unwrap().expect("the record");
    assert!(stored.timers.is_empty(), "no timers: {:?}", stored.timers);
    let listed = driver.list(T).await.unwrap();
    assert!(
        listed.iter().all(|(_, v)| v.timers.is_empty()),
        "{listed:?}"
    );
    // Judged by the back-end's timers (no clock given): the open period is over.
    let b = Breaker::builder("leaseless", driver).build().unwrap();
    assert!(succeed(&b).await.is_ok(), "the probe is admitted");
    assert_eq!(b.state(), Some(State::Closed), "and closes it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_dead_endpoints_are_clear_errors() {
    for bad in [
        "",
        "127.0.0.1",
        "ftp://127.0.0.1:2379",
        "http://:2379",
        "http://127.0.0.1:notaport",
    ] {
        let err = EtcdDriver::open(&[bad], EtcdOptions::default()).unwrap_err();
        assert_eq!(err.kind(), DriverErrorKind::Config, "{bad}: {err}");
        assert!(err.to_string().contains("malformed endpoint"), "{err}");
    }
    assert!(EtcdDriver::open(&[], EtcdOptions::default()).is_err());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let err = EtcdDriver::connect(&[dead.as_str()], Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            DriverErrorKind::Unavailable | DriverErrorKind::Timeout
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&dead), "names the endpoint: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_clear_error_without_the_password() {
    let cluster = EtcdCluster::single();
    let endpoint = cluster.endpoints()[0].clone();
    let mut admin = etcd_client::Client::connect([endpoint.as_str()], None)
        .await
        .unwrap();
    admin.user_add("root", "root-secret", None).await.unwrap();
    admin.role_add("root").await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();

    let wrong = EtcdOptions::default().credentials("root", "wrong-secret");
    let err = EtcdDriver::connect_with(&[endpoint.as_str()], wrong.clone(), T)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), DriverErrorKind::Config, "{text}");
    assert!(
        text.contains("authentication") || text.contains("auth"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret"), "{text}");
    let debug = format!(
        "{:?}",
        EtcdDriver::open(&[endpoint.as_str()], wrong).unwrap()
    );
    assert!(
        !debug.contains("wrong-secret") && debug.contains("root"),
        "{debug}"
    );

    let right = EtcdOptions::default().credentials("root", "root-secret");
    EtcdDriver::connect_with(&[endpoint.as_str()], right, T)
        .await
        .expect("the right password");

    // User and password in the endpoint itself: taken out into the credentials, so neither
    // the driver's `Debug` nor its errors show the password.
    let host = endpoint.trim_start_matches("http://");
    let in_url = format!("http://root:root-secret@{host}");
    let driver = EtcdDriver::connect(&[in_url.as_str()], T)
        .await
        .expect("credentials from the endpoint");
    let debug = format!("{driver:?}");
    assert!(!debug.contains("root-secret"), "{debug}");
    let wrong_in_url = format!("http://root:wrong-secret@{host}");
    let err = EtcdDriver::connect(&[wrong_in_url.as_str()], T)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("wrong-secret"), "{text}");
    assert!(!text.contains("Status {"), "no gRPC debug dump: {text}");
    let malformed = EtcdDriver::open(&["etcds://u:wrong-secret@host:"], EtcdOptions::default())
        .unwrap_err()
        .to_string();
    assert!(!malformed.contains("wrong-secret"), "{malformed}");
}
