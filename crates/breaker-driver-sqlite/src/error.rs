//! Turning SQLite's errors into driver errors that name the file and what was being done.

use std::path::Path;
use std::time::Duration;

use breaker_core::{DriverError, DriverErrorKind};
use rusqlite::ErrorCode;

use crate::schema::{SCHEMA_VERSION, SchemaError};

/// A driver error for `e`, met while doing `what` on the database at `path`.
pub(crate) fn sql(path: &Path, what: &str, e: rusqlite::Error) -> DriverError {
    let kind = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DriverErrorKind::Timeout,
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::NotADatabase
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::FileLockingProtocolFailed,
        ) => DriverErrorKind::Unavailable,
        _ => DriverErrorKind::Other,
    };
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => " (the file is not a SQLite database)",
        Some(ErrorCode::ReadOnly) => " (the file or its directory is read-only)",
        Some(ErrorCode::DiskFull) => " (the disk is full)",
        _ => "",
    };
    // The message carries SQLite's own words, so `e` is not attached as a source as well:
    // a report that walks the chain would print them twice.
    DriverError::new(
        kind,
        format!("sqlite {}: {what}: {e}{hint}", path.display()),
    )
}

/// The error for a write lock held by someone else past the deadline.
pub(crate) fn locked(path: &Path, what: &str, deadline: Duration) -> DriverError {
    DriverError::new(
        DriverErrorKind::Timeout,
        format!(
            "sqlite {}: {what}: the database stayed locked by another connection for longer \
             than the {deadline:?} deadline",
            path.display()
        ),
    )
}

/// The error for a database file that disappeared under the driver.
pub(crate) fn missing(path: &Path) -> DriverError {
    DriverError::new(
        DriverErrorKind::Unavailable,
        format!(
            "sqlite {}: the database file was deleted or moved; restore it to resume",
            path.display()
        ),
    )
}

/// The error for a database whose schema is not ours.
pub(crate) fn schema(path: &Path, e: SchemaError) -> DriverError {
    match e {
        SchemaError::Foreign { table, columns } => DriverError::new(
            DriverErrorKind::Config,
            format!(
                "sqlite {}: table `{table}` exists but is not a breaker table (its columns: {}); \
                 refusing to touch it",
                path.display(),
                columns.join(", ")
            ),
        ),
        SchemaError::Orphan => DriverError::new(
            DriverErrorKind::Config,
            format!(
                "sqlite {}: table `breaker_records` exists without `breaker_meta`: not created \
                 by breaker; refusing to touch it",
                path.display()
            ),
        ),
        SchemaError::Newer { found } => DriverError::new(
            DriverErrorKind::Config,
            format!(
                "sqlite {}: database schema version {found} is newer than this build supports \
                 ({SCHEMA_VERSION}); upgrade breaker",
                path.display()
            ),
        ),
        SchemaError::Sql(e) => sql(path, "preparing the schema", e),
    }
}
