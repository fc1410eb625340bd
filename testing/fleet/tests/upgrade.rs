//! A rolling upgrade on one SQLite file (and on one Redis, whose key layout changed too):
//! agents of the schema-1 build (the last build before
//! the quorum's schema 2, which `cargo xtask test` builds from this repository's history and
//! names in `BREAKER_SCHEMA1_AGENT`) and agents of this build, side by side.

use std::path::PathBuf;
use std::time::Duration;

use breaker_fleet::procs::Proc;
use breaker_fleet::scenario::{self, Bins, Fleet};
use breaker_fleet::server::FlakyServer;
use serde_json::Value;

fn bins() -> Bins {
    breaker_fleet::bins!()
}

/// The schema-1 build's agent binary.
fn old_agent() -> PathBuf {
    let path = std::env::var_os("BREAKER_SCHEMA1_AGENT").expect(
        "BREAKER_SCHEMA1_AGENT names the schema-1 build's breaker-agent: run the tests with \
         `cargo xtask test`, which builds it",
    );
    let path = PathBuf::from(path);
    assert!(path.is_file(), "{} is not a file", path.display());
    path
}

/// Without the quorum, this build writes schema 1 only: two old agents and two new ones are
/// one fleet. The fleet scenario's every assertion holds across the builds: one trip, caused
/// by exactly one agent and seen by all, probes limited fleet-wide, recovery everywhere.
#[test]
fn old_and_new_agents_are_one_fleet_without_the_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("mixed.db").display());
    let (bins, old) = (bins(), old_agent());
    scenario::run_mixed_fleet(&bins, &url, &Fleet::default(), |i| {
        if i % 2 == 0 {
            old.clone()
        } else {
            bins.agent.clone()
        }
    });
}

/// On Redis the older build also counts versions in a key beside the record, which this
/// build no longer writes but counts on: mixed, they are still one fleet.
#[test]
fn old_and_new_agents_are_one_fleet_on_redis() {
    let redis = breaker_testing::servers::RedisServer::start();
    let (bins, old) = (bins(), old_agent());
    scenario::run_mixed_fleet(&bins, &redis.url(), &Fleet::default(), |i| {
        if i % 2 == 0 {
            old.clone()
        } else {
            bins.agent.clone()
        }
    });
}

/// The quorum turned on before every agent runs this build: the new agents write schema 2,
/// which the old build refuses (as corrupt, and writes a fresh record of its own), and the
/// old agent's schema-1 records the new build reads. Nobody wedges: with the service down
/// for everyone, every agent keeps deciding, the fleet's breaker opens for the new agents,
/// and the stored record is always one this build reads.
#[test]
fn a_quorum_turned_on_mid_upgrade_wedges_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quorum-mixed.db");
    let url = format!("sqlite://{}", path.display());
    let bins = bins();
    let server = FlakyServer::start(&bins.server, &["--frequency", "1000", "--fail-count", "0"]);
    server.set_failing(true);
    let common = [
        "--backend",
        &url,
        "--name",
        "upgrade",
        "--target",
        server.base(),
        "--threshold",
        "5",
        "--open-for-ms",
        "300",
    ];
    let owned = |extra: &[&str]| -> Vec<String> {
        common
            .iter()
            .chain(extra)
            .map(|s| (*s).to_owned())
            .collect()
    };
    let old = Proc::spawn("old agent", &old_agent(), &owned(&[]));
    let new: Vec<Proc> = (0..2)
        .map(|i| {
            let args = owned(&["--min-agents", "2", "--run-ms", "3000"]);
            Proc::spawn(&format!("new agent {i}"), &bins.agent, &args)
        })
        .collect();
    old.wait_for(Duration::from_secs(20), |l| l.contains("\"ready\""))
        .expect("the old agent calls");
    for agent in &new {
        let summary = agent
            .wait_for(Duration::from_secs(30), |l| l.contains("\"summary\""))
            .expect("the new agent reports: it never wedged");
        let v: Value = serde_json::from_str(&summary).unwrap();
        let decided = v["admitted"].as_u64().unwrap() + v["rejected"].as_u64().unwrap();
        assert!(decided > 100, "it kept deciding: {v}");
        let opened = agent.lines().iter().any(|l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|t| t["event"] == "transition" && t["to"] == "open")
        });
        assert!(
            opened,
            "the service is down for all: the breaker opened: {summary}"
        );
    }
    assert!(
        old.lines().iter().any(|l| l.contains("\"transition\"")),
        "the old agent kept working too: {:?}",
        old.lines()
    );
    let driver = shared_breaker::sqlite::SqliteDriver::open(&path).unwrap();
    let stored = futures_executor::block_on(shared_breaker::Driver::load(
        &driver,
        &shared_breaker::Name::new("upgrade").unwrap(),
        Duration::from_secs(5),
    ))
    .unwrap()
    .expect("a record");
    shared_breaker::Record::decode(&stored.value).expect("a record this build reads");
}
