//! Runtime support for **breaker** drivers built on tokio (Redis, etcd): the one runtime
//! their I/O runs on, so that the futures a driver returns can be polled from any executor
//! or from a blocking call with no runtime at all (the `Driver` contract), the deadline of
//! every operation, and the bookkeeping of watchers that push-capable drivers share.

pub mod watchers;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use breaker_core::{DriverError, DriverErrorKind};
use tokio::runtime::Runtime;

/// The process-wide driver runtime: one worker thread, `breaker-io`, started on first use.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("breaker-io")
            .enable_all()
            .build()
            .expect("a tokio runtime for breaker drivers")
    })
}

/// Runs `op` on the driver runtime and fails it with [`DriverErrorKind::Timeout`], naming
/// `what`, if it does not finish within `timeout`.
pub async fn on_runtime<T: Send + 'static>(
    what: &'static str,
    timeout: Duration,
    op: impl Future<Output = Result<T, DriverError>> + Send + 'static,
) -> Result<T, DriverError> {
    let handle = runtime().spawn(async move {
        match tokio::time::timeout(timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(DriverError::new(
                DriverErrorKind::Timeout,
                format!("{what}: no answer within the {timeout:?} deadline"),
            )),
        }
    });
    handle.await.map_err(|e| {
        DriverError::new(DriverErrorKind::Other, format!("{what}: task failed: {e}"))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_from_a_thread_without_a_runtime_and_enforces_the_deadline() {
        let ok = futures_block_on(on_runtime("quick", Duration::from_secs(1), async { Ok(7) }));
        assert_eq!(ok.unwrap(), 7);
        let slow = futures_block_on(on_runtime("slow op", Duration::from_millis(20), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        }));
        let err = slow.unwrap_err();
        assert_eq!(err.kind(), DriverErrorKind::Timeout);
        assert!(err.to_string().contains("slow op"), "{err}");
    }

    /// A blocking wait on a future, as a caller without a runtime would do.
    fn futures_block_on<F: Future>(f: F) -> F::Output {
        runtime().block_on(f)
    }
}
