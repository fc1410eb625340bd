//! The errors a protected call can end with, and the breaker's build errors.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::driver::{DriverError, DriverErrorKind};
use crate::name::{Name, NameError};
use crate::policy::PolicyError;
use crate::record::State;

/// Why a call did not return its own result.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E> {
    /// The breaker rejected the call without running it.
    Rejected(Rejected),
    /// The call ran and returned this error.
    Call(E),
    /// The back-end could not be used and the policy is to fail closed (or an operator
    /// action needed the back-end); the call did not run.
    Backend(BackendError),
}

impl<E> Error<E> {
    /// The call's own error, if that is what this is.
    pub fn into_call_error(self) -> Option<E> {
        match self {
            Error::Call(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the breaker rejected the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self, Error::Rejected(_))
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Rejected(r) => r.fmt(f),
            Error::Call(e) => e.fmt(f),
            Error::Backend(b) => b.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Rejected(_) => None,
            Error::Call(e) => Some(e),
            Error::Backend(b) => Some(b),
        }
    }
}

impl<E> From<Rejected> for Error<E> {
    fn from(r: Rejected) -> Self {
        Error::Rejected(r)
    }
}

impl<E> From<BackendError> for Error<E> {
    fn from(b: BackendError) -> Self {
        Error::Backend(b)
    }
}

/// A rejection by an open breaker.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejected {
    /// The breaker.
    pub breaker: Name,
    /// Its state when it rejected.
    pub state: State,
    /// How long until a retry may be admitted; `None` when only an operator can reopen it.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "breaker `{}` is {} and rejected the call",
            self.breaker, self.state
        )?;
        match self.retry_after {
            Some(d) => write!(f, "; retry in {d:?}"),
            None => write!(f, "; it stays open until an operator resets it"),
        }
    }
}

impl std::error::Error for Rejected {}

/// The back-end operation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Reading the record.
    Load,
    /// Writing the record.
    CompareAndSwap,
    /// Starting a watch.
    Watch,
    /// Reading the back-end's clock.
    Clock,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Load => "load",
            Operation::CompareAndSwap => "compare-and-swap",
            Operation::Watch => "watch",
            Operation::Clock => "clock",
        })
    }
}

/// A back-end problem, naming the breaker, the back-end and the operation. Cheap to clone
/// and one pointer wide, so that results carrying it stay small on the hot path.
#[derive(Clone, Debug)]
pub struct BackendError(Arc<BackendErrorParts>);

#[derive(Debug)]
struct BackendErrorParts {
    breaker: Name,
    backend: &'static str,
    operation: Operation,
    source: DriverError,
}

impl BackendError {
    /// A back-end error of `breaker` on `backend` while doing `operation`.
    pub fn new(
        breaker: Name,
        backend: &'static str,
        operation: Operation,
        source: DriverError,
    ) -> Self {
        BackendError(Arc::new(BackendErrorParts {
            breaker,
            backend,
            operation,
            source,
        }))
    }

    /// The breaker.
    pub fn breaker(&self) -> Name {
        self.0.breaker
    }

    /// The back-end (`"memory"`, `"redis"`, ...).
    pub fn backend(&self) -> &'static str {
        self.0.backend
    }

    /// What was being done.
    pub fn operation(&self) -> Operation {
        self.0.operation
    }

    /// What the driver said.
    pub fn driver_error(&self) -> &DriverError {
        &self.0.source
    }

    /// The kind of trouble.
    pub fn kind(&self) -> DriverErrorKind {
        self.0.source.kind()
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &*self.0;
        write!(
            f,
            "breaker `{}`: {} back-end {}: {}",
            p.breaker, p.backend, p.operation, p.source
        )
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0.source)
    }
}

/// Why a breaker could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The name is not valid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The policy is impossible.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}
