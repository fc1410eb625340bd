//! The SQLite driver of **breaker**: the processes of one host share breakers through one
//! database file, with no server to run.
//!
//! Each [`SqliteDriver`] owns one connection on a worker thread of its own, so SQLite's
//! blocking calls never stall an async runtime. A compare-and-swap is one short write
//! transaction taken for writing at its start (`BEGIN IMMEDIATE`) in WAL mode, and so is an
//! [update](Driver::update): the record is shown to the breaker inside the transaction and
//! its revision written before the commit, so no other writer can come between (a breaker
//! retries a conflicting compare-and-swap this way; the transaction holds the write lock
//! while the breaker revises, and a caller that does not answer within its deadline is
//! rolled back). A busy handler that yields keeps waiting processes fair and gives up at
//! the operation's deadline. Other processes' changes are noticed by polling SQLite's
//! `data_version`, a cheap in-memory read, every [`SqliteOptions::poll_interval`]. Expired
//! records are swept by the writers themselves; no background process is needed.
//!
//! # Files that become unwritable while in use
//!
//! Do not make the database's files immutable (`chattr +i`) or remount their filesystem
//! read-only while processes use them. WAL mode keeps its index in the `-shm` file as memory
//! shared between the processes, and the kernel answers a write to a shared map that it can
//! no longer write with `SIGBUS`, which ends the process: no error reaches the driver. No
//! setting keeps WAL and avoids it: SQLite's exclusive locking mode keeps the index in the
//! heap but lets one process use the file; the rollback journal (`journal_mode=DELETE`) has
//! no map, and turns the same `chattr +i` into an unavailable back-end (the failure policy
//! applies, and the breaker recovers once the files are writable), but measured here it cut
//! compare-and-swap throughput from 6,158 to 1,080 operations per second (four processes on
//! one record: 6,319 to 776) and held readers during writes (another process's first
//! rejection after a trip: p99 531 ms instead of 25 ms). Since WAL, once any process sets it
//! on a file, applies to every connection of that file, the driver always uses WAL. A file
//! or directory that is read-only when the driver opens it, and a file deleted or replaced
//! under it, are errors, with the failure policy.
//!
//! ```
//! use breaker_driver_sqlite::{Breaker, Policy, SqliteDriver};
//!
//! let dir = tempfile::tempdir()?;
//! let driver = SqliteDriver::open(dir.path().join("breakers.db"))?;
//! let breaker = Breaker::builder("billing", driver).policy(Policy::default()).build()?;
//! let answer: Result<u32, breaker_driver_sqlite::Error<&str>> = breaker.call_blocking(|| Ok(42));
//! assert_eq!(answer.unwrap(), 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod schema;
mod store;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

pub use breaker_core::{
    self, BackendError, BackendFailure, Breaker, BreakerBuilder, BuildError, Clock, Error, Event,
    ManualClock, Outcome, Permit, Policy, PolicyError, Rejected, State, SystemClock,
};
use breaker_core::{
    ChangeSink, Driver, DriverError, DriverErrorKind, Name, Reviser, Swap, Updated, Versioned,
    Watch,
};
use futures_channel::oneshot;

use worker::{Job, Worker};

/// How a [`SqliteDriver`] opens its database.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// Namespace of this driver's records inside the file; breakers of one name under
    /// different prefixes are different breakers. Default `breaker`.
    pub prefix: String,
    /// How often other processes' changes are looked for. Default 25 ms.
    pub poll_interval: Duration,
    /// The clock that judges the records' expiry. Default: the host clock, which every
    /// process on the host shares.
    pub clock: Arc<dyn Clock>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            prefix: "breaker".into(),
            poll_interval: Duration::from_millis(25),
            clock: Arc::new(SystemClock),
        }
    }
}

impl SqliteOptions {
    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets how often other processes' changes are looked for.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets the clock that judges expiry (tests: a [`ManualClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

/// A driver over one SQLite database file. Clones share one connection and worker thread;
/// open the file again for another connection.
#[derive(Clone, Debug)]
pub struct SqliteDriver {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    polling: Arc<AtomicBool>,
    watch_ids: AtomicU64,
}

fn config(message: String) -> DriverError {
    DriverError::new(DriverErrorKind::Config, message)
}

impl SqliteDriver {
    /// Opens (creating if needed) the database at `path` with the default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DriverError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (creating if needed) the database at `path`. Refuses, with a
    /// [`DriverErrorKind::Config`] error, a file whose tables of our names are someone
    /// else's, or whose schema is newer than this build's.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, DriverError> {
        let path = path.as_ref().to_path_buf();
        if path.as_os_str().is_empty() {
            return Err(config("sqlite: the database path is empty".into()));
        }
        breaker_core::check_prefix("sqlite", &options.prefix)?;
        if options.poll_interval.is_zero() {
            return Err(config(
                "sqlite: poll_interval must be greater than zero".into(),
            ));
        }
        let polling = Arc::new(AtomicBool::new(true));
        let jobs = worker::spawn(
            path.clone(),
            options.prefix,
            options.clock,
            options.poll_interval,
            polling.clone(),
        )?;
        Ok(SqliteDriver {
            shared: Arc::new(Shared {
                path,
                jobs,
                polling,
                watch_ids: AtomicU64::new(0),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Runs `f` on the worker and waits for its answer, without blocking the caller's
    /// thread. A job still queued when its deadline has passed is not run.
    async fn on_worker<T: Send + 'static>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&mut Worker, Duration) -> Result<T, DriverError> + Send + 'static,
    ) -> Result<T, DriverError> {
        let answer = self.queue(timeout, f)?;
        answer.await.map_err(|_| self.gone())?
    }

    /// Queues `f` for the worker and returns where its answer will come.
    fn queue<T: Send + 'static>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&mut Worker, Duration) -> Result<T, DriverError> + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<T, DriverError>>, DriverError> {
        let (reply, answer) = oneshot::channel();
        let queued = Instant::now();
        let path = self.shared.path.clone();
        let job: Job = Box::new(move |w: &mut Worker| {
            let left = timeout.saturating_sub(queued.elapsed());
            let result = if left.is_zero() {
                Err(DriverError::new(
                    DriverErrorKind::Timeout,
                    format!(
                        "sqlite {}: waited longer than the {timeout:?} deadline behind other \
                         operations",
                        path.display()
                    ),
                ))
            } else {
                f(w, left)
            };
            let _ = reply.send(result);
        });
        self.shared.jobs.send(job).map_err(|_| self.gone())?;
        Ok(answer)
    }

    fn gone(&self) -> DriverError {
        DriverError::new(
            DriverErrorKind::Unavailable,
            format!(
                "sqlite {}: the worker thread is gone",
                self.shared.path.display()
            ),
        )
    }
}

impl Driver for SqliteDriver {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn load(&self, name: &Name, timeout: Duration) -> Result<Option<Versioned>, DriverError> {
        let name = *name;
        self.on_worker(timeout, move |w, left| w.load(&name, left))
            .await
    }

    async fn compare_and_swap(
        &self,
        name: &Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> Result<Swap, DriverError> {
        let name = *name;
        self.on_worker(timeout, move |w, left| {
            w.swap(&name, expected, value, ttl, left)
        })
        .await
    }

    async fn list(&self, timeout: Duration) -> Result<Vec<(Name, Versioned)>, DriverError> {
        self.on_worker(timeout, |w, left| w.list(left)).await
    }

    fn updates_atomically(&self) -> bool {
        true
    }

    /// One write transaction on the worker, which shows the caller the record and waits
    /// for its revision: writers of one record, in this process or another, take turns
    /// and never conflict.
    async fn update<'a>(
        &'a self,
        name: &'a Name,
        revise: &'a mut Reviser<'_>,
        timeout: Duration,
    ) -> Result<Updated, DriverError> {
        let (show, shown) = oneshot::channel();
        let (revised, revision) = mpsc::sync_channel(1);
        let name = *name;
        let answer = self.queue(timeout, move |w, left| {
            w.update(&name, left, show, revision)
        })?;
        // A worker that fails before it reads drops `show`; its error is the answer.
        if let Ok(current) = shown.await {
            let _ = revised.send(revise(current));
        }
        answer.await.map_err(|_| self.gone())?
    }

    async fn watch(
        &self,
        name: &Name,
        sink: ChangeSink,
        timeout: Duration,
    ) -> Result<Option<Watch>, DriverError> {
        let id = self.shared.watch_ids.fetch_add(1, Ordering::Relaxed);
        let name = *name;
        self.on_worker(timeout, move |w, _| {
            w.watch(id, name, sink);
            Ok(())
        })
        .await?;
        let polling = self.shared.polling.clone();
        let jobs = self.shared.jobs.clone();
        Ok(Some(Watch::new(
            move || polling.load(Ordering::Acquire),
            Unwatch { jobs, id },
        )))
    }
}

/// Stops a watch when its [`Watch`] is dropped.
struct Unwatch {
    jobs: mpsc::Sender<Job>,
    id: u64,
}

impl Drop for Unwatch {
    fn drop(&mut self) {
        let id = self.id;
        let _ = self
            .jobs
            .send(Box::new(move |w: &mut Worker| w.unwatch(id)));
    }
}
