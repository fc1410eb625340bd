//! The watchers of one push-capable driver: which sinks want which breaker's changes, and
//! whether the driver's one push task (a subscription, a watch stream) is up. Each driver
//! runs its own task; this is the bookkeeping they share.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use breaker_core::{Change, ChangeSink, DriverError, Name, Versioned, Watch};
use tokio::sync::Notify;

struct Watcher {
    id: u64,
    name: Name,
    sink: ChangeSink,
}

/// The watchers of one driver.
#[derive(Default)]
pub struct Watchers {
    list: Mutex<Vec<Watcher>>,
    next_id: AtomicU64,
    running: AtomicBool,
    alive: Arc<AtomicBool>,
    stop: Arc<Notify>,
}

impl Watchers {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Watcher>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `sink` for the changes of `name`. Returns the [`Watch`] to hand to the
    /// breaker (alive while the push task is; dropping it unregisters), and whether the
    /// caller must start the push task, which is not running yet.
    pub fn register(self: &Arc<Self>, name: Name, sink: ChangeSink) -> (Watch, bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.list().push(Watcher { id, name, sink });
        let start = !self.running.swap(true, Ordering::AcqRel);
        let alive = self.alive.clone();
        let watch = Watch::new(
            move || alive.load(Ordering::Acquire),
            Unregister {
                watchers: Arc::downgrade(self),
                id,
            },
        );
        (watch, start)
    }

    /// The names watched, each once.
    pub fn names(&self) -> Vec<Name> {
        let mut names: Vec<Name> = self.list().iter().map(|w| w.name).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Hands `record`, the new value of `name`, to every sink watching it.
    pub fn deliver(&self, name: Name, record: Option<Versioned>) {
        let sinks: Vec<ChangeSink> = self
            .list()
            .iter()
            .filter(|w| w.name == name)
            .map(|w| w.sink.clone())
            .collect();
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
        let idle = self.list().is_empty();
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
    id: u64,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        if let Some(watchers) = self.watchers.upgrade() {
            let mut list = watchers.list();
            list.retain(|w| w.id != self.id);
            if list.is_empty() {
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
