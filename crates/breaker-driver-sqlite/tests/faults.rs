//! SQLite-specific bad input and faults: foreign databases are refused, and a lock held too
//! long, a deleted or garbage file, or a read-only file each give a clear error and the
//! breaker's back-end failure policy, never a panic or a hang; a restored file returns the
//! agents to shared mode.

use breaker_testing::calls::{fail, succeed};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use breaker_core::{
    BackendFailure, Breaker, DriverErrorKind, Error, ManualClock, Policy, State, Timestamp,
};
use breaker_driver_sqlite::{SqliteDriver, SqliteOptions};
use rusqlite::Connection;

fn db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("breakers.db");
    (dir, path)
}

fn policy(on_failure: BackendFailure) -> Policy {
    Policy::builder()
        .failures_within(2, Duration::from_secs(60))
        .backend_timeout(Duration::from_millis(150))
        .reconnect(Duration::from_secs(1), Duration::from_secs(1))
        .on_backend_failure(on_failure)
        .build()
        .unwrap()
}

fn agent(path: &Path, clock: &ManualClock, on_failure: BackendFailure) -> Breaker {
    let driver = SqliteDriver::open_with(path, SqliteOptions::default()).unwrap();
    Breaker::builder("orders", driver)
        .policy(policy(on_failure))
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn backend_error(r: Result<(), Error<&'static str>>) -> breaker_core::BackendError {
    match r {
        Err(Error::Backend(e)) => e,
        other => panic!("expected a back-end error, got {other:?}"),
    }
}

#[test]
fn foreign_table_of_the_same_name_is_refused_not_overwritten() {
    let (_dir, path) = db();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE breaker_records (id INTEGER PRIMARY KEY, note TEXT);
         INSERT INTO breaker_records (note) VALUES ('someone else''s data');",
    )
    .unwrap();
    let err = SqliteDriver::open(&path).unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::Config);
    let text = err.to_string();
    assert!(
        text.contains("breaker_records") && text.contains("not a breaker table"),
        "{text}"
    );
    assert!(text.contains(&path.display().to_string()), "{text}");
    let note: String = conn
        .query_row("SELECT note FROM breaker_records", [], |r| r.get(0))
        .unwrap();
    assert_eq!(note, "someone else's data");
}

#[test]
fn newer_schema_is_refused() {
    let (_dir, path) = db();
    drop(SqliteDriver::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE breaker_meta SET value = 99 WHERE key = 'schema_version'",
        [],
    )
    .unwrap();
    let err = SqliteDriver::open(&path).unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::Config);
    assert!(
        err.to_string().contains("schema version 99 is newer"),
        "{err}"
    );
}

#[test]
fn records_table_without_our_bookkeeping_is_refused() {
    let (_dir, path) = db();
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE breaker_records (prefix TEXT, name TEXT, version INTEGER, value BLOB, \
             expires_at INTEGER)",
        )
        .unwrap();
    let err = SqliteDriver::open(&path).unwrap_err();
    assert!(err.to_string().contains("not created by breaker"), "{err}");
}

#[test]
fn bad_options_are_refused() {
    let (_dir, path) = db();
    let err = SqliteDriver::open_with(&path, SqliteOptions::default().prefix("a/b")).unwrap_err();
    assert!(err.to_string().contains("invalid prefix"), "{err}");
    assert!(
        SqliteDriver::open("")
            .unwrap_err()
            .to_string()
            .contains("empty")
    );
    let missing_dir = path.join("no/such/dir/b.db");
    let err = SqliteDriver::open(&missing_dir).unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::Unavailable, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_held_past_the_deadline_applies_the_policy_without_hanging() {
    let (_dir, path) = db();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let a = agent(&path, &clock, BackendFailure::FailClosed);
    succeed(&a).await.unwrap();
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    assert!(
        matches!(fail(&a).await, Err(Error::Call(_))),
        "the call itself ran"
    );
    let err = backend_error(succeed(&a).await);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the deadline"
    );
    assert_eq!(err.kind(), DriverErrorKind::Timeout);
    assert!(
        err.to_string().contains("locked by another connection"),
        "{err}"
    );
    holder.execute_batch("COMMIT").unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(
        succeed(&a).await.is_ok(),
        "shared mode returns once the lock is gone"
    );
    assert!(!a.is_degraded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_file_gives_a_clear_error_and_restoring_it_resumes() {
    let (dir, path) = db();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let a = agent(&path, &clock, BackendFailure::FailClosed);
    let b = agent(&path, &clock, BackendFailure::FailClosed);
    let _ = fail(&a).await;
    let moved = dir.path().join("moved.db");
    std::fs::rename(&path, &moved).unwrap();
    let _ = fail(&b).await;
    let err = backend_error(succeed(&b).await);
    assert_eq!(err.kind(), DriverErrorKind::Unavailable);
    assert!(err.to_string().contains("deleted or moved"), "{err}");
    std::fs::rename(&moved, &path).unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(succeed(&b).await.is_ok());
    let _ = fail(&b).await;
    a.flush().await.unwrap();
    assert_eq!(
        a.state(),
        Some(State::Open),
        "b's failure after the restore reached the shared record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_file_gives_a_clear_error_under_local_fallback() {
    let (dir, path) = db();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let a = agent(&path, &clock, BackendFailure::LocalFallback);
    succeed(&a).await.unwrap();
    a.flush().await.unwrap();
    let mut events = a.subscribe();
    // The file and its write-ahead log are replaced together: SQLite would read pages from
    // a log that outlived its database.
    let saved = dir.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    let files = ["breakers.db", "breakers.db-wal", "breakers.db-shm"];
    for f in files {
        let _ = std::fs::rename(dir.path().join(f), saved.join(f));
    }
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let _ = fail(&a).await;
    let _ = fail(&a).await;
    let r = succeed(&a).await;
    assert!(
        matches!(r, Err(Error::Rejected(ref rej)) if rej.state() == State::Open),
        "the local breaker tripped: {r:?}"
    );
    let reported = events.drain().into_iter().find_map(|e| match e {
        breaker_core::Event::BackendError(e) => Some(e),
        _ => None,
    });
    let err = reported.expect("the back-end error is an event");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    for f in files {
        let _ = std::fs::rename(saved.join(f), dir.path().join(f));
    }
    clock.advance(Duration::from_secs(1));
    assert!(
        succeed(&a).await.is_ok(),
        "the restored file is authoritative again: closed"
    );
    assert!(!a.is_degraded());
}

/// Makes `path` unwritable even for root, or writable again.
fn set_immutable(path: &Path, on: bool) {
    let status = Command::new("chattr")
        .arg(if on { "+i" } else { "-i" })
        .arg(path)
        .status()
        .expect("chattr runs");
    assert!(status.success(), "chattr on {}", path.display());
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Root ignores permission bits, so as root the file is made immutable instead.
fn make_read_only(path: &Path, on: bool) {
    if is_root() {
        set_immutable(path, on);
    } else {
        use std::os::unix::fs::PermissionsExt;
        let mode = if on { 0o444 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_database_applies_the_policy_and_recovers() {
    let (dir, path) = db();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let a = agent(&path, &clock, BackendFailure::FailClosed);
    succeed(&a).await.unwrap();
    a.flush().await.unwrap();
    drop(a);
    // With every connection closed, the write-ahead log is gone: a read-only file and
    // directory leave SQLite nowhere to write.
    make_read_only(&path, true);
    make_read_only(dir.path(), true);
    let opened = SqliteDriver::open(&path);
    make_read_only(dir.path(), false);
    make_read_only(&path, false);
    let err = opened.expect_err("a read-only database cannot serve breakers");
    assert_eq!(err.kind(), DriverErrorKind::Unavailable, "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // A running agent whose file turns read-only: the policy applies until it is writable.
    let b = agent(&path, &clock, BackendFailure::FailClosed);
    succeed(&b).await.unwrap();
    b.flush().await.unwrap();
    let wal = dir.path().join("breakers.db-wal");
    let everything = [path.as_path(), wal.as_path(), dir.path()];
    for p in everything {
        make_read_only(p, true);
    }
    let _ = fail(&b).await;
    let refused = succeed(&b).await;
    for p in everything {
        make_read_only(p, false);
    }
    let err = backend_error(refused);
    assert_eq!(err.kind(), DriverErrorKind::Unavailable, "{err}");
    clock.advance(Duration::from_secs(1));
    assert!(succeed(&b).await.is_ok(), "writable again: shared mode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_rows_are_swept_by_writers_without_a_background_process() {
    use breaker_core::{Driver, Name, Swap};
    let (_dir, path) = db();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let driver =
        SqliteDriver::open_with(&path, SqliteOptions::default().clock(clock.clone())).unwrap();
    let t = Duration::from_secs(5);
    let short = Name::new("short-lived").unwrap();
    let ttl = Some(Duration::from_secs(1));
    assert!(matches!(
        driver
            .compare_and_swap(&short, None, b"x".to_vec(), ttl, t)
            .await
            .unwrap(),
        Swap::Swapped { .. }
    ));
    clock.advance(Duration::from_secs(2));
    let rows = || -> i64 {
        Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM breaker_records WHERE name = 'short-lived'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(rows(), 1, "expired but not yet swept");
    let busy = Name::new("busy").unwrap();
    let mut version = None;
    for i in 0..64u8 {
        match driver
            .compare_and_swap(&busy, version, vec![i], None, t)
            .await
            .unwrap()
        {
            Swap::Swapped { version: v } => version = Some(v),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rows(), 0, "the writers swept the expired row");
}

/// Cells of any type in the rows a driver owns, and a version counter that is not ours:
/// each breaker reports its row as corrupt (or, with a foreign expiry, as expired), goes on
/// protecting, replaces it with its next write, and accepts operator actions; `list` keeps
/// working for every other breaker in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_cells_and_counters_never_wedge_a_breaker() {
    use breaker_core::{Driver, Record};
    let (_dir, path) = db();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let good = agent(&path, &clock, BackendFailure::FailClosed);
    good.force_open().await.unwrap();
    let record = String::from_utf8(Record::new().encode()).unwrap();
    let plants = [
        ("text-value", format!("1, '{record}', NULL")),
        ("real-value", "2, 1.5, NULL".to_owned()),
        ("text-version", "'abc', x'7b7d', NULL".to_owned()),
        ("real-version", "1.5, x'7b7d', NULL".to_owned()),
        ("zero-version", "0, x'7b7d', NULL".to_owned()),
        ("text-expiry", "3, x'7b7d', 'soon'".to_owned()),
        (
            "oversize",
            format!("4, zeroblob({}), NULL", breaker_core::MAX_RECORD_BYTES + 1),
        ),
    ];
    {
        let conn = Connection::open(&path).unwrap();
        for (name, cells) in &plants {
            conn.execute(
                &format!(
                    "INSERT INTO breaker_records (prefix, name, version, value, expires_at)
                     VALUES ('breaker', '{name}', {cells})"
                ),
                [],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO breaker_records (prefix, name, version, value, expires_at)
             VALUES ('breaker', x'00ff', 5, x'00', NULL)",
            [],
        )
        .unwrap();
    }
    let policy = policy(BackendFailure::FailClosed);
    for (name, _) in &plants {
        let driver = SqliteDriver::open_with(&path, SqliteOptions::default()).unwrap();
        let b = Breaker::builder(name, driver)
            .policy(policy.clone())
            .clock(clock.clone())
            .build()
            .unwrap();
        assert!(succeed(&b).await.is_ok(), "{name}: admitted");
        let _ = fail(&b).await;
        let _ = fail(&b).await;
        assert_eq!(b.state(), Some(State::Open), "{name}: trips as usual");
        b.reset().await.expect("an operator's reset succeeds");
        assert_eq!(b.refresh().await.unwrap(), State::Closed, "{name}");
    }
    let listed = SqliteDriver::open(&path)
        .unwrap()
        .list(Duration::from_secs(2))
        .await
        .expect("one foreign row does not break the list");
    assert!(
        listed.iter().any(|(n, _)| n.as_str() == "orders"),
        "{listed:?}"
    );

    // The version counter: at the largest integer (adding one would make it a float), as
    // text, and deleted. Writes go on, with versions above every stored one.
    for counter in ["9223372036854775807", "'many'", "DELETE"] {
        let conn = Connection::open(&path).unwrap();
        if counter == "DELETE" {
            conn.execute("DELETE FROM breaker_meta WHERE key = 'last_version'", [])
                .unwrap();
        } else {
            conn.execute(
                &format!("UPDATE breaker_meta SET value = {counter} WHERE key = 'last_version'"),
                [],
            )
            .unwrap();
        }
        let before = good.snapshot().generation;
        good.reset().await.expect("a write despite the counter");
        good.force_open().await.expect("and another");
        assert!(good.snapshot().generation > before);
        let kind: String = conn
            .query_row(
                "SELECT typeof(value) FROM breaker_meta WHERE key = 'last_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kind, "integer", "the counter is ours again after {counter}");
    }
}

/// A database that went back (restored from an older backup): versions go backwards, and
/// agents that hold a newer version still follow what the store says from then on, an
/// operator's reset included, instead of ignoring every write until the versions catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restored_from_an_older_backup_is_followed() {
    let (_dir, path) = db();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let old = agent(&path, &clock, BackendFailure::FailClosed);
    let _ = fail(&old).await;
    let _ = fail(&old).await;
    assert_eq!(old.state(), Some(State::Open));
    // The backup: the record and the counter as they are now.
    let conn = Connection::open(&path).unwrap();
    let (version, value): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT version, value FROM breaker_records WHERE name = 'orders'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    for _ in 0..5 {
        old.force_open().await.unwrap();
        old.force_closed().await.unwrap();
    }
    old.force_open().await.unwrap();
    // The restore.
    conn.execute(
        "UPDATE breaker_records SET version = ?1, value = ?2 WHERE name = 'orders'",
        rusqlite::params![version, value],
    )
    .unwrap();
    conn.execute(
        "UPDATE breaker_meta SET value = ?1 WHERE key = 'last_version'",
        [version],
    )
    .unwrap();
    drop(conn);
    // An operator resets the breaker on the restored database; the old agent, whose view is
    // newer than anything stored now, follows it.
    let operator = agent(&path, &clock, BackendFailure::FailClosed);
    operator.reset().await.expect("the reset is written");
    let deadline = Instant::now() + Duration::from_secs(10);
    while old.state() != Some(State::Closed) {
        assert!(
            Instant::now() < deadline,
            "the old agent never followed the restored store"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _ = old.flush().await;
    }
}
