//! The agent's hot-path view: the cached state packed into atomics so that admission while
//! closed or open costs a few loads, and the striped counters of batched successes, so that
//! threads calling one breaker never contend on one cache line.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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

    /// Publishes a new cached record.
    pub(crate) fn publish(&self, rec: &Record, degraded: bool) {
        let code = match rec.state {
            State::Closed => CLOSED,
            State::Open => OPEN,
            State::HalfOpen => HALF_OPEN,
            State::ForcedOpen => FORCED_OPEN,
            State::ForcedClosed => FORCED_CLOSED,
        };
        let until = rec.open_until.map_or(0, Timestamp::as_millis);
        // The deadline first: a reader that sees the new state also sees its deadline.
        self.open_until.store(until, Ordering::Release);
        let flags = if degraded { DEGRADED } else { 0 };
        self.word.store(
            code | flags | (rec.generation << GENERATION_SHIFT),
            Ordering::Release,
        );
    }

    /// Decides admission from the cache.
    #[inline]
    pub(crate) fn decide(&self, strict: bool, now: Timestamp) -> Fast {
        let word = self.word.load(Ordering::Acquire);
        if word & DEGRADED != 0 {
            return Fast::Slow;
        }
        match word & STATE_MASK {
            CLOSED | FORCED_CLOSED if !strict => {
                let due = now.as_millis() >= self.next_maintenance.load(Ordering::Relaxed);
                Fast::Admit {
                    generation: word >> GENERATION_SHIFT,
                    maintain: due,
                }
            }
            OPEN => {
                let until = self.open_until.load(Ordering::Acquire);
                if now.as_millis() < until {
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

    pub(crate) fn schedule_maintenance(&self, at: Timestamp) {
        self.next_maintenance
            .store(at.as_millis(), Ordering::Relaxed);
    }
}

const STRIPES: usize = 8;

/// One counter on its own cache line (128 bytes covers adjacent-line prefetching).
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded(AtomicU64);

/// Successes counted locally and not yet written.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    stripes: [Padded; STRIPES],
}

fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(i);
        }
        i
    })
}

impl Pending {
    #[inline]
    pub(crate) fn add_success(&self) {
        self.stripes[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes every pending success.
    pub(crate) fn take(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0.swap(0, Ordering::AcqRel))
            .sum()
    }
}
