//! One driver per back-end for the shortcut constructors: breakers that name the same
//! back-end (the same SQLite path, Redis URL, etcd endpoints or configuration URL) share one
//! driver, so 50 breakers cost one SQLite worker thread or one pair of Redis connections,
//! not 50. Drivers are held weakly: the last breaker of a back-end to go closes its driver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use breaker_core::DynDriver;

type Drivers = Mutex<HashMap<String, Weak<dyn DynDriver>>>;

fn drivers() -> std::sync::MutexGuard<'static, HashMap<String, Weak<dyn DynDriver>>> {
    static DRIVERS: OnceLock<Drivers> = OnceLock::new();
    DRIVERS
        .get_or_init(Drivers::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The live driver kept under `key`, if any.
pub(crate) fn get(key: &str) -> Option<Arc<dyn DynDriver>> {
    drivers().get(key).and_then(Weak::upgrade)
}

/// Keeps `driver` under `key` for the next constructor, unless another constructor kept
/// one meanwhile (then that one is used, and `driver` is dropped), and forgets drivers
/// that no breaker holds any more.
pub(crate) fn keep(key: String, driver: Arc<dyn DynDriver>) -> Arc<dyn DynDriver> {
    let mut drivers = drivers();
    drivers.retain(|_, d| d.strong_count() > 0);
    if let Some(kept) = drivers.get(&key).and_then(Weak::upgrade) {
        return kept;
    }
    drivers.insert(key, Arc::downgrade(&driver));
    driver
}

/// The driver kept under `key`, or the one `connect` makes, kept for next time.
#[cfg(any(feature = "redis", feature = "etcd"))]
pub(crate) async fn get_or_connect<E, F>(
    key: String,
    connect: impl FnOnce() -> F,
) -> Result<Arc<dyn DynDriver>, E>
where
    F: std::future::Future<Output = Result<Arc<dyn DynDriver>, E>>,
{
    match get(&key) {
        Some(driver) => Ok(driver),
        None => Ok(keep(key, connect().await?)),
    }
}

/// The driver kept under `key`, or the one `open` makes, kept for next time.
#[cfg(any(feature = "sqlite", feature = "config"))]
pub(crate) fn get_or_open<E>(
    key: String,
    open: impl FnOnce() -> Result<Arc<dyn DynDriver>, E>,
) -> Result<Arc<dyn DynDriver>, E> {
    match get(&key) {
        Some(driver) => Ok(driver),
        None => Ok(keep(key, open()?)),
    }
}
