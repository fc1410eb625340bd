//! The memory driver runs the whole conformance kit, the hostile-back-end cases included.

use std::time::Duration;

use breaker_core::{Driver, ManualClock, Name, Timestamp};
use breaker_driver_memory::{MemoryBackup, MemoryDriver};
use breaker_testing::conformance::{Expiry, Foreign, Harness, HostileHarness};

/// One store per case, whose expiry follows a manual clock.
struct MemoryHarness {
    driver: MemoryDriver,
    expiry: ManualClock,
}

impl MemoryHarness {
    fn new() -> Self {
        let expiry = ManualClock::new(Timestamp::from_millis(1_000_000));
        MemoryHarness {
            driver: MemoryDriver::with_clock(expiry.clone()),
            expiry,
        }
    }
}

impl Harness for MemoryHarness {
    type Driver = MemoryDriver;

    async fn driver(&self) -> MemoryDriver {
        self.driver.clone()
    }

    fn expiry(&self) -> Expiry {
        Expiry::Manual(self.expiry.clone())
    }
}

impl HostileHarness for MemoryHarness {
    type Backup = MemoryBackup;

    /// The store holds typed entries (a version, bytes, an expiry) and nothing else: there
    /// is nowhere to put foreign contents but the value, which `plant_value` covers.
    fn foreign(&self) -> Vec<Foreign> {
        Vec::new()
    }

    async fn plant_foreign(&self, _name: &str, which: usize) {
        unreachable!("no foreign contents #{which}")
    }

    async fn plant_value(&self, name: &str, bytes: Vec<u8>) {
        let name = Name::new(name).unwrap();
        let t = Duration::from_secs(1);
        let current = self.driver.load(&name, t).await.unwrap().map(|v| v.version);
        self.driver
            .compare_and_swap(&name, current, bytes, None, t)
            .await
            .unwrap();
    }

    async fn wipe(&self) {
        self.driver.wipe();
    }

    async fn back_up(&self) -> MemoryBackup {
        self.driver.back_up()
    }

    async fn restore(&self, backup: MemoryBackup) {
        self.driver.restore(&backup);
    }

    /// A memory store has no prefixes: another namespace is another store.
    async fn driver_under(&self, _prefix: &str) -> MemoryDriver {
        MemoryDriver::with_clock(self.expiry.clone())
    }
}

breaker_testing::conformance_tests!(MemoryHarness::new());
breaker_testing::conformance_tests!(hostile MemoryHarness::new());
