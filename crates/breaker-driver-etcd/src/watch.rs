//! Pushing changes to agents: one etcd watch per driver on its key prefix, re-established
//! after a disconnect from the revision after the last one seen (so no change is missed),
//! delivering each watched breaker's new record, carried by the event, to its sinks.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use breaker_core::{Change, ChangeSink, Name, Versioned, Watch};
use etcd_client::{EventType, WatchOptions};
use tokio::sync::Notify;

use crate::Inner;
use breaker_runtime::runtime;

struct Watcher {
    id: u64,
    name: Name,
    sink: ChangeSink,
}

/// The watchers of one driver and its watch task.
#[derive(Default)]
pub(crate) struct Watches {
    watchers: Mutex<Vec<Watcher>>,
    next_id: Mutex<u64>,
    running: AtomicBool,
    alive: Arc<AtomicBool>,
    stop: Arc<Notify>,
    /// The last revision delivered; the watch resumes after it.
    seen: AtomicI64,
}

impl Watches {
    fn names(&self) -> Vec<Name> {
        let mut names: Vec<Name> = self
            .watchers
            .lock()
            .unwrap()
            .iter()
            .map(|w| w.name)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn deliver(&self, name: Name, record: Option<Versioned>) {
        let sinks: Vec<ChangeSink> = self
            .watchers
            .lock()
            .unwrap()
            .iter()
            .filter(|w| w.name == name)
            .map(|w| w.sink.clone())
            .collect();
        for sink in sinks {
            sink(Change {
                name,
                record: record.clone(),
            });
        }
    }
}

/// Registers a watcher, starting the watch task if it is not running.
pub(crate) fn start(inner: Arc<Inner>, name: Name, sink: ChangeSink) -> Watch {
    let watches = &inner.watches;
    let id = {
        let mut next = watches.next_id.lock().unwrap();
        *next += 1;
        *next
    };
    watches
        .watchers
        .lock()
        .unwrap()
        .push(Watcher { id, name, sink });
    if !watches.running.swap(true, Ordering::AcqRel) {
        runtime().spawn(run(Arc::downgrade(&inner)));
    }
    let alive = watches.alive.clone();
    Watch::new(
        move || alive.load(Ordering::Acquire),
        Unwatch {
            inner: Arc::downgrade(&inner),
            id,
        },
    )
}

/// Removes its watcher when dropped; the last one stops the watch.
struct Unwatch {
    inner: Weak<Inner>,
    id: u64,
}

impl Drop for Unwatch {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            let mut watchers = inner.watches.watchers.lock().unwrap();
            watchers.retain(|w| w.id != self.id);
            if watchers.is_empty() {
                inner.watches.stop.notify_one();
            }
        }
    }
}

/// Keeps one watch up while the driver lives and has watchers.
async fn run(inner: Weak<Inner>) {
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(driver) = inner.upgrade() else {
            return;
        };
        let watches = &driver.watches;
        if watches.watchers.lock().unwrap().is_empty() {
            watches.running.store(false, Ordering::Release);
            watches.alive.store(false, Ordering::Release);
            return;
        }
        let stop = watches.stop.clone();
        let seen = watches.seen.load(Ordering::Acquire);
        let mut options = WatchOptions::new().with_prefix();
        if seen > 0 {
            options = options.with_start_revision(seen + 1);
        }
        let stream = match driver.client().await {
            Ok(mut client) => client.watch(driver.dir.clone(), Some(options)).await.ok(),
            Err(_) => None,
        };
        if let Some(mut stream) = stream {
            watches.alive.store(true, Ordering::Release);
            delay = Duration::from_millis(100);
            if seen == 0 {
                // First watch: whatever was written before it started.
                for name in watches.names() {
                    if let Ok(record) = driver.load_now(name.as_str()).await {
                        watches.deliver(name, record);
                    }
                }
            }
            let dir = driver.dir.clone();
            drop(driver);
            loop {
                let message = tokio::select! {
                    m = stream.message() => m,
                    () = stop.notified() => Ok(None),
                };
                let Ok(Some(response)) = message else { break };
                let Some(driver) = inner.upgrade() else {
                    return;
                };
                if response.canceled() {
                    // Compacted past our revision: start over from now, reloading.
                    driver.watches.seen.store(0, Ordering::Release);
                    break;
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    let revision = kv.mod_revision();
                    driver.watches.seen.fetch_max(revision, Ordering::AcqRel);
                    let Some(name) = std::str::from_utf8(kv.key())
                        .ok()
                        .and_then(|k| k.strip_prefix(&dir))
                        .and_then(|n| Name::new(n).ok())
                    else {
                        continue;
                    };
                    let record = match event.event_type() {
                        EventType::Put => Some(Versioned {
                            version: revision as u64,
                            value: kv.value().to_vec(),
                        }),
                        EventType::Delete => None,
                    };
                    driver.watches.deliver(name, record);
                }
            }
        } else {
            drop(driver);
        }
        if let Some(driver) = inner.upgrade() {
            driver.watches.alive.store(false, Ordering::Release);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
