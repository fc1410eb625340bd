//! The SQLite update's transaction when its caller does not answer: a reviser slower than
//! the deadline, or a caller that has gone before it was shown the record, gets it rolled
//! back. Nothing is written, and the next writer is not held. (That a breaker whose swaps
//! another writer always beats lands its outcome with one update is a kit case.)

use std::time::Duration;

use breaker_core::{Driver, DriverErrorKind, Name, Revision, Updated, Versioned};
use breaker_driver_sqlite::SqliteDriver;
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
