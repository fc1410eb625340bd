//! The real-process scenarios on the Redis back-end: a fleet of agent processes sharing one
//! redis-server in front of the flaky server, and processes racing on one record.

use breaker_fleet::scenario::{self, Bins, Fleet};
use breaker_testing::servers::RedisServer;

fn bins() -> Bins {
    breaker_fleet::bins!()
}

#[test]
fn fleet_of_processes_trips_once_probes_sparingly_and_recovers() {
    let redis = RedisServer::start();
    scenario::run_fleet(&bins(), &redis.url(), &Fleet::default());
}

/// Half the agents write compact records, half JSON, as while a fleet turns compact records
/// on one agent at a time: every assertion of the fleet scenario holds across them.
#[test]
fn agents_writing_json_and_compact_records_are_one_fleet() {
    let redis = RedisServer::start();
    let bins = bins();
    scenario::run_fleet_with(&bins, &redis.url(), &Fleet::default(), |i| {
        let extra = if i % 2 == 0 {
            vec!["--compact-records".to_owned()]
        } else {
            Vec::new()
        };
        (bins.agent.clone(), extra)
    });
}

/// Every agent appends its outcomes to the record's log (`append_outcomes`), but one that
/// swaps them in, as while a fleet turns appends on: the fleet scenario's every assertion
/// holds (dead calls per outage within threshold + agents, one probe per open period,
/// recovery).
#[test]
fn agents_appending_their_outcomes_are_one_fleet() {
    let redis = RedisServer::start();
    let bins = bins();
    scenario::run_fleet_with(&bins, &redis.url(), &Fleet::default(), |i| {
        let extra = if i == 0 {
            Vec::new()
        } else {
            vec!["--append-outcomes".to_owned()]
        };
        (bins.agent.clone(), extra)
    });
}

#[test]
fn processes_racing_on_one_record_add_up_exactly() {
    let redis = RedisServer::start();
    let reports = scenario::run_hammer(&bins(), &redis.url(), 4, 150);
    let total: u64 = reports.iter().map(|r| r["wins"].as_u64().unwrap()).sum();
    assert_eq!(total, 600);
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port().to_string(),
            "--scan",
            "--pattern",
            "{breaker/hammer-*}:r",
        ])
        .output()
        .unwrap();
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let value = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "HGET", &key, "d"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(value.stdout).unwrap().trim(),
        "600",
        "no lost update"
    );
}

#[test]
fn a_dead_probe_holders_permit_lapses_and_another_agent_probes() {
    let redis = RedisServer::start();
    scenario::run_probe_holder_dies(&bins(), &redis.url());
}

#[test]
fn one_bad_agent_cannot_open_the_fleet_under_a_quorum() {
    let redis = RedisServer::start();
    scenario::run_one_bad_agent(&bins(), &redis.url());
}
