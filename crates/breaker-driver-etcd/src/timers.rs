//! Breaker timers as etcd keys: each running timer (an open period, a probe lease) is a key
//! under `PREFIX/NAME/` attached to an etcd lease of its duration, so the cluster's leader
//! ends it and every agent sees it end through the watch, whatever its own clock says.
//!
//! Layout: `PREFIX/NAME/open/GENERATION` and `PREFIX/NAME/probe/GENERATION/LEASE`. Names
//! cannot hold `/`, so `PREFIX/NAME/` holds the timers of exactly one breaker and no record
//! key (`PREFIX/NAME`) is ever mistaken for a timer.

use std::time::Duration;

use breaker_core::{Name, Timer};
use etcd_client::KeyValue;

/// The key prefix of `record_key`'s timers; of a driver's keys, given its prefix.
pub(crate) fn dir_of(record_key: &str) -> String {
    format!("{record_key}/")
}

/// The key of `timer` among the timers under `dir` (see [`dir_of`]).
pub(crate) fn key(dir: &str, timer: &Timer) -> String {
    match *timer {
        Timer::OpenPeriod { generation } => format!("{dir}open/{generation}"),
        Timer::ProbeLease { generation, lease } => format!("{dir}probe/{generation}/{lease}"),
        // `Timer` is non-exhaustive; a kind this build does not know gets a key no parse
        // accepts, so it never ends a deadline it does not know.
        _ => format!("{dir}unknown"),
    }
}

/// The timer a key under a breaker's timer prefix stands for (`rest`: the key after it).
pub(crate) fn parse(rest: &str) -> Option<Timer> {
    let mut parts = rest.split('/');
    let timer = match (parts.next()?, parts.next(), parts.next()) {
        ("open", Some(generation), None) => Timer::OpenPeriod {
            generation: generation.parse().ok()?,
        },
        ("probe", Some(generation), Some(lease)) => Timer::ProbeLease {
            generation: generation.parse().ok()?,
            lease: lease.parse().ok()?,
        },
        _ => return None,
    };
    parts.next().is_none().then_some(timer)
}

/// An etcd lease TTL for a timer of `duration`: whole seconds, rounded up so that a timer
/// never ends early, and at least one (etcd raises it to its own minimum besides).
pub(crate) fn ttl_seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis().div_ceil(1_000))
        .unwrap_or(i64::MAX)
        .max(1)
}

/// What a key under the driver's prefix stands for.
pub(crate) enum Key {
    /// A breaker's record.
    Record(Name),
    /// One of a breaker's timers.
    Timer(Name, Timer),
}

impl Key {
    /// `rest`: the key after the driver's prefix. Keys of neither shape are not ours.
    pub(crate) fn parse(rest: &str) -> Option<Key> {
        match rest.split_once('/') {
            None => Name::new(rest).ok().map(Key::Record),
            Some((name, timer)) => Some(Key::Timer(Name::new(name).ok()?, parse(timer)?)),
        }
    }

    /// The key of `kv`, stored under `dir` (the driver's prefix), when it is one of ours. A
    /// timer key put without an etcd lease (`put`: the key is being or was written, not
    /// deleted) was not put by a breaker, would never end, and is no timer: a foreign writer
    /// could otherwise hold a breaker open for good.
    pub(crate) fn of(dir: &str, kv: &KeyValue, put: bool) -> Option<Key> {
        let key = Key::parse(std::str::from_utf8(kv.key()).ok()?.strip_prefix(dir)?)?;
        match key {
            Key::Timer(..) if put && kv.lease() == 0 => None,
            key => Some(key),
        }
    }

    pub(crate) fn name(&self) -> Name {
        match self {
            Key::Record(name) | Key::Timer(name, _) => *name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let dir = dir_of("breaker/ledger");
        for timer in [
            Timer::OpenPeriod { generation: 7 },
            Timer::ProbeLease {
                generation: 8,
                lease: 2,
            },
        ] {
            let key = key(&dir, &timer);
            assert_eq!(parse(key.strip_prefix(&dir).unwrap()), Some(timer), "{key}");
        }
    }

    #[test]
    fn foreign_keys_are_no_timers() {
        for rest in [
            "",
            "open",
            "open/x",
            "open/1/2",
            "probe/1",
            "probe/1/2/3",
            "close/1",
            "unknown",
        ] {
            assert_eq!(parse(rest), None, "{rest:?}");
        }
    }

    fn part() -> impl proptest::strategy::Strategy<Value = String> {
        "[a-z0-9_-][a-z0-9_.:-]{0,12}"
    }

    proptest::proptest! {
        /// (prefix, name) → key is injective: a record key, or a timer key, read under a
        /// prefix is that prefix's breaker's exactly when it was written under it, so no
        /// breaker reads, lists or watches another namespace's keys. (Prefixes and names
        /// cannot hold the `/` between them.)
        #[test]
        fn keys_are_injective(p1 in part(), n1 in part(), p2 in part(), n2 in part()) {
            let record = format!("{}{n1}", dir_of(&p1));
            let timer = key(&dir_of(&record), &Timer::OpenPeriod { generation: 1 });
            let read = |key: &str| key.strip_prefix(&dir_of(&p2)).and_then(Key::parse).map(|k| k.name());
            let own = (p1 == p2).then(|| Name::new(&n1).unwrap());
            proptest::prop_assert_eq!(read(&record), own);
            proptest::prop_assert_eq!(read(&timer), own);
            let other = format!("{}{n2}", dir_of(&p2));
            proptest::prop_assert_eq!(record == other, (&p1, &n1) == (&p2, &n2));
        }
    }

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1_000)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(ttl_seconds(Duration::MAX), i64::MAX);
    }
}
