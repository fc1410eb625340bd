//! The Redis driver runs the whole conformance kit against a real 3-master Redis Cluster on
//! loopback, started once for all cases (a cluster takes seconds to form).

use breaker_driver_redis::RedisDriver;
use breaker_testing::conformance::{Expiry, Harness};
use breaker_testing::servers::RedisCluster;

struct ClusterHarness {
    cluster: RedisCluster,
}

impl Harness for ClusterHarness {
    type Driver = RedisDriver;

    async fn driver(&self) -> RedisDriver {
        let urls = self.cluster.urls();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        RedisDriver::open_cluster(&urls).expect("valid URLs")
    }

    fn expiry(&self) -> Expiry {
        Expiry::RealTime
    }
}

breaker_testing::conformance_tests!(all_in_one conformance_on_a_three_master_cluster, ClusterHarness {
    cluster: RedisCluster::start()
});
