//! Runnable examples of breaker; see the `[[example]]` targets.
