//! A `tower` layer: wraps any `Service` in a breaker. Calls are admitted in `call`, never in
//! `poll_ready`, so readiness never takes a half-open probe permit that no call then uses.
//! Results are classified by the layer's classifier; [`HttpClassifier`] is ready-made for
//! HTTP responses.
//!
//! Like tower's own middleware (`timeout`, `limit`), the service's error is
//! [`tower::BoxError`](BoxError): the inner service's error as it was, or a
//! [`Rejected`](breaker_core::Rejected) or [`BackendError`](breaker_core::BackendError) of the
//! breaker, told apart with `downcast_ref`. So a breaker layer stacks with any other layer and
//! `?` works in any function returning `BoxError`.
//!
//! ```
//! use shared_breaker::layer::{BreakerLayer, HttpClassifier};
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = shared_breaker::memory::breaker("downstream-doc", shared_breaker::Policy::default())?;
//! let service = tower::service_fn(|_req: ()| async {
//!     Ok::<_, std::io::Error>(http::Response::builder().status(503).body(()).unwrap())
//! });
//! let guarded = BreakerLayer::new(breaker, HttpClassifier::default()).layer(service);
//! let response = guarded.oneshot(()).await.map_err(|e| e.to_string())?;
//! assert_eq!(response.status(), 503, "the caller still gets the response");
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use breaker_core::{Breaker, Classifier, ErrorsAreFailures, Outcome};
use tower_layer::Layer;
use tower_service::Service;

/// The error type of tower's middleware: any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps services in a [`Breaker`], classifying results with `C`.
#[derive(Clone, Debug)]
pub struct BreakerLayer<C = ErrorsAreFailures> {
    breaker: Breaker,
    classifier: Arc<C>,
}

impl BreakerLayer {
    /// A layer whose classifier calls `Ok` a success and `Err` a failure.
    pub fn errors_are_failures(breaker: Breaker) -> Self {
        BreakerLayer::new(breaker, ErrorsAreFailures)
    }
}

impl<C> BreakerLayer<C> {
    /// A layer over `breaker` classifying with `classifier`.
    pub fn new(breaker: Breaker, classifier: C) -> Self {
        BreakerLayer {
            breaker,
            classifier: Arc::new(classifier),
        }
    }
}

impl<S, C> Layer<S> for BreakerLayer<C> {
    type Service = BreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// A service behind a breaker. Its error is a [`BoxError`]: the inner service's own error,
/// or a [`breaker_core::Rejected`] when the breaker rejected the call without calling the
/// service, or a [`breaker_core::BackendError`] when the back-end failed and the policy is to
/// fail closed.
#[derive(Clone, Debug)]
pub struct BreakerService<S, C = ErrorsAreFailures> {
    inner: S,
    breaker: Breaker,
    classifier: Arc<C>,
}

impl<S, C, Req> Service<Req> for BreakerService<S, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    Req: Send + 'static,
    C: Classifier<S::Response, S::Error> + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Only the inner service's readiness: admission waits for `call`.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // The ready service goes with this call; a clone takes its place (tower's rule for
        // services driven to readiness before `call`).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let breaker = self.breaker.clone();
        let classifier = self.classifier.clone();
        Box::pin(async move {
            breaker
                .call_with(&*classifier, move || inner.call(req))
                .await
                .map_err(breaker_core::Error::into_box_error)
        })
    }
}

/// Classifies HTTP responses: a status in the failure set (by default every 5xx) or an error
/// (a connection that failed) is a failure; other statuses, 4xx included, are successes,
/// since they say the service is up.
#[derive(Clone)]
pub struct HttpClassifier {
    failure: StatusTest,
    ignored: StatusTest,
}

/// A test of a status, shared by the classifier's clones.
type StatusTest = Arc<dyn Fn(http::StatusCode) -> bool + Send + Sync>;

impl Default for HttpClassifier {
    fn default() -> Self {
        HttpClassifier {
            failure: Arc::new(|s| s.is_server_error()),
            ignored: Arc::new(|_| false),
        }
    }
}

impl std::fmt::Debug for HttpClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClassifier").finish_non_exhaustive()
    }
}

impl HttpClassifier {
    /// Which statuses are failures (default: every 5xx). Any closure, capturing or not.
    pub fn failures(
        mut self,
        is_failure: impl Fn(http::StatusCode) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.failure = Arc::new(is_failure);
        self
    }

    /// Which statuses are ignored: neither success nor failure (default: none).
    pub fn ignored(
        mut self,
        is_ignored: impl Fn(http::StatusCode) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.ignored = Arc::new(is_ignored);
        self
    }

    /// The outcome of a status.
    pub fn outcome(&self, status: http::StatusCode) -> Outcome {
        if (self.failure)(status) {
            Outcome::Failure
        } else if (self.ignored)(status) {
            Outcome::Ignored
        } else {
            Outcome::Success
        }
    }
}

impl<B, E> Classifier<http::Response<B>, E> for HttpClassifier {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Ok(response) => self.outcome(response.status()),
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use breaker_core::{ManualClock, Policy, State, Timestamp};
    use tower::ServiceExt;

    fn response(status: u16) -> http::Response<()> {
        http::Response::builder().status(status).body(()).unwrap()
    }

    #[test]
    fn the_classifier_table() {
        let c = HttpClassifier::default();
        for (status, outcome) in [
            (200, Outcome::Success),
            (204, Outcome::Success),
            (301, Outcome::Success),
            (400, Outcome::Success),
            (404, Outcome::Success),
            (429, Outcome::Success),
            (500, Outcome::Failure),
            (502, Outcome::Failure),
            (503, Outcome::Failure),
        ] {
            let r: Result<_, ()> = Ok(response(status));
            assert_eq!(c.classify(&r), outcome, "{status}");
        }
        assert_eq!(
            c.classify(&Err::<http::Response<()>, _>("connection refused")),
            Outcome::Failure
        );
        // A capturing closure, as configuration would give.
        let too_many = http::StatusCode::TOO_MANY_REQUESTS;
        let custom = HttpClassifier::default()
            .failures(move |s| s.is_server_error() || s == too_many)
            .ignored(|s| s.is_client_error());
        assert_eq!(
            custom.outcome(http::StatusCode::TOO_MANY_REQUESTS),
            Outcome::Failure
        );
        assert_eq!(
            custom.outcome(http::StatusCode::NOT_FOUND),
            Outcome::Ignored
        );
    }

    #[tokio::test]
    async fn the_layer_trips_on_5xx_rejects_while_open_and_never_spends_probes_on_readiness() {
        let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
        let policy = Policy::builder()
            .failures_within(2, Duration::from_secs(60))
            .open_for(Duration::from_secs(5))
            .build()
            .unwrap();
        let breaker = Breaker::builder("layer-test", crate::memory::MemoryDriver::new())
            .policy(policy)
            .clock(clock.clone())
            .build()
            .unwrap();
        let hits = Arc::new(AtomicU32::new(0));
        let status = Arc::new(AtomicU32::new(503));
        let inner = {
            let (hits, status) = (hits.clone(), status.clone());
            tower::service_fn(move |_req: ()| {
                hits.fetch_add(1, Ordering::SeqCst);
                let s = status.load(Ordering::SeqCst) as u16;
                async move { Ok::<_, std::convert::Infallible>(response(s)) }
            })
        };
        let svc = BreakerLayer::new(breaker.clone(), HttpClassifier::default()).layer(inner);
        for _ in 0..2 {
            let r = svc.clone().oneshot(()).await.unwrap();
            assert_eq!(
                r.status(),
                503,
                "a failing response still reaches the caller"
            );
        }
        let rejected = svc.clone().oneshot(()).await.unwrap_err();
        let rejected = rejected
            .downcast_ref::<breaker_core::Rejected>()
            .expect("open: rejected without calling the service");
        assert_eq!(rejected.state(), State::Open);
        assert_eq!(hits.load(Ordering::SeqCst), 2);

        clock.advance(Duration::from_secs(5));
        status.store(200, Ordering::SeqCst);
        // Readiness alone, many times, takes no probe permit.
        let mut probe = svc.clone();
        for _ in 0..5 {
            std::future::poll_fn(|cx| probe.poll_ready(cx))
                .await
                .unwrap();
        }
        assert_eq!(breaker.snapshot().leases.len(), 0);
        let ok = probe.call(()).await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(
            breaker.state(),
            Some(State::Closed),
            "the probe closed the breaker"
        );
    }
}
