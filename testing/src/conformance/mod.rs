//! The driver conformance kit: the store contract and the breaker's end-to-end behaviour,
//! run against any [`Driver`]. A driver proves itself from one test file:
//!
//! ```text
//! breaker_testing::conformance_tests!(my_driver::tests::Harness::new());
//! ```
//!
//! which expands to one `#[test]` per case, so a failing case is named in the test report.
//! Every breaker in the kit runs on a [`ManualClock`], so cases are deterministic; only the
//! store's own expiry may take real time, for back-ends whose expiry cannot be driven.

pub mod appended;
pub mod behaviour;
pub mod foreign;
pub mod hostile;
pub mod loss;
pub mod outage;
pub mod quorum;
pub mod store;
pub mod timers;
pub mod truthful;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use breaker_core::{Breaker, Driver, ManualClock, Policy, Timestamp};

use crate::Faulty;

/// How the kit moves the back-end's expiry forward.
#[derive(Clone, Debug)]
pub enum Expiry {
    /// The back-end judges expiry by this clock: the kit advances it.
    Manual(ManualClock),
    /// The back-end expires in real time (Redis PX, etcd leases): the kit waits, polling.
    RealTime,
}

/// What a driver under test provides to the kit.
pub trait Harness: Send + Sync + 'static {
    /// The driver under test.
    type Driver: Driver + Clone;

    /// A driver (a new connection, where that means something) to the one back-end store of
    /// this harness. Drivers from one harness see each other's records.
    fn driver(&self) -> impl Future<Output = Self::Driver> + Send;

    /// How the back-end's expiry can be moved forward.
    fn expiry(&self) -> Expiry;
}

/// What a driver under test provides for the cases of a hostile or broken back-end
/// ([`foreign`], [`loss`]): the means to do to its store, bypassing the driver, what such a
/// back-end does. Run them with `conformance_tests!(hostile HARNESS)`.
pub trait HostileHarness: Harness {
    /// A copy of the store's contents, as a backup holds it.
    type Backup: Send;

    /// The foreign contents this harness can plant at the keys or rows its driver owns for
    /// one breaker (a version that is not the driver's, a value of a foreign type, a counter
    /// at its limit, ...), each described. Empty only for a store that holds typed values
    /// and nothing else (the memory driver).
    fn foreign(&self) -> Vec<Foreign>;

    /// Plants the foreign contents `foreign()[which]` for the breaker `name`.
    fn plant_foreign(&self, name: &str, which: usize) -> impl Future<Output = ()> + Send;

    /// Puts `bytes` as they are where the driver keeps the record of `name`, bypassing the
    /// driver (so sizes it would refuse to write too).
    fn plant_value(&self, name: &str, bytes: Vec<u8>) -> impl Future<Output = ()> + Send;

    /// The store loses every record and counter of the driver, as a back-end that restarted
    /// without its data would.
    fn wipe(&self) -> impl Future<Output = ()> + Send;

    /// A copy of the store now, as a backup taken now would hold it.
    fn back_up(&self) -> impl Future<Output = Self::Backup> + Send;

    /// Returns the store to `backup`, as a restore from an older backup would (on stores
    /// whose versions can go back, they do).
    fn restore(&self, backup: Self::Backup) -> impl Future<Output = ()> + Send;

    /// A driver to the same store whose breakers live under `prefix` instead of the
    /// default: the namespace neighbour of the harness's own drivers.
    fn driver_under(&self, prefix: &str) -> impl Future<Output = Self::Driver> + Send;
}

/// Foreign contents a [`HostileHarness`] can plant.
#[derive(Clone, Copy, Debug)]
pub struct Foreign {
    /// What is planted, for the test report.
    pub what: &'static str,
    /// Whether a breaker's first read finds a record that is not one (reported as corrupt):
    /// false where the contents are beside the record (a version counter, say).
    pub at_record: bool,
}

impl Foreign {
    /// Contents where the record is: a breaker's first read reports it as corrupt.
    pub const fn at_record(what: &'static str) -> Foreign {
        Foreign {
            what,
            at_record: true,
        }
    }

    /// Contents beside the record (a version counter, a key of no known shape).
    pub const fn beside(what: &'static str) -> Foreign {
        Foreign {
            what,
            at_record: false,
        }
    }
}

/// Runs one case on a fresh multi-threaded runtime.
pub fn run<H, F, Fut>(harness: H, case: F)
where
    H: Harness,
    F: FnOnce(Arc<H>) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(case(Arc::new(harness)));
}

/// The start of every kit clock: an arbitrary, realistic epoch-millisecond instant.
pub const START: Timestamp = Timestamp::from_millis(1_700_000_000_000);

/// One agent: a breaker of `name` over a new driver from `h`, on `clock`.
pub async fn agent<H: Harness>(h: &H, name: &str, policy: &Policy, clock: &ManualClock) -> Breaker {
    Breaker::builder(name, h.driver().await)
        .policy(policy.clone())
        .clock(clock.clone())
        .build()
        .expect("a valid breaker")
}

/// Two agents of one breaker, [`agent`] each.
pub async fn two_agents<H: Harness>(
    h: &H,
    name: &str,
    policy: &Policy,
    clock: &ManualClock,
) -> (Breaker, Breaker) {
    (
        agent(h, name, policy, clock).await,
        agent(h, name, policy, clock).await,
    )
}

/// One agent whose back-end can be switched off through the returned [`Faulty`].
pub async fn faulty_agent<H: Harness>(
    h: &H,
    name: &str,
    policy: &Policy,
    clock: &ManualClock,
) -> (Breaker, Faulty<H::Driver>) {
    let driver = Faulty::new(h.driver().await);
    let breaker = Breaker::builder(name, driver.clone())
        .policy(policy.clone())
        .clock(clock.clone())
        .build()
        .expect("a valid breaker");
    (breaker, driver)
}

/// The record stored under `name`, read through a new driver of the harness: what the
/// fleet's next reader would find. `None` when nothing is stored.
pub async fn stored_record<H: Harness>(h: &H, name: &str) -> Option<breaker_core::Record> {
    let stored = stored_value(h, name).await?;
    assert!(
        stored.log.is_empty(),
        "{name}: a record with a log is read with stored_view"
    );
    Some(breaker_core::Record::decode(&stored.value).expect("a record of ours"))
}

/// The record stored under `name` with its log folded onto it, as breakers of `policy`
/// read it (through a new driver of the harness). `None` when nothing is stored.
pub async fn stored_view<H: Harness>(
    h: &H,
    name: &str,
    policy: &breaker_core::Policy,
) -> Option<breaker_core::Record> {
    let stored = stored_value(h, name).await?;
    Some(
        breaker_core::machine::read_stored(&stored.value, &stored.log, policy)
            .expect("a record and log of ours"),
    )
}

/// The value stored under `name`, with its log, read through a new driver of the harness.
async fn stored_value<H: Harness>(h: &H, name: &str) -> Option<breaker_core::Versioned> {
    let name = breaker_core::Name::new(name).expect("a valid name");
    h.driver()
        .await
        .load(&name, Duration::from_secs(5))
        .await
        .expect("the store answers")
}

/// Whether the harness's driver pushes changes (else breakers poll within `max_staleness`).
pub async fn pushes<H: Harness>(h: &H) -> bool {
    let sink: breaker_core::ChangeSink = Arc::new(|_| {});
    let name = breaker_core::Name::new(&crate::unique_name("push-probe")).expect("a valid name");
    matches!(
        h.driver()
            .await
            .watch(&name, sink, Duration::from_secs(5))
            .await,
        Ok(Some(_))
    )
}

/// Ages the back-end's stored values by `d`, by the harness's means.
pub async fn age_store(expiry: &Expiry, d: Duration) {
    match expiry {
        Expiry::Manual(clock) => clock.advance(d),
        Expiry::RealTime => tokio::time::sleep(d).await,
    }
}

/// Expands to one `#[test]` per conformance case, each running the case against the
/// harness that `$harness` evaluates to (evaluated afresh for every case).
///
/// `conformance_tests!(all_in_one NAME, HARNESS)` instead runs every case in one test
/// against one harness, for back-ends that are slow to start (a cluster).
///
/// `conformance_tests!(hostile HARNESS)` adds the cases of [`foreign`] and [`loss`], for a
/// harness that is also a [`HostileHarness`].
///
/// `conformance_tests!(timers HARNESS)` adds the cases of [`timers`], for a driver that keeps
/// timers: they run on real time, on breakers that let the back-end judge their deadlines.
#[macro_export]
macro_rules! conformance_tests {
    (all_in_one $name:ident, $harness:expr) => {
        $crate::conformance_tests!(@list (one $name) $harness);
    };
    (hostile $harness:expr) => {
        $crate::conformance_tests!(@cases each $harness;
            foreign::foreign_contents_never_wedge_a_breaker,
            foreign::a_value_too_large_to_read_is_corrupt_and_replaced,
            foreign::a_newer_schema_is_refused_and_left_alone,
            foreign::namespace_neighbours_never_meet,
            loss::a_wiped_store_keeps_the_forced_state,
            loss::a_store_restored_from_an_older_backup_is_followed
        );
    };
    (timers $harness:expr) => {
        $crate::conformance_tests!(@cases each $harness;
            timers::timers_start_with_their_write,
            timers::the_open_period_is_the_backends,
            timers::the_probe_lease_is_the_backends,
            timers::a_vanished_probe_holder_loses_its_slot
        );
    };
    ($harness:expr) => {
        $crate::conformance_tests!(@list each $harness);
    };
    (@list $mode:tt $harness:expr) => {
        $crate::conformance_tests!(@cases $mode $harness;
            store::load_absent_is_none,
            store::create_then_load,
            store::create_conflicts_when_present,
            store::stale_version_conflicts_with_current,
            store::versions_only_grow,
            store::expiry_removes_records,
            store::without_ttl_records_stay,
            store::concurrent_swaps_add_up,
            store::update_shows_the_record_and_writes_the_revision,
            store::concurrent_updates_add_up,
            store::list_shows_records,
            store::watch_delivers_changes,
            store::a_watch_begun_as_the_last_one_ends_delivers_changes,
            behaviour::original_scenario,
            behaviour::fleet_trips_exactly_once,
            behaviour::half_open_admits_exactly_the_permits_fleet_wide,
            behaviour::probe_successes_close_for_everyone,
            behaviour::probe_failure_reopens_with_a_new_generation,
            behaviour::dead_probe_holder_lease_lapses,
            behaviour::dropped_probe_permit_gives_its_slot_back,
            behaviour::stale_outcomes_change_nothing,
            behaviour::forced_states_bind_every_agent,
            behaviour::batched_successes_reach_the_record,
            behaviour::a_healthy_fleet_writes_nothing,
            behaviour::another_agents_failure_ends_a_rest,
            behaviour::a_failing_call_does_not_wait_for_its_write,
            behaviour::consecutive_failures_reset_by_any_agent,
            behaviour::strict_mode_writes_every_outcome,
            behaviour::writers_admitted_together_lose_no_outcome,
            behaviour::agents_of_either_encoding_share_a_breaker,
            behaviour::a_writer_always_beaten_lands_its_outcome_by_one_update,
            behaviour::corrupt_record_is_reported_and_replaced,
            behaviour::joining_agent_keeps_the_shared_record,
            behaviour::panicking_calls_are_failures,
            behaviour::cancelled_calls_are_ignored,
            behaviour::slow_calls_count,
            behaviour::polling_bounds_staleness_without_push,
            appended::appended_outcomes_of_every_writer_count_without_conflict,
            appended::a_trip_by_appended_failures_is_written_as_the_record,
            appended::a_log_stays_bounded_and_loses_nothing,
            appended::foreign_deltas_are_reported_and_dropped,
            appended::a_quiet_breaker_keeps_no_log,
            appended::a_compaction_keeps_the_deltas_appended_since,
            appended::a_trip_no_writer_foresaw_binds_at_once,
            appended::a_foreseen_trip_lands_in_one_write_past_appends,
            truthful::effective_state_at_the_open_periods_end,
            truthful::a_never_called_agent_does_not_guess,
            truthful::strict_agents_never_admit_from_a_stale_view,
            truthful::fresh_agents_racing_a_trip_never_go_back,
            truthful::a_dropped_probe_frees_its_slot_promptly,
            truthful::the_longest_open_period_trips_and_stays_open,
            truthful::batched_successes_stay_in_their_generation,
            truthful::transitions_are_announced_once_and_first_reads_never,
            hostile::insane_records_are_reported_and_repaired,
            hostile::counts_that_overflow_saturate,
            quorum::one_agent_failing_alone_opens_only_its_own,
            quorum::a_quorum_of_agents_opens_the_fleet,
            quorum::a_second_sick_agent_makes_the_quorum,
            quorum::failing_agents_expire_with_the_window,
            quorum::probes_stay_fleet_wide_under_a_quorum,
            quorum::under_a_quorum_an_outage_still_protects_and_leaves_nothing_behind,
            outage::fail_open_admits_everything,
            outage::fail_closed_rejects_with_backend_error,
            outage::local_fallback_protects_and_shared_state_returns,
            outage::forced_open_survives_an_outage,
            outage::dead_backend_is_not_retried_on_every_call,
            outage::timeouts_count_as_outages,
            outage::a_backend_just_under_the_deadline_holds_no_caller_past_it
        );
    };
    (@cases each $harness:expr; $($group:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run($harness, |h| $crate::conformance::$group::$case(h));
            }
        )*
    };
    (@cases (one $name:ident) $harness:expr; $($group:ident :: $case:ident),* $(,)?) => {
        #[test]
        fn $name() {
            $crate::conformance::run($harness, |h| async move {
                $(
                    eprintln!("conformance case {}", stringify!($case));
                    $crate::conformance::$group::$case(h.clone()).await;
                )*
            });
        }
    };
}
