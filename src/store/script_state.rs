//! Script state: namespaced keys and values, each change audited.

use super::db::{OptionalExtension, params};

use super::Result;
use super::audit_log::append_audit;
use super::connection::Store;
use super::types::*;
use crate::audit::Draft;
use crate::clock;

impl Store {
    pub fn state_get(&self, namespace: &str, key: &str) -> Result<Option<StateEntry>> {
        self.conn()?
            .query_row(
                "SELECT namespace, key, value, updated_at FROM monitor_state WHERE namespace = ?1 AND key = ?2",
                [namespace, key],
                |r| {
                    Ok(StateEntry {
                        namespace: r.get(0)?,
                        key: r.get(1)?,
                        value: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(self.err("reading state"))
    }

    pub fn state_list(&self, namespace: Option<&str>) -> Result<Vec<StateEntry>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT namespace, key, value, updated_at FROM monitor_state \
                 WHERE (CAST(?1 AS TEXT) IS NULL OR namespace = ?1) ORDER BY namespace, key",
            )
            .map_err(self.err("listing state"))?;
        stmt.query_map([namespace], |r| {
            Ok(StateEntry {
                namespace: r.get(0)?,
                key: r.get(1)?,
                value: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err("listing state"))
    }

    /// Writes entries (insert or replace) and one audit event, in one transaction.
    pub fn state_put(&self, entries: &[(String, String, String)], audit: &Draft) -> Result<()> {
        let now = clock::to_text(clock::now());
        self.write("writing state", |tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO monitor_state (namespace, key, value, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )?;
            for (ns, key, value) in entries {
                stmt.execute(params![ns, key, value, now])?;
            }
            append_audit(tx, audit)?;
            Ok(())
        })
    }

    // ---- audit ----
}
