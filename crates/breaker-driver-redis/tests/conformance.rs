//! The Redis driver runs the whole conformance kit against a real `redis-server`, started
//! on a free port for each case and stopped by its process id afterwards; the
//! hostile-back-end cases too, planting with a connection of the harness's own.

use breaker_driver_redis::{RedisDriver, RedisOptions};
use breaker_testing::conformance::{Expiry, Foreign, Harness, HostileHarness};
use breaker_testing::servers::RedisServer;
use redis::aio::MultiplexedConnection;

struct RedisHarness {
    server: RedisServer,
}

impl Harness for RedisHarness {
    type Driver = RedisDriver;

    async fn driver(&self) -> RedisDriver {
        RedisDriver::open(&self.server.url()).expect("a valid URL")
    }

    fn expiry(&self) -> Expiry {
        Expiry::RealTime
    }
}

impl RedisHarness {
    /// A connection of the harness's own, as a foreign writer or an operator's tool has.
    async fn connection(&self) -> MultiplexedConnection {
        redis::Client::open(self.server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("redis-server answers")
    }

    async fn run(&self, args: &[&[u8]]) {
        let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let () = cmd.query_async(&mut self.connection().await).await.unwrap();
    }
}

/// Foreign contents at a breaker's keys (`R`: its record key, `S`: its version counter),
/// as a redis-cli command.
const FOREIGN: &[(Foreign, &[&str])] = &[
    (
        Foreign::at_record("a string"),
        &["SET", "R", "\u{1}not ours"],
    ),
    (Foreign::at_record("a list"), &["RPUSH", "R", "a", "b"]),
    (
        Foreign::at_record("a hash of other fields"),
        &["HSET", "R", "owner", "someone"],
    ),
    (
        Foreign::at_record("version abc"),
        &["HSET", "R", "v", "abc", "d", "{}"],
    ),
    (
        Foreign::at_record("version -1"),
        &["HSET", "R", "v", "-1", "d", "{}"],
    ),
    (
        Foreign::at_record("version 1e3"),
        &["HSET", "R", "v", "1e3", "d", "{}"],
    ),
    (
        Foreign::at_record("version 2^64"),
        &["HSET", "R", "v", "18446744073709551616", "d", "{}"],
    ),
    (
        Foreign::at_record("version +7"),
        &["HSET", "R", "v", "+7", "d", "{}"],
    ),
    (
        Foreign::at_record("version 007"),
        &["HSET", "R", "v", "007", "d", "{}"],
    ),
    (
        Foreign::at_record("an empty version"),
        &["HSET", "R", "v", "", "d", "{}"],
    ),
    (
        Foreign::beside("a counter of garbage"),
        &["SET", "S", "garbage"],
    ),
    (
        Foreign::beside("a counter at i64::MAX"),
        &["SET", "S", "9223372036854775807"],
    ),
    (
        Foreign::beside("a counter that is a list"),
        &["RPUSH", "S", "a"],
    ),
];

impl HostileHarness for RedisHarness {
    /// Every key with its remaining time to live and its DUMP.
    type Backup = Vec<(Vec<u8>, i64, Vec<u8>)>;

    fn foreign(&self) -> Vec<Foreign> {
        FOREIGN.iter().map(|(f, _)| *f).collect()
    }

    async fn plant_foreign(&self, name: &str, which: usize) {
        let (record, counter) = (
            format!("{{breaker/{name}}}:r"),
            format!("{{breaker/{name}}}:seq"),
        );
        let args: Vec<&[u8]> = FOREIGN[which]
            .1
            .iter()
            .map(|a| match *a {
                "R" => record.as_bytes(),
                "S" => counter.as_bytes(),
                a => a.as_bytes(),
            })
            .collect();
        self.run(&args).await;
    }

    async fn plant_value(&self, name: &str, bytes: Vec<u8>) {
        let key = format!("{{breaker/{name}}}:r");
        self.run(&[b"HSET", key.as_bytes(), b"v", b"1", b"d", &bytes])
            .await;
    }

    async fn wipe(&self) {
        self.run(&[b"FLUSHALL"]).await;
    }

    async fn back_up(&self) -> Self::Backup {
        let mut con = self.connection().await;
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut con)
            .await
            .unwrap();
        let mut out = Vec::new();
        for key in keys {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut con)
                .await
                .unwrap();
            let dump: Vec<u8> = redis::cmd("DUMP")
                .arg(&key)
                .query_async(&mut con)
                .await
                .unwrap();
            out.push((key, ttl.max(0), dump));
        }
        out
    }

    /// Every key as the backup holds it: the version counters go back.
    async fn restore(&self, backup: Self::Backup) {
        self.run(&[b"FLUSHALL"]).await;
        let mut con = self.connection().await;
        for (key, ttl, dump) in backup {
            let () = redis::cmd("RESTORE")
                .arg(key)
                .arg(ttl)
                .arg(dump)
                .query_async(&mut con)
                .await
                .unwrap();
        }
    }

    async fn driver_under(&self, prefix: &str) -> RedisDriver {
        RedisDriver::open_with(
            &[&self.server.url()],
            RedisOptions::default().prefix(prefix),
        )
        .expect("a valid URL")
    }
}

breaker_testing::conformance_tests!(RedisHarness {
    server: RedisServer::start()
});
breaker_testing::conformance_tests!(hostile RedisHarness {
    server: RedisServer::start()
});
