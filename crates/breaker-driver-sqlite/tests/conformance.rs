//! The SQLite driver runs the whole conformance kit, each case on a fresh database file in
//! a temporary directory, every driver of a case a connection of its own to that file.

use std::path::PathBuf;
use std::time::Duration;

use breaker_core::{ManualClock, Timestamp};
use breaker_driver_sqlite::{SqliteDriver, SqliteOptions};
use breaker_testing::conformance::{Expiry, Harness};

struct SqliteHarness {
    _dir: tempfile::TempDir,
    path: PathBuf,
    expiry: ManualClock,
}

impl SqliteHarness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("breakers.db");
        SqliteHarness {
            _dir: dir,
            path,
            expiry: ManualClock::new(Timestamp::from_millis(1_000_000)),
        }
    }
}

impl Harness for SqliteHarness {
    type Driver = SqliteDriver;

    async fn driver(&self) -> SqliteDriver {
        let options = SqliteOptions::default()
            .clock(self.expiry.clone())
            .poll_interval(Duration::from_millis(5));
        SqliteDriver::open_with(&self.path, options).expect("the database opens")
    }

    fn expiry(&self) -> Expiry {
        Expiry::Manual(self.expiry.clone())
    }
}

breaker_testing::conformance_tests!(SqliteHarness::new());
