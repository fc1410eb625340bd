//! The API as a user meets it: a breaker-level classifier, a permit that moves into a
//! spawned task, and errors that compose with `?` and `BoxError`.
#![cfg(feature = "memory")]

use std::time::Duration;

use shared_breaker::memory::MemoryDriver;
use shared_breaker::{Breaker, Error, ManualClock, Outcome, Policy, State, Timestamp};

fn breaker(name: &str) -> shared_breaker::BreakerBuilder {
    let policy = Policy::builder()
        .failures_within(2, Duration::from_secs(60))
        .open_for(Duration::from_secs(5))
        .build()
        .unwrap();
    Breaker::builder(name, MemoryDriver::new())
        .policy(policy)
        .clock(ManualClock::new(Timestamp::from_millis(1_000_000)))
}

#[test]
fn the_builders_classifier_judges_plain_calls() {
    let b = breaker("classified")
        .classifier(|r: &Result<u16, std::io::Error>| match r {
            Ok(status) if *status >= 500 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        })
        .build()
        .unwrap();
    for _ in 0..5 {
        let not_found =
            b.call_blocking(|| Err::<u16, _>(std::io::Error::from(std::io::ErrorKind::NotFound)));
        assert!(
            matches!(not_found, Err(Error::Call(_))),
            "the caller gets its error"
        );
    }
    assert_eq!(
        b.state(),
        Some(State::Closed),
        "not-found is ignored, as configured"
    );
    // A 503 "succeeded" as a request, and still counts as a failure.
    assert_eq!(
        b.call_blocking(|| Ok::<u16, std::io::Error>(503)).unwrap(),
        503
    );
    assert_eq!(
        b.call_blocking(|| Ok::<u16, std::io::Error>(503)).unwrap(),
        503
    );
    // The failures went to the back-end without the calls waiting; wait for them here.
    b.written_blocking();
    assert_eq!(b.state(), Some(State::Open));
    // A result of another type is judged as by default.
    assert!(
        b.call_blocking(|| Ok::<(), ()>(()))
            .unwrap_err()
            .is_rejected()
    );
}

#[tokio::test]
async fn an_owned_permit_moves_into_a_spawned_task() {
    let b = breaker("owned").build().unwrap();
    for _ in 0..2 {
        let permit = b.acquire_owned().await.unwrap();
        tokio::spawn(async move { permit.failure().await })
            .await
            .unwrap();
    }
    b.written().await;
    assert_eq!(
        b.state(),
        Some(State::Open),
        "both failures reported from the tasks"
    );
    // Dropped in a task, unreported: ignored, as a borrowed permit would be.
    b.reset().await.unwrap();
    let permit = b.acquire_owned().await.unwrap();
    std::thread::spawn(move || drop(permit)).join().unwrap();
    b.flush().await.unwrap();
    assert_eq!(
        b.snapshot().buckets.len(),
        0,
        "an ignored call counts nothing"
    );
}

#[test]
fn errors_compose_with_question_mark_and_box_error() {
    fn boxed(b: &Breaker) -> Result<(), tower::BoxError> {
        b.call_blocking(|| Err::<(), tower::BoxError>("refused".into()))?;
        Ok(())
    }
    let b = breaker("boxed").build().unwrap();
    let e = boxed(&b).unwrap_err();
    assert_eq!(e.to_string(), "refused");
    let _ = boxed(&b);
    let e = boxed(&b).unwrap_err();
    let rejected = e
        .downcast_ref::<Error<tower::BoxError>>()
        .expect("a breaker error");
    assert!(rejected.is_rejected(), "{e}");
}
