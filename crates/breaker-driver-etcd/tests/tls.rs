//! TLS against a real etcd whose clients must speak TLS, with a certificate authority made
//! for the test.

use std::time::Duration;

use breaker_core::{Breaker, Policy, State};
use breaker_driver_etcd::{EtcdDriver, EtcdOptions};
use breaker_testing::calls::fail;
use breaker_testing::servers::EtcdCluster;

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_works_over_tls_and_an_untrusted_cluster_is_refused() {
    let (cluster, ca) = EtcdCluster::single_tls();
    let endpoint = cluster.endpoints()[0].clone();
    assert!(endpoint.starts_with("https://"));
    let untrusted = EtcdDriver::connect(&[endpoint.as_str()], Duration::from_secs(2)).await;
    assert!(
        untrusted.is_err(),
        "the system trust store does not know the test authority"
    );

    let options = EtcdOptions::default().tls_root_cert(ca);
    let driver = EtcdDriver::connect_with(&[endpoint.as_str()], options, T)
        .await
        .expect("a trusted cluster");
    let policy = Policy::builder()
        .failures_within(1, Duration::from_secs(60))
        .build()
        .unwrap();
    let a = Breaker::builder("over-tls", driver.clone())
        .policy(policy.clone())
        .build()
        .unwrap();
    let b = Breaker::builder("over-tls", driver)
        .policy(policy)
        .build()
        .unwrap();
    let _ = fail(&a).await;
    b.flush().await.unwrap();
    assert_eq!(
        b.state(),
        Some(State::Open),
        "shared through the TLS connection"
    );
}
