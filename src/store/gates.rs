//! SQL for gate runs: one row a run, written with its audit event.

use super::db::{Row, params};
use serde::Serialize;

use super::Result;
use super::audit_log::append_audit;
use super::connection::Store;
use crate::audit::Draft;

/// A gate run as the store keeps it; the evidence file holds the rest.
#[derive(Debug, Clone, Serialize)]
pub struct GateRun {
    pub id: i64,
    pub gate: String,
    pub started_at: String,
    pub finished_at: String,
    pub verdict: String,
    pub release_ref: Option<String>,
    pub release_sha: Option<String>,
    pub operator: String,
    pub evidence_path: String,
    pub evidence_sha256: String,
    /// Per check, the mean of each value measured: `{"api": {"latency_ms": 12.5}}`.
    pub measured: serde_json::Value,
}

const COLUMNS: &str = "id, gate, started_at, finished_at, verdict, release_ref, release_sha, operator, \
                       evidence_path, evidence_sha256, measured";

fn from_row(r: &Row) -> super::db::Result<GateRun> {
    let measured: String = r.get(10)?;
    Ok(GateRun {
        id: r.get(0)?,
        gate: r.get(1)?,
        started_at: r.get(2)?,
        finished_at: r.get(3)?,
        verdict: r.get(4)?,
        release_ref: r.get(5)?,
        release_sha: r.get(6)?,
        operator: r.get(7)?,
        evidence_path: r.get(8)?,
        evidence_sha256: r.get(9)?,
        measured: serde_json::from_str(&measured).unwrap_or_default(),
    })
}

impl Store {
    /// Records a gate run and its audit event in one transaction; returns its id.
    pub fn record_gate_run(&self, run: &GateRun, draft: &Draft) -> Result<i64> {
        self.write("recording a gate run", |tx| {
            tx.execute(
                "INSERT INTO gate_runs (gate, started_at, finished_at, verdict, release_ref, release_sha, operator, \
                 evidence_path, evidence_sha256, measured) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    run.gate,
                    run.started_at,
                    run.finished_at,
                    run.verdict,
                    run.release_ref,
                    run.release_sha,
                    run.operator,
                    run.evidence_path,
                    run.evidence_sha256,
                    run.measured.to_string()
                ],
            )?;
            let id = tx.last_insert_rowid()?;
            append_audit(tx, draft)?;
            Ok(id)
        })
    }

    /// Runs newest first, of one gate if given, at most `limit`.
    pub fn gate_runs(&self, gate: Option<&str>, limit: i64) -> Result<Vec<GateRun>> {
        self.rows(
            "listing gate runs",
            &format!("SELECT {COLUMNS} FROM gate_runs WHERE (CAST(?1 AS TEXT) IS NULL OR gate = ?1) ORDER BY id DESC LIMIT ?2"),
            params![gate, limit],
            from_row,
        )
    }

    /// The newest run of `gate` that passed: the baseline of relative conditions.
    pub fn last_passing_gate_run(&self, gate: &str) -> Result<Option<GateRun>> {
        self.row(
            "reading a gate's baseline",
            &format!("SELECT {COLUMNS} FROM gate_runs WHERE gate = ?1 AND verdict = 'pass' ORDER BY id DESC LIMIT 1"),
            [gate],
            from_row,
        )
    }
}
