//! The etcd driver runs the whole conformance kit against a real etcd: one member for each
//! case, and a 3-member cluster for all cases in one test; and the cases of a driver that
//! keeps timers, since etcd runs the open period and probe leases as leases.

use breaker_driver_etcd::{EtcdDriver, EtcdOptions};
use breaker_testing::conformance::{Expiry, Harness};
use breaker_testing::servers::EtcdCluster;

struct EtcdHarness {
    cluster: EtcdCluster,
}

impl Harness for EtcdHarness {
    type Driver = EtcdDriver;

    async fn driver(&self) -> EtcdDriver {
        let endpoints = self.cluster.endpoints();
        let endpoints: Vec<&str> = endpoints.iter().map(String::as_str).collect();
        EtcdDriver::open(&endpoints, EtcdOptions::default()).expect("valid endpoints")
    }

    fn expiry(&self) -> Expiry {
        Expiry::RealTime
    }
}

breaker_testing::conformance_tests!(EtcdHarness {
    cluster: EtcdCluster::single()
});

mod lease_timers {
    use super::*;

    breaker_testing::conformance_tests!(timers EtcdHarness {
        cluster: EtcdCluster::single()
    });
}

mod three_members {
    use super::*;

    breaker_testing::conformance_tests!(all_in_one conformance_on_a_three_member_cluster, EtcdHarness {
        cluster: EtcdCluster::start(3)
    });
}
