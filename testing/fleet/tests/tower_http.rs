//! The `tower` layer in front of the flaky test server, over real HTTP on loopback.

use std::time::Duration;

use breaker_fleet::server::FlakyServer;
use shared_breaker::Policy;
use shared_breaker::layer::{BreakerLayer, HttpClassifier};
use tower::{Layer, ServiceExt};

#[test]
fn the_layer_stops_calling_a_failing_http_service() {
    let server = FlakyServer::start(&breaker_fleet::bins!().server, &["--mode", "failing"]);
    let url = format!("{}/call", server.base());
    let http_client: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    // An HTTP client as a `tower` service: a blocking request, answered as an
    // `http::Response`; 5xx responses come back as responses, not errors.
    let client = tower::service_fn(move |_: ()| {
        let (http_client, url) = (http_client.clone(), url.clone());
        async move {
            let response = http_client.get(&url).call()?;
            Ok::<_, ureq::Error>(
                http::Response::builder()
                    .status(response.status())
                    .body(())
                    .expect("a response"),
            )
        }
    });
    let policy = Policy::builder()
        .failures_within(3, Duration::from_secs(60))
        .open_for(Duration::from_secs(60))
        .build()
        .unwrap();
    let breaker = shared_breaker::memory::breaker("tower-over-http", policy).unwrap();
    let service = BreakerLayer::new(breaker, HttpClassifier::default()).layer(client);
    let mut statuses = Vec::new();
    let mut rejected = 0;
    for _ in 0..10 {
        match futures_executor::block_on(service.clone().oneshot(())) {
            Ok(response) => statuses.push(response.status().as_u16()),
            Err(e) if e.is::<shared_breaker::Rejected>() => rejected += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(statuses, vec![503, 503, 503], "three 503s trip the breaker");
    assert_eq!(rejected, 7);
    assert_eq!(
        server.stats().requests,
        3,
        "rejected calls never reached the server"
    );
}
