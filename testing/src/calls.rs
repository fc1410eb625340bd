//! One-line calls for tests: a call that succeeds and one that fails, through a breaker.

use breaker_core::{Breaker, Error};

/// A call whose callee fails with `"boom"`.
pub async fn fail(b: &Breaker) -> Result<(), Error<&'static str>> {
    b.call(|| async { Err::<(), _>("boom") }).await
}

/// A call whose callee succeeds.
pub async fn succeed(b: &Breaker) -> Result<(), Error<&'static str>> {
    b.call(|| async { Ok::<(), &'static str>(()) }).await
}
