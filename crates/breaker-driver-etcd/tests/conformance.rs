//! The etcd driver runs the whole conformance kit against a real etcd: one member for each
//! case, and a 3-member cluster for all cases in one test; and the cases of a driver that
//! keeps timers, since etcd runs the open period and probe leases as leases; and the
//! hostile-back-end cases, planting with a client of the harness's own.

use breaker_driver_etcd::{EtcdDriver, EtcdOptions};
use breaker_testing::conformance::{Expiry, Foreign, Harness, HostileHarness};
use breaker_testing::servers::EtcdCluster;
use etcd_client::{DeleteOptions, GetOptions};

struct EtcdHarness {
    cluster: EtcdCluster,
}

impl EtcdHarness {
    fn open(&self, options: EtcdOptions) -> EtcdDriver {
        let endpoints = self.cluster.endpoints();
        let endpoints: Vec<&str> = endpoints.iter().map(String::as_str).collect();
        EtcdDriver::open(&endpoints, options).expect("valid endpoints")
    }

    /// A client of the harness's own, as a foreign writer or an operator's tool has.
    async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.cluster.endpoints(), None)
            .await
            .expect("etcd answers")
    }
}

impl Harness for EtcdHarness {
    type Driver = EtcdDriver;

    async fn driver(&self) -> EtcdDriver {
        self.open(EtcdOptions::default())
    }

    fn expiry(&self) -> Expiry {
        Expiry::RealTime
    }
}

/// Foreign contents for a breaker: at its record key (`R`), or keys under its timer
/// directory (`R/...`) put without a lease, which no breaker writes.
const FOREIGN: &[(Foreign, &str, &[u8])] = &[
    (
        Foreign::at_record("bytes that are no JSON"),
        "R",
        b"\xff\x00\x13",
    ),
    (Foreign::at_record("JSON of another shape"), "R", b"[1,2,3]"),
    (
        Foreign::beside("an open-period key without a lease"),
        "R/open/1",
        b"",
    ),
    (
        Foreign::beside("a probe key without a lease"),
        "R/probe/1/1",
        b"",
    ),
    (
        Foreign::beside("a key of no known shape"),
        "R/other/thing",
        b"x",
    ),
];

impl HostileHarness for EtcdHarness {
    /// The record keys and their values.
    type Backup = Vec<(Vec<u8>, Vec<u8>)>;

    fn foreign(&self) -> Vec<Foreign> {
        FOREIGN.iter().map(|(f, _, _)| *f).collect()
    }

    async fn plant_foreign(&self, name: &str, which: usize) {
        let (_, key, value) = FOREIGN[which];
        let key = key.replacen('R', &format!("breaker/{name}"), 1);
        self.client().await.put(key, value, None).await.unwrap();
    }

    async fn plant_value(&self, name: &str, bytes: Vec<u8>) {
        let key = format!("breaker/{name}");
        self.client().await.put(key, bytes, None).await.unwrap();
    }

    async fn wipe(&self) {
        let prefix = DeleteOptions::new().with_prefix();
        self.client()
            .await
            .delete("breaker/", Some(prefix))
            .await
            .unwrap();
    }

    /// The records only: the timers' leases would have lapsed by the time of a restore.
    async fn back_up(&self) -> Self::Backup {
        let found = self
            .client()
            .await
            .get("breaker/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        found
            .kvs()
            .iter()
            .filter(|kv| !kv.key()["breaker/".len()..].contains(&b'/'))
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
            .collect()
    }

    /// The backed-up records written again. etcd's revisions never go back (a snapshot
    /// restore with `--bump-revision`, as etcd advises, keeps it so), so the restored
    /// records come back with newer versions and older contents.
    async fn restore(&self, backup: Self::Backup) {
        self.wipe().await;
        let mut client = self.client().await;
        for (key, value) in backup {
            client.put(key, value, None).await.unwrap();
        }
    }

    async fn driver_under(&self, prefix: &str) -> EtcdDriver {
        self.open(EtcdOptions::default().prefix(prefix))
    }
}

breaker_testing::conformance_tests!(EtcdHarness {
    cluster: EtcdCluster::single()
});

mod hostile {
    use super::*;

    breaker_testing::conformance_tests!(hostile EtcdHarness {
        cluster: EtcdCluster::single()
    });
}

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
