//! The runtime the driver's gRPC I/O runs on, so that its futures can be polled from any
//! executor, and the deadline of every operation.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use breaker_core::{DriverError, DriverErrorKind};
use tokio::runtime::Runtime;

pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("breaker-etcd")
            .enable_all()
            .build()
            .expect("a tokio runtime for the etcd driver")
    })
}

/// Runs `op` on the driver runtime within `timeout`.
pub(crate) async fn on_runtime<T: Send + 'static>(
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
