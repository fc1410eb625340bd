//! Test support for **breaker**: the driver conformance kit that every driver (ours or a
//! third party's) runs from one test file, the intermittent failer, and a fault-injecting
//! driver wrapper for back-end failure tests.
//!
//! The kit needs nothing but `breaker-core`. Two cargo features add what only some tests
//! need: `servers` (real `redis-server` and `etcd` processes on free loopback ports, stopped
//! by process id) and `flaky-server` (the flaky HTTP test server as a library service).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod calls;
pub mod conformance;
pub mod failer;
pub mod faulty;
#[cfg(feature = "flaky-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "flaky-server")))]
pub mod flaky;
#[cfg(feature = "servers")]
#[cfg_attr(docsrs, doc(cfg(feature = "servers")))]
pub mod servers;

pub use failer::IntermittentFailer;
pub use faulty::Faulty;

/// A breaker name no other test uses, so cases can share one back-end without cleanup.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
