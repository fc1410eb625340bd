//! The SQL of the store contract: load, compare-and-swap in one immediate transaction, list,
//! and the sweep of expired rows. Times are milliseconds on the driver's clock.

use breaker_core::{Name, Swap, Versioned};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// Expired rows are swept on every this many swaps, so no background process is needed.
const SWEEP_EVERY: u64 = 64;

struct Row {
    version: i64,
    value: Vec<u8>,
    expires_at: Option<i64>,
}

fn read(conn: &Connection, prefix: &str, name: &str) -> rusqlite::Result<Option<Row>> {
    conn.query_row(
        "SELECT version, value, expires_at FROM breaker_records WHERE prefix = ?1 AND name = ?2",
        params![prefix, name],
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
    let version: i64 = tx.query_row(
        "UPDATE breaker_meta SET value = value + 1 WHERE key = 'last_version' RETURNING value",
        [],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO breaker_records (prefix, name, version, value, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![prefix, name, version, value, expires_at],
    )?;
    if swaps.is_multiple_of(SWEEP_EVERY) {
        sweep(&tx, now)?;
    }
    tx.commit()?;
    Ok(Swap::Swapped {
        version: version as u64,
    })
}

/// Deletes every expired row, of every prefix.
pub(crate) fn sweep(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM breaker_records WHERE expires_at IS NOT NULL AND expires_at <= ?1",
        [now],
    )
}

/// Every live record under `prefix`. Rows whose name is not a valid breaker name were not
/// written by a breaker and are passed over.
pub(crate) fn list(
    conn: &Connection,
    prefix: &str,
    now: i64,
) -> rusqlite::Result<Vec<(Name, Versioned)>> {
    let mut stmt = conn.prepare(
        "SELECT name, version, value FROM breaker_records
         WHERE prefix = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
    )?;
    let rows = stmt.query_map(params![prefix, now], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Versioned::new(r.get::<_, i64>(1)? as u64, r.get(2)?),
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, v) = row?;
        if let Ok(name) = Name::new(&name) {
            out.push((name, v));
        }
    }
    Ok(out)
}
