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

/// Reads a notification: `NAME VERSION[ LOGBYTES]\nDATA[LOG]`, the log (framed as stored)
/// the last `LOGBYTES` bytes.
fn parse(payload: &[u8]) -> Option<Change> {
    let newline = payload.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&payload[..newline]).ok()?;
    let mut words = head.split(' ');
    let name = Name::new(words.next()?).ok()?;
    let version = words.next()?.parse().ok()?;
    let log_bytes = match words.next() {
        Some(n) => n.parse::<usize>().ok()?,
        None => 0,
    };
    if words.next().is_some() {
        return None;
    }
    let body = &payload[newline + 1..];
    let (value, log) = body.split_at(body.len().checked_sub(log_bytes)?);
    Some(Change {
        name,
        record: Some(
            breaker_core::Versioned::new(version, value.to_vec()).with_log(crate::split_log(log)),
        ),
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
                if let Ok(record) = driver.load_now(&name).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_carries_the_record_and_its_log() {
        let change = parse(b"pay 17 7\n{\"r\":1}\x02ab\x03xyz").unwrap();
        assert_eq!(change.name.as_str(), "pay");
        let v = change.record.unwrap();
        assert_eq!(v.version, 17);
        assert_eq!(v.value, b"{\"r\":1}");
        assert_eq!(v.log, vec![b"ab".to_vec(), b"xyz".to_vec()]);
        let plain = parse(b"pay 18\n{}").unwrap().record.unwrap();
        assert!(plain.log.is_empty());
        // A log longer than the body, or a length that is not a number, is no notification.
        assert!(parse(b"pay 19 99\n{}").is_none());
        assert!(parse(b"pay 19 x\n{}").is_none());
        assert!(parse(b"pay 19 1 2\n{}").is_none());
    }
}
