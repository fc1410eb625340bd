//! The example third-party driver passes the whole conformance kit, from this one file.

use breaker_core::{ManualClock, Timestamp};
use breaker_driver_btree::BTreeDriver;
use breaker_testing::conformance::{Expiry, Harness};

/// One store per case; its expiry follows a manual clock that the kit advances.
struct BTreeHarness {
    driver: BTreeDriver,
    expiry: ManualClock,
}

impl BTreeHarness {
    fn new() -> Self {
        let expiry = ManualClock::new(Timestamp::from_millis(1_000_000));
        BTreeHarness {
            driver: BTreeDriver::new(expiry.clone()),
            expiry,
        }
    }
}

impl Harness for BTreeHarness {
    type Driver = BTreeDriver;

    async fn driver(&self) -> BTreeDriver {
        self.driver.clone()
    }

    fn expiry(&self) -> Expiry {
        Expiry::Manual(self.expiry.clone())
    }
}

breaker_testing::conformance_tests!(BTreeHarness::new());
