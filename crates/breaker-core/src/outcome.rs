//! Call outcomes, the classifier that maps a call's result to one, and the breaker's own
//! default classifiers.

use std::any::Any;
use std::sync::Arc;

/// How a protected call ended, as far as the breaker is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The service did its job.
    Success,
    /// The service failed; counts towards tripping.
    Failure,
    /// Neither: cancelled, or an error that says nothing about the service's health (a
    /// caller's bad request, say). Changes no counter and gives back a probe permit.
    Ignored,
}

/// Maps a call's result to an [`Outcome`].
///
/// Any `Fn(&Result<T, E>) -> Outcome` is a classifier, so an HTTP client can call a response
/// with status 503 a failure although the request itself succeeded.
pub trait Classifier<T, E>: Send + Sync {
    /// The outcome of `result`.
    fn classify(&self, result: &Result<T, E>) -> Outcome;
}

impl<T, E, F> Classifier<T, E> for F
where
    F: Fn(&Result<T, E>) -> Outcome + Send + Sync,
{
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// The default classifier: `Ok` is a success, `Err` a failure.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorsAreFailures;

impl<T, E> Classifier<T, E> for ErrorsAreFailures {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// One default classifier, erased: it answers for results of its own type only.
type Erased = Arc<dyn Fn(&dyn Any) -> Option<Outcome> + Send + Sync>;

/// The classifiers a breaker was built with ([`crate::BreakerBuilder::classifier`]), used by
/// `call` and `call_blocking`: each answers for results of one type, the first that does
/// decides, and a result of a type none answers for is classified as [`ErrorsAreFailures`]
/// does. `call_with` takes a classifier of its own instead.
///
/// One pointer, null without any (the common case), so that it fits the first cache line of
/// a breaker beside the rest of what a successful call reads.
#[derive(Clone, Default)]
#[expect(
    clippy::box_collection,
    reason = "one thin pointer where a Vec is three words and a boxed slice two"
)]
pub(crate) struct DefaultClassifiers(Option<Box<Vec<Erased>>>);

impl DefaultClassifiers {
    /// Adds `classifier` for results of type `Result<T, E>`.
    pub(crate) fn add<T: 'static, E: 'static>(
        &mut self,
        classifier: impl Classifier<T, E> + 'static,
    ) {
        self.0
            .get_or_insert_default()
            .push(Arc::new(move |result: &dyn Any| {
                result
                    .downcast_ref::<Result<T, E>>()
                    .map(|r| classifier.classify(r))
            }));
    }
}

impl std::fmt::Debug for DefaultClassifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DefaultClassifiers({})",
            self.0.as_ref().map_or(0, |all| all.len())
        )
    }
}

impl<T: 'static, E: 'static> Classifier<T, E> for DefaultClassifiers {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match &self.0 {
            None => ErrorsAreFailures.classify(result),
            Some(all) => all
                .iter()
                .find_map(|c| c(result))
                .unwrap_or_else(|| ErrorsAreFailures.classify(result)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_classifier_maps_ok_and_err() {
        assert_eq!(
            ErrorsAreFailures.classify(&Ok::<u8, u8>(1)),
            Outcome::Success
        );
        assert_eq!(
            ErrorsAreFailures.classify(&Err::<u8, u8>(1)),
            Outcome::Failure
        );
    }

    #[test]
    fn closures_classify_values() {
        let status = |r: &Result<u16, ()>| match r {
            Ok(s) if *s >= 500 => Outcome::Failure,
            Ok(s) if *s >= 400 => Outcome::Ignored,
            Ok(_) => Outcome::Success,
            Err(()) => Outcome::Failure,
        };
        assert_eq!(status.classify(&Ok(503)), Outcome::Failure);
        assert_eq!(status.classify(&Ok(404)), Outcome::Ignored);
        assert_eq!(status.classify(&Ok(200)), Outcome::Success);
    }

    #[test]
    fn default_classifiers_answer_for_their_own_type_only() {
        let mut defaults = DefaultClassifiers::default();
        defaults.add(|r: &Result<u16, std::io::Error>| match r {
            Ok(s) if *s >= 500 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        });
        assert_eq!(
            defaults.classify(&Ok::<u16, std::io::Error>(503)),
            Outcome::Failure
        );
        let not_found = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(
            defaults.classify(&Err::<u16, _>(not_found)),
            Outcome::Ignored
        );
        // Another result type: as `ErrorsAreFailures` would.
        assert_eq!(defaults.classify(&Ok::<u8, ()>(1)), Outcome::Success);
        assert_eq!(defaults.classify(&Err::<u8, ()>(())), Outcome::Failure);
    }
}
