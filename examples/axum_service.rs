//! An axum service whose handler calls a flaky downstream through `reqwest`, behind a
//! breaker. The downstream is the flaky test server, run in a thread; the example sends its
//! own requests to the service and prints what each one got, while the downstream is
//! healthy, then failing, then healthy again.
//!
//! Run it with `cargo run --example axum_service`.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use breaker_testing::IntermittentFailer;
use breaker_testing::flaky::FlakyService;
use shared_breaker::{Breaker, Error, Outcome, Policy};

#[derive(Clone)]
struct App {
    breaker: Breaker,
    client: reqwest::Client,
    downstream: String,
}

/// A 5xx from the downstream is a failure, as is a request that got no answer.
fn classify(result: &Result<reqwest::Response, reqwest::Error>) -> Outcome {
    match result {
        Ok(response) if response.status().is_server_error() => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

/// `GET /checkout`: calls the downstream through the breaker.
async fn checkout(State(app): State<App>) -> (StatusCode, String) {
    let url = format!("{}/call", app.downstream);
    let result = app
        .breaker
        .call_with(&classify, || app.client.get(&url).send())
        .await;
    match result {
        Ok(response) if response.status().is_success() => (StatusCode::OK, "order placed".into()),
        Ok(response) => (
            StatusCode::BAD_GATEWAY,
            format!("downstream answered {}", response.status()),
        ),
        Err(Error::Rejected(r)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not calling the downstream: {r}"),
        ),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let downstream = FlakyService::bind(0, IntermittentFailer::new(1_000, 0)?, false)?.spawn();
    let downstream = format!("http://{downstream}");
    let policy = Policy::builder()
        .failures_within(3, Duration::from_secs(10))
        .open_for(Duration::from_secs(1))
        .build()?;
    let app = App {
        breaker: shared_breaker::memory::breaker("axum-downstream", policy)?,
        client: reqwest::Client::new(),
        downstream: downstream.clone(),
    };
    let router = Router::new()
        .route("/checkout", get(checkout))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let service = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    println!("service on {service}, downstream (the flaky test server) on {downstream}\n");

    let client = reqwest::Client::new();
    let mode = |m: &str| client.post(format!("{downstream}/mode/{m}")).send();
    for (phase, calls) in [("healthy", 3), ("failing", 6), ("recovering", 3)] {
        match phase {
            "failing" => drop(mode("failing").await?),
            "recovering" => {
                mode("normal").await?;
                println!("  (waiting out the open period)");
                tokio::time::sleep(Duration::from_millis(1_100)).await;
            }
            _ => {}
        }
        println!("downstream {phase}:");
        for _ in 0..calls {
            let response = client.get(format!("{service}/checkout")).send().await?;
            let status = response.status();
            println!("  GET /checkout -> {status}: {}", response.text().await?);
        }
    }
    let stats = client
        .get(format!("{downstream}/stats"))
        .send()
        .await?
        .text()
        .await?;
    println!("\nthe downstream's own count: {stats}");
    Ok(())
}
