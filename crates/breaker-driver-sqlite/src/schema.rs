//! The database schema: created on first use, migrated forward, and checked so that a
//! foreign table of the same name or a newer schema is refused, never overwritten.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// Table of records, one row per breaker and prefix.
pub(crate) const RECORDS: &str = "breaker_records";
/// Table of bookkeeping: the schema version and the version counter.
pub(crate) const META: &str = "breaker_meta";

const RECORDS_COLUMNS: &[&str] = &["prefix", "name", "version", "value", "expires_at"];
const META_COLUMNS: &[&str] = &["key", "value"];

/// Each step moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &["CREATE TABLE breaker_meta (
        key TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    );
    INSERT INTO breaker_meta (key, value) VALUES ('schema_version', 0), ('last_version', 0);
    CREATE TABLE breaker_records (
        prefix TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        value BLOB NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (prefix, name)
    ) WITHOUT ROWID;"];

/// Why a database cannot be used.
#[derive(Debug)]
pub(crate) enum SchemaError {
    /// A table of ours exists with other columns: someone else's table.
    Foreign {
        table: &'static str,
        columns: Vec<String>,
    },
    /// The records table exists without our bookkeeping table.
    Orphan,
    /// Written by a newer build.
    Newer {
        found: i64,
    },
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for SchemaError {
    fn from(e: rusqlite::Error) -> Self {
        SchemaError::Sql(e)
    }
}

fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Option<Vec<String>>> {
    let exists: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |row| row.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(None);
    }
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt
        .query_map([], |row| row.get::<_, String>(1))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(names))
}

fn check_columns(
    conn: &Connection,
    table: &'static str,
    expected: &[&str],
) -> Result<bool, SchemaError> {
    match columns(conn, table)? {
        None => Ok(false),
        Some(found) if found == expected => Ok(true),
        Some(found) => Err(SchemaError::Foreign {
            table,
            columns: found,
        }),
    }
}

/// Creates or migrates the schema, in one write transaction so that processes opening a new
/// file at once do not race.
pub(crate) fn prepare(conn: &mut Connection) -> Result<(), SchemaError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let has_meta = check_columns(&tx, META, META_COLUMNS)?;
    let has_records = check_columns(&tx, RECORDS, RECORDS_COLUMNS)?;
    let current: i64 = match (has_meta, has_records) {
        (false, false) => 0,
        (false, true) => return Err(SchemaError::Orphan),
        (true, _) => tx
            .query_row(
                "SELECT value FROM breaker_meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(0),
    };
    if current > SCHEMA_VERSION {
        return Err(SchemaError::Newer { found: current });
    }
    for step in &MIGRATIONS[current as usize..] {
        tx.execute_batch(step)?;
    }
    if current < SCHEMA_VERSION {
        tx.execute(
            "UPDATE breaker_meta SET value = ?1 WHERE key = 'schema_version'",
            [SCHEMA_VERSION],
        )?;
    }
    tx.commit()?;
    Ok(())
}
