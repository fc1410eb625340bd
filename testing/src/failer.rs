//! The intermittent failer: a callable that fails in a predictable pattern and counts its
//! calls, for tests and demos of a breaker.

use std::sync::Mutex;

/// Why the failer failed a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFailure {
    /// The 1-based number of the call that failed.
    pub call: u64,
}

impl std::fmt::Display for InjectedFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "injected failure on call {}", self.call)
    }
}

impl std::error::Error for InjectedFailure {}

/// Fails in a repeating pattern: by default `frequency - 1` successes then `fail_count`
/// failures (frequency 5, fail count 1: four successes, one failure), or an explicit
/// pattern of `true` (succeed) and `false` (fail). Thread-safe; counts every call.
#[derive(Debug)]
pub struct IntermittentFailer {
    pattern: Vec<bool>,
    state: Mutex<Counts>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    calls: u64,
    failures: u64,
}

/// Why a failer could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailerError(String);

impl std::fmt::Display for FailerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FailerError {}

impl Default for IntermittentFailer {
    fn default() -> Self {
        IntermittentFailer::new(5, 1).expect("the defaults are valid")
    }
}

impl IntermittentFailer {
    /// `frequency - 1` successes, then `fail_count` failures, repeating.
    pub fn new(frequency: u32, fail_count: u32) -> Result<Self, FailerError> {
        if frequency == 0 {
            return Err(FailerError("frequency must be at least 1".into()));
        }
        let successes = frequency - 1;
        if successes == 0 && fail_count == 0 {
            return Err(FailerError(
                "frequency 1 with fail_count 0 is an empty pattern".into(),
            ));
        }
        let pattern = std::iter::repeat_n(true, successes as usize)
            .chain(std::iter::repeat_n(false, fail_count as usize))
            .collect();
        Ok(IntermittentFailer {
            pattern,
            state: Mutex::default(),
        })
    }

    /// An explicit pattern, repeating: `true` succeeds, `false` fails.
    pub fn from_pattern(pattern: impl IntoIterator<Item = bool>) -> Result<Self, FailerError> {
        let pattern: Vec<bool> = pattern.into_iter().collect();
        if pattern.is_empty() {
            return Err(FailerError("the pattern is empty".into()));
        }
        Ok(IntermittentFailer {
            pattern,
            state: Mutex::default(),
        })
    }

    /// Makes one call: `Ok(call number)` or an [`InjectedFailure`].
    pub fn call(&self) -> Result<u64, InjectedFailure> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let index = (s.calls % self.pattern.len() as u64) as usize;
        s.calls += 1;
        if self.pattern[index] {
            Ok(s.calls)
        } else {
            s.failures += 1;
            Err(InjectedFailure { call: s.calls })
        }
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).calls
    }

    /// Calls that failed so far.
    pub fn failures(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failures
    }

    /// Starts the pattern and the counts again.
    pub fn reset(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Counts::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: &IntermittentFailer, n: usize) -> Vec<bool> {
        (0..n).map(|_| f.call().is_ok()).collect()
    }

    #[test]
    fn default_is_four_successes_then_one_failure() {
        let f = IntermittentFailer::default();
        assert_eq!(
            run(&f, 10),
            [true, true, true, true, false, true, true, true, true, false]
        );
        assert_eq!((f.calls(), f.failures()), (10, 2));
    }

    #[test]
    fn frequency_and_fail_count() {
        let f = IntermittentFailer::new(3, 2).unwrap();
        assert_eq!(
            run(&f, 8),
            [true, true, false, false, true, true, false, false]
        );
        let always = IntermittentFailer::new(1, 1).unwrap();
        assert_eq!(run(&always, 3), [false, false, false]);
        assert_eq!(
            IntermittentFailer::new(4, 0).map(|f| run(&f, 4)).unwrap(),
            [true; 4]
        );
    }

    #[test]
    fn explicit_pattern_repeats_and_reports_call_numbers() {
        let f = IntermittentFailer::from_pattern([true, false, false]).unwrap();
        assert_eq!(f.call(), Ok(1));
        assert_eq!(f.call(), Err(InjectedFailure { call: 2 }));
        assert_eq!(f.call(), Err(InjectedFailure { call: 3 }));
        assert_eq!(f.call(), Ok(4));
        f.reset();
        assert_eq!((f.calls(), f.call()), (0, Ok(1)));
    }

    #[test]
    fn refuses_empty_patterns() {
        assert!(IntermittentFailer::new(0, 1).is_err());
        assert!(IntermittentFailer::new(1, 0).is_err());
        assert!(IntermittentFailer::from_pattern([]).is_err());
    }
}
