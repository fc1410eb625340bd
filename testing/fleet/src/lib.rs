//! Real-process test support for **breaker**: starting the flaky test server and agent
//! processes (each stopped by its process id when dropped, its output shown when a test
//! fails), and the fleet scenario that every back-end runs.

pub mod measure;
pub mod procs;
pub mod scenario;
pub mod server;
