//! Pushing changes to agents: one etcd watch per driver on its key prefix, re-established
//! after a disconnect from the revision after the last one seen (so no change is missed),
//! delivering each watched breaker's new record, carried by the event, with no round trip.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use breaker_core::{ChangeSink, Name, Versioned, Watch};
use breaker_runtime::runtime;
use etcd_client::{EventType, WatchOptions};

use crate::Inner;

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
                if response.canceled() {
                    // Compacted past our revision: start over from now, reloading.
                    seen.store(0, Ordering::Release);
                    break;
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    let revision = kv.mod_revision();
                    seen.fetch_max(revision, Ordering::AcqRel);
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
                    watches.deliver(name, record);
                }
            }
        } else {
            drop(driver);
        }
        watches.set_alive(false);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
