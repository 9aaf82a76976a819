//! SQL for heartbeat pings.

use super::db::{OptionalExtension, params};
use serde::Serialize;

use super::Result;
use super::connection::Store;

#[derive(Debug, Clone, Serialize)]
pub struct Heartbeat {
    pub check: String,
    pub last_ping: Option<String>,
    pub last_start: Option<String>,
    pub last_status: String,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
    pub updated_at: String,
}

impl Store {
    pub fn heartbeat(&self, check: &str) -> Result<Option<Heartbeat>> {
        self.conn()?
            .query_row(
                "SELECT check_name, last_ping, last_start, last_status, exit_code, duration_ms, updated_at \
                 FROM heartbeats WHERE check_name = ?1",
                [check],
                |r| {
                    Ok(Heartbeat {
                        check: r.get(0)?,
                        last_ping: r.get(1)?,
                        last_start: r.get(2)?,
                        last_status: r.get(3)?,
                        exit_code: r.get(4)?,
                        duration_ms: r.get(5)?,
                        updated_at: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(self.err("reading a heartbeat"))
    }

    /// Records a ping: `start` notes the start time; a finish (`ok`/`fail`) notes the time,
    /// the exit code, and the duration since the last start.
    pub fn record_ping(
        &self,
        check: &str,
        status: &str,
        exit_code: Option<i64>,
        now: &str,
        duration_ms: Option<i64>,
        audit: &crate::audit::Draft,
    ) -> Result<()> {
        self.write("recording a ping", |tx| {
            super::audit_log::append_audit(tx, audit)?;
            if status == "start" {
                tx.execute(
                    "INSERT INTO heartbeats (check_name, last_start, last_status, updated_at) VALUES (?1, ?2, 'start', ?2) \
                     ON CONFLICT (check_name) DO UPDATE SET last_start = excluded.last_start, last_status = 'start', updated_at = excluded.updated_at",
                    params![check, now],
                )?;
            } else {
                tx.execute(
                    "INSERT INTO heartbeats (check_name, last_ping, last_status, exit_code, duration_ms, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?2) \
                     ON CONFLICT (check_name) DO UPDATE SET last_ping = excluded.last_ping, last_status = excluded.last_status, \
                     exit_code = excluded.exit_code, duration_ms = excluded.duration_ms, updated_at = excluded.updated_at",
                    params![check, now, status, exit_code, duration_ms],
                )?;
            }
            Ok(())
        })
    }
}
