//! An example third-party driver for **breaker**: every record in one `BTreeMap` behind a
//! mutex, with versions from a counter and expiry judged by a clock the user gives.
//!
//! It implements [`breaker_core::Driver`] and nothing else: no watch (breakers then poll
//! within `max_staleness`), no back-end clock, no timers. `tests/conformance.rs` proves it
//! with the conformance kit, as any driver author would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use breaker_core::{Clock, DriverError, Name, Swap, Timestamp, Versioned};

/// One stored value.
#[derive(Debug)]
struct Entry {
    version: u64,
    value: Vec<u8>,
    expires_at: Option<Timestamp>,
}

#[derive(Debug, Default)]
struct Store {
    entries: BTreeMap<String, Entry>,
    /// The last version handed out. One counter for every name, so a version is never
    /// reused for a name, even after its value expired.
    last_version: u64,
}

/// Breaker records in a `BTreeMap`, shared by every clone.
#[derive(Clone, Debug)]
pub struct BTreeDriver {
    store: Arc<Mutex<Store>>,
    clock: Arc<dyn Clock>,
}

impl BTreeDriver {
    /// An empty store whose expiry follows `clock`.
    pub fn new(clock: impl Clock) -> Self {
        BTreeDriver {
            store: Arc::default(),
            clock: Arc::new(clock),
        }
    }

    fn with_store<R>(&self, f: impl FnOnce(&mut Store, Timestamp) -> R) -> R {
        let now = self.clock.now();
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        // An expired value is never returned: drop it before anything reads it.
        store
            .entries
            .retain(|_, e| e.expires_at.is_none_or(|at| at > now));
        f(&mut store, now)
    }
}

impl breaker_core::Driver for BTreeDriver {
    fn backend(&self) -> &'static str {
        "btree"
    }

    async fn load(&self, name: &Name, _timeout: Duration) -> Result<Option<Versioned>, DriverError> {
        Ok(self.with_store(|store, _| {
            store
                .entries
                .get(name.as_str())
                .map(|e| Versioned::new(e.version, e.value.clone()))
        }))
    }

    async fn compare_and_swap(
        &self,
        name: &Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        _timeout: Duration,
    ) -> Result<Swap, DriverError> {
        Ok(self.with_store(|store, now| {
            let current = store.entries.get(name.as_str());
            if current.map(|e| e.version) != expected {
                return Swap::Conflict {
                    current: current.map(|e| Versioned::new(e.version, e.value.clone())),
                };
            }
            store.last_version = store.last_version.saturating_add(1);
            let version = store.last_version;
            let expires_at = ttl.map(|ttl| now.saturating_add(ttl));
            store.entries.insert(
                name.as_str().to_owned(),
                Entry {
                    version,
                    value,
                    expires_at,
                },
            );
            Swap::Swapped { version }
        }))
    }

    async fn list(&self, _timeout: Duration) -> Result<Vec<(Name, Versioned)>, DriverError> {
        Ok(self.with_store(|store, _| {
            store
                .entries
                .iter()
                .filter_map(|(name, e)| {
                    let name = Name::new(name).ok()?;
                    Some((name, Versioned::new(e.version, e.value.clone())))
                })
                .collect()
        }))
    }
}
