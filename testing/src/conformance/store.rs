//! Conformance cases of the store contract: what `Driver` promises, tested directly.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use breaker_core::{Change, ChangeSink, Driver, Name, Revision, Swap, Updated, Versioned};

use super::{Expiry, Harness, age_store};
use crate::unique_name;

const T: Duration = Duration::from_secs(5);

fn name(prefix: &str) -> Name {
    Name::new(&unique_name(prefix)).expect("a valid name")
}

fn swapped(s: Swap) -> u64 {
    match s {
        Swap::Swapped { version } => version,
        other => panic!("expected a swap, got {other:?}"),
    }
}

/// A name never written loads as nothing.
pub async fn load_absent_is_none<H: Harness>(h: Arc<H>) {
    let d = h.driver().await;
    assert_eq!(d.load(&name("absent"), T).await.unwrap(), None);
}

/// A value created with `expected: None` loads back with its version.
pub async fn create_then_load<H: Harness>(h: Arc<H>) {
    let d = h.driver().await;
    let n = name("create");
    let v = swapped(
        d.compare_and_swap(&n, None, b"one".to_vec(), None, T)
            .await
            .unwrap(),
    );
    let got = d.load(&n, T).await.unwrap().expect("stored");
    assert_eq!((got.version, got.value.as_slice()), (v, &b"one"[..]));
    let other = h.driver().await;
    assert_eq!(
        other.load(&n, T).await.unwrap(),
        Some(got),
        "another connection sees it"
    );
}

/// Creating over an existing value conflicts and returns the current value.
pub async fn create_conflicts_when_present<H: Harness>(h: Arc<H>) {
    let d = h.driver().await;
    let n = name("conflict");
    let v = swapped(
        d.compare_and_swap(&n, None, b"first".to_vec(), None, T)
            .await
            .unwrap(),
    );
    match d
        .compare_and_swap(&n, None, b"second".to_vec(), None, T)
        .await
        .unwrap()
    {
        Swap::Conflict { current: Some(cur) } => {
            assert_eq!((cur.version, cur.value.as_slice()), (v, &b"first"[..]))
        }
        other => panic!("expected a conflict with the current value, got {other:?}"),
    }
    assert_eq!(d.load(&n, T).await.unwrap().unwrap().value, b"first");
}

/// A swap expecting an old version conflicts, returns the current value, and writes nothing;
/// a swap expecting a version on an absent name conflicts with nothing.
pub async fn stale_version_conflicts_with_current<H: Harness>(h: Arc<H>) {
    let d = h.driver().await;
    let n = name("stale");
    let v1 = swapped(
        d.compare_and_swap(&n, None, b"a".to_vec(), None, T)
            .await
            .unwrap(),
    );
    let v2 = swapped(
        d.compare_and_swap(&n, Some(v1), b"b".to_vec(), None, T)
            .await
            .unwrap(),
    );
    match d
        .compare_and_swap(&n, Some(v1), b"c".to_vec(), None, T)
        .await
        .unwrap()
    {
        Swap::Conflict { current: Some(cur) } => {
            assert_eq!((cur.version, cur.value.as_slice()), (v2, &b"b"[..]))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        d.compare_and_swap(&name("nothing"), Some(v2), b"x".to_vec(), None, T)
            .await
            .unwrap(),
        Swap::Conflict { current: None }
    );
}

/// Versions grow with every write, and a name that expired is never given an old version.
pub async fn versions_only_grow<H: Harness>(h: Arc<H>) {
    let d = h.driver().await;
    let n = name("versions");
    let mut last = None;
    let mut seen = Vec::new();
    for i in 0..5u8 {
        let v = swapped(
            d.compare_and_swap(&n, last, vec![i], None, T)
                .await
                .unwrap(),
        );
        assert!(last.is_none_or(|l| v > l), "{v} after {last:?}");
        seen.push(v);
        last = Some(v);
    }
    let short = Duration::from_millis(300);
    let v = swapped(
        d.compare_and_swap(&n, last, vec![9], Some(short), T)
            .await
            .unwrap(),
    );
    wait_gone(&*h, &d, &n).await;
    let again = swapped(
        d.compare_and_swap(&n, None, vec![1], None, T)
            .await
            .unwrap(),
    );
    assert!(again > v, "version {again} reused after expiry of {v}");
}

/// Waits until `n` is gone, moving the store's expiry forward.
async fn wait_gone<H: Harness>(h: &H, d: &H::Driver, n: &Name) {
    let expiry = h.expiry();
    for _ in 0..100 {
        age_store(&expiry, Duration::from_millis(100)).await;
        if d.load(n, T).await.unwrap().is_none() {
            return;
        }
    }
    panic!("{n} did not expire");
}

/// A value written with a TTL is gone once it passes, and a swap can create it again.
pub async fn expiry_removes_records<H: Harness>(h: Arc<H>) {
    let d = h.driver().await;
    let n = name("expiry");
    let ttl = Duration::from_millis(400);
    swapped(
        d.compare_and_swap(&n, None, b"v".to_vec(), Some(ttl), T)
            .await
            .unwrap(),
    );
    if let Expiry::Manual(clock) = h.expiry() {
        clock.advance(Duration::from_millis(399));
        assert!(
            d.load(&n, T).await.unwrap().is_some(),
            "alive before its TTL"
        );
    }
    wait_gone(&*h, &d, &n).await;
    swapped(
        d.compare_and_swap(&n, None, b"w".to_vec(), None, T)
            .await
            .unwrap(),
    );
}

/// A value written without a TTL outlives one written with a TTL.
pub async fn without_ttl_records_stay<H: Harness>(h: Arc<H>) {
    let d = h.driver().await;
    let (keep, lapse) = (name("keep"), name("lapse"));
    swapped(
        d.compare_and_swap(&keep, None, b"k".to_vec(), None, T)
            .await
            .unwrap(),
    );
    let ttl = Some(Duration::from_millis(300));
    swapped(
        d.compare_and_swap(&lapse, None, b"l".to_vec(), ttl, T)
            .await
            .unwrap(),
    );
    wait_gone(&*h, &d, &lapse).await;
    age_store(&h.expiry(), Duration::from_millis(200)).await;
    assert!(d.load(&keep, T).await.unwrap().is_some());
}

/// Many tasks incrementing one counter with compare-and-swap add up exactly: no lost
/// update, no double write.
pub async fn concurrent_swaps_add_up<H: Harness>(h: Arc<H>) {
    const TASKS: u64 = 8;
    const EACH: u64 = 25;
    let n = name("counter");
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let d = h.driver().await;

        handles.push(tokio::spawn(async move {
            let mut wins = 0;
            let mut current = d.load(&n, T).await.unwrap();
            while wins < EACH {
                let (expected, count) = match &current {
                    Some(v) => (Some(v.version), decode(&v.value)),
                    None => (None, 0),
                };
                match d
                    .compare_and_swap(&n, expected, (count + 1).to_string().into_bytes(), None, T)
                    .await
                    .unwrap()
                {
                    Swap::Swapped { version } => {
                        wins += 1;
                        current = Some(breaker_core::Versioned::new(
                            version,
                            (count + 1).to_string().into_bytes(),
                        ));
                    }
                    Swap::Conflict { current: now } => current = now,
                    _ => unreachable!(),
                }
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let d = h.driver().await;
    let total = decode(&d.load(&n, T).await.unwrap().unwrap().value);
    assert_eq!(total, TASKS * EACH);
}

/// `update` shows the reviser the record stored now and writes what it makes of it: a kept
/// record stays as it is (nothing written, no version used), a revision is written with a
/// new version, and the next update is shown it.
pub async fn update_shows_the_record_and_writes_the_revision<H: Harness>(h: Arc<H>) {
    let d = h.driver().await;
    let n = name("updated");
    let mut shown = Vec::new();
    let mut keep = |current: Option<Versioned>| {
        shown.push(current);
        Revision::Keep
    };
    assert_eq!(d.update(&n, &mut keep, T).await.unwrap(), Updated::Kept);
    assert_eq!(shown, vec![None], "nothing stored is shown as nothing");
    assert!(
        d.load(&n, T).await.unwrap().is_none(),
        "a kept absence writes nothing"
    );

    let mut create = |_: Option<Versioned>| Revision::Write {
        value: b"1".to_vec(),
        ttl: None,
    };
    let Updated::Written { version: first } = d.update(&n, &mut create, T).await.unwrap() else {
        panic!("a revision is written");
    };
    let stored = d.load(&n, T).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.value.as_slice()),
        (first, &b"1"[..])
    );

    let mut seen = None;
    let mut bump = |current: Option<Versioned>| {
        let count = current.as_ref().map_or(0, |v| decode(&v.value));
        seen = current.map(|v| v.version);
        Revision::Write {
            value: (count + 1).to_string().into_bytes(),
            ttl: None,
        }
    };
    let Updated::Written { version: second } = d.update(&n, &mut bump, T).await.unwrap() else {
        panic!("a revision is written");
    };
    assert_eq!(seen, Some(first), "the update is shown the record stored");
    assert!(second > first, "versions only grow");
    let stored = d.load(&n, T).await.unwrap().unwrap();
    assert_eq!((stored.version, decode(&stored.value)), (second, 2));

    let mut keep = |_: Option<Versioned>| Revision::Keep;
    assert_eq!(d.update(&n, &mut keep, T).await.unwrap(), Updated::Kept);
    assert_eq!(d.load(&n, T).await.unwrap().unwrap().version, second);
}

/// Many drivers' updates of one counter add up exactly, each revising the record that won
/// before it; on a driver that [updates atomically](Driver::updates_atomically) each update
/// revises once: writers take turns and never conflict.
pub async fn concurrent_updates_add_up<H: Harness>(h: Arc<H>) {
    const TASKS: u64 = 8;
    const EACH: u64 = 25;
    let n = name("update-counter");
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let d = h.driver().await;
        handles.push(tokio::spawn(async move {
            let mut revisions = 0;
            for _ in 0..EACH {
                let mut bump = |current: Option<Versioned>| {
                    revisions += 1;
                    let count = current.map_or(0, |v| decode(&v.value));
                    Revision::Write {
                        value: (count + 1).to_string().into_bytes(),
                        ttl: None,
                    }
                };
                let updated = d.update(&n, &mut bump, T).await.unwrap();
                assert!(matches!(updated, Updated::Written { .. }));
            }
            (revisions, d.updates_atomically())
        }));
    }
    for handle in handles {
        let (revisions, atomic) = handle.await.unwrap();
        if atomic {
            assert_eq!(revisions, EACH, "an atomic update revises once");
        } else {
            assert!(revisions >= EACH);
        }
    }
    let d = h.driver().await;
    let total = decode(&d.load(&n, T).await.unwrap().unwrap().value);
    assert_eq!(
        total,
        TASKS * EACH,
        "no update is lost, none is applied twice"
    );
}

fn decode(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes).unwrap().parse().unwrap()
}

/// `list` shows every live record under the driver's prefix.
pub async fn list_shows_records<H: Harness>(h: Arc<H>) {
    let d = h.driver().await;
    let names: Vec<Name> = (0..3).map(|_| name("listed")).collect();
    for n in &names {
        swapped(
            d.compare_and_swap(n, None, n.as_str().as_bytes().to_vec(), None, T)
                .await
                .unwrap(),
        );
    }
    let listed = d.list(T).await.unwrap();
    let found: HashSet<&Name> = listed.iter().map(|(n, _)| n).collect();
    for n in &names {
        assert!(found.contains(n), "{n} missing from list");
        let (_, v) = listed.iter().find(|(m, _)| m == n).unwrap();
        assert_eq!(v.value, n.as_str().as_bytes());
    }
}

/// Changes a watch delivered, and the sink that collects them.
fn collected() -> (Arc<Mutex<Vec<Change>>>, ChangeSink) {
    let seen: Arc<Mutex<Vec<Change>>> = Arc::default();
    let sink: ChangeSink = {
        let seen = seen.clone();
        Arc::new(move |c| seen.lock().unwrap().push(c))
    };
    (seen, sink)
}

/// Waits (up to five seconds) until `seen` holds a change to `version`.
async fn until_delivered(seen: &Mutex<Vec<Change>>, version: u64) {
    for _ in 0..500 {
        if seen
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.record.as_ref().is_some_and(|r| r.version == version))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A driver that can watch delivers every later write of the watched name, and nothing of
/// other names. A driver that cannot watch says so with `Ok(None)`.
pub async fn watch_delivers_changes<H: Harness>(h: Arc<H>) {
    let d = h.driver().await;
    let n = name("watched");
    let (seen, sink) = collected();
    let Some(watch) = d.watch(&n, sink, T).await.unwrap() else {
        return;
    };
    assert!(watch.is_alive());
    let writer = h.driver().await;
    let v1 = swapped(
        writer
            .compare_and_swap(&n, None, b"1".to_vec(), None, T)
            .await
            .unwrap(),
    );
    let v2 = swapped(
        writer
            .compare_and_swap(&n, Some(v1), b"2".to_vec(), None, T)
            .await
            .unwrap(),
    );
    swapped(
        writer
            .compare_and_swap(&name("other"), None, b"x".to_vec(), None, T)
            .await
            .unwrap(),
    );
    until_delivered(&seen, v2).await;
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|c| c.name == n), "only the watched name");
    let last = seen
        .last()
        .expect("changes delivered")
        .record
        .clone()
        .expect("a value");
    assert_eq!((last.version, last.value.as_slice()), (v2, &b"2"[..]));
}

/// The last watch of a driver ends and another begins at once (a breaker dropped, the next
/// built): the new one is alive when `watch` returns and gets the next write.
pub async fn a_watch_begun_as_the_last_one_ends_delivers_changes<H: Harness>(h: Arc<H>) {
    let d = h.driver().await;
    let n = name("rewatched");
    let (_, first) = collected();
    let Some(watch) = d.watch(&n, first, T).await.unwrap() else {
        return;
    };
    drop(watch);
    let (seen, sink) = collected();
    let watch = d
        .watch(&n, sink, T)
        .await
        .unwrap()
        .expect("the driver watched before");
    assert!(watch.is_alive(), "alive when watch returns");
    let v1 = swapped(
        h.driver()
            .await
            .compare_and_swap(&n, None, b"1".to_vec(), None, T)
            .await
            .unwrap(),
    );
    until_delivered(&seen, v1).await;
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|c| c.record.as_ref().is_some_and(|r| r.version == v1)),
        "the write after the new watch began was delivered"
    );
}
