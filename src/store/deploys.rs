//! SQL for deploys: a row an attempt, its step and outcome written with their audit events.

use super::db::{Row, params};
use serde::Serialize;

use super::Result;
use super::audit_log::append_audit;
use super::connection::Store;
use crate::audit::Draft;

#[derive(Debug, Clone, Serialize)]
pub struct Deploy {
    pub id: i64,
    pub app: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub sha: String,
    pub release: String,
    /// The release live before this one.
    pub previous: Option<String>,
    /// running, good, failed, bad (rolled back), stopped (its process is gone).
    pub status: String,
    /// The last step completed.
    pub step: String,
    pub operator: String,
    pub host: String,
    pub pid: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
}

const COLUMNS: &str =
    "id, app, ref, sha, release, previous, status, step, operator, host, pid, started_at, finished_at, error";

fn from_row(r: &Row) -> super::db::Result<Deploy> {
    Ok(Deploy {
        id: r.get(0)?,
        app: r.get(1)?,
        reference: r.get(2)?,
        sha: r.get(3)?,
        release: r.get(4)?,
        previous: r.get(5)?,
        status: r.get(6)?,
        step: r.get(7)?,
        operator: r.get(8)?,
        host: r.get(9)?,
        pid: r.get(10)?,
        started_at: r.get(11)?,
        finished_at: r.get(12)?,
        error: r.get(13)?,
    })
}

impl Store {
    /// Records a deploy that starts (status `running`) and its audit event; its id.
    pub fn start_deploy(&self, d: &Deploy, draft: &Draft) -> Result<i64> {
        self.write("recording a deploy", |tx| {
            tx.execute(
                "INSERT INTO deploys (app, ref, sha, release, previous, status, step, operator, host, pid, started_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?9, ?10)",
                params![
                    d.app,
                    d.reference,
                    d.sha,
                    d.release,
                    d.previous,
                    d.step,
                    d.operator,
                    d.host,
                    d.pid,
                    d.started_at
                ],
            )?;
            let id = tx.last_insert_rowid()?;
            append_audit(tx, draft)?;
            Ok(id)
        })
    }

    /// A step completed, with its audit event.
    pub fn deploy_step(&self, id: i64, step: &str, draft: &Draft) -> Result<()> {
        self.write("recording a deploy step", |tx| {
            tx.execute("UPDATE deploys SET step = ?2 WHERE id = ?1", params![id, step])?;
            append_audit(tx, draft)?;
            Ok(())
        })
    }

    /// The deploy's outcome, with its audit event.
    pub fn finish_deploy(&self, id: i64, status: &str, error: Option<&str>, at: &str, draft: &Draft) -> Result<()> {
        self.write("recording a deploy's outcome", |tx| {
            tx.execute(
                "UPDATE deploys SET status = ?2, error = ?3, finished_at = ?4 WHERE id = ?1",
                params![id, status, error, at],
            )?;
            append_audit(tx, draft)?;
            Ok(())
        })
    }

    /// Deploys of `app`, newest first.
    pub fn deploys(&self, app: &str, limit: i64) -> Result<Vec<Deploy>> {
        self.rows(
            "listing deploys",
            &format!("SELECT {COLUMNS} FROM deploys WHERE app = ?1 ORDER BY id DESC LIMIT ?2"),
            params![app, limit],
            from_row,
        )
    }
}
