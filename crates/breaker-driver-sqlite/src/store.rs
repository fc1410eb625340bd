//! The SQL of the store contract: load, compare-and-swap and update each in one immediate
//! transaction, list, and the sweep of expired rows. Times are milliseconds on the driver's
//! clock.
//!
//! Every cell is untrusted: SQLite lets anyone store any type in any column. A row reads
//! through [`ROW`]: a version that is not a positive integer reads as 0 (which no write ever
//! gets, so the breaker reports the record as corrupt and replaces it by expecting 0), a
//! value that is not a blob, or is larger than the record size limit, reads as empty (so
//! corrupt; measured in SQLite, never copied out), and so does the value of a row whose
//! expiry is not an integer (the row is live until the sweep removes it). One foreign row
//! never stops `list` for the others.

use std::collections::HashMap;
use std::time::Duration;

use breaker_core::{Name, Revision, Swap, Versioned};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// Expired rows are swept on every this many swaps, so no background process is needed.
const SWEEP_EVERY: u64 = 64;

struct Row {
    version: i64,
    value: Vec<u8>,
    expires_at: Option<i64>,
}

/// The columns of a row as the driver trusts them (see the module's documentation); the
/// size limit is the statement's first parameter.
const ROW: &str = "CASE WHEN typeof(version) = 'integer' AND version > 0 THEN version ELSE 0 END,
     CASE WHEN typeof(value) = 'blob' AND length(value) <= ?1
          AND (expires_at IS NULL OR typeof(expires_at) = 'integer') THEN value ELSE x'' END,
     CASE WHEN typeof(expires_at) = 'integer' THEN expires_at END";

/// The record size limit, as SQLite compares it.
fn limit() -> i64 {
    i64::try_from(breaker_core::MAX_RECORD_BYTES).unwrap_or(i64::MAX)
}

fn read(conn: &Connection, prefix: &str, name: &str) -> rusqlite::Result<Option<Row>> {
    conn.query_row(
        &format!("SELECT {ROW} FROM breaker_records WHERE prefix = ?2 AND name = ?3"),
        params![limit(), prefix, name],
        |r| {
            Ok(Row {
                version: r.get(0)?,
                value: r.get(1)?,
                expires_at: r.get(2)?,
            })
        },
    )
    .optional()
}

fn live(row: Option<Row>, now: i64) -> Option<Versioned> {
    row.filter(|r| r.expires_at.is_none_or(|t| t > now))
        .map(|r| Versioned::new(r.version as u64, r.value))
}

/// The live record of `name`.
pub(crate) fn load(
    conn: &Connection,
    prefix: &str,
    name: &str,
    now: i64,
) -> rusqlite::Result<Option<Versioned>> {
    Ok(live(read(conn, prefix, name)?, now))
}

/// Compare-and-swap as one short write transaction, taken for writing at its start so that
/// two processes can never both read the old version.
#[allow(clippy::too_many_arguments)] // The store contract's arguments, passed through.
pub(crate) fn swap(
    conn: &mut Connection,
    prefix: &str,
    name: &str,
    expected: Option<u64>,
    value: &[u8],
    expires_at: Option<i64>,
    now: i64,
    swaps: u64,
) -> rusqlite::Result<Swap> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = live(read(&tx, prefix, name)?, now);
    if current.as_ref().map(|v| v.version) != expected {
        tx.commit()?;
        return Ok(Swap::Conflict { current });
    }
    let version = write(&tx, prefix, name, value, expires_at, now, swaps)?;
    tx.commit()?;
    Ok(Swap::Swapped { version })
}

/// What [`update`] did.
pub(crate) enum Revised {
    /// The reviser kept the record.
    Kept,
    /// The reviser's value was written with this version.
    Written { version: u64, value: Vec<u8> },
    /// The reviser gave no answer (its caller is gone, or took past the deadline): the
    /// transaction was rolled back.
    Abandoned,
}

/// Shows `revise` the live record of `name` and writes what it makes of it, in one write
/// transaction taken at its start, so that no other process writes between the record
/// shown and the one written: writers of one record wait for each other, they never
/// conflict. `revise` answering `None` abandons the transaction.
pub(crate) fn update(
    conn: &mut Connection,
    prefix: &str,
    name: &str,
    now: i64,
    swaps: u64,
    revise: impl FnOnce(Option<Versioned>) -> Option<Revision>,
) -> rusqlite::Result<Revised> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = live(read(&tx, prefix, name)?, now);
    match revise(current) {
        // Dropping the transaction rolls it back.
        None => Ok(Revised::Abandoned),
        Some(Revision::Write { value, ttl }) => {
            let version = write(&tx, prefix, name, &value, expires_at(now, ttl), now, swaps)?;
            tx.commit()?;
            Ok(Revised::Written { version, value })
        }
        Some(_keep) => {
            tx.commit()?;
            Ok(Revised::Kept)
        }
    }
}

/// When a record written at `now` to live for `ttl` expires (`None`: never).
pub(crate) fn expires_at(now: i64, ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

/// Writes `value` as the record of `name` with the next version, inside the caller's
/// write transaction, and sweeps expired rows on every [`SWEEP_EVERY`]th write.
fn write(
    tx: &Connection,
    prefix: &str,
    name: &str,
    value: &[u8],
    expires_at: Option<i64>,
    now: i64,
    swaps: u64,
) -> rusqlite::Result<u64> {
    // The next version. A counter that is missing or not ours (not an integer, or so large
    // that adding one would turn it into a float) starts again above every version stored
    // and above the clock in microseconds, so versions still never repeat.
    let bumped: Option<i64> = tx
        .query_row(
            "UPDATE breaker_meta SET value = value + 1
             WHERE key = 'last_version' AND typeof(value) = 'integer'
               AND value >= 0 AND value < 9007199254740991
             RETURNING value",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let version = match bumped {
        Some(version) => version,
        None => {
            let version = fresh_version(tx)?;
            tx.execute(
                "INSERT INTO breaker_meta (key, value) VALUES ('last_version', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [version],
            )?;
            version
        }
    };
    tx.execute(
        "INSERT OR REPLACE INTO breaker_records (prefix, name, version, value, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![prefix, name, version, value, expires_at],
    )?;
    if swaps.is_multiple_of(SWEEP_EVERY) {
        sweep(tx, now)?;
    }
    Ok(version as u64)
}

/// A version above every one stored and above the clock in microseconds: where a counter
/// that was lost or replaced by a foreign value starts again.
fn fresh_version(conn: &Connection) -> rusqlite::Result<i64> {
    let stored: i64 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM breaker_records
         WHERE typeof(version) = 'integer' AND version < 9007199254740991",
        [],
        |r| r.get(0),
    )?;
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    Ok(stored.saturating_add(1).max(micros))
}

/// Deletes every expired row, of every prefix.
pub(crate) fn sweep(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM breaker_records WHERE expires_at IS NOT NULL
         AND (typeof(expires_at) <> 'integer' OR expires_at <= ?1)",
        [now],
    )
}

/// The version of every live record under `prefix` (read as [`ROW`] reads it), without
/// their values, by name (left as text: names are interned, and most are not watched):
/// what a poll compares with the versions its watchers were told of.
pub(crate) fn versions(
    conn: &mut Connection,
    prefix: &str,
    now: i64,
) -> rusqlite::Result<HashMap<String, u64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, CASE WHEN typeof(version) = 'integer' AND version > 0 THEN version ELSE 0 END
         FROM breaker_records
         WHERE prefix = ?1 AND typeof(name) = 'text'
           AND (expires_at IS NULL OR typeof(expires_at) <> 'integer' OR expires_at > ?2)",
    )?;
    let rows = stmt.query_map(params![prefix, now], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    rows.map(|row| row.map(|(name, version)| (name, version as u64)))
        .collect()
}

/// Every live record under `prefix`. Rows whose name is not a valid breaker name were not
/// written by a breaker and are passed over.
pub(crate) fn list(
    conn: &Connection,
    prefix: &str,
    now: i64,
) -> rusqlite::Result<Vec<(Name, Versioned)>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT name, {ROW} FROM breaker_records
         WHERE prefix = ?2 AND typeof(name) = 'text'"
    ))?;
    let rows = stmt.query_map(params![limit(), prefix], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Row {
                version: r.get(1)?,
                value: r.get(2)?,
                expires_at: r.get(3)?,
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, row) = row?;
        if let (Ok(name), Some(v)) = (Name::new(&name), live(Some(row), now)) {
            out.push((name, v));
        }
    }
    Ok(out)
}
