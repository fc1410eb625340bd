//! The SQLite update: a reviser slower than the deadline, or a caller that has gone before
//! it was shown the record, gets the transaction rolled back (nothing is written, and the
//! next writer is not held); a breaker whose compare-and-swap another writer always beats
//! lands its outcome with one update.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breaker_core::{
    Breaker, Clock, Driver, DriverErrorKind, ManualClock, Name, Policy, Record, Reviser, Revision,
    Swap, Timestamp, Updated, Versioned, machine,
};
use breaker_driver_sqlite::SqliteDriver;
use breaker_testing::calls::{fail, succeed};
use rusqlite::Connection;

const T: Duration = Duration::from_secs(5);

fn write(value: &str) -> impl FnMut(Option<Versioned>) -> Revision + Send + '_ {
    move |_| Revision::Write {
        value: value.as_bytes().to_vec(),
        ttl: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviser_slower_than_the_deadline_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("breakers.db");
    let (slow, other) = (
        SqliteDriver::open(&path).unwrap(),
        SqliteDriver::open(&path).unwrap(),
    );
    let name = Name::new("orders").unwrap();
    let mut too_slow = |_: Option<Versioned>| {
        std::thread::sleep(Duration::from_millis(300));
        Revision::Write {
            value: b"late".to_vec(),
            ttl: None,
        }
    };
    let err = slow
        .update(&name, &mut too_slow, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("nothing was written"), "{err}");
    assert_eq!(other.load(&name, T).await.unwrap(), None, "rolled back");
    let updated = other.update(&name, &mut write("next"), T).await.unwrap();
    assert!(
        matches!(updated, Updated::Written { .. }),
        "the lock was let go"
    );
    assert_eq!(slow.load(&name, T).await.unwrap().unwrap().value, b"next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_gone_before_it_was_shown_the_record_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("breakers.db");
    let driver = SqliteDriver::open(&path).unwrap();
    let name = Name::new("orders").unwrap();
    // Another process holds the write lock, so the update waits to begin.
    let mut holder = Connection::open(&path).unwrap();
    let tx = holder
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let mut revise = write("abandoned");
    let waited = tokio::time::timeout(
        Duration::from_millis(50),
        driver.update(&name, &mut revise, T),
    )
    .await;
    assert!(
        waited.is_err(),
        "the caller gave up while the update waited"
    );
    tx.rollback().unwrap();
    // The worker runs the abandoned job once the lock is free, finds its caller gone and
    // rolls back; the next operation queues behind it.
    assert_eq!(
        driver.load(&name, T).await.unwrap(),
        None,
        "nothing written"
    );
    let updated = driver.update(&name, &mut write("next"), T).await.unwrap();
    assert!(matches!(updated, Updated::Written { .. }));
    assert_eq!(driver.load(&name, T).await.unwrap().unwrap().value, b"next");
}

/// A SQLite driver that another writer always beats: before each of its compare-and-swaps,
/// a second connection writes the stored record again (same bytes, a new version), so the
/// swap's expected version is always stale. Counts the swaps and updates that reach it.
struct Beaten {
    inner: SqliteDriver,
    rival: SqliteDriver,
    atomic: bool,
    swaps: AtomicU64,
    updates: AtomicU64,
}

impl Driver for Beaten {
    fn backend(&self) -> &'static str {
        "sqlite"
    }
    async fn load(
        &self,
        name: &Name,
        timeout: Duration,
    ) -> Result<Option<Versioned>, breaker_core::DriverError> {
        self.inner.load(name, timeout).await
    }
    async fn compare_and_swap(
        &self,
        name: &Name,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> Result<Swap, breaker_core::DriverError> {
        self.swaps.fetch_add(1, Ordering::SeqCst);
        if let Some(current) = self.rival.load(name, timeout).await? {
            let again = Some(current.version);
            let swapped = self
                .rival
                .compare_and_swap(name, again, current.value, None, timeout);
            assert!(matches!(swapped.await?, Swap::Swapped { .. }));
        }
        self.inner
            .compare_and_swap(name, expected, value, ttl, timeout)
            .await
    }
    async fn list(
        &self,
        timeout: Duration,
    ) -> Result<Vec<(Name, Versioned)>, breaker_core::DriverError> {
        self.inner.list(timeout).await
    }
    fn updates_atomically(&self) -> bool {
        self.atomic && self.inner.updates_atomically()
    }
    async fn update<'a>(
        &'a self,
        name: &'a Name,
        revise: &'a mut Reviser<'_>,
        timeout: Duration,
    ) -> Result<Updated, breaker_core::DriverError> {
        self.updates.fetch_add(1, Ordering::SeqCst);
        self.inner.update(name, revise, timeout).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_always_beaten_lands_its_outcome_in_two_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("breakers.db");
    let policy = Policy::builder()
        .failures_within(3, Duration::from_secs(10))
        .build()
        .unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let beaten = |atomic| {
        std::sync::Arc::new(Beaten {
            inner: SqliteDriver::open(&path).unwrap(),
            rival: SqliteDriver::open(&path).unwrap(),
            atomic,
            swaps: AtomicU64::new(0),
            updates: AtomicU64::new(0),
        })
    };
    for atomic in [true, false] {
        let driver = beaten(atomic);
        let name = format!("beaten-{atomic}");
        let b = Breaker::builder_dyn(&name, driver.clone())
            .policy(policy.clone())
            .clock(clock.clone())
            .build()
            .unwrap();
        succeed(&b).await.unwrap();
        b.flush().await.unwrap();
        let swaps = driver.swaps.load(Ordering::SeqCst);
        let _ = fail(&b).await;
        let stored = driver
            .inner
            .load(&Name::new(&name).unwrap(), T)
            .await
            .unwrap()
            .unwrap();
        let failures = machine::window_counts(
            &Record::decode(&stored.value).unwrap(),
            &policy,
            clock.now(),
        )
        .failures;
        let tried = driver.swaps.load(Ordering::SeqCst) - swaps;
        if atomic {
            assert_eq!(failures, 1, "the outcome landed");
            assert_eq!(tried, 1, "one swap, beaten");
            assert_eq!(driver.updates.load(Ordering::SeqCst), 1, "then one update");
        } else {
            // Compare-and-swap alone is beaten every time, until the breaker gives up.
            assert_eq!(failures, 0, "the outcome was lost to the rival");
            assert!(tried > 1, "{tried} swaps");
            assert_eq!(driver.updates.load(Ordering::SeqCst), 0);
        }
    }
}
