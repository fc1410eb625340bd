//! Unit tests of how an agent's view follows the stored record (`install_stored`): which
//! values may replace it and which may not, fed directly, in the orders that races and
//! back-ends that lose data produce, which a driver that pushes in order never shows.

use std::time::Duration;

use crate::driver::{Driver, DriverError, Swap, Versioned};
use crate::machine;
use crate::name::Name;
use crate::record::{Record, State};
use crate::time::{ManualClock, Timestamp};
use crate::timers::Timer;

use super::Breaker;
use super::shared::Read;

/// A driver that stores nothing: the tests feed the view themselves. With `slow_clock` it
/// has a clock of its own, ten seconds ahead of the host, whose every reading takes 100 ms
/// and is taken in the middle of that time; `readings` counts them.
#[derive(Clone, Default)]
struct Silent {
    timers: bool,
    slow_clock: bool,
    /// Its clones share one clock alignment (`Driver::clock_key`).
    shared_clock: bool,
    /// While set, a clock reading fails.
    clock_fails: std::sync::Arc<std::sync::atomic::AtomicBool>,
    readings: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// The thread of each compare-and-swap, in order.
    writers: std::sync::Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>,
}

impl Driver for Silent {
    fn backend(&self) -> &'static str {
        "silent"
    }
    async fn load(&self, _: &Name, _: Duration) -> Result<Option<Versioned>, DriverError> {
        Ok(None)
    }
    async fn compare_and_swap(
        &self,
        _: &Name,
        _: Option<u64>,
        _: Vec<u8>,
        _: Option<Duration>,
        _: Duration,
    ) -> Result<Swap, DriverError> {
        self.writers
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        Ok(Swap::Swapped { version: 1 })
    }
    async fn list(&self, _: Duration) -> Result<Vec<(Name, Versioned)>, DriverError> {
        Ok(Vec::new())
    }
    fn keeps_timers(&self) -> bool {
        self.timers
    }
    fn clock_key(&self) -> Option<usize> {
        self.shared_clock
            .then_some(std::sync::Arc::as_ptr(&self.readings) as usize)
    }
    async fn now(&self, _: Duration) -> Result<Option<Timestamp>, DriverError> {
        if !self.slow_clock {
            return Ok(None);
        }
        if self.clock_fails.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(DriverError::new(
                crate::DriverErrorKind::Unavailable,
                "the clock is down",
            ));
        }
        self.readings
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        let reading = crate::SystemClock::precise().saturating_add(Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
        Ok(Some(reading))
    }
}

const T0: Timestamp = Timestamp::from_millis(1_000_000);

fn breaker() -> Breaker {
    Breaker::builder(
        "view",
        Silent {
            timers: false,
            ..Silent::default()
        },
    )
    .clock(ManualClock::new(T0))
    .build()
    .unwrap()
}

fn stored(version: u64, rec: &Record) -> Option<Versioned> {
    Some(Versioned::new(version, rec.encode()))
}

fn record(state: State, generation: u64) -> Record {
    let mut rec = Record::new();
    (rec.state, rec.generation) = (state, generation);
    if state == State::Open {
        rec.open_until = Some(T0.saturating_add(Duration::from_secs(5)));
    }
    rec
}

/// Feeds `value` as read by `read` (a load's `seq` is taken from the view now, so that it
/// counts as not overtaken unless the caller says otherwise).
fn feed(b: &Breaker, value: Option<Versioned>, adopt: bool, read: Read) {
    let inner = &b.inner;
    let mut s = inner.lock();
    inner.install_stored(&mut s, value, adopt, read);
}

/// A breaker whose view is an operator's force-open, generation 4, version 3.
fn forced_open() -> Breaker {
    let b = breaker();
    feed(
        &b,
        stored(3, &record(State::ForcedOpen, 4)),
        false,
        Read::Pushed,
    );
    b
}

fn fresh_load(b: &Breaker) -> Read {
    Read::Loaded {
        seq: b.inner.lock().installs,
    }
}

fn view(b: &Breaker) -> (State, u64, Option<u64>, bool) {
    let s = b.inner.lock();
    (s.record.state, s.record.generation, s.version, s.verify)
}

#[test]
fn a_lower_version_pushed_is_checked_by_a_read_not_installed() {
    let b = breaker();
    feed(&b, stored(10, &record(State::Open, 3)), false, Read::Pushed);
    feed(
        &b,
        stored(9, &record(State::Closed, 2)),
        false,
        Read::Pushed,
    );
    assert_eq!(
        view(&b),
        (State::Open, 3, Some(10), true),
        "kept, and a read asked for"
    );
}

#[test]
fn a_lower_version_read_now_is_a_store_that_went_back() {
    let b = breaker();
    feed(&b, stored(10, &record(State::Open, 3)), false, Read::Pushed);
    let read = fresh_load(&b);
    feed(&b, stored(4, &record(State::Closed, 5)), false, read);
    assert_eq!(view(&b), (State::Closed, 5, Some(4), false));
    // Adopting after an outage takes the store's record whatever its version.
    feed(&b, stored(2, &record(State::Open, 6)), true, Read::Pushed);
    assert_eq!(view(&b).2, Some(2));
}

#[test]
fn a_load_overtaken_by_an_install_is_not_the_stores_word() {
    let b = breaker();
    let before = fresh_load(&b);
    feed(&b, stored(7, &record(State::Open, 1)), false, Read::Pushed);
    // The load began before the push was installed; its (absent) answer is older.
    feed(&b, None, false, before);
    assert_eq!(view(&b), (State::Open, 1, Some(7), false));
    feed(&b, None, false, Read::Pushed);
    assert_eq!(
        view(&b).0,
        State::Open,
        "an absence pushed may be a watch's first reload"
    );
    // A load that nothing overtook, or a conflict, is the store's word: the record is gone.
    let now = fresh_load(&b);
    feed(&b, None, false, now);
    assert_eq!(
        view(&b),
        (State::Closed, 1, None, false),
        "gone; the generation is kept"
    );
    feed(&b, stored(8, &record(State::Open, 2)), false, Read::Pushed);
    feed(&b, None, false, Read::Conflict);
    assert_eq!(view(&b).2, None);
}

#[test]
fn an_absent_record_under_a_forced_state_is_a_lost_one() {
    let b = forced_open();
    let now = fresh_load(&b);
    feed(&b, None, false, now);
    let s = b.inner.lock();
    assert_eq!(s.record.state, State::ForcedOpen, "still obeyed");
    assert!(s.lost_forced, "and to be written back");
    assert_eq!(s.version, None, "over nothing");
}

#[test]
fn an_older_lineage_under_a_forced_state_is_written_over_unless_an_operator_wrote_it() {
    let b = forced_open();
    feed(
        &b,
        stored(5, &record(State::Closed, 1)),
        false,
        Read::Pushed,
    );
    {
        let s = b.inner.lock();
        assert_eq!(
            (s.record.state, s.version, s.lost_forced),
            (State::ForcedOpen, Some(5), true)
        );
    }
    b.inner.lock().lost_forced = false;
    let mut reset = record(State::Closed, 1);
    reset.operator = true;
    feed(&b, stored(6, &reset), false, Read::Pushed);
    let s = b.inner.lock();
    assert_eq!(
        (s.record.state, s.lost_forced),
        (State::Closed, false),
        "the operator decides"
    );
}

#[test]
fn the_same_version_only_updates_the_backends_timers() {
    let b = Breaker::builder(
        "timers",
        Silent {
            timers: true,
            ..Silent::default()
        },
    )
    .build()
    .unwrap();
    let open = record(State::Open, 2);
    let running =
        Versioned::new(4, open.encode()).with_timers(vec![Timer::OpenPeriod { generation: 2 }]);
    feed(&b, Some(running), false, Read::Pushed);
    assert!(b.inner.lock().record.timers.as_ref().unwrap().open_period);
    // The same version again, now with the timer run out: the view learns it.
    feed(&b, stored(4, &open), false, Read::Pushed);
    let s = b.inner.lock();
    assert!(!s.record.timers.as_ref().unwrap().open_period);
    assert_eq!(s.version, Some(4));
}

#[test]
fn a_corrupt_value_is_replaced_by_a_later_generation_within_the_bound() {
    let b = breaker();
    feed(&b, stored(3, &record(State::Open, 7)), false, Read::Pushed);
    feed(
        &b,
        Some(Versioned::new(4, b"garbage".to_vec())),
        false,
        Read::Pushed,
    );
    assert_eq!(view(&b), (State::Closed, 8, Some(4), false));
    let mut top = record(State::Closed, machine::MAX_GENERATION);
    top.generation = machine::MAX_GENERATION;
    feed(&b, stored(5, &top), false, Read::Pushed);
    feed(
        &b,
        Some(Versioned::new(6, b"garbage".to_vec())),
        false,
        Read::Pushed,
    );
    assert_eq!(
        view(&b).1,
        machine::MAX_GENERATION,
        "never beyond the sane bound"
    );
}

#[test]
fn strict_mode_needs_no_extra_read_for_a_stale_push() {
    let b = Breaker::builder(
        "strict-view",
        Silent {
            timers: false,
            ..Silent::default()
        },
    )
    .policy(crate::Policy::builder().strict(true).build().unwrap())
    .clock(ManualClock::new(T0))
    .build()
    .unwrap();
    feed(&b, stored(10, &record(State::Open, 3)), false, Read::Pushed);
    feed(
        &b,
        stored(9, &record(State::Closed, 2)),
        false,
        Read::Pushed,
    );
    assert_eq!(
        view(&b),
        (State::Open, 3, Some(10), false),
        "its next admission reads anyway"
    );
}

/// The transitions announced for a sequence of stored values.
fn announced(b: &Breaker, values: Vec<(u64, Record)>) -> Vec<(State, State, u64)> {
    let mut events = b.subscribe();
    for (version, rec) in values {
        feed(b, stored(version, &rec), false, Read::Pushed);
    }
    events
        .drain()
        .into_iter()
        .filter_map(|e| match e {
            crate::Event::Transition {
                from,
                to,
                generation,
                ..
            } => Some((from, to, generation)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_transition_is_a_new_generation_or_state_and_a_first_read_is_none() {
    let b = breaker();
    let mut counted = record(State::Closed, 0);
    counted.consecutive_failures = 1;
    let mut reset = record(State::Closed, 1);
    reset.operator = true;
    assert_eq!(
        announced(
            &b,
            vec![
                (1, record(State::Closed, 0)),
                (2, counted),
                (3, reset),
                (4, record(State::Open, 2)),
            ]
        ),
        vec![
            (State::Closed, State::Closed, 1),
            (State::Closed, State::Open, 2)
        ],
        "the first read and a write of counts are no transitions; a reset and a trip are"
    );
}

#[test]
fn adopting_the_shared_record_replaces_the_local_one_even_at_the_same_version() {
    let b = breaker();
    feed(
        &b,
        stored(5, &record(State::Closed, 0)),
        false,
        Read::Pushed,
    );
    {
        // The local fallback tripped while the back-end was away; the version is unchanged.
        let inner = &b.inner;
        let mut s = inner.lock();
        inner.install_local(&mut s, record(State::Open, 1));
    }
    assert_eq!(view(&b).0, State::Open);
    feed(&b, stored(5, &record(State::Closed, 0)), true, Read::Pushed);
    assert_eq!(
        view(&b).0,
        State::Closed,
        "the shared record wins once it answers"
    );
}

#[test]
fn a_newer_write_of_the_same_forced_generation_is_no_loss() {
    let b = breaker();
    feed(
        &b,
        stored(3, &record(State::ForcedClosed, 4)),
        false,
        Read::Pushed,
    );
    // Another agent counted calls while the breaker is disabled: same generation, new version.
    let mut counted = record(State::ForcedClosed, 4);
    counted.consecutive_failures = 2;
    feed(&b, stored(5, &counted), false, Read::Pushed);
    let s = b.inner.lock();
    assert!(!s.lost_forced, "nothing was lost");
    assert_eq!((s.version, s.record.consecutive_failures), (Some(5), 2));
}

#[test]
fn the_clock_offset_is_taken_at_the_middle_of_the_round_trip_and_realigned() {
    let driver = Silent {
        slow_clock: true,
        ..Silent::default()
    };
    let b = Breaker::builder("aligned", driver.clone()).build().unwrap();
    b.refresh_blocking().unwrap();
    let expected = crate::SystemClock::precise().saturating_add(Duration::from_secs(10));
    let error = b.now().as_millis().abs_diff(expected.as_millis());
    // Taken as of the end of the round trip it would be 50 ms off; with twice its length,
    // 150 ms. The margin is for sleeps that overrun on a loaded machine.
    assert!(error < 30, "{error} ms from the back-end's clock");
    let sampled = driver.readings.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(sampled, 5, "no sample was good enough to stop early");
    // Five minutes later (the alignment is moved back), the next upkeep aligns again.
    b.flush_blocking().unwrap();
    assert_eq!(
        driver.readings.load(std::sync::atomic::Ordering::SeqCst),
        sampled,
        "not due yet"
    );
    match &b.inner.clock {
        crate::time::BreakerClock::Host(host) => host.age(Duration::from_secs(301)),
        crate::time::BreakerClock::Injected(_) => panic!("no clock was injected"),
    }
    b.flush_blocking().unwrap();
    assert!(
        driver.readings.load(std::sync::atomic::Ordering::SeqCst) > sampled,
        "realigned"
    );
}

/// The breakers over one driver ask the back-end's time once between them, at start-up and
/// at each re-alignment, and all follow it.
#[test]
fn breakers_over_one_driver_share_one_clock_alignment() {
    let driver = Silent {
        slow_clock: true,
        shared_clock: true,
        ..Silent::default()
    };
    let readings = || driver.readings.load(std::sync::atomic::Ordering::SeqCst);
    let breakers: Vec<Breaker> = (0..3)
        .map(|i| {
            let b = Breaker::builder(&format!("shared-clock-{i}"), driver.clone())
                .build()
                .unwrap();
            b.refresh_blocking().unwrap();
            b
        })
        .collect();
    assert_eq!(readings(), 5, "one alignment (five samples) for the three");
    let expected = crate::SystemClock::precise().saturating_add(Duration::from_secs(10));
    for b in &breakers {
        assert!(b.now().as_millis().abs_diff(expected.as_millis()) < 30);
    }
    match &breakers[0].inner.clock {
        crate::time::BreakerClock::Host(host) => host.age(Duration::from_secs(301)),
        crate::time::BreakerClock::Injected(_) => panic!("no clock was injected"),
    }
    for b in &breakers {
        b.flush_blocking().unwrap();
    }
    assert_eq!(readings(), 10, "one re-alignment for the three");

    // Due together, on three threads at once: one of them claims the re-alignment.
    let host = match &breakers[0].inner.clock {
        crate::time::BreakerClock::Host(host) => host.clone(),
        crate::time::BreakerClock::Injected(_) => panic!("no clock was injected"),
    };
    host.age(Duration::from_secs(301));
    std::thread::scope(|s| {
        for b in &breakers {
            s.spawn(|| b.flush_blocking().unwrap());
        }
    });
    assert_eq!(
        readings(),
        15,
        "one re-alignment, claimed, for three at once"
    );

    // A re-alignment that failed is tried again by the next breaker due, not in 5 minutes.
    host.age(Duration::from_secs(301));
    driver
        .clock_fails
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = breakers[0].flush_blocking();
    driver
        .clock_fails
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let before = readings();
    breakers[1].flush_blocking().unwrap();
    assert_eq!(readings(), before + 5, "the failed alignment was given up");

    // Another driver's first breaker clears the clocks of drivers that are gone, and a
    // live driver's next breaker still finds the one its breakers share.
    let gone = Silent {
        slow_clock: true,
        shared_clock: true,
        ..Silent::default()
    };
    drop(Breaker::builder("gone", gone).build().unwrap());
    let registered = crate::time::HostClock::registered();
    let other = Silent {
        slow_clock: true,
        shared_clock: true,
        ..Silent::default()
    };
    let _other = Breaker::builder("other", other).build().unwrap();
    assert!(
        crate::time::HostClock::registered() <= registered,
        "the gone driver's clock was forgotten"
    );
    let fourth = Breaker::builder("shared-clock-3", driver.clone())
        .build()
        .unwrap();
    fourth.refresh_blocking().unwrap();
    assert_eq!(
        readings(),
        before + 5,
        "the fourth shares the three's alignment"
    );
}

#[test]
fn a_fast_backends_failures_are_written_by_their_caller_and_a_slow_ones_by_the_writer() {
    let driver = Silent::default();
    let writers = driver.writers.clone();
    let b = Breaker::builder("writer", driver)
        .policy(
            crate::Policy::builder()
                .failures_within(100, Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .clock(ManualClock::new(T0))
        .build()
        .unwrap();
    b.refresh_blocking().unwrap();
    let last_writer = || *writers.lock().unwrap().last().expect("a write");
    let me = std::thread::current().id();
    let fail = || {
        let _ = b.call_blocking(|| Err::<(), ()>(()));
    };
    // Waits for the background writer (not `written`, which would write it here if the
    // writer had not taken it yet).
    let await_write = |count: usize| {
        let landed = (0..10_000).any(|_| {
            std::thread::sleep(Duration::from_millis(1));
            writers.lock().unwrap().len() > count
        });
        assert!(landed, "the background writer never wrote");
        // And for the writer to finish (its timing of the write included).
        b.written_blocking();
    };

    // No write timed yet: the failure goes to the background writer.
    fail();
    await_write(0);
    assert_ne!(last_writer(), me, "written in the background");

    // Writes of a few microseconds, as an in-process store's: the caller writes its own.
    for _ in 0..8 {
        b.inner.fold_write_time(Duration::from_micros(5));
    }
    assert!(b.inner.writes_are_fast());
    fail();
    assert_eq!(last_writer(), me, "written by the failing caller");

    // Writes of a millisecond, as over a network: the writer's again.
    for _ in 0..8 {
        b.inner.fold_write_time(Duration::from_millis(1));
    }
    assert!(!b.inner.writes_are_fast());
    fail();
    await_write(2);
    assert_ne!(last_writer(), me);
    assert_eq!(
        writers.lock().unwrap().len(),
        3,
        "every failure written once"
    );

    // The moving average: the first sample as it is, then a quarter for each new one, and
    // the bound itself is not fast.
    use std::sync::atomic::Ordering;
    b.inner.write_micros.store(u64::MAX, Ordering::Relaxed);
    b.inner.fold_write_time(Duration::from_micros(100));
    assert_eq!(b.inner.write_micros.load(Ordering::Relaxed), 100);
    b.inner.fold_write_time(Duration::from_micros(20));
    assert_eq!(b.inner.write_micros.load(Ordering::Relaxed), 80);
    b.inner.write_micros.store(20, Ordering::Relaxed);
    assert!(!b.inner.writes_are_fast(), "20 µs is not below 20 µs");
    b.inner.write_micros.store(19, Ordering::Relaxed);
    assert!(b.inner.writes_are_fast());

    // Sampling: every one of a breaker's first writes is timed, then one in sixteen, and a
    // write not timed changes nothing.
    let fresh = breaker();
    let timed: Vec<bool> = (0..40)
        .map(|_| fresh.inner.write_timer().is_some())
        .collect();
    let expected: Vec<bool> = (0..40u32).map(|n| n < 8 || n % 16 == 0).collect();
    assert_eq!(timed, expected);
    fresh.inner.note_write_time(None);
    assert_eq!(fresh.inner.write_micros.load(Ordering::Relaxed), u64::MAX);
    fresh.inner.note_write_time(
        fresh
            .inner
            .write_timer()
            .or(Some(std::time::Instant::now())),
    );
    assert_ne!(fresh.inner.write_micros.load(Ordering::Relaxed), u64::MAX);
}
/// A breaker's own state stays small (664 bytes here), so that 100,000 of them fit: no second
/// record or policy without a quorum, the policy shared where it is given as one `Arc`.
#[test]
fn a_breaker_holds_little_of_its_own() {
    let inner = std::mem::size_of::<super::shared::Inner>();
    assert!(inner <= 768, "Inner is {inner} bytes");
    let policy = std::sync::Arc::new(crate::Policy::default());
    let driver = Silent::default();
    let a = Breaker::builder("a", driver.clone())
        .policy(policy.clone())
        .build()
        .unwrap();
    let b = Breaker::builder("b", driver)
        .policy(policy)
        .build()
        .unwrap();
    assert!(
        std::ptr::eq(a.policy(), b.policy()),
        "one copy of the policy"
    );
}

/// A success that no trip rule reads is not even counted once the breaker's record exists
/// (nothing to write, no counter line allocated); under a rule that reads them, it is, and
/// before the record exists it is too (its first write makes the breaker visible).
#[test]
fn successes_are_counted_only_where_a_rule_or_a_missing_record_needs_them() {
    for (policy, reads) in [
        (crate::Policy::default(), false),
        (
            crate::Policy::builder()
                .consecutive_failures(3)
                .build()
                .unwrap(),
            true,
        ),
    ] {
        let b = Breaker::builder("counted", Silent::default())
            .policy(policy)
            .clock(ManualClock::new(T0))
            .build()
            .unwrap();
        feed(&b, None, false, Read::Conflict);
        b.call_blocking(|| Ok::<(), ()>(())).unwrap();
        assert_eq!(
            b.inner.pending.allocated(),
            reads,
            "a counter line only for a rule that reads successes"
        );
        assert_eq!(b.inner.pending.take(), 1, "no record yet: counted");
        feed(&b, stored(1, &Record::new()), false, Read::Conflict);
        b.call_blocking(|| Ok::<(), ()>(())).unwrap();
        b.call_blocking(|| Ok::<(), ()>(())).unwrap();
        let counted = b.inner.pending.take();
        assert_eq!(
            counted,
            if reads { 2 } else { 0 },
            "reads successes: {reads}"
        );
    }
}

/// Which of this agent's writes becomes its view once the swap returns: its own, unless a
/// push of a later write came first, and also when the store's counter started again below
/// the version expected.
#[test]
fn an_own_write_is_the_view_unless_a_later_one_came_first() {
    use super::shared::own_write_is_newest as newest;
    assert!(newest(None, 5, None), "the first write");
    assert!(newest(Some(4), 5, Some(4)), "nothing came between");
    assert!(
        !newest(Some(6), 5, Some(4)),
        "a later write's push came first"
    );
    assert!(
        newest(Some(5), 7, Some(4)),
        "an earlier write's push came between"
    );
    assert!(
        !newest(Some(7), 7, Some(4)),
        "the view holds that version already"
    );
    assert!(newest(Some(10), 3, Some(10)), "the counter started again");
    assert!(
        !newest(Some(10), 3, Some(2)),
        "a push overtook a restarted counter"
    );
}
