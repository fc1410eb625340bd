//! `breaker-core`: the state machine, policy, clock and `Driver` trait of **breaker**, a
//! circuit breaker whose state is shared by every process (agent) that calls the same
//! service, through a back-end driver (memory, Redis, etcd, SQLite).
//!
//! This crate has no runtime and does no I/O of its own. Users normally depend on the
//! `breaker` facade or on one driver crate, which re-export what is here.
//!
//! ```
//! use std::time::Duration;
//! use breaker_core::Policy;
//!
//! let policy = Policy::builder()
//!     .failures_within(5, Duration::from_secs(10))
//!     .open_for(Duration::from_secs(30))
//!     .half_open_permits(2)
//!     .success_threshold(2)
//!     .build()?;
//! assert_eq!(policy.half_open_permits, 2);
//! # Ok::<(), breaker_core::PolicyError>(())
//! ```

mod breaker;
pub mod driver;
mod error;
mod events;
pub mod machine;
mod name;
mod observe;
pub use observe::METRICS;
mod outcome;
mod policy;
mod record;
mod redact;
mod time;
pub mod timers;

pub use breaker::{AdmissionError, Breaker, BreakerBuilder, Permit};
pub use driver::{
    Change, ChangeSink, Driver, DriverError, DriverErrorKind, DynDriver, MAX_UPDATE_ATTEMPTS,
    Reviser, Revision, Swap, Updated, Versioned, Watch, check_prefix, update_with_swaps,
};
pub use error::{BackendError, BuildError, Error, Operation, Rejected};
pub use events::{Cause, Event, SUBSCRIPTION_CAPACITY, Subscription};
pub use name::{MAX_NAME_LEN, Name, NameError};
pub use outcome::{Classifier, ErrorsAreFailures, Outcome};
pub use policy::{
    BackendFailure, Backoff, MAX_MIN_AGENTS, Policy, PolicyBuilder, PolicyError, SlowCall, TripRule,
};
pub use record::{
    Bucket, DELTA_LAYOUT, Delta, FailingAgent, Lease, MAX_DELTA_BYTES, MAX_RECORD_BYTES,
    OLDEST_SCHEMA, Record, RecordEncoding, RecordError, SCHEMA_VERSION, State,
};
pub use redact::redact_url;
pub use time::{Clock, ManualClock, SYSTEM_CLOCK_TICK, SystemClock, Timestamp};
pub use timers::{RunningTimers, Timer};
