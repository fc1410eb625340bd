//! The real-process scenarios on the etcd back-end: a fleet of agent processes sharing a
//! 3-member etcd cluster in front of the flaky server, and processes racing on one record.

use breaker_fleet::scenario::{self, Bins, Fleet};
use breaker_testing::servers::EtcdCluster;

fn bins() -> Bins {
    breaker_fleet::bins!()
}

fn url(cluster: &EtcdCluster) -> String {
    let members: Vec<String> = cluster
        .endpoints()
        .iter()
        .map(|e| e.trim_start_matches("http://").to_owned())
        .collect();
    format!("etcd://{}", members.join(","))
}

#[test]
fn fleet_of_processes_trips_once_probes_sparingly_and_recovers() {
    let cluster = EtcdCluster::start(3);
    // etcd ends the open period with a lease, whose TTL is whole seconds.
    let fleet = Fleet {
        open_for: std::time::Duration::from_secs(1),
        ..Fleet::default()
    };
    scenario::run_fleet(&bins(), &url(&cluster), &fleet);
}

#[test]
fn processes_racing_on_one_record_add_up_exactly() {
    let cluster = EtcdCluster::single();
    let url = url(&cluster);
    scenario::run_hammer(&bins(), &url, 4, 100);
    let driver = shared_breaker::config::open_backend(&url).unwrap();
    let records =
        futures_executor::block_on(driver.list(std::time::Duration::from_secs(5))).unwrap();
    let hammered = records
        .iter()
        .find(|(n, _)| n.as_str().starts_with("hammer-"))
        .expect("the hammered record");
    assert_eq!(
        std::str::from_utf8(&hammered.1.value).unwrap(),
        "400",
        "no lost update"
    );
}

#[test]
fn a_dead_probe_holders_permit_lapses_and_another_agent_probes() {
    let cluster = EtcdCluster::start(3);
    scenario::run_probe_holder_dies(&bins(), &url(&cluster));
}

#[test]
fn one_bad_agent_cannot_open_the_fleet_under_a_quorum() {
    let cluster = EtcdCluster::single();
    scenario::run_one_bad_agent(&bins(), &url(&cluster));
}
