//! `breaker watch`: every transition of every breaker under the prefix, as it happens. It
//! follows the driver's own push for each breaker (Redis pub/sub, the etcd watch, SQLite's
//! change polling), finds breakers that appear by listing every second, and judges each
//! record's effective state by the clock every `--every`, so that an open breaker whose open
//! period ends is shown turning half-open when it does, though nothing was written.
//!
//! A line per transition: wall-clock time, breaker, from -> to, generation, and what made it:
//! the agent whose write it was, or the clock. Where the back-end delivered only the latest of
//! several writes, the line says how many generations it skipped.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use shared_breaker::machine::effective_state;
use shared_breaker::{Change, ChangeSink, DynDriver, Name, Record, RunningTimers, State, Watch};

/// How often the names under the prefix are listed again, for breakers that appear.
const RELIST: Duration = Duration::from_secs(1);

/// One line of `watch`.
#[derive(Debug, Serialize)]
pub struct Line {
    /// Wall-clock time, RFC 3339 with milliseconds.
    pub at: String,
    /// The breaker.
    pub breaker: String,
    /// The state before (`None` on the first line of a breaker).
    pub from: Option<&'static str>,
    /// The state now.
    pub to: &'static str,
    /// The record's generation.
    pub generation: u64,
    /// What made it: `write` (an agent's write, see `writer`), `clock` (the open period
    /// ended), or `now` (the state when the watch started or the breaker appeared).
    pub by: &'static str,
    /// The agent that wrote the record, in hex (`None` when unknown or `by` is `clock`).
    pub writer: Option<String>,
    /// Transitions between `from` and `to` that the back-end did not deliver one by one.
    pub skipped: u64,
}

impl Line {
    fn text(&self) -> String {
        let from = self.from.map_or_else(String::new, |f| format!("{f} -> "));
        let by = match (&self.writer, self.by) {
            (Some(w), "write") => format!("written by agent {w}"),
            (_, by) => format!("by {by}"),
        };
        let skipped = match self.skipped {
            0 => String::new(),
            1 => " (after 1 more transition, delivered together)".to_owned(),
            n => format!(" (after {n} more transitions, delivered together)"),
        };
        format!(
            "{}  {:<32} {from}{}  generation {}  {by}{skipped}\n",
            self.at, self.breaker, self.to, self.generation
        )
    }
}

/// What the watch last showed of a breaker.
struct Seen {
    record: Option<Record>,
    state: State,
    generation: u64,
}

/// Watches every breaker under `driver`'s prefix until `duration` passes (or forever),
/// writing each line with `emit`.
pub fn watch(
    driver: &Arc<dyn DynDriver>,
    timeout: Duration,
    duration: Option<Duration>,
    every: Duration,
    emit: &mut dyn FnMut(&Line),
) -> Result<(), String> {
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<Change>();
    let mut watches: HashMap<Name, Option<Watch>> = HashMap::new();
    let mut seen: HashMap<Name, Seen> = HashMap::new();
    let timers = driver.keeps_timers();
    let mut listed_at: Option<Instant> = None;
    loop {
        if listed_at.is_none_or(|at| at.elapsed() >= RELIST) {
            listed_at = Some(Instant::now());
            let mut records =
                futures_executor::block_on(driver.list(timeout)).map_err(|e| e.to_string())?;
            records.sort_by_key(|(name, _)| *name);
            for (name, stored) in records {
                if watches.contains_key(&name) {
                    continue;
                }
                let tx = tx.clone();
                let sink: ChangeSink = Arc::new(move |change: Change| {
                    let _ = tx.send(change);
                });
                let watch = futures_executor::block_on(driver.watch(&name, sink, timeout))
                    .map_err(|e| e.to_string())?;
                watches.insert(name, watch);
                // What it holds now, unless the push already told.
                if !seen.contains_key(&name) {
                    observe(&mut seen, name, Some(stored), timers, emit);
                }
            }
        }
        let tick = every.min(RELIST);
        match rx.recv_timeout(tick) {
            Ok(change) => observe(&mut seen, change.name, change.record, timers, emit),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("the watch holds a sender"),
        }
        while let Ok(change) = rx.try_recv() {
            observe(&mut seen, change.name, change.record, timers, emit);
        }
        judge_by_clock(&mut seen, emit);
        if duration.is_some_and(|d| started.elapsed() >= d) {
            return Ok(());
        }
    }
}

/// The wall-clock time now, as lines show it.
fn wall_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The host clock as records judge it.
fn record_now() -> shared_breaker::Timestamp {
    shared_breaker::Clock::now(&shared_breaker::SystemClock)
}

/// Takes a stored value of `name` (pushed or listed) and shows what changed.
fn observe(
    seen: &mut HashMap<Name, Seen>,
    name: Name,
    stored: Option<shared_breaker::Versioned>,
    timers: bool,
    emit: &mut dyn FnMut(&Line),
) {
    let record = stored.and_then(|v| {
        let mut rec = Record::decode(&v.value).ok()?;
        rec.timers = timers.then(|| RunningTimers::of(rec.generation, &v.timers));
        Some(rec)
    });
    let now = record_now();
    let (state, generation, writer) = match &record {
        Some(rec) => (effective_state(rec, now), rec.generation, rec.writer),
        // Gone (expired or deleted): a breaker nobody used for its idle expiry is closed.
        None => (
            State::Closed,
            seen.get(&name).map_or(0, |s| s.generation),
            0,
        ),
    };
    let before = seen.get(&name);
    let changed = before.is_none_or(|b| b.state != state || b.generation != generation);
    if changed {
        let (from, skipped) = match before {
            Some(b) => (
                Some(b.state.as_str()),
                generation.saturating_sub(b.generation).saturating_sub(1),
            ),
            None => (None, 0),
        };
        emit(&Line {
            at: wall_now(),
            breaker: name.as_str().to_owned(),
            from,
            to: state.as_str(),
            generation,
            by: if before.is_none() { "now" } else { "write" },
            writer: (writer != 0 && before.is_some()).then(|| format!("{writer:x}")),
            skipped,
        });
    }
    seen.insert(
        name,
        Seen {
            record,
            state,
            generation,
        },
    );
}

/// Shows the transitions the clock makes: an open breaker whose open period ended reads
/// half-open, as every agent would report it, though nothing was written.
fn judge_by_clock(seen: &mut HashMap<Name, Seen>, emit: &mut dyn FnMut(&Line)) {
    let now = record_now();
    for (name, s) in seen.iter_mut() {
        let Some(rec) = &s.record else { continue };
        let state = effective_state(rec, now);
        if state != s.state {
            emit(&Line {
                at: wall_now(),
                breaker: name.as_str().to_owned(),
                from: Some(s.state.as_str()),
                to: state.as_str(),
                generation: s.generation,
                by: "clock",
                writer: None,
                skipped: 0,
            });
            s.state = state;
        }
    }
}

/// `watch` as the CLI prints it: text, or a JSON object per line.
pub fn print(json: bool) -> impl FnMut(&Line) {
    move |line| {
        if json {
            crate::emit(&format!(
                "{}\n",
                serde_json::to_string(line).expect("a line serialises")
            ));
        } else {
            crate::emit(&line.text());
        }
    }
}
