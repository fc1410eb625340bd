//! Writes that no caller waits for. In the cached mode a call's failure (or slow success) on
//! a back-end whose writes take longer than a hand-off (a networked one) is merged into its
//! breaker's unsent tally and handed here, and the caller returns at once:
//! one thread per kind of back-end (so that a slow Redis never delays the memory driver's
//! writes) writes the tally of each breaker that has one, in the order they were sent. A
//! breaker is queued at most once at a time, so a burst of failures costs one write, not one
//! per failure, and the queue never holds more breakers than there are.
//!
//! The same thread gives back dropped probe permits, which no caller can wait for either.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use super::shared::Inner;

/// A writer thread's queue of breakers with something to write.
pub(crate) type Queue = Sender<Arc<Inner>>;

/// The queue of the writer of `backend`, starting its thread on first use; `None` when no
/// thread could be started.
fn queue_for(backend: &'static str) -> Option<Queue> {
    static QUEUES: OnceLock<Mutex<HashMap<&'static str, Queue>>> = OnceLock::new();
    let mut queues = QUEUES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(queue) = queues.get(backend) {
        return Some(queue.clone());
    }
    let (queue, breakers) = mpsc::channel::<Arc<Inner>>();
    std::thread::Builder::new()
        .name(format!("breaker-writer-{backend}"))
        .spawn(move || {
            for inner in breakers {
                // Cleared before the write takes what is unsent: an outcome that arrives
                // after the take queues the breaker again, so none is left behind.
                inner.write_queued.store(false, Ordering::Release);
                futures_executor::block_on(inner.drain_queued(inner.deadline()));
            }
        })
        .ok()?;
    queues.insert(backend, queue.clone());
    Some(queue)
}

/// Has `inner`'s unsent outcomes written in the background. Without a writer thread they
/// wait for the breaker's next call or upkeep, which write what is unsent or queued.
pub(crate) fn send(inner: &Arc<Inner>) {
    if inner.write_queued.swap(true, Ordering::AcqRel) {
        return;
    }
    let sent = inner
        .writer
        .get_or_init(|| queue_for(inner.backend))
        .as_ref()
        .is_some_and(|queue| queue.send(Arc::clone(inner)).is_ok());
    if !sent {
        inner.write_queued.store(false, Ordering::Release);
    }
}
