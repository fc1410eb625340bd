//! A Prometheus endpoint for breaker metrics: the `metrics` feature reports through the
//! `metrics` facade, and `metrics-exporter-prometheus` serves them. The example trips a
//! breaker, then scrapes its own endpoint and prints the breaker lines.
//!
//! Run it with `cargo run --example prometheus`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use shared_breaker::Policy;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // A free port on loopback for the endpoint.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()?;
    println!("metrics on http://{addr}/metrics\n");

    let policy = Policy::builder()
        .failures_within(2, Duration::from_secs(10))
        .build()?;
    let payments = shared_breaker::memory::breaker("payments", policy)?;
    for n in 0..6 {
        let _ = payments
            .call(|| async move { if n < 2 { Ok(()) } else { Err("503") } })
            .await;
    }

    tokio::time::sleep(Duration::from_millis(200)).await;
    let scrape = reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await?;
    for line in scrape.lines().filter(|l| l.starts_with("breaker_")) {
        println!("{line}");
    }
    Ok(())
}
