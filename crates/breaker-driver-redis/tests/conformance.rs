//! The Redis driver runs the whole conformance kit against a real `redis-server`, started
//! on a free port for each case and stopped by its process id afterwards.

use breaker_driver_redis::RedisDriver;
use breaker_testing::conformance::{Expiry, Harness};
use breaker_testing::servers::RedisServer;

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

breaker_testing::conformance_tests!(RedisHarness {
    server: RedisServer::start()
});
