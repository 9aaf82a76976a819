//! Copying a whole state from one backend to another (`runbook db copy`).
//!
//! Owns the list of tables in the order their references allow. Invariants: the source is
//! read in one snapshot; the target is written in one transaction (a failure leaves it as
//! it was); identity counters continue after the copied rows; a target that holds anything
//! is refused unless it is to be emptied first.

use serde::Serialize;

use super::Result;
use super::connection::Store;
use super::db::{self, Value};

/// Every table of the state, parents before the rows that point at them.
pub const TABLES: &[&str] = &[
    "runs",
    "monitor_state",
    "audit_events",
    "audit_archives",
    "audit_checkpoints",
    "check_results",
    "check_state",
    "check_latest",
    "check_latency",
    "alerts",
    "silences",
    "notifications",
    "channel_health",
    "api_tokens",
    "daemon_status",
    "heartbeats",
    "backups",
    "offsite_uploads",
    "sessions",
    "session_commands",
    "change_requests",
    "gate_runs",
    "deploys",
    "incidents",
    "drift_items",
    "drift_acks",
    "fleet_hosts",
    "leases",
];

/// Rows per INSERT statement (each row binds one parameter per column).
const BATCH: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct TableCount {
    pub table: String,
    pub source: i64,
    pub target: i64,
}

impl Store {
    /// Rows in each table, in `TABLES` order.
    pub fn table_counts(&self) -> Result<Vec<(String, i64)>> {
        TABLES
            .iter()
            .map(|t| {
                self.row("counting rows", &format!("SELECT count(*) FROM {t}"), (), |r| r.get(0))
                    .map(|n| (t.to_string(), n.unwrap_or(0)))
            })
            .collect()
    }

    /// Copies every row of `self` into `target`, emptying it first when `replace`; returns
    /// the rows per table on both sides after the copy.
    pub fn copy_to(
        &self,
        target: &Store,
        replace: bool,
        progress: &mut dyn FnMut(&str, i64),
    ) -> Result<Vec<TableCount>> {
        let source = self.conn()?;
        let src = source.db();
        // A table the list does not name would be left behind in silence: refuse instead.
        let unlisted: Vec<String> = src
            .tables()
            .map_err(self.err("listing tables"))?
            .into_iter()
            .filter(|t| !TABLES.contains(&t.as_str()))
            .collect();
        if !unlisted.is_empty() {
            return Err(self.err("copying the state")(db::DbError::Message(format!(
                "tables {} are not in the copy's list (store::copy::TABLES); nothing was copied",
                unlisted.join(", ")
            ))));
        }
        src.snapshot_begin().map_err(self.err("starting a snapshot"))?;
        let copied = target.write("copying the state", |tx| {
            if replace {
                for t in TABLES.iter().rev() {
                    tx.execute(&format!("DELETE FROM {t}"), ())?;
                }
            }
            let mut counts = Vec::new();
            for t in TABLES {
                let columns = src.columns(t)?;
                let list = columns.join(", ");
                let mut batch: Vec<Value> = Vec::new();
                let mut rows = 0i64;
                let flush = |batch: &mut Vec<Value>| -> db::Result<()> {
                    if batch.is_empty() {
                        return Ok(());
                    }
                    let n = batch.len() / columns.len();
                    let values = (0..n)
                        .map(|i| {
                            let ps: Vec<String> = (0..columns.len())
                                .map(|c| format!("?{}", i * columns.len() + c + 1))
                                .collect();
                            format!("({})", ps.join(", "))
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    tx.execute(
                        &format!("INSERT INTO {t} ({list}) VALUES {values}"),
                        std::mem::take(batch),
                    )?;
                    Ok(())
                };
                src.for_each(&format!("SELECT {list} FROM {t} ORDER BY 1"), (), &mut |row| {
                    for i in 0..columns.len() {
                        batch.push(row.get(i)?);
                    }
                    rows += 1;
                    if (rows as usize).is_multiple_of(BATCH) {
                        flush(&mut batch)?;
                        progress(t, rows);
                    }
                    Ok(true)
                })?;
                flush(&mut batch)?;
                progress(t, rows);
                counts.push((t.to_string(), rows));
            }
            tx.continue_identities(TABLES)?;
            Ok(counts)
        });
        let _ = src.snapshot_end();
        drop(source);
        let copied = copied?;
        let after = target.table_counts()?;
        Ok(copied
            .into_iter()
            .zip(after)
            .map(|((table, source), (_, target))| TableCount { table, source, target })
            .collect())
    }

    /// Whether any table holds a row.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.table_counts()?.iter().all(|(_, n)| *n == 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_names_every_table_the_migrations_make() {
        let dir = std::env::temp_dir().join(format!("runbook-copy-{}", std::process::id()));
        let store = Store::open(&dir.join("state.db")).unwrap();
        let mut tables = store.conn().unwrap().db().tables().unwrap();
        tables.sort();
        let mut listed: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
        listed.sort();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            tables, listed,
            "a migration made a table that `runbook db copy` would leave behind"
        );
    }
}
