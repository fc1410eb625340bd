//! Conformance cases of a back-end that loses data: a store that restarted without its data,
//! and one restored from an older backup. A forced state seen before the loss is never
//! silently lost, agents whose cached versions are now ahead of the store follow what it
//! holds, and an operator's handle from before the loss never gives up on conflicts.

use std::sync::Arc;

use breaker_core::{Breaker, ManualClock, State};

use super::hostile::policy;
use super::{HostileHarness, START, agent, stored_record, two_agents};
use crate::calls::fail;
use crate::unique_name;

/// Each of `agents` flushes (writes what it holds and reads the record), then reports `state`.
async fn all_see(agents: &[&Breaker], state: State, what: &str) {
    for x in agents {
        x.flush().await.unwrap();
        assert_eq!(x.state(), Some(state), "{what}");
    }
}

/// Force-open; the store restarts without its data; a newcomer writes a record of its own
/// (a failure). The agents that obeyed the forced state write it back over the newcomer's,
/// every agent obeys it, and the handles from before the loss still reset and force it.
pub async fn a_wiped_store_keeps_the_forced_state<H: HostileHarness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("wiped");
    let (a, b) = two_agents(&*h, &name, &policy(), &clock).await;
    a.force_open().await.unwrap();
    all_see(&[&b], State::ForcedOpen, "forced").await;
    h.wipe().await;
    let lost = stored_record(&*h, &name).await;
    assert!(lost.is_none(), "the store lost it");
    let newcomer = agent(&*h, &name, &policy(), &clock).await;
    let _ = fail(&newcomer).await;
    all_see(
        &[&a, &b, &newcomer],
        State::ForcedOpen,
        "written back and obeyed",
    )
    .await;
    let stored = stored_record(&*h, &name).await.unwrap();
    assert_eq!(stored.state, State::ForcedOpen, "for the whole fleet");
    // The operator's handle from before the loss: its reset lands and reaches everyone.
    a.reset().await.expect("the reset is written");
    all_see(
        &[&b, &newcomer],
        State::Closed,
        "the reset reached every agent",
    )
    .await;
    // A fresh operator's action after the loss binds the agents whose cached versions came
    // from before it.
    let operator = agent(&*h, &name, &policy(), &clock).await;
    operator.force_closed().await.unwrap();
    all_see(&[&a, &b], State::ForcedClosed, "followed after the loss").await;
}

/// A backup of a closed breaker; the breaker then trips (newer versions, a new generation);
/// the store is restored from the backup. Every agent follows the restored record, counts
/// from it (three failures trip it again, none is dropped as stale), and an operator's
/// action on the restored store binds them all.
pub async fn a_store_restored_from_an_older_backup_is_followed<H: HostileHarness>(h: Arc<H>) {
    let clock = ManualClock::new(START);
    let name = unique_name("restored");
    let (a, b) = two_agents(&*h, &name, &policy(), &clock).await;
    let _ = fail(&a).await;
    let backup = h.back_up().await;
    for _ in 0..2 {
        let _ = fail(&a).await;
    }
    all_see(&[&b], State::Open, "tripped").await;
    h.restore(backup).await;
    all_see(&[&a, &b], State::Closed, "the restored record is followed").await;
    // The restored record held one failure; two more trip it, counted in its generation.
    let _ = fail(&b).await;
    let _ = fail(&a).await;
    assert_eq!(
        a.state(),
        Some(State::Open),
        "counts go on from the restored record"
    );
    let operator = agent(&*h, &name, &policy(), &clock).await;
    operator.force_closed().await.unwrap();
    all_see(&[&a, &b], State::ForcedClosed, "the operator binds them").await;
    a.reset().await.expect("an old handle's reset lands");
    all_see(&[&operator], State::Closed, "the reset lands").await;
}
