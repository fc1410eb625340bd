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

    /// The error as tower's middleware reports errors (`tower::BoxError`): the call's own
    /// error as it was, or the [`Rejected`] or [`BackendError`] itself, to tell apart with
    /// `downcast_ref`.
    pub fn into_box_error(self) -> Box<dyn std::error::Error + Send + Sync>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match self {
            Error::Rejected(r) => Box::new(r),
            Error::Call(e) => e.into(),
            Error::Backend(b) => Box::new(b),
        }
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

/// Transparent: each variant displays as what it holds, and the error has no `source`, so
/// that a report walking the chain (`anyhow`'s `{:#}`) prints every message once. The bound
/// is `Display + Debug` rather than `Error`, so that `Error<Box<dyn Error + Send + Sync>>`
/// (tower's `BoxError`) is an error too.
impl<E: fmt::Debug + fmt::Display> std::error::Error for Error<E> {}

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

/// A rejection by an open breaker. Two words wide, so that a result carrying it stays in
/// registers on the hot path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    breaker: Name,
    /// The state in the top three bits, the retry delay in milliseconds below them (all
    /// ones: no retry until an operator acts).
    packed: u64,
}

const STATE_SHIFT: u32 = 61;
const NO_RETRY: u64 = (1 << STATE_SHIFT) - 1;

impl Rejected {
    /// A rejection by `breaker` in `state`; a retry may be admitted after `retry_after`.
    pub fn new(breaker: Name, state: State, retry_after: Option<Duration>) -> Self {
        let code = match state {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::ForcedClosed => 4,
        };
        let retry = retry_after.map_or(NO_RETRY, |d| {
            u64::try_from(d.as_millis())
                .unwrap_or(NO_RETRY)
                .min(NO_RETRY - 1)
        });
        Rejected {
            breaker,
            packed: (code << STATE_SHIFT) | retry,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> Name {
        self.breaker
    }

    /// Its state when it rejected.
    pub fn state(&self) -> State {
        match self.packed >> STATE_SHIFT {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            _ => State::ForcedClosed,
        }
    }

    /// How long until a retry may be admitted (millisecond resolution); `None` when only an
    /// operator can reopen it.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.packed & NO_RETRY {
            NO_RETRY => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

impl fmt::Debug for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("breaker", &self.breaker)
            .field("state", &self.state())
            .field("retry_after", &self.retry_after())
            .finish()
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "breaker `{}` is {} and rejected the call",
            self.breaker,
            self.state()
        )?;
        match self.retry_after() {
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
    /// Appending outcomes to the record's log.
    Append,
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
            Operation::Append => "append",
            Operation::Watch => "watch",
            Operation::Clock => "clock",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_pack_state_and_delay() {
        let name = Name::new("packed").unwrap();
        for state in [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::ForcedOpen,
            State::ForcedClosed,
        ] {
            for retry in [
                None,
                Some(Duration::ZERO),
                Some(Duration::from_millis(1_234)),
                Some(Duration::MAX),
            ] {
                let r = Rejected::new(name, state, retry);
                assert_eq!((r.breaker(), r.state()), (name, state));
                match retry {
                    Some(Duration::MAX) => {
                        assert!(r.retry_after().unwrap() > Duration::from_secs(1 << 40))
                    }
                    _ => assert_eq!(r.retry_after(), retry),
                }
            }
        }
        assert_eq!(std::mem::size_of::<Rejected>(), 16);
        assert!(std::mem::size_of::<Error<()>>() <= 24);
        let text = Rejected::new(name, State::Open, Some(Duration::from_millis(1_500))).to_string();
        assert_eq!(
            text,
            "breaker `packed` is open and rejected the call; retry in 1.5s"
        );
    }

    /// Every message of the chain, as `anyhow`'s `{:#}` prints them.
    fn chain(e: &dyn std::error::Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = e.source();
        while let Some(e) = next {
            out.push(e.to_string());
            next = e.source();
        }
        out
    }

    #[test]
    fn each_message_is_printed_once() {
        let name = Name::new("chained").unwrap();
        let call: Error<std::io::Error> = Error::Call(std::io::Error::other("503 from upstream"));
        assert_eq!(chain(&call), ["503 from upstream"]);
        let backend: Error<std::io::Error> = Error::Backend(BackendError::new(
            name,
            "redis",
            Operation::Load,
            DriverError::new(DriverErrorKind::Timeout, "no answer within 500ms"),
        ));
        let text = chain(&backend).join(": ");
        assert_eq!(text.matches("no answer within 500ms").count(), 1, "{text}");
        assert!(
            text.contains("breaker `chained`: redis back-end load"),
            "{text}"
        );
    }

    #[test]
    fn a_boxed_call_error_is_an_error() {
        type BoxError = Box<dyn std::error::Error + Send + Sync>;
        fn into_box(e: Error<BoxError>) -> BoxError {
            Box::new(e)
        }
        let e = into_box(Error::Call("refused".into()));
        assert_eq!(e.to_string(), "refused");
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

/// The message already says what the driver said, so there is no `source` to print it a
/// second time; [`BackendError::driver_error`] gives the driver's error itself.
impl std::error::Error for BackendError {}

/// Why a breaker could not be built.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The name is not valid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The policy is impossible.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The driver could not be set up (a shortcut constructor opened it): a wrong path or
    /// URL, a foreign database, an unreachable back-end.
    #[error("could not set up the back-end: {0}")]
    Backend(#[from] DriverError),
}
