//! The in-process driver of **breaker**: breakers of one process that use the same name
//! share one record. It is the embedded default for a single process, and the reference
//! implementation that the conformance kit is first proven against.
//!
//! ```
//! use breaker_driver_memory::{Breaker, MemoryDriver, Policy};
//!
//! let breaker = Breaker::builder("inventory", MemoryDriver::new())
//!     .policy(Policy::default())
//!     .build()?;
//! let answer: Result<u32, breaker_driver_memory::Error<&str>> = breaker.call_blocking(|| Ok(42));
//! assert_eq!(answer.unwrap(), 42);
//! # Ok::<(), breaker_driver_memory::BuildError>(())
//! ```

use std::hash::BuildHasher;

// A name hashes as its one interned pointer (`Name`'s `Hash`): no untrusted text reaches
// these maps, so the fast hasher hashbrown uses by default does instead of SipHash, which
// took an eighth of a failure's instructions (three lookups per write).
use foldhash::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

pub use breaker_core::{
    self, BackendError, BackendFailure, Breaker, BreakerBuilder, BuildError, Clock, Error, Event,
    ManualClock, Outcome, Permit, Policy, PolicyError, Rejected, State, SystemClock,
};
use breaker_core::{
    Change, ChangeSink, Driver, DriverError, Name, Swap, Timestamp, Versioned, Watch,
};

/// Shards of the store, so breakers of different names do not share a lock.
const SHARDS: usize = 16;

/// A driver that keeps records in this process's memory. Clones share the store.
///
/// Expiry is judged by the driver's clock (the host clock unless given another), lazily: an
/// expired record is never returned and is dropped when next touched.
#[derive(Clone, Debug)]
pub struct MemoryDriver {
    store: Arc<Store>,
}

#[derive(Clone, Debug)]
struct Entry {
    version: u64,
    value: Vec<u8>,
    expires_at: Option<Timestamp>,
    /// Deltas appended since `value` was written ([`Driver::append`]).
    log: Vec<Vec<u8>>,
    /// The version `value` was written at: later versions are appends alone.
    base: u64,
}

impl Entry {
    /// The entry as a driver returns it: value and log.
    fn versioned(&self) -> Versioned {
        Versioned::new(self.version, self.value.clone()).with_log(self.log.clone())
    }
}

/// The most deltas a log holds: past it, appends are refused and the breaker writes its
/// record by compare-and-swap (which empties the log).
const MAX_LOG: usize = 1024;

/// The records and watchers of the names that hash to one shard. Watchers are kept by name,
/// so that a write reaches its own watchers without looking at anyone else's.
#[derive(Default)]
struct Shard {
    records: HashMap<Name, Entry>,
    watchers: HashMap<Name, Vec<(u64, ChangeSink)>>,
}

/// A copy of a [`MemoryDriver`]'s store, from [`MemoryDriver::back_up`].
#[derive(Clone, Debug, Default)]
pub struct MemoryBackup {
    records: Vec<(Name, Entry)>,
    versions: u64,
}

struct Store {
    shards: [Mutex<Shard>; SHARDS],
    /// One counter for every name, so a version is never reused, even after expiry.
    versions: AtomicU64,
    clock: Arc<dyn Clock>,
    watch_ids: AtomicU64,
    /// While true every operation fails as unavailable (for outage tests).
    down: AtomicBool,
}

impl Shard {
    /// The watchers of `name`, to be told of its change once the shard's lock is released.
    fn sinks(&self, name: &Name) -> Vec<ChangeSink> {
        self.watchers.get(name).map_or_else(Vec::new, |w| {
            w.iter().map(|(_, sink)| sink.clone()).collect()
        })
    }
}

impl Store {
    fn shard(&self, name: &Name) -> MutexGuard<'_, Shard> {
        let i = (foldhash::fast::FixedState::default().hash_one(name) % SHARDS as u64) as usize;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryDriver {
    fn default() -> Self {
        MemoryDriver::new()
    }
}

impl MemoryDriver {
    /// A new, empty store whose expiry follows the host clock.
    pub fn new() -> Self {
        Self::with_clock(SystemClock)
    }

    /// A new, empty store whose expiry follows `clock` (tests: a [`ManualClock`]).
    pub fn with_clock(clock: impl Clock) -> Self {
        MemoryDriver {
            store: Arc::new(Store {
                shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
                versions: AtomicU64::new(0),
                clock: Arc::new(clock),
                watch_ids: AtomicU64::new(0),
                down: AtomicBool::new(false),
            }),
        }
    }

    /// The process-wide store that the facade's shortcut constructor uses, so that every
    /// breaker of one name in this process shares one record.
    pub fn process_wide() -> Self {
        static GLOBAL: OnceLock<MemoryDriver> = OnceLock::new();
        GLOBAL.get_or_init(MemoryDriver::new).clone()
    }

    /// Makes every operation fail as if the back-end were unreachable (`true`) or work again
    /// (`false`): a fault switch for tests of the back-end failure policy.
    pub fn set_unavailable(&self, down: bool) {
        self.store.down.store(down, Ordering::SeqCst);
    }

    /// Loses every record and starts the version counter again from zero, as a back-end
    /// that restarted without its data would: for tests of what such a loss does to a fleet.
    /// Watchers are not told, as a restarted back-end does not announce what it lost.
    pub fn wipe(&self) {
        self.restore(&MemoryBackup::default());
    }

    /// A copy of every record with its version, and of the version counter: what
    /// [`MemoryDriver::restore`] returns the store to.
    pub fn back_up(&self) -> MemoryBackup {
        let records = self
            .store
            .shards
            .iter()
            .flat_map(|shard| {
                let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                shard.records.clone()
            })
            .collect();
        MemoryBackup {
            records,
            versions: self.store.versions.load(Ordering::SeqCst),
        }
    }

    /// Returns the store to `backup`, versions included, as a restore from an older backup
    /// would: versions may go back. Watchers are not told, as with [`MemoryDriver::wipe`].
    pub fn restore(&self, backup: &MemoryBackup) {
        for shard in &self.store.shards {
            shard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .records
                .clear();
        }
        for (name, entry) in &backup.records {
            self.store.shard(name).records.insert(*name, entry.clone());
        }
        self.store.versions.store(backup.versions, Ordering::SeqCst);
    }

    fn check_up(&self) -> Result<(), DriverError> {
        if self.store.down.load(Ordering::SeqCst) {
            Err(DriverError::new(
                breaker_core::DriverErrorKind::Unavailable,
                "memory store switched off by set_unavailable(true)",
            ))
        } else {
            Ok(())
        }
    }

    /// The live entry of `name`, dropping it if expired.
    fn live<'a>(&self, map: &'a mut HashMap<Name, Entry>, name: &Name) -> Option<&'a Entry> {
        let now = self.store.clock.now();
        if map
            .get(name)
            .is_some_and(|e| e.expires_at.is_some_and(|t| t <= now))
        {
            map.remove(name);
        }
        map.get(name)
    }

    /// Tells `sinks`, the watchers of `name`, that `record` is stored now: with no lock of ours
    /// held, so that a sink may call back into the driver.
    fn notify(sinks: Vec<ChangeSink>, name: &Name, record: Versioned) {
        let change = Change {
            name: *name,
            record: Some(record),
        };
        // The last watcher (most often the only one) gets the change itself, not a copy.
        if let Some((last, others)) = sinks.split_last() {
            for sink in others {
                sink(change.clone());
            }
            last(change);
        }
    }

    fn swap_now(
        &self,
        name: &Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<Swap, DriverError> {
        self.check_up()?;
        let now = self.store.clock.now();
        let (written, sinks) = {
            let mut shard = self.store.shard(name);
            let map = &mut shard.records;
            let current = self.live(map, name).map(|e| e.version);
            if current != expected {
                let current = map.get(name).map(Entry::versioned);
                return Ok(Swap::Conflict { current });
            }
            let version = self.store.versions.fetch_add(1, Ordering::SeqCst) + 1;
            let entry = Entry {
                version,
                value,
                expires_at: ttl.map(|d| now.saturating_add(d)),
                log: Vec::new(),
                base: version,
            };
            let stored = Versioned::new(version, entry.value.clone());
            map.insert(*name, entry);
            let sinks = shard.sinks(name);
            (stored, sinks)
        };
        let version = written.version;
        Self::notify(sinks, name, written);
        Ok(Swap::Swapped { version })
    }

    /// Changes the live entry of `name` in place by `change`, under a new version, if
    /// `admit` allows it, telling the watchers when `notify`; the entry as stored then, or
    /// `Err` with the entry as it is (`None`: nothing live) when refused. The one body of
    /// an append and a compaction.
    fn rewrite(
        &self,
        name: &Name,
        admit: impl FnOnce(&Entry) -> bool,
        change: impl FnOnce(&mut Entry, Timestamp),
        notify: bool,
    ) -> Result<Result<Versioned, Option<Versioned>>, DriverError> {
        self.check_up()?;
        let now = self.store.clock.now();
        let (stored, sinks) = {
            let mut shard = self.store.shard(name);
            if !self.live(&mut shard.records, name).is_some_and(admit) {
                return Ok(Err(shard.records.get(name).map(Entry::versioned)));
            }
            let version = self.store.versions.fetch_add(1, Ordering::SeqCst) + 1;
            let entry = shard.records.get_mut(name).expect("live just above");
            entry.version = version;
            change(entry, now);
            let stored = entry.versioned();
            let sinks = if notify {
                shard.sinks(name)
            } else {
                Vec::new()
            };
            (stored, sinks)
        };
        if !sinks.is_empty() {
            Self::notify(sinks, name, stored.clone());
        }
        Ok(Ok(stored))
    }
}

/// An expiry of `at`, moved to `ttl` from `now` if that is later (`None`: never): an
/// append or a compaction only extends it, since another agent's deltas may need the time.
fn later(at: Option<Timestamp>, ttl: Option<Duration>, now: Timestamp) -> Option<Timestamp> {
    match (at, ttl) {
        (_, None) | (None, _) => None,
        (Some(t), Some(d)) => Some(t.max(now.saturating_add(d))),
    }
}

impl Driver for MemoryDriver {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn load(
        &self,
        name: &Name,
        _timeout: Duration,
    ) -> Result<Option<Versioned>, DriverError> {
        self.check_up()?;
        let mut shard = self.store.shard(name);
        Ok(self.live(&mut shard.records, name).map(Entry::versioned))
    }

    async fn compare_and_swap(
        &self,
        name: &Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        _timeout: Duration,
    ) -> Result<Swap, DriverError> {
        self.swap_now(name, expected, value, ttl)
    }

    fn appends(&self) -> bool {
        true
    }

    async fn append(
        &self,
        name: &Name,
        delta: Vec<u8>,
        ttl: Option<Duration>,
        notify: bool,
        _timeout: Duration,
    ) -> Result<Option<Versioned>, DriverError> {
        let appended = self.rewrite(
            name,
            |e| e.log.len() < MAX_LOG,
            |e, now| {
                e.log.push(delta);
                e.expires_at = later(e.expires_at, ttl, now);
            },
            notify,
        )?;
        Ok(appended.ok())
    }

    async fn compact(
        &self,
        name: &Name,
        expected: u64,
        through: usize,
        value: Vec<u8>,
        ttl: Option<Duration>,
        _timeout: Duration,
    ) -> Result<Swap, DriverError> {
        // Only appended to since `expected`: the record was written no later, and the log
        // holds the deltas folded.
        let compacted = self.rewrite(
            name,
            |e| e.base <= expected && expected <= e.version && through <= e.log.len(),
            |e, now| {
                e.base = e.version;
                e.value = value;
                e.log.drain(..through);
                e.expires_at = later(e.expires_at, ttl, now);
            },
            true,
        )?;
        Ok(match compacted {
            Ok(stored) => Swap::Swapped {
                version: stored.version,
            },
            Err(current) => Swap::Conflict { current },
        })
    }

    async fn list(&self, _timeout: Duration) -> Result<Vec<(Name, Versioned)>, DriverError> {
        self.check_up()?;
        let now = self.store.clock.now();
        let mut out = Vec::new();
        for shard in &self.store.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let map = &mut shard.records;
            map.retain(|_, e| e.expires_at.is_none_or(|t| t > now));
            out.extend(map.iter().map(|(name, e)| (*name, e.versioned())));
        }
        Ok(out)
    }

    async fn watch(
        &self,
        name: &Name,
        sink: ChangeSink,
        _timeout: Duration,
    ) -> Result<Option<Watch>, DriverError> {
        self.check_up()?;
        let id = self.store.watch_ids.fetch_add(1, Ordering::Relaxed);
        self.store
            .shard(name)
            .watchers
            .entry(*name)
            .or_default()
            .push((id, sink));
        let store = Arc::downgrade(&self.store);
        let down = self.clone();
        Ok(Some(Watch::new(
            move || !down.store.down.load(Ordering::SeqCst),
            Unwatch {
                store,
                name: *name,
                id,
            },
        )))
    }
}

/// Removes a watcher when its [`Watch`] is dropped.
struct Unwatch {
    store: std::sync::Weak<Store>,
    name: Name,
    id: u64,
}

impl Drop for Unwatch {
    fn drop(&mut self) {
        if let Some(store) = self.store.upgrade() {
            let mut shard = store.shard(&self.name);
            if let Some(watchers) = shard.watchers.get_mut(&self.name) {
                watchers.retain(|(id, _)| *id != self.id);
                if watchers.is_empty() {
                    shard.watchers.remove(&self.name);
                }
            }
        }
    }
}
