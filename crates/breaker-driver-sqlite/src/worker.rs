//! The worker thread that owns a driver's connection: SQLite's blocking calls run here, never
//! on an async runtime's threads. It also polls for other processes' changes, checks that the
//! database file is still the one it opened, and enforces every operation's deadline through
//! a busy handler that yields instead of sleeping long.

use std::cell::Cell;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use breaker_core::{
    Change, ChangeSink, Clock, DriverError, Name, Revision, Swap, Updated, Versioned,
};
use futures_channel::oneshot;
use rusqlite::{Connection, OpenFlags};

use crate::{error, schema, store};

/// How long opening a database may wait for other processes' locks.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// A unit of work for the worker.
pub(crate) type Job = Box<dyn FnOnce(&mut Worker) + Send>;

thread_local! {
    /// The deadline of the operation running on this worker thread.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// SQLite's plain busy timeout sleeps longer and longer, so one process can lock another out
/// for most of a second while others keep winning. This handler yields and naps briefly,
/// which keeps waits short and fair, and gives up at the operation's deadline.
fn busy_handler(attempt: i32) -> bool {
    let deadline = DEADLINE.with(Cell::get);
    if deadline.is_none_or(|d| Instant::now() >= d) {
        return false;
    }
    if attempt < 8 {
        std::thread::yield_now();
    } else {
        // 50 to 200 microseconds, varied by attempt so that waiters do not move in step.
        std::thread::sleep(Duration::from_micros(50 + (attempt as u64 * 37) % 150));
    }
    true
}

/// The watchers of one name, and the version they were last told of.
#[derive(Default)]
struct Watched {
    sinks: Vec<(u64, ChangeSink)>,
    last: Option<u64>,
}

/// What a driver's worker thread owns.
pub(crate) struct Worker {
    pub(crate) path: PathBuf,
    pub(crate) prefix: String,
    pub(crate) clock: Arc<dyn Clock>,
    conn: Option<Connection>,
    /// Device and inode of the file the connection has open.
    identity: Option<(u64, u64)>,
    /// Watchers by name, so that a write reaches its own without looking at the others'.
    watchers: HashMap<Name, Watched>,
    /// The name of each watch, by its id.
    watch_names: HashMap<u64, Name>,
    data_version: Option<i64>,
    swaps: u64,
    /// Whether the last poll worked: a watch is alive only while it does.
    pub(crate) polling: Arc<AtomicBool>,
}

fn identity(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

impl Worker {
    /// Opens the file and prepares the schema, waiting at most `OPEN_TIMEOUT` for other
    /// processes' locks.
    fn open_connection_at(&self, create: bool) -> Result<Connection, DriverError> {
        let deadline = Instant::now() + OPEN_TIMEOUT;
        DEADLINE.with(|d| d.set(Some(deadline)));
        let opened = loop {
            match self.open_connection_now(create) {
                // Switching a new file to WAL mode can fail busy without calling the busy
                // handler, while another process opens it too: try again.
                Err(e)
                    if e.kind() == breaker_core::DriverErrorKind::Timeout
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                other => break other,
            }
        };
        DEADLINE.with(|d| d.set(None));
        opened
    }

    fn open_connection_now(&self, create: bool) -> Result<Connection, DriverError> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let sql = |what, e| error::sql(&self.path, what, e);
        let mut conn =
            Connection::open_with_flags(&self.path, flags).map_err(|e| sql("opening", e))?;
        conn.busy_handler(Some(busy_handler))
            .map_err(|e| sql("setting the busy handler", e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| sql("switching to WAL mode", e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| sql("setting synchronous mode", e))?;
        schema::prepare(&mut conn).map_err(|e| error::schema(&self.path, e))?;
        Ok(conn)
    }

    /// The connection, reopened if the file was replaced since it was opened (or the last
    /// attempt failed); an error if the file is gone.
    fn connection(&mut self) -> Result<&mut Connection, DriverError> {
        let Ok(id) = identity(&self.path) else {
            self.conn = None;
            self.identity = None;
            return Err(error::missing(&self.path));
        };
        if self.identity != Some(id) || self.conn.is_none() {
            self.conn = None;
            self.identity = None;
            self.data_version = None;
            let conn = self.open_connection_at(false)?;
            self.identity = Some(id);
            return Ok(self.conn.insert(conn));
        }
        self.conn.as_mut().ok_or_else(|| error::missing(&self.path))
    }

    /// Runs `f` on the connection within `timeout`.
    pub(crate) fn run<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        f: impl FnOnce(&mut Connection, &str, i64) -> rusqlite::Result<T>,
    ) -> Result<T, DriverError> {
        DEADLINE.with(|d| d.set(Some(Instant::now() + timeout)));
        let now = self.clock.now().as_millis() as i64;
        let prefix = self.prefix.clone();
        let path = self.path.clone();
        let conn = self.connection()?;
        let result = f(conn, &prefix, now).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                error::locked(&path, what, timeout)
            }
            _ => error::sql(&path, what, e),
        });
        DEADLINE.with(|d| d.set(None));
        if let Err(e) = &result
            && e.kind() == breaker_core::DriverErrorKind::Unavailable
        {
            // Whatever broke, open afresh next time.
            self.conn = None;
            self.identity = None;
        }
        result
    }

    pub(crate) fn load(
        &mut self,
        name: &Name,
        timeout: Duration,
    ) -> Result<Option<Versioned>, DriverError> {
        self.run("load", timeout, |conn, prefix, now| {
            store::load(conn, prefix, name.as_str(), now)
        })
    }

    pub(crate) fn swap(
        &mut self,
        name: &Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> Result<Swap, DriverError> {
        self.swaps = self.swaps.wrapping_add(1);
        let swaps = self.swaps;
        let swapped = self.run("compare-and-swap", timeout, |conn, prefix, now| {
            store::swap(
                conn,
                prefix,
                name.as_str(),
                expected,
                &value,
                store::expires_at(now, ttl),
                now,
                swaps,
            )
        })?;
        if let Swap::Swapped { version } = swapped {
            // Changes through this connection do not move `data_version`: tell this
            // driver's own watchers directly.
            let record = Some(Versioned::new(version, value));
            self.deliver(name, record);
        }
        Ok(swapped)
    }

    /// Sends the live record of `name` to `shown` and writes the revision that comes back
    /// on `revised`, in one write transaction (see `store::update`). The transaction holds
    /// the database's write lock while the caller revises: a caller that has gone, or does
    /// not answer within `timeout`, has it rolled back.
    pub(crate) fn update(
        &mut self,
        name: &Name,
        timeout: Duration,
        shown: oneshot::Sender<Option<Versioned>>,
        revised: mpsc::Receiver<Revision>,
    ) -> Result<Updated, DriverError> {
        self.swaps = self.swaps.wrapping_add(1);
        let swaps = self.swaps;
        let deadline = Instant::now() + timeout;
        let revise = |current| {
            shown.send(current).ok()?;
            revised
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()
        };
        let updated = self.run("update", timeout, |conn, prefix, now| {
            store::update(conn, prefix, name.as_str(), now, swaps, revise)
        })?;
        match updated {
            store::Revised::Kept => Ok(Updated::Kept),
            store::Revised::Written { version, value } => {
                self.deliver(name, Some(Versioned::new(version, value)));
                Ok(Updated::Written { version })
            }
            store::Revised::Abandoned => Err(DriverError::new(
                breaker_core::DriverErrorKind::Timeout,
                format!(
                    "sqlite {}: update: no revision within the {timeout:?} deadline; nothing \
                     was written",
                    self.path.display()
                ),
            )),
        }
    }

    pub(crate) fn list(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<(Name, Versioned)>, DriverError> {
        self.run("list", timeout, |conn, prefix, now| {
            store::list(conn, prefix, now)
        })
    }

    pub(crate) fn watch(&mut self, id: u64, name: Name, sink: ChangeSink) {
        self.watchers
            .entry(name)
            .or_default()
            .sinks
            .push((id, sink));
        self.watch_names.insert(id, name);
    }

    pub(crate) fn unwatch(&mut self, id: u64) {
        let Some(name) = self.watch_names.remove(&id) else {
            return;
        };
        if let Some(watched) = self.watchers.get_mut(&name) {
            watched.sinks.retain(|(i, _)| *i != id);
            if watched.sinks.is_empty() {
                self.watchers.remove(&name);
            }
        }
    }

    /// Tells the watchers of `name` of `record`, unless they were told of its version.
    fn deliver(&mut self, name: &Name, record: Option<Versioned>) {
        let Some(watched) = self.watchers.get_mut(name) else {
            return;
        };
        let version = record.as_ref().map(|r| r.version);
        if watched.last == version {
            return;
        }
        watched.last = version;
        for (_, sink) in &watched.sinks {
            sink(Change {
                name: *name,
                record: record.clone(),
            });
        }
    }

    /// Looks for commits by other connections and delivers what changed to the watchers:
    /// one statement reads every live version under the prefix, and only the records whose
    /// version moved are read whole, so a poll costs one query plus the changes, however
    /// many breakers are watched. The whole poll shares one deadline.
    fn poll(&mut self, timeout: Duration) {
        if self.watchers.is_empty() {
            return;
        }
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let version = self.run("polling for changes", left(), |conn, _, _| {
            conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
        });
        let Ok(version) = version else {
            self.polling.store(false, Ordering::Release);
            return;
        };
        self.polling.store(true, Ordering::Release);
        if self.data_version == Some(version) {
            return;
        }
        let Ok(stored) = self.run("polling for changes", left(), store::versions) else {
            return;
        };
        self.data_version = Some(version);
        let moved: Vec<Name> = self
            .watchers
            .iter()
            .filter(|(name, w)| w.last != stored.get(name.as_str()).copied())
            .map(|(name, _)| *name)
            .collect();
        for name in moved {
            match self.load(&name, left()) {
                Ok(record) => self.deliver(&name, record),
                // Read at the next poll: the data version is not taken as seen.
                Err(_) => self.data_version = None,
            }
        }
    }
}

/// Starts a worker for the database at `path` (created if missing) and waits until the
/// schema is ready.
pub(crate) fn spawn(
    path: PathBuf,
    prefix: String,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
    polling: Arc<AtomicBool>,
) -> Result<mpsc::Sender<Job>, DriverError> {
    let (jobs, inbox) = mpsc::channel::<Job>();
    let (ready, started) = mpsc::sync_channel(1);
    let mut worker = Worker {
        path,
        prefix,
        clock,
        conn: None,
        identity: None,
        watchers: HashMap::new(),
        watch_names: HashMap::new(),
        data_version: None,
        swaps: 0,
        polling,
    };
    std::thread::Builder::new()
        .name("breaker-sqlite".into())
        .spawn(move || {
            let opened = worker.open_connection_at(true).and_then(|conn| {
                let id = identity(&worker.path).map_err(|_| error::missing(&worker.path))?;
                worker.conn = Some(conn);
                worker.identity = Some(id);
                Ok(())
            });
            let ok = opened.is_ok();
            let _ = ready.send(opened);
            if ok {
                serve(&mut worker, &inbox, poll_interval);
            }
        })
        .map_err(|e| {
            DriverError::new(
                breaker_core::DriverErrorKind::Other,
                format!("could not start the sqlite worker thread: {e}"),
            )
        })?;
    started.recv().map_err(|_| {
        DriverError::new(
            breaker_core::DriverErrorKind::Other,
            "the sqlite worker thread ended before opening the database",
        )
    })??;
    Ok(jobs)
}

/// Runs jobs until every sender is gone, polling between them.
fn serve(worker: &mut Worker, inbox: &mpsc::Receiver<Job>, poll_interval: Duration) {
    let mut next_poll = Instant::now() + poll_interval;
    loop {
        let wait = next_poll.saturating_duration_since(Instant::now());
        match inbox.recv_timeout(wait) {
            Ok(job) => job(worker),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if Instant::now() >= next_poll {
            worker.poll(poll_interval.max(Duration::from_millis(100)));
            next_poll = Instant::now() + poll_interval;
        }
    }
}
