//! The SQLite driver runs the whole conformance kit, the hostile-back-end cases included,
//! each case on a fresh database file in a temporary directory, every driver of a case a
//! connection of its own to that file. Foreign contents, losses and restores are made with a
//! connection of the harness's own (rusqlite), bypassing the driver.

use std::path::PathBuf;
use std::time::Duration;

use breaker_core::{ManualClock, Timestamp};
use breaker_driver_sqlite::{SqliteDriver, SqliteOptions};
use breaker_testing::conformance::{Expiry, Foreign, Harness, HostileHarness};
use rusqlite::types::Value;
use rusqlite::{Connection, params};

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

impl SqliteHarness {
    fn options(&self) -> SqliteOptions {
        SqliteOptions::default()
            .clock(self.expiry.clone())
            .poll_interval(Duration::from_millis(5))
    }

    /// A connection of the harness's own, as a foreign writer or an operator's tool has, to
    /// the database with the driver's schema (made by opening a driver first).
    fn connection(&self) -> Connection {
        drop(SqliteDriver::open_with(&self.path, self.options()).expect("the database opens"));
        let conn = Connection::open(&self.path).expect("the database opens");
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }
}

impl Harness for SqliteHarness {
    type Driver = SqliteDriver;

    async fn driver(&self) -> SqliteDriver {
        SqliteDriver::open_with(&self.path, self.options()).expect("the database opens")
    }

    fn expiry(&self) -> Expiry {
        Expiry::Manual(self.expiry.clone())
    }
}

/// Foreign cells in a breaker's row (`?1`: its name) and foreign version counters.
const FOREIGN: &[(Foreign, &str)] = &[
    (
        Foreign::at_record("a TEXT value holding a record"),
        "2, '{\"schema\":1}', NULL",
    ),
    (Foreign::at_record("a REAL value"), "2, 1.5, NULL"),
    (Foreign::at_record("a TEXT version"), "'abc', x'7b7d', NULL"),
    (Foreign::at_record("a REAL version"), "1.5, x'7b7d', NULL"),
    (Foreign::at_record("version zero"), "0, x'7b7d', NULL"),
    (
        Foreign::at_record("a negative version"),
        "-7, x'7b7d', NULL",
    ),
    (Foreign::at_record("a TEXT expiry"), "3, x'7b7d', 'soon'"),
    (
        Foreign::beside("the version counter at i64::MAX"),
        "UPDATE breaker_meta SET value = 9223372036854775807 WHERE key = 'last_version'",
    ),
    (
        Foreign::beside("the version counter as TEXT"),
        "UPDATE breaker_meta SET value = 'abc' WHERE key = 'last_version'",
    ),
    (
        Foreign::beside("the version counter deleted"),
        "DELETE FROM breaker_meta WHERE key = 'last_version'",
    ),
];

/// The rows of both tables, as a backup holds them.
struct Backup {
    records: Vec<Vec<Value>>,
    meta: Vec<(String, Value)>,
}

impl HostileHarness for SqliteHarness {
    type Backup = Backup;

    fn foreign(&self) -> Vec<Foreign> {
        FOREIGN.iter().map(|(f, _)| *f).collect()
    }

    async fn plant_foreign(&self, name: &str, which: usize) {
        let (foreign, sql) = FOREIGN[which];
        let conn = self.connection();
        if foreign.at_record {
            conn.execute(
                &format!(
                    "INSERT OR REPLACE INTO breaker_records
                     (prefix, name, version, value, expires_at) VALUES ('breaker', ?1, {sql})"
                ),
                [name],
            )
            .unwrap();
        } else {
            conn.execute(sql, []).unwrap();
        }
    }

    async fn plant_value(&self, name: &str, bytes: Vec<u8>) {
        self.connection()
            .execute(
                "INSERT OR REPLACE INTO breaker_records (prefix, name, version, value, expires_at)
                 VALUES ('breaker', ?1, 1 + (SELECT value FROM breaker_meta
                                             WHERE key = 'last_version'), ?2, NULL)",
                params![name, bytes],
            )
            .unwrap();
    }

    /// An empty database of the driver's schema: no rows, the counter at zero.
    async fn wipe(&self) {
        self.connection()
            .execute_batch(
                "DELETE FROM breaker_records;
                 UPDATE breaker_meta SET value = 0 WHERE key = 'last_version';",
            )
            .unwrap();
    }

    async fn back_up(&self) -> Backup {
        let conn = self.connection();
        let mut records = conn.prepare("SELECT * FROM breaker_records").unwrap();
        let columns = records.column_count();
        let records = records
            .query_map([], |row| (0..columns).map(|i| row.get(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut meta = conn.prepare("SELECT key, value FROM breaker_meta").unwrap();
        let meta = meta
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        Backup { records, meta }
    }

    /// Every row as the backup holds it: versions and the counter go back.
    async fn restore(&self, backup: Backup) {
        let mut conn = self.connection();
        let tx = conn.transaction().unwrap();
        tx.execute_batch("DELETE FROM breaker_records; DELETE FROM breaker_meta;")
            .unwrap();
        for row in &backup.records {
            tx.execute(
                "INSERT INTO breaker_records VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params_from_iter(row),
            )
            .unwrap();
        }
        for (key, value) in &backup.meta {
            tx.execute(
                "INSERT INTO breaker_meta VALUES (?1, ?2)",
                params![key, value],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    async fn driver_under(&self, prefix: &str) -> SqliteDriver {
        SqliteDriver::open_with(&self.path, self.options().prefix(prefix))
            .expect("the database opens")
    }
}

breaker_testing::conformance_tests!(SqliteHarness::new());
breaker_testing::conformance_tests!(hostile SqliteHarness::new());
