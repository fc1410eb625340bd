//! The watchers of one push-capable driver: which sinks want which breaker's changes, and
//! whether the driver's one push task (a subscription, a watch stream) is up. Each driver
//! runs its own task; this is the bookkeeping they share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use breaker_core::{Change, ChangeSink, DriverError, Name, Versioned, Watch};
use tokio::sync::Notify;

/// The watchers of one driver, by name: a change reaches its own sinks, and telling whether
/// a name is watched costs one lookup, however many breakers the driver serves.
#[derive(Default)]
pub struct Watchers {
    by_name: Mutex<HashMap<Name, Vec<(u64, ChangeSink)>>>,
    next_id: AtomicU64,
    running: AtomicBool,
    alive: Arc<AtomicBool>,
    stop: Arc<Notify>,
}

impl Watchers {
    fn by_name(&self) -> std::sync::MutexGuard<'_, HashMap<Name, Vec<(u64, ChangeSink)>>> {
        self.by_name.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `sink` for the changes of `name`. Returns the [`Watch`] to hand to the
    /// breaker (alive while the push task is; dropping it unregisters), and whether the
    /// caller must start the push task, which is not running yet.
    pub fn register(self: &Arc<Self>, name: Name, sink: ChangeSink) -> (Watch, bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.by_name().entry(name).or_default().push((id, sink));
        let start = !self.running.swap(true, Ordering::AcqRel);
        let alive = self.alive.clone();
        let watch = Watch::new(
            move || alive.load(Ordering::Acquire),
            Unregister {
                watchers: Arc::downgrade(self),
                name,
                id,
            },
        );
        (watch, start)
    }

    /// The names watched, each once (for the reload after a reconnection).
    pub fn names(&self) -> Vec<Name> {
        self.by_name().keys().copied().collect()
    }

    /// Whether any sink watches `name`.
    pub fn watches(&self, name: &Name) -> bool {
        self.by_name().contains_key(name)
    }

    /// Hands `record`, the new value of `name`, to every sink watching it.
    pub fn deliver(&self, name: Name, record: Option<Versioned>) {
        let sinks: Vec<ChangeSink> = self.by_name().get(&name).map_or_else(Vec::new, |w| {
            w.iter().map(|(_, sink)| sink.clone()).collect()
        });
        // Called with no lock held: a sink updates its breaker's memory, nothing more.
        for sink in sinks {
            sink(Change {
                name,
                record: record.clone(),
            });
        }
    }

    /// The push task reports whether changes are flowing.
    pub fn set_alive(&self, alive: bool) {
        self.alive.store(alive, Ordering::Release);
    }

    /// Notified when the last watcher leaves, so the push task can stop waiting.
    pub fn stopping(&self) -> Arc<Notify> {
        self.stop.clone()
    }

    /// For the push task, before each (re)connection: `true` when no watcher is left, in
    /// which case the task is marked stopped and must return.
    pub fn retire_if_idle(&self) -> bool {
        let idle = self.by_name().is_empty();
        if idle {
            self.running.store(false, Ordering::Release);
            self.set_alive(false);
        }
        idle
    }
}

/// Removes its watcher when its [`Watch`] is dropped; the last one wakes the push task.
struct Unregister {
    watchers: Weak<Watchers>,
    name: Name,
    id: u64,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        if let Some(watchers) = self.watchers.upgrade() {
            let mut by_name = watchers.by_name();
            if let Some(sinks) = by_name.get_mut(&self.name) {
                sinks.retain(|(id, _)| *id != self.id);
                if sinks.is_empty() {
                    by_name.remove(&self.name);
                }
            }
            if by_name.is_empty() {
                watchers.stop.notify_one();
            }
        }
    }
}

/// Waits, on the driver runtime, until `watch` is alive or `timeout` passes: changes from
/// then on are pushed. Should it not come up in time, the watch reports itself dead and the
/// breaker polls meanwhile.
pub async fn wait_alive(
    watch: &Watch,
    what: &'static str,
    timeout: Duration,
) -> Result<(), DriverError> {
    let deadline = Instant::now() + timeout;
    while !watch.is_alive() && Instant::now() < deadline {
        crate::on_runtime(what, timeout, async {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok(())
        })
        .await?;
    }
    Ok(())
}
