//! The shortcut constructors share one driver per back-end: 50 breakers on one SQLite file
//! cost one worker thread, not 50, and the driver closes with its last breaker.
#![cfg(all(feature = "sqlite", feature = "config"))]

/// Threads of this process whose name starts with `prefix` (nextest runs each test in a
/// process of its own, so no other test's threads are counted).
fn threads_named(prefix: &str) -> usize {
    // The clock's thread starts on first use, perhaps from a driver's worker, and carries
    // its parent's name until it has set its own: start it before anything is counted.
    let _ = shared_breaker::Clock::now(&shared_breaker::SystemClock);
    std::fs::read_dir("/proc/self/task")
        .expect("Linux /proc")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end().starts_with(prefix))
        .count()
}

#[test]
fn breakers_of_one_sqlite_file_share_one_driver() {
    assert_eq!(threads_named("breaker-sqlite"), 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let policy = shared_breaker::Policy::default();
    let breakers: Vec<_> = (0..50)
        .map(|i| shared_breaker::sqlite::breaker(&path, &format!("b{i}"), policy.clone()).unwrap())
        .collect();
    for b in &breakers {
        b.refresh_blocking().unwrap();
    }
    assert_eq!(
        threads_named("breaker-sqlite"),
        1,
        "one worker for 50 breakers"
    );

    // The configuration shortcut keeps its own driver per URL, shared the same way.
    let url = format!("sqlite://{}", path.display());
    let more: Vec<_> = (0..10)
        .map(|i| shared_breaker::config::breaker(&url, &format!("c{i}"), policy.clone()).unwrap())
        .collect();
    for b in &more {
        b.refresh_blocking().unwrap();
    }
    assert_eq!(threads_named("breaker-sqlite"), 2);

    // Another file gets a driver of its own.
    let other = shared_breaker::sqlite::breaker(dir.path().join("other.db"), "x", policy).unwrap();
    other.refresh_blocking().unwrap();
    assert_eq!(threads_named("breaker-sqlite"), 3);
}

#[test]
fn a_driver_closes_with_its_last_breaker() {
    assert_eq!(threads_named("breaker-sqlite"), 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closing.db");
    let policy = shared_breaker::Policy::default();
    let first = shared_breaker::sqlite::breaker(&path, "a", policy.clone()).unwrap();
    first.refresh_blocking().unwrap();
    assert_eq!(threads_named("breaker-sqlite"), 1);
    drop(first);
    // The worker ends once its driver is gone; give it a moment to do so.
    let gone = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        threads_named("breaker-sqlite") == 0
    });
    assert!(gone, "the last breaker's driver kept its worker");
    let again = shared_breaker::sqlite::breaker(&path, "a", policy).unwrap();
    again.refresh_blocking().unwrap();
    assert_eq!(
        threads_named("breaker-sqlite"),
        1,
        "a new driver for the next breaker"
    );
}
