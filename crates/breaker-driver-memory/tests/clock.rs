//! Following a back-end's clock: the offset is taken from the best of several readings, so
//! a first reading slowed by connection setup does not skew the agent's deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use breaker_core::{
    Breaker, ChangeSink, Driver, DriverError, Name, Swap, SystemClock, Timestamp, Versioned, Watch,
};
use breaker_driver_memory::MemoryDriver;

/// The back-end's clock runs this far ahead of the host's.
const AHEAD: Duration = Duration::from_secs(10);

/// A memory driver with a clock of its own, whose first reading waits 300 ms before it
/// answers (as a lazy connection's setup would), and whose later readings are fast.
#[derive(Clone)]
struct ColdClock {
    inner: MemoryDriver,
    readings: Arc<AtomicU32>,
}

impl Driver for ColdClock {
    fn backend(&self) -> &'static str {
        "cold-clock"
    }
    async fn load(&self, name: &Name, t: Duration) -> Result<Option<Versioned>, DriverError> {
        self.inner.load(name, t).await
    }
    async fn compare_and_swap(
        &self,
        name: &Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        t: Duration,
    ) -> Result<Swap, DriverError> {
        self.inner
            .compare_and_swap(name, expected, value, ttl, t)
            .await
    }
    async fn list(&self, t: Duration) -> Result<Vec<(Name, Versioned)>, DriverError> {
        self.inner.list(t).await
    }
    async fn watch(
        &self,
        name: &Name,
        sink: ChangeSink,
        t: Duration,
    ) -> Result<Option<Watch>, DriverError> {
        self.inner.watch(name, sink, t).await
    }
    async fn now(&self, _t: Duration) -> Result<Option<Timestamp>, DriverError> {
        if self.readings.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(Some(SystemClock::precise().saturating_add(AHEAD)))
    }
}

#[test]
fn the_offset_comes_from_the_shortest_round_trip() {
    let driver = ColdClock {
        inner: MemoryDriver::new(),
        readings: Arc::default(),
    };
    let b = Breaker::builder("clock-offset", driver.clone())
        .build()
        .unwrap();
    b.refresh_blocking().unwrap();
    assert!(driver.readings.load(Ordering::SeqCst) >= 2, "sampled again");
    let expected = SystemClock::precise().saturating_add(AHEAD).as_millis();
    let error = b.now().as_millis().abs_diff(expected);
    // One reading taken as of the middle of the slow round trip would be 150 ms off.
    assert!(error < 50, "{error} ms from the back-end's clock");
}
