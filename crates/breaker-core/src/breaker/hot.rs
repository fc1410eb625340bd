//! The agent's hot-path view: the cached state packed into atomics so that admission while
//! closed or open costs a few loads, and the striped counters of batched successes, so that
//! threads calling one breaker never contend on one cache line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::record::{Record, State};
use crate::time::Timestamp;

const STATE_MASK: u64 = 0b111;
const UNKNOWN: u64 = 0;
const CLOSED: u64 = 1;
const OPEN: u64 = 2;
const HALF_OPEN: u64 = 3;
const FORCED_OPEN: u64 = 4;
const FORCED_CLOSED: u64 = 5;
/// Set while the back-end is unreachable: every call takes the slow path, where the
/// failure policy is applied.
const DEGRADED: u64 = 1 << 3;
/// Set while the back-end runs the open period's timer: reject whatever the clock says, until
/// the back-end reports that it ran out.
const HELD: u64 = 1 << 4;
/// Set while a failure of this agent's is on its way to the back-end: its caller did not
/// wait for the write, but the agent's next call does (on the slow path), so that no agent
/// ever has more than one round of unwritten failures and the fleet trips as promptly as if
/// every failure were written before its call returned.
const WRITE_IN_FLIGHT: u64 = 1 << 5;
/// Set while the back-end holds a record of the breaker (as of the view), so that a success
/// no rule reads need not be counted: there is no record to create for operators.
const RECORDED: u64 = 1 << 6;
const GENERATION_SHIFT: u32 = 8;

/// What the hot path decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fast {
    /// Admit an ordinary call of this generation.
    Admit { generation: u64, maintain: bool },
    /// Reject: open until then, or forced open.
    Reject {
        state: State,
        until: Option<Timestamp>,
    },
    /// Not decidable from the cache (unknown, half-open, open period over, degraded,
    /// strict mode).
    Slow,
}

#[derive(Debug)]
pub(crate) struct HotView {
    word: AtomicU64,
    open_until: AtomicU64,
    next_maintenance: AtomicU64,
}

impl HotView {
    pub(crate) fn new() -> Self {
        HotView {
            word: AtomicU64::new(UNKNOWN),
            open_until: AtomicU64::new(0),
            next_maintenance: AtomicU64::new(0),
        }
    }

    /// Publishes a new cached record (under the breaker's lock, as every change of the
    /// word is, so that a write in flight stays marked until it has landed).
    pub(crate) fn publish(&self, rec: &Record, degraded: bool, recorded: bool) {
        let code = match rec.state {
            State::Closed => CLOSED,
            State::Open => OPEN,
            State::HalfOpen => HALF_OPEN,
            State::ForcedOpen => FORCED_OPEN,
            State::ForcedClosed => FORCED_CLOSED,
        };
        let until = rec.open_until.map_or(0, Timestamp::as_millis);
        let (until, held) = match &rec.timers {
            // The back-end judges the open period: the record's deadline is only an estimate.
            Some(timers) if timers.open_period => (until, HELD),
            Some(_) => (0, 0),
            None => (until, 0),
        };
        // The deadline first: a reader that sees the new state also sees its deadline.
        self.open_until.store(until, Ordering::Release);
        let in_flight = self.word.load(Ordering::Relaxed) & WRITE_IN_FLIGHT;
        let flags = held
            | in_flight
            | if degraded { DEGRADED } else { 0 }
            | if recorded { RECORDED } else { 0 };
        self.word.store(
            code | flags | (rec.generation << GENERATION_SHIFT),
            Ordering::Release,
        );
    }

    /// Decides admission from the cache. Strict mode never does: it admits only by what the
    /// back-end says as of the call's start.
    #[inline]
    pub(crate) fn decide(&self, strict: bool, now: Timestamp) -> Fast {
        let word = self.word.load(Ordering::Acquire);
        if strict || word & (DEGRADED | WRITE_IN_FLIGHT) != 0 {
            return Fast::Slow;
        }
        match word & STATE_MASK {
            CLOSED | FORCED_CLOSED => Fast::Admit {
                generation: word >> GENERATION_SHIFT,
                maintain: self.maintenance_due(now),
            },
            // A rejecting agent still keeps up its view (polling when push is down), or it
            // would miss a reset, or a back-end that lost a forced state.
            _ if self.maintenance_due(now) => Fast::Slow,
            OPEN => {
                let until = self.open_until.load(Ordering::Acquire);
                if word & HELD != 0 || now.as_millis() < until {
                    Fast::Reject {
                        state: State::Open,
                        until: Some(Timestamp::from_millis(until)),
                    }
                } else {
                    Fast::Slow
                }
            }
            FORCED_OPEN => Fast::Reject {
                state: State::ForcedOpen,
                until: None,
            },
            _ => Fast::Slow,
        }
    }

    /// Marks a failure as on its way (`true`) or landed (`false`); under the breaker's lock.
    pub(crate) fn set_write_in_flight(&self, in_flight: bool) {
        if in_flight {
            self.word.fetch_or(WRITE_IN_FLIGHT, Ordering::AcqRel);
        } else {
            self.word.fetch_and(!WRITE_IN_FLIGHT, Ordering::AcqRel);
        }
    }

    /// Whether the back-end holds a record of the breaker, as of the view.
    #[inline]
    pub(crate) fn recorded(&self) -> bool {
        self.word.load(Ordering::Acquire) & RECORDED != 0
    }

    /// Whether a failure is on its way to the back-end.
    pub(crate) fn write_in_flight(&self) -> bool {
        self.word.load(Ordering::Acquire) & WRITE_IN_FLIGHT != 0
    }

    /// The generation of the cached view, to tell stale outcomes on the hot path.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.word.load(Ordering::Acquire) >> GENERATION_SHIFT
    }

    /// Whether the cache may take a batched success of `generation` right now.
    #[inline]
    pub(crate) fn batches(&self, generation: u64) -> bool {
        let word = self.word.load(Ordering::Acquire);
        word & DEGRADED == 0
            && matches!(word & STATE_MASK, CLOSED | FORCED_CLOSED)
            && word >> GENERATION_SHIFT == generation
    }

    /// Whether upkeep is due at `now`.
    pub(crate) fn maintenance_due(&self, now: Timestamp) -> bool {
        now.as_millis() >= self.next_maintenance.load(Ordering::Relaxed)
    }

    pub(crate) fn schedule_maintenance(&self, at: Timestamp) {
        self.next_maintenance
            .store(at.as_millis(), Ordering::Relaxed);
    }

    /// Makes maintenance due by `at` at the latest, leaving an earlier schedule alone.
    pub(crate) fn bring_maintenance_forward(&self, at: Timestamp) {
        self.next_maintenance
            .fetch_min(at.as_millis(), Ordering::Relaxed);
    }
}

/// Threads that get a counter of their own in every breaker; further threads share one.
const OWNED_SLOTS: usize = 16;
/// The slot of the counter that threads without one of their own share.
const SHARED_SLOT: usize = OWNED_SLOTS;
const NO_SLOT: usize = usize::MAX;

/// One counter on its own cache line (128 bytes covers adjacent-line prefetching).
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded(AtomicU64);

/// Successes counted locally and not yet written.
///
/// Each thread holding a slot is the only writer of its slot's counter, so it counts with a
/// plain load and store instead of a locked read-modify-write, and no two threads touch one
/// cache line. A slot's counter is allocated when its thread first counts here, so an idle
/// breaker, or one called from a single thread, holds one line, not one per possible
/// thread; and the slots themselves are allocated at the first success counted, so that a
/// breaker that counts none (its rules read no successes) holds two words for them.
/// Counters only grow; `take` hands out the growth since the last take.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    slots: OnceLock<Box<Slots>>,
    /// Successes counted without a line of their own: the few that make a breaker's record
    /// under rules that read none (see [`Pending::add_early`]).
    early: AtomicU64,
    taken: AtomicU64,
}

type Slots = [OnceLock<Box<Padded>>; OWNED_SLOTS + 1];

/// Hands out thread slots and takes them back when threads end, so that thread pools that
/// come and go keep finding free slots.
struct SlotGuard(usize);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if self.0 != NO_SLOT {
            free_slots()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.0);
        }
    }
}

fn free_slots() -> &'static Mutex<Vec<usize>> {
    static FREE: OnceLock<Mutex<Vec<usize>>> = OnceLock::new();
    FREE.get_or_init(|| Mutex::new((0..OWNED_SLOTS).rev().collect()))
}

thread_local! {
    static SLOT: SlotGuard = SlotGuard(
        free_slots().lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or(NO_SLOT),
    );
}

impl Pending {
    #[inline]
    fn counter(&self, slot: usize) -> &AtomicU64 {
        &self.slots.get_or_init(Box::default)[slot]
            .get_or_init(Box::default)
            .0
    }

    /// Counts a success that only matters until the breaker's record exists (its rules read
    /// none): on a shared word, allocating nothing.
    #[inline]
    pub(crate) fn add_early(&self) {
        self.early.fetch_add(1, Ordering::Release);
    }

    #[inline]
    pub(crate) fn add_success(&self) {
        let slot = SLOT.try_with(|s| s.0).unwrap_or(NO_SLOT);
        if slot < OWNED_SLOTS {
            // Single writer: a plain increment. The slot's previous owner, if any, has ended,
            // and the free list's lock ordered its last write before this one.
            let counter = self.counter(slot);
            counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Release);
        } else {
            self.counter(SHARED_SLOT).fetch_add(1, Ordering::Release);
        }
    }

    /// Whether any counter line is allocated (tests).
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> bool {
        self.slots.get().is_some()
    }

    /// Takes every success counted since the last take.
    pub(crate) fn take(&self) -> u64 {
        let early = self.early.load(Ordering::Acquire);
        let total: u64 = self
            .slots
            .get()
            .into_iter()
            .flat_map(|slots| slots.iter())
            .filter_map(OnceLock::get)
            .map(|c| c.0.load(Ordering::Acquire))
            .fold(early, u64::saturating_add);
        // Concurrent takers each get a disjoint share: the counters only grow, so the
        // largest total seen so far is what has been handed out.
        total.saturating_sub(self.taken.fetch_max(total, Ordering::AcqRel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timers::RunningTimers;
    use std::sync::Arc;

    const T: Timestamp = Timestamp::from_millis(1_000_000);

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(T.as_millis() + ms)
    }

    fn rec(state: State, generation: u64, until: Option<u64>) -> Record {
        let mut rec = Record::new();
        (rec.state, rec.generation) = (state, generation);
        rec.open_until = until.map(at);
        rec
    }

    /// A view whose upkeep is not due for an hour.
    fn view(rec: &Record, degraded: bool) -> HotView {
        let v = HotView::new();
        v.schedule_maintenance(at(3_600_000));
        v.publish(rec, degraded, true);
        v
    }

    #[test]
    fn the_cache_decides_closed_and_open_without_the_slow_path() {
        let unknown = HotView::new();
        unknown.schedule_maintenance(at(3_600_000));
        assert_eq!(unknown.decide(false, T), Fast::Slow, "nothing read yet");

        for state in [State::Closed, State::ForcedClosed] {
            let v = view(&rec(state, 7, None), false);
            assert_eq!(
                v.decide(false, T),
                Fast::Admit {
                    generation: 7,
                    maintain: false
                },
                "{state}"
            );
            assert_eq!(
                v.decide(true, T),
                Fast::Slow,
                "strict never decides from the cache"
            );
            assert_eq!(v.generation(), 7);
            assert!(v.batches(7) && !v.batches(6));
        }

        let open = view(&rec(State::Open, 9, Some(1_000)), false);
        assert_eq!(
            open.decide(false, at(999)),
            Fast::Reject {
                state: State::Open,
                until: Some(at(1_000))
            }
        );
        assert_eq!(
            open.decide(false, at(1_000)),
            Fast::Slow,
            "the end is inclusive"
        );
        assert!(!open.batches(9), "no batching while open");

        let forced = view(&rec(State::ForcedOpen, 3, None), false);
        assert_eq!(
            forced.decide(false, T),
            Fast::Reject {
                state: State::ForcedOpen,
                until: None
            }
        );
        assert_eq!(
            view(&rec(State::HalfOpen, 4, None), false).decide(false, T),
            Fast::Slow
        );
    }

    #[test]
    fn degraded_upkeep_and_timers_send_calls_the_right_way() {
        let closed = rec(State::Closed, 2, None);
        let degraded = view(&closed, true);
        assert_eq!(
            degraded.decide(false, T),
            Fast::Slow,
            "the failure policy decides"
        );
        assert!(!degraded.batches(2));

        let due = view(&closed, false);
        due.schedule_maintenance(T);
        assert_eq!(
            due.decide(false, T),
            Fast::Admit {
                generation: 2,
                maintain: true
            }
        );
        let open_due = view(&rec(State::Open, 3, Some(1_000)), false);
        open_due.schedule_maintenance(T);
        assert_eq!(
            open_due.decide(false, T),
            Fast::Slow,
            "a rejecting agent keeps up too"
        );

        // A back-end that keeps the open period's timer: held past the record's deadline
        // while it runs, and decided by the slow path once it ran out, whatever the clock.
        let mut held = rec(State::Open, 5, Some(1_000));
        held.timers = Some(RunningTimers {
            open_period: true,
            leases: Vec::new(),
        });
        let v = view(&held, false);
        assert!(matches!(
            v.decide(false, at(5_000)),
            Fast::Reject {
                state: State::Open,
                ..
            }
        ));
        held.timers = Some(RunningTimers::default());
        let v = view(&held, false);
        assert_eq!(
            v.decide(false, T),
            Fast::Slow,
            "the timer ran out before the deadline"
        );
    }

    #[test]
    fn generations_are_held_exactly_up_to_the_sane_bound() {
        let g = crate::machine::MAX_GENERATION;
        let v = view(&rec(State::Closed, g, None), false);
        assert_eq!(v.generation(), g);
        assert_eq!(
            v.decide(false, T),
            Fast::Admit {
                generation: g,
                maintain: false
            }
        );
        let flags = view(&rec(State::Closed, 1, None), true);
        assert_eq!(
            flags.generation(),
            1,
            "flags never leak into the generation"
        );
    }

    /// Held by the tests that take every owned slot or need one free, so that under a
    /// runner that runs tests as threads of one process they do not starve each other.
    static SLOT_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn slots_of_ended_threads_are_handed_out_again() {
        let _alone = SLOT_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        // Far more threads than slots, one after another: each finds an owned slot, since
        // every ended thread gave its slot back.
        for _ in 0..(OWNED_SLOTS * 3) {
            let slot = std::thread::spawn(|| SLOT.with(|s| s.0)).join().unwrap();
            assert_ne!(slot, NO_SLOT, "an ended thread's slot was not given back");
        }
    }

    #[test]
    fn counters_are_allocated_for_the_threads_that_count() {
        let pending = Pending::default();
        let allocated = |p: &Pending| {
            p.slots.get().map_or(0, |slots| {
                slots.iter().filter(|s| s.get().is_some()).count()
            })
        };
        assert_eq!(allocated(&pending), 0, "an idle breaker holds no counter");
        pending.add_success();
        pending.add_success();
        assert_eq!(allocated(&pending), 1, "one thread, one counter");
        std::thread::scope(|s| {
            s.spawn(|| pending.add_success());
        });
        assert_eq!(allocated(&pending), 2);
        assert_eq!(pending.take(), 3);
    }

    #[test]
    fn early_successes_allocate_nothing_and_are_taken_with_the_rest() {
        let pending = Pending::default();
        pending.add_early();
        pending.add_early();
        assert!(pending.slots.get().is_none(), "nothing allocated");
        pending.add_success();
        assert_eq!(pending.take(), 3);
        pending.add_early();
        assert_eq!(pending.take(), 1);
        assert_eq!(pending.take(), 0);
    }

    #[test]
    fn more_threads_at_once_than_owned_slots_share_the_last_counter() {
        let _alone = SLOT_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        // Every thread alive together, so that some find no slot of their own.
        let threads = OWNED_SLOTS + 4;
        let pending = Pending::default();
        let barrier = std::sync::Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    barrier.wait();
                    pending.add_success();
                    barrier.wait();
                });
            }
        });
        assert_eq!(pending.take(), threads as u64);
        assert!(
            pending.slots.get().unwrap()[SHARED_SLOT].get().is_some(),
            "the shared one counted"
        );
    }

    #[test]
    fn takes_hand_out_each_success_once_across_threads() {
        let pending = Arc::new(Pending::default());
        let threads: Vec<_> = (0..100)
            .map(|_| {
                let p = pending.clone();
                std::thread::spawn(move || {
                    let mut taken = 0;
                    for i in 0..1_000 {
                        p.add_success();
                        if i % 97 == 0 {
                            taken += p.take();
                        }
                    }
                    taken
                })
            })
            .collect();
        let taken: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(taken + pending.take(), 100 * 1_000);
        assert_eq!(pending.take(), 0);
    }
}
