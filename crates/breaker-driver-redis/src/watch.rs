//! Pushing changes to agents: one pub/sub subscription per driver to its prefix's channel,
//! re-established after a disconnect (with a reload of every watched record, so no change
//! is missed), delivering each watched breaker's new record to its sinks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use breaker_core::{Change, ChangeSink, Name, Watch};
use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::Inner;
use breaker_runtime::runtime;

struct Watcher {
    id: u64,
    name: Name,
    sink: ChangeSink,
}

/// The watchers of one driver and its subscription task.
#[derive(Default)]
pub(crate) struct Watches {
    watchers: Mutex<Vec<Watcher>>,
    next_id: Mutex<u64>,
    running: AtomicBool,
    alive: Arc<AtomicBool>,
    stop: Arc<Notify>,
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

    fn deliver(&self, name: Name, record: Option<breaker_core::Versioned>) {
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

/// Reads a notification: `NAME VERSION\nDATA`.
fn parse(payload: &[u8]) -> Option<Change> {
    let newline = payload.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&payload[..newline]).ok()?;
    let (name, version) = head.split_once(' ')?;
    Some(Change {
        name: Name::new(name).ok()?,
        record: Some(breaker_core::Versioned {
            version: version.parse().ok()?,
            value: payload[newline + 1..].to_vec(),
        }),
    })
}

/// Registers a watcher, starting the subscription task if it is not running.
pub(crate) fn start(
    inner: Arc<Inner>,
    client: redis::Client,
    name: Name,
    sink: ChangeSink,
) -> Watch {
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
        runtime().spawn(subscribe(Arc::downgrade(&inner), client));
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

/// Removes its watcher when dropped; the last one stops the subscription.
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

/// Keeps one subscription up while the driver lives and has watchers.
async fn subscribe(inner: Weak<Inner>, client: redis::Client) {
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
        let subscribed = match client.get_async_pubsub().await {
            Ok(mut pubsub) => pubsub.subscribe(&driver.channel).await.map(|()| pubsub),
            Err(e) => Err(e),
        };
        match subscribed {
            Ok(mut pubsub) => {
                watches.alive.store(true, Ordering::Release);
                delay = Duration::from_millis(100);
                // Whatever changed while the subscription was down.
                for name in watches.names() {
                    if let Ok(record) = driver.load_now(name.as_str()).await {
                        watches.deliver(name, record);
                    }
                }
                let channel = driver.channel.clone();
                drop(driver);
                let mut messages = pubsub.on_message();
                loop {
                    let message = tokio::select! {
                        m = messages.next() => m,
                        () = stop.notified() => None,
                    };
                    let Some(message) = message else { break };
                    let Some(driver) = inner.upgrade() else {
                        return;
                    };
                    if message.get_channel_name() != channel {
                        continue;
                    }
                    // `NAME VERSION\nDATA`: the new record itself.
                    let payload: Vec<u8> = message.get_payload_bytes().to_vec();
                    let Some(change) = parse(&payload) else {
                        continue;
                    };
                    if driver.watches.names().contains(&change.name) {
                        driver.watches.deliver(change.name, change.record);
                    }
                }
            }
            Err(_) => drop(driver),
        }
        if let Some(driver) = inner.upgrade() {
            driver.watches.alive.store(false, Ordering::Release);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
