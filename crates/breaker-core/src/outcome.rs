//! Call outcomes and the classifier that maps a call's result to one.

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
}
