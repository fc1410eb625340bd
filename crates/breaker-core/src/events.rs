//! Breaker events and subscriptions to them.

use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_channel::mpsc;
use futures_util::{Stream, StreamExt};

use crate::error::BackendError;
use crate::name::Name;
use crate::record::State;
use crate::time::Timestamp;

/// Whether this agent made a transition happen or learned of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// This agent's write won: exactly one agent reports each transition as caused.
    Caused,
    /// Another agent made it; this one saw it.
    Observed,
    /// A transition of this agent's own breaker under a quorum
    /// ([`crate::Policy::min_agents`]): it failed alone, and protects itself without
    /// opening the fleet's breaker.
    Local,
}

/// Something a breaker did or saw.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// The breaker changed state (several transitions seen at once show as one).
    Transition {
        /// The breaker.
        breaker: Name,
        /// The state before.
        from: State,
        /// The state after.
        to: State,
        /// The new generation.
        generation: u64,
        /// Caused by this agent, or observed.
        cause: Cause,
        /// When, on the breaker's clock.
        at: Timestamp,
    },
    /// A call was rejected.
    Rejected {
        /// The breaker.
        breaker: Name,
        /// Its state.
        state: State,
        /// How long until a retry may succeed.
        retry_after: Option<Duration>,
    },
    /// A back-end operation failed; the failure policy applies until it recovers.
    BackendError(BackendError),
    /// A stored record was corrupt and was replaced by a fresh one.
    CorruptRecord(BackendError),
    /// The back-end answers again; the shared record is authoritative again.
    BackendRecovered {
        /// The breaker.
        breaker: Name,
        /// The back-end.
        backend: &'static str,
    },
}

/// Events buffered per subscriber; a subscriber that falls further behind loses events
/// rather than slowing the breaker.
pub const SUBSCRIPTION_CAPACITY: usize = 1024;

/// The subscribers of one breaker.
#[derive(Debug, Default)]
pub(crate) struct EventHub {
    count: AtomicUsize,
    senders: Mutex<Vec<mpsc::Sender<Event>>>,
}

impl EventHub {
    pub(crate) fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_CAPACITY);
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        senders.push(tx);
        self.count.store(senders.len(), Ordering::Release);
        Subscription { rx }
    }

    /// Whether anyone listens: checked before building an event on the hot path.
    pub(crate) fn active(&self) -> bool {
        self.count.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn emit(&self, event: Event) {
        if !self.active() {
            return;
        }
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        senders.retain_mut(|tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(e) => !e.is_disconnected(),
        });
        self.count.store(senders.len(), Ordering::Release);
    }
}

/// A subscription to a breaker's events: a [`Stream`], or read without a runtime through
/// [`Subscription::try_next`] and [`Subscription::next_blocking`].
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Event>,
}

impl Subscription {
    /// The next event if one is waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Waits for the next event on this thread; `None` when the breaker is gone.
    pub fn next_blocking(&mut self) -> Option<Event> {
        futures_executor::block_on(self.rx.next())
    }

    /// Every event waiting now.
    pub fn drain(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.try_next()).collect()
    }
}

impl Stream for Subscription {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_next_unpin(cx)
    }
}
