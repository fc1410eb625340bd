//! The memory driver runs the whole conformance kit.

use breaker_core::{ManualClock, Timestamp};
use breaker_driver_memory::MemoryDriver;
use breaker_testing::conformance::{Expiry, Harness};

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

breaker_testing::conformance_tests!(MemoryHarness::new());
