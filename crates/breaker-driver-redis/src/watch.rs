//! Pushing changes to agents: one pub/sub subscription per driver to its prefix's channel,
//! re-established after a disconnect (with a reload of every watched record, so no change
//! is missed). A notification carries the new record, so delivering it costs no round
//! trip.

use std::sync::{Arc, Weak};
use std::time::Duration;

use breaker_core::{Change, ChangeSink, Name, Watch};
use breaker_runtime::runtime;
use futures_util::StreamExt;

use crate::Inner;

/// Reads a notification: `NAME VERSION\nDATA`.
fn parse(payload: &[u8]) -> Option<Change> {
    let newline = payload.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&payload[..newline]).ok()?;
    let (name, version) = head.split_once(' ')?;
    Some(Change {
        name: Name::new(name).ok()?,
        record: Some(breaker_core::Versioned::new(
            version.parse().ok()?,
            payload[newline + 1..].to_vec(),
        )),
    })
}

/// Registers a watcher, starting the subscription task if it is not running.
pub(crate) fn start(
    inner: Arc<Inner>,
    client: redis::Client,
    name: Name,
    sink: ChangeSink,
) -> Watch {
    let (watch, first) = inner.watches.register(name, sink);
    if first {
        runtime().spawn(subscribe(Arc::downgrade(&inner), client));
    }
    watch
}

/// Keeps one subscription up while the driver lives and has watchers.
async fn subscribe(inner: Weak<Inner>, client: redis::Client) {
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
        let subscribed = match client.get_async_pubsub().await {
            Ok(mut pubsub) => pubsub.subscribe(&driver.channel).await.map(|()| pubsub),
            Err(e) => Err(e),
        };
        if let Ok(mut pubsub) = subscribed {
            watches.set_alive(true);
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
                    () = stop.notified() => {
                        stopped = true;
                        None
                    }
                };
                let Some(message) = message else { break };
                if message.get_channel_name() != channel {
                    continue;
                }
                if let Some(change) = parse(message.get_payload_bytes())
                    && watches.watches(&change.name)
                {
                    watches.deliver(change.name, change.record);
                }
            }
        } else {
            drop(driver);
        }
        watches.set_alive(false);
        if stopped {
            // The last watcher left: retire, or, when another came meanwhile (a breaker
            // dropped and the next one built), subscribe again at once; backing off is for
            // failures, and a new breaker waits for its subscription.
            continue;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
