//! The keys a breaker keeps in Redis: one per breaker, expiring with it, and, in a fleet
//! where older agents still keep their version counter beside the record, versions that
//! keep growing for both.

use std::time::Duration;

use breaker_core::{Driver, Name, Swap};
use breaker_driver_redis::RedisDriver;
use breaker_testing::servers::RedisServer;
use redis::AsyncCommands;

const T: Duration = Duration::from_secs(2);

async fn connection(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn swap(driver: &RedisDriver, name: &Name, expected: Option<u64>) -> u64 {
    let ttl = Some(Duration::from_secs(60));
    match driver
        .compare_and_swap(name, expected, b"{}".to_vec(), ttl, T)
        .await
        .unwrap()
    {
        Swap::Swapped { version } => version,
        other => panic!("the write did not land: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_per_breaker_that_expires_with_it() {
    let server = RedisServer::start();
    let driver = RedisDriver::open(&server.url()).unwrap();
    let name = Name::new("one-key").unwrap();
    let first = swap(&driver, &name, None).await;
    let second = swap(&driver, &name, Some(first)).await;
    assert_eq!(second, first + 1, "each write adds one");
    let mut con = connection(&server).await;
    let keys: Vec<String> = con.keys("*").await.unwrap();
    assert_eq!(keys, vec!["{breaker/one-key}:r".to_owned()]);
    let ttl: i64 = con.pttl("{breaker/one-key}:r").await.unwrap();
    assert!(ttl > 0, "the record expires: {ttl}");
}

/// An agent of an older build counts versions in `:seq`; this build counts that counter on,
/// above the record's version, and an older agent's next write (its counter, plus one) is
/// still above every version handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_agents_counter_keeps_counting() {
    let server = RedisServer::start();
    let driver = RedisDriver::open(&server.url()).unwrap();
    let name = Name::new("mixed").unwrap();
    let mut con = connection(&server).await;
    let first = swap(&driver, &name, None).await;
    // The older agent wrote version first + 10 and left its counter there.
    let older = first + 10;
    let () = con
        .hset("{breaker/mixed}:r", "v", older.to_string())
        .await
        .unwrap();
    let () = con.set("{breaker/mixed}:seq", older).await.unwrap();
    let next = swap(&driver, &name, Some(older)).await;
    assert_eq!(next, older + 1);
    let counter: u64 = con.get("{breaker/mixed}:seq").await.unwrap();
    assert_eq!(counter, next, "the older agents' counter moved with it");
    // A counter left behind a newer record (behind what this build wrote) is not used.
    let () = con.set("{breaker/mixed}:seq", first).await.unwrap();
    let after = swap(&driver, &name, Some(next)).await;
    assert_eq!(after, next + 1, "versions never go back");
    let left: Option<u64> = con.get("{breaker/mixed}:seq").await.unwrap();
    assert_eq!(left, None, "a counter behind the record is dropped");
}
