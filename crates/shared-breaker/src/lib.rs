//! **shared-breaker** (the facade of *breaker*): a circuit breaker whose state is shared by every process that calls the same
//! service.
//!
//! Each process (agent) wraps its calls in a [`Breaker`]; all of them share one record
//! through a back-end driver. When the service fails too often, the breaker opens for the
//! whole fleet at once; after the open period a limited number of probes, fleet-wide, decide
//! whether it closes. Admission while closed or open costs no round trip.
//!
//! This facade re-exports `breaker-core` and, behind a cargo feature each, the drivers:
//!
//! | feature | module: driver | for |
//! |---|---|---|
//! | `memory` (default) | `memory`: `MemoryDriver` | the breakers of one process |
//! | `sqlite` | `sqlite`: `SqliteDriver` | the processes of one host, one database file |
//! | `redis` | `redis`: `RedisDriver` | a fleet, through Redis or Redis Cluster |
//! | `etcd` | `etcd`: `EtcdDriver` (its build needs `protoc`) | a fleet, through an etcd cluster |
//!
//! Each module also has a shortcut, `breaker(...)`, that opens its driver and builds a
//! breaker in one call. The `config` feature adds `config`: policies from TOML or environment
//! variables, and back-ends by URL. The `tower` feature adds `layer`: a `tower` layer with an
//! HTTP classifier. `metrics` and `tracing` report through those facades. (The modules of
//! features that are off are absent from this build's documentation; docs.rs shows them all,
//! each marked with its feature.)
//!
//! ```
//! use std::time::Duration;
//! use shared_breaker::{Error, Policy};
//!
//! let policy = Policy::builder()
//!     .failures_within(2, Duration::from_secs(60))
//!     .open_for(Duration::from_secs(5))
//!     .build()?;
//! let payments = shared_breaker::memory::breaker("payments-doc", policy)?;
//! let first: Result<(), Error<&str>> = payments.call_blocking(|| Err("down"));
//! let second: Result<(), Error<&str>> = payments.call_blocking(|| Err("down"));
//! assert!(matches!(second, Err(Error::Call("down"))), "the tripping call returns its error");
//! let third: Result<(), Error<&str>> = payments.call_blocking(|| Ok(()));
//! assert!(third.unwrap_err().is_rejected(), "then the breaker is open");
//! # let _ = first;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub use breaker_core::*;

#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod layer;
#[cfg(any(
    feature = "sqlite",
    feature = "redis",
    feature = "etcd",
    feature = "config"
))]
mod reuse;

/// Every Rust snippet of the workspace README, compiled (and run unless marked `no_run`) as a
/// doc test, so that none can rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct WorkspaceReadme;

/// The in-process driver: every breaker of one name in this process shares one record.
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub mod memory {
    pub use breaker_driver_memory::MemoryDriver;

    use breaker_core::{Breaker, BuildError, Policy};

    /// A breaker called `name` with `policy`, sharing its state with every other breaker of
    /// that name in this process (the process-wide [`MemoryDriver`]).
    pub fn breaker(name: &str, policy: Policy) -> Result<Breaker, BuildError> {
        Breaker::builder(name, MemoryDriver::process_wide())
            .policy(policy)
            .build()
    }
}

/// The SQLite driver: the processes of one host share breakers through one database file.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite {
    pub use breaker_driver_sqlite::{SqliteDriver, SqliteOptions};

    use std::path::Path;

    use breaker_core::{Breaker, BuildError, Policy};

    /// A breaker called `name` with `policy`, shared through the SQLite database at `path`
    /// (created if missing) with every process of the host that opens it. Breakers of one
    /// path in this process share one driver (one worker thread).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let b = shared_breaker::sqlite::breaker(dir.path().join("b.db"), "search", shared_breaker::Policy::default())?;
    /// assert_eq!(b.state(), None, "nothing read from the file yet");
    /// assert_eq!(b.refresh_blocking()?, shared_breaker::State::Closed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn breaker(
        path: impl AsRef<Path>,
        name: &str,
        policy: Policy,
    ) -> Result<Breaker, BuildError> {
        let path = path.as_ref();
        let driver = crate::reuse::get_or_open(format!("sqlite:{}", path.display()), || {
            Ok::<_, BuildError>(std::sync::Arc::new(SqliteDriver::open(path)?) as _)
        })?;
        Breaker::builder_dyn(name, driver).policy(policy).build()
    }
}

/// The Redis driver: a fleet of processes shares breakers through Redis or Redis Cluster.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis {
    pub use breaker_driver_redis::{RedisDriver, RedisOptions};

    use std::time::Duration;

    use breaker_core::{Breaker, BuildError, Policy};

    /// A breaker called `name` with `policy`, shared through the Redis server at `url` with
    /// every agent that uses the same name. The server is checked at once (within the
    /// policy's back-end deadline), so a wrong URL, password or address fails here with an
    /// error that says so. Breakers of one URL in this process share one driver (its
    /// connections and subscription), checked when the first of them is built.
    pub async fn breaker(url: &str, name: &str, policy: Policy) -> Result<Breaker, BuildError> {
        let timeout = policy.backend_timeout.max(Duration::from_secs(1));
        let driver = crate::reuse::get_or_connect(format!("redis:{url}"), || async move {
            Ok::<_, BuildError>(std::sync::Arc::new(RedisDriver::connect(url, timeout).await?) as _)
        })
        .await?;
        Breaker::builder_dyn(name, driver).policy(policy).build()
    }
}

/// The etcd driver: a fleet of processes shares breakers through an etcd cluster.
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub mod etcd {
    pub use breaker_driver_etcd::{EtcdDriver, EtcdOptions};

    use std::time::Duration;

    use breaker_core::{Breaker, BuildError, Policy};

    /// A breaker called `name` with `policy`, shared through the etcd cluster at
    /// `endpoints`. The cluster is asked at once (within the policy's back-end deadline),
    /// since the client connects lazily: a wrong or dead endpoint fails here, clearly.
    /// Breakers of the same endpoints in this process share one driver.
    pub async fn breaker(
        endpoints: &[&str],
        name: &str,
        policy: Policy,
    ) -> Result<Breaker, BuildError> {
        let timeout = policy.backend_timeout.max(Duration::from_secs(1));
        let key = format!("etcd:{}", endpoints.join(","));
        let driver = crate::reuse::get_or_connect(key, || async move {
            Ok::<_, BuildError>(
                std::sync::Arc::new(EtcdDriver::connect(endpoints, timeout).await?) as _,
            )
        })
        .await?;
        Breaker::builder_dyn(name, driver).policy(policy).build()
    }
}
