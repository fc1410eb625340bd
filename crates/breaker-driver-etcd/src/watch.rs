//! Pushing changes to agents: one etcd watch per driver on its key prefix, re-established
//! after a disconnect from the revision after the last one seen (so no change is missed),
//! delivering each watched breaker's new record, carried by the event, with no round trip,
//! together with its running timers, kept from the events of its timer keys (a lease that
//! runs out deletes its key: that is pushed as a change too).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use breaker_core::{ChangeSink, Name, Versioned, Watch};
use breaker_runtime::runtime;
use etcd_client::{EventType, WatchOptions};

use crate::Inner;
use crate::timers::Key;

/// Registers a watcher, starting the watch task if it is not running.
pub(crate) fn start(inner: Arc<Inner>, name: Name, sink: ChangeSink) -> Watch {
    let (watch, first) = inner.watches.register(name, sink);
    if first {
        runtime().spawn(run(Arc::downgrade(&inner)));
    }
    watch
}

/// Keeps one watch up while the driver lives and has watchers.
async fn run(inner: Weak<Inner>) {
    // The last revision delivered; the watch resumes after it.
    let seen = AtomicI64::new(0);
    // What the watch knows of each watched breaker: its record and running timers, kept up
    // to date event by event, so that a timer running out is pushed with the record.
    let mut known: HashMap<Name, Option<Versioned>> = HashMap::new();
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(driver) = inner.upgrade() else {
            return;
        };
        let watches = driver.watches.clone();
        if watches.retire_if_idle() {
            return;
        }
        let stop = watches.stopping();
        let mut stopped = false;
        let from = seen.load(Ordering::Acquire);
        let mut options = WatchOptions::new().with_prefix();
        if from > 0 {
            options = options.with_start_revision(from + 1);
        }
        let stream = match driver.client().await {
            Ok(mut client) => client.watch(driver.dir.clone(), Some(options)).await.ok(),
            Err(_) => None,
        };
        if let Some(mut stream) = stream {
            watches.set_alive(true);
            delay = Duration::from_millis(100);
            if from == 0 {
                // First watch: whatever was written before it started.
                known.clear();
                for name in watches.names() {
                    if let Ok(stored) = driver.load_now(name.as_str()).await {
                        known.insert(name, stored.clone());
                        watches.deliver(name, stored);
                    }
                }
            }
            let dir = driver.dir.clone();
            drop(driver);
            'stream: loop {
                let message = tokio::select! {
                    m = stream.message() => m,
                    () = stop.notified() => {
                        stopped = true;
                        Ok(None)
                    }
                };
                let Ok(Some(response)) = message else { break };
                if response.canceled() {
                    // Compacted past our revision: start over from now, reloading.
                    seen.store(0, Ordering::Release);
                    break;
                }
                // Apply every event of the response before delivering: a write and the
                // timers it starts share one revision, and an agent must never see the
                // write without its timers.
                let mut touched = BTreeSet::new();
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    seen.fetch_max(kv.mod_revision(), Ordering::AcqRel);
                    let put = event.event_type() == EventType::Put;
                    let Some(key) = Key::of(&dir, kv, put) else {
                        continue;
                    };
                    let name = key.name();
                    if !known.contains_key(&name) {
                        // Watched since the first load, or not at all: read it whole below.
                        touched.insert(name);
                        continue;
                    }
                    let stored = known.get_mut(&name).expect("checked above");
                    let revision = kv.mod_revision() as u64;
                    if matches!(key, Key::Record(_))
                        && stored.as_ref().is_some_and(|v| v.version >= revision)
                    {
                        // Older than what the first load read.
                        continue;
                    }
                    match key {
                        Key::Record(_) if put => {
                            let running = stored.take().map(|v| v.timers).unwrap_or_default();
                            *stored = Some(
                                Versioned::new(revision, kv.value().to_vec()).with_timers(running),
                            );
                        }
                        Key::Record(_) => *stored = None,
                        Key::Timer(_, timer) => {
                            if let Some(v) = stored {
                                v.timers.retain(|t| *t != timer);
                                if put {
                                    v.timers.push(timer);
                                }
                            }
                        }
                    }
                    touched.insert(name);
                }
                for name in touched {
                    if !watches.watches(&name) {
                        known.remove(&name);
                        continue;
                    }
                    if let Entry::Vacant(entry) = known.entry(name) {
                        let Some(driver) = inner.upgrade() else {
                            return;
                        };
                        match driver.load_now(name.as_str()).await {
                            Ok(stored) => {
                                entry.insert(stored);
                            }
                            // Start over with a full reload; the breaker polls meanwhile.
                            Err(_) => {
                                seen.store(0, Ordering::Release);
                                break 'stream;
                            }
                        }
                    }
                    watches.deliver(name, known[&name].clone());
                }
            }
        } else {
            drop(driver);
        }
        watches.set_alive(false);
        if stopped {
            // The last watcher left: retire, or, when another came meanwhile (a breaker
            // dropped and the next one built), watch again at once; backing off is for
            // failures, and a new breaker waits for its watch.
            continue;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
