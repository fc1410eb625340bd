//! The real-process scenarios on the SQLite back-end: a fleet of agent processes sharing one
//! database file in front of the flaky server, and processes racing on one record.

use breaker_fleet::scenario::{self, Bins, Fleet};
use shared_breaker::Driver;

fn bins() -> Bins {
    breaker_fleet::bins!()
}

#[test]
fn fleet_of_processes_trips_once_probes_sparingly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fleet.db").display());
    scenario::run_fleet(&bins(), &url, &Fleet::default());
}

#[test]
fn processes_racing_on_one_record_add_up_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hammer.db");
    let url = format!("sqlite://{}", path.display());
    let reports = scenario::run_hammer(&bins(), &url, 4, 150);
    let driver = shared_breaker::sqlite::SqliteDriver::open(&path).unwrap();
    let records =
        futures_executor::block_on(driver.list(std::time::Duration::from_secs(5))).unwrap();
    assert_eq!(records.len(), 1);
    let total: u64 = std::str::from_utf8(&records[0].1.value)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(total, 4 * 150, "no lost update, no double write");
    for r in &reports {
        eprintln!("hammer: {r}");
    }
}

#[test]
fn a_dead_probe_holders_permit_lapses_and_another_agent_probes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("probe.db").display());
    scenario::run_probe_holder_dies(&bins(), &url);
}

#[test]
fn one_bad_agent_cannot_open_the_fleet_under_a_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("quorum.db").display());
    scenario::run_one_bad_agent(&bins(), &url);
}
