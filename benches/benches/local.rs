//! Local hot-path benchmarks: breaker against `recloser` and `failsafe` in the same run.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p breaker-benches`). Groups:
//! - `closed_sync`: one admitted call that succeeds, blocking API (`breaker` under the
//!   default rule, which counts no success; `breaker_counting` under one that does);
//! - `closed_async`: the same through each library's async API, in one executor loop;
//! - `open_rejection`: one call rejected by an open breaker;
//! - `two_threads`: two threads calling one breaker; the time is wall time per call, so a
//!   figure below the single-thread one means the threads scale.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::failure_policy::ConsecutiveFailures;
use failsafe::{CircuitBreaker as _, Config, StateMachine, backoff, failure_policy};
use futures_executor::block_on;
use recloser::{AsyncRecloser, Recloser};
use shared_breaker::{Breaker, Policy};

fn breaker(name: &str) -> Breaker {
    breaker_with(name, Policy::default())
}

/// A breaker under a rule that reads successes (a run of consecutive failures, which a
/// success resets), so that every success is counted: the default rule reads none, and its
/// successes are not even counted once the record exists.
fn counting_breaker(name: &str) -> Breaker {
    breaker_with(
        name,
        Policy::builder()
            .consecutive_failures(5)
            .build()
            .expect("valid"),
    )
}

fn breaker_with(name: &str, policy: Policy) -> Breaker {
    let b = shared_breaker::memory::breaker(name, policy).expect("valid");
    // The first call reads the record; the benchmark measures the steady state.
    let _ = b.call_blocking(|| Ok::<u32, ()>(0));
    b
}

fn tripped_breaker() -> Breaker {
    let policy = Policy::builder()
        .failures_within(1, Duration::from_secs(60))
        .open_for(Duration::from_secs(3600))
        .build()
        .expect("valid");
    let b = shared_breaker::memory::breaker("bench-open", policy).expect("valid");
    let _ = b.call_blocking(|| Err::<u32, ()>(()));
    assert!(
        b.call_blocking(|| Ok::<u32, ()>(1))
            .unwrap_err()
            .is_rejected()
    );
    b
}

fn recloser() -> Recloser {
    Recloser::custom()
        .error_rate(0.5)
        .closed_len(100)
        .open_wait(Duration::from_secs(3600))
        .build()
}

fn failsafe_consecutive() -> StateMachine<ConsecutiveFailures<backoff::Constant>, ()> {
    Config::new()
        .failure_policy(failure_policy::consecutive_failures(
            5,
            backoff::constant(Duration::from_secs(3600)),
        ))
        .build()
}

fn closed_sync(c: &mut Criterion) {
    let mut g = c.benchmark_group("closed_sync");
    let b = breaker("bench-closed-sync");
    g.bench_function("breaker", |bench| {
        bench.iter(|| black_box(b.call_blocking(|| Ok::<u32, ()>(black_box(1)))))
    });
    let b = counting_breaker("bench-closed-sync-counting");
    g.bench_function("breaker_counting", |bench| {
        bench.iter(|| black_box(b.call_blocking(|| Ok::<u32, ()>(black_box(1)))))
    });
    let r = recloser();
    g.bench_function("recloser", |bench| {
        bench.iter(|| black_box(r.call(|| Ok::<u32, ()>(black_box(1)))))
    });
    let f = failsafe_consecutive();
    g.bench_function("failsafe_consecutive", |bench| {
        bench.iter(|| black_box(f.call(|| Ok::<u32, ()>(black_box(1)))))
    });
    let f = Config::new().build();
    g.bench_function("failsafe_default", |bench| {
        bench.iter(|| black_box(f.call(|| Ok::<u32, ()>(black_box(1)))))
    });
    g.finish();
}

/// Times `iters` awaited calls inside one executor run, so that the executor's own cost is
/// paid once, not per call.
fn async_loop<Fut: Future<Output = ()>>(iters: u64, mut one: impl FnMut() -> Fut) -> Duration {
    block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            one().await;
        }
        start.elapsed()
    })
}

fn closed_async(c: &mut Criterion) {
    let mut g = c.benchmark_group("closed_async");
    let b = breaker("bench-closed-async");
    g.bench_function("breaker", |bench| {
        bench.iter_custom(|iters| {
            async_loop(iters, || async {
                let _ = black_box(b.call(|| async { Ok::<u32, ()>(black_box(1)) }).await);
            })
        })
    });
    let r = AsyncRecloser::from(recloser());
    g.bench_function("recloser", |bench| {
        bench.iter_custom(|iters| {
            async_loop(iters, || async {
                let _ = black_box(r.call(async { Ok::<u32, ()>(black_box(1)) }).await);
            })
        })
    });
    let f = failsafe_consecutive();
    g.bench_function("failsafe_consecutive", |bench| {
        bench.iter_custom(|iters| {
            async_loop(iters, || async {
                let _ = black_box(
                    failsafe::futures::CircuitBreaker::call(&f, async {
                        Ok::<u32, ()>(black_box(1))
                    })
                    .await,
                );
            })
        })
    });
    g.finish();
}

fn open_rejection(c: &mut Criterion) {
    let mut g = c.benchmark_group("open_rejection");
    let b = tripped_breaker();
    g.bench_function("breaker", |bench| {
        bench.iter(|| black_box(b.call_blocking(|| Ok::<u32, ()>(black_box(1)))))
    });
    let r = Recloser::custom()
        .closed_len(1)
        .open_wait(Duration::from_secs(3600))
        .build();
    for _ in 0..3 {
        let _ = r.call(|| Err::<u32, ()>(()));
    }
    assert!(matches!(
        r.call(|| Ok::<u32, ()>(1)),
        Err(recloser::Error::Rejected)
    ));
    g.bench_function("recloser", |bench| {
        bench.iter(|| black_box(r.call(|| Ok::<u32, ()>(black_box(1)))))
    });
    let f = failsafe_consecutive();
    for _ in 0..6 {
        let _ = f.call(|| Err::<u32, ()>(()));
    }
    assert!(matches!(
        f.call(|| Ok::<u32, ()>(1)),
        Err(failsafe::Error::Rejected)
    ));
    g.bench_function("failsafe_consecutive", |bench| {
        bench.iter(|| black_box(f.call(|| Ok::<u32, ()>(black_box(1)))))
    });
    g.finish();
}

/// Wall time of two threads making `iters` calls each, divided by both threads' calls.
fn two_threads(iters: u64, call: impl Fn() + Send + Sync + 'static) -> Duration {
    let call = Arc::new(call);
    let start = Instant::now();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let call = call.clone();
            std::thread::spawn(move || {
                for _ in 0..iters {
                    call();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("bench thread");
    }
    start.elapsed() / 2
}

fn two_threads_closed(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads");
    for (label, b) in [
        ("breaker", breaker("bench-two-threads")),
        (
            "breaker_counting",
            counting_breaker("bench-two-threads-counting"),
        ),
    ] {
        g.bench_function(label, |bench| {
            bench.iter_custom(|iters| {
                let b = b.clone();
                two_threads(iters, move || {
                    let _ = black_box(b.call_blocking(|| Ok::<u32, ()>(black_box(1))));
                })
            })
        });
    }
    let r = Arc::new(recloser());
    g.bench_function("recloser", |bench| {
        bench.iter_custom(|iters| {
            let r = r.clone();
            two_threads(iters, move || {
                let _ = black_box(r.call(|| Ok::<u32, ()>(black_box(1))));
            })
        })
    });
    let f = failsafe_consecutive();
    g.bench_function("failsafe_consecutive", |bench| {
        bench.iter_custom(|iters| {
            let f = f.clone();
            two_threads(iters, move || {
                let _ = black_box(f.call(|| Ok::<u32, ()>(black_box(1))));
            })
        })
    });
    let d = Config::new().build();
    g.bench_function("failsafe_default", |bench| {
        bench.iter_custom(|iters| {
            let d = d.clone();
            two_threads(iters, move || {
                let _ = black_box(d.call(|| Ok::<u32, ()>(black_box(1))));
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = closed_sync, closed_async, open_rejection, two_threads_closed
}
criterion_main!(benches);
