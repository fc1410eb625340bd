//! A `tower` stack: a breaker layer over a timeout over a service that is sometimes slow
//! and sometimes answers 503. Timeouts and 5xx responses are failures; after three, the
//! breaker rejects without calling the service.
//!
//! Run it with `cargo run --example tower_stack`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shared_breaker::Policy;
use shared_breaker::layer::{BreakerLayer, HttpClassifier};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let policy = Policy::builder()
        .failures_within(3, Duration::from_secs(10))
        .open_for(Duration::from_millis(500))
        .build()?;
    let breaker = shared_breaker::memory::breaker("tower-stack", policy)?;
    let calls = Arc::new(AtomicU32::new(0));
    let inner = {
        let calls = calls.clone();
        tower::service_fn(move |n: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                // Calls 3 to 5 are slow; calls 6 and 7 answer 503; the rest are fine.
                if (3..=5).contains(&n) {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let status = if (6..=7).contains(&n) { 503 } else { 200 };
                Ok::<_, tower::BoxError>(http::Response::builder().status(status).body(())?)
            }
        })
    };
    let stack = ServiceBuilder::new()
        .layer(BreakerLayer::new(breaker, HttpClassifier::default()))
        .timeout(Duration::from_millis(100))
        .service(inner);
    for n in 1..=12 {
        if n == 10 {
            println!("  (waiting out the open period)");
            tokio::time::sleep(Duration::from_millis(550)).await;
        }
        // Every layer's error is a `tower::BoxError`: the breaker's rejection is one of them.
        match stack.clone().oneshot(n).await {
            Ok(response) => println!("call {n:2}: {}", response.status()),
            Err(e) => match e.downcast_ref::<shared_breaker::Rejected>() {
                Some(r) => println!("call {n:2}: rejected: {r}"),
                None => println!("call {n:2}: failed: {e}"),
            },
        }
    }
    println!(
        "\nthe service was called {} times in 12 calls",
        calls.load(Ordering::SeqCst)
    );
    Ok(())
}
