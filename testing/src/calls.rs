//! One-line calls for tests: a call that succeeds and one that fails, through a breaker.

use std::time::{Duration, Instant};

use breaker_core::{Breaker, Error};

/// A call whose callee fails with `"boom"`.
///
/// The call itself does not wait for its failure's write; this helper then waits for it
/// ([`Breaker::written`]), so that the kit's cases read the fleet's state after it.
pub async fn fail(b: &Breaker) -> Result<(), Error<&'static str>> {
    let result = b.call(|| async { Err::<(), _>("boom") }).await;
    b.written().await;
    result
}

/// A call whose callee succeeds.
pub async fn succeed(b: &Breaker) -> Result<(), Error<&'static str>> {
    b.call(|| async { Ok::<(), &'static str>(()) }).await
}

/// A call that succeeds (`ok`) or fails, asserting that it returns within `bound`: no caller
/// may wait long past the back-end deadline, whatever the back-end is doing.
pub async fn within(b: &Breaker, ok: bool, bound: Duration) -> Result<(), Error<&'static str>> {
    let started = Instant::now();
    let r = b
        .call(|| async move { if ok { Ok(()) } else { Err("boom") } })
        .await;
    let took = started.elapsed();
    assert!(took < bound, "a call took {took:?}, more than {bound:?}");
    r
}
