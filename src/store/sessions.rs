//! SQL for guarded sessions, their commands and change requests. Every write carries its
//! audit event in the same transaction.

use super::db::{OptionalExtension, Row, params};
use serde::Serialize;

use super::Result;
use super::audit_log::append_audit;
use super::connection::Store;
use crate::audit::Draft;

#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub id: i64,
    pub mode: String,
    pub reason: String,
    pub incident: Option<String>,
    pub actor: String,
    pub host: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub next_step: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionCommand {
    pub id: i64,
    pub argv: Vec<String>,
    pub cwd: String,
    /// ran, refused
    pub decision: String,
    pub reason: String,
    pub change_id: Option<i64>,
    pub exit_code: Option<i64>,
    /// Redacted.
    pub output: String,
    pub started_at: String,
    pub duration_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChangeRequest {
    pub id: i64,
    pub objective: String,
    pub argv: Vec<String>,
    pub cwd: String,
    pub impact: String,
    pub rollback: String,
    /// The session it was asked in; none for a gate waiver.
    pub session_id: Option<i64>,
    pub requester: String,
    /// SHA-256 of (argv, cwd, session): what an approval is bound to.
    pub binding: String,
    /// pending, approved, denied, used
    pub status: String,
    pub uses_left: i64,
    pub approver: Option<String>,
    pub decided_at: Option<String>,
    pub reason: Option<String>,
    pub created_at: String,
    /// When an approved waiver stops counting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewChange {
    pub objective: String,
    pub argv: Vec<String>,
    pub cwd: String,
    pub impact: String,
    pub rollback: String,
    pub session_id: Option<i64>,
    pub requester: String,
    pub binding: String,
    pub uses: i64,
    pub created_at: String,
    pub expires_at: Option<String>,
}

fn argv_of(text: String) -> Vec<String> {
    serde_json::from_str(&text).unwrap_or_default()
}

fn session_from(r: &Row) -> super::db::Result<Session> {
    Ok(Session {
        id: r.get(0)?,
        mode: r.get(1)?,
        reason: r.get(2)?,
        incident: r.get(3)?,
        actor: r.get(4)?,
        host: r.get(5)?,
        started_at: r.get(6)?,
        ended_at: r.get(7)?,
        next_step: r.get(8)?,
    })
}

const SESSION_COLUMNS: &str = "id, mode, reason, incident, actor, host, started_at, ended_at, next_step";
const CHANGE_COLUMNS: &str = "id, objective, argv, cwd, impact, rollback, session_id, requester, binding, status, \
    uses_left, approver, decided_at, reason, created_at, expires_at";

fn change_from(r: &Row) -> super::db::Result<ChangeRequest> {
    Ok(ChangeRequest {
        id: r.get(0)?,
        objective: r.get(1)?,
        argv: argv_of(r.get(2)?),
        cwd: r.get(3)?,
        impact: r.get(4)?,
        rollback: r.get(5)?,
        session_id: r.get(6)?,
        requester: r.get(7)?,
        binding: r.get(8)?,
        status: r.get(9)?,
        uses_left: r.get(10)?,
        approver: r.get(11)?,
        decided_at: r.get(12)?,
        reason: r.get(13)?,
        created_at: r.get(14)?,
        expires_at: r.get(15)?,
    })
}

/// The audit event of the row just inserted, its subject naming the new id (`change 7`).
fn audited_insert(tx: &super::db::Transaction, draft: &Draft, what: &str) -> super::db::Result<i64> {
    let id = tx.last_insert_rowid()?;
    let mut d = draft.clone();
    d.subject = format!("{what} {id}");
    append_audit(tx, &d)?;
    Ok(id)
}

impl Store {
    #[allow(clippy::too_many_arguments)]
    pub fn start_session(
        &self,
        mode: &str,
        reason: &str,
        incident: Option<&str>,
        actor: &str,
        host: &str,
        at: &str,
        draft: &Draft,
    ) -> Result<i64> {
        self.write("starting a session", |tx| {
            tx.execute(
                "INSERT INTO sessions (mode, reason, incident, actor, host, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![mode, reason, incident, actor, host, at],
            )?;
            audited_insert(tx, draft, "session")
        })
    }

    pub fn session(&self, id: i64) -> Result<Option<Session>> {
        self.row(
            "reading a session",
            &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"),
            [id],
            session_from,
        )
    }

    pub fn sessions(&self, limit: usize) -> Result<Vec<Session>> {
        self.rows(
            "listing sessions",
            &format!("SELECT {SESSION_COLUMNS} FROM sessions ORDER BY id DESC LIMIT ?1"),
            [limit as i64],
            session_from,
        )
    }

    pub fn end_session(&self, id: i64, at: &str, next_step: Option<&str>, draft: &Draft) -> Result<()> {
        self.write("ending a session", |tx| {
            tx.execute(
                "UPDATE sessions SET ended_at = ?2, next_step = ?3 WHERE id = ?1",
                params![id, at, next_step],
            )?;
            append_audit(tx, draft).map(|_| ())
        })
    }

    /// Records a command that was refused, with its audit event.
    pub fn record_refusal(
        &self,
        session: i64,
        argv: &[String],
        cwd: &str,
        reason: &str,
        at: &str,
        draft: &Draft,
    ) -> Result<()> {
        self.write("recording a session command", |tx| {
            insert_command(tx, session, argv, cwd, "refused", reason, None, at)?;
            append_audit(tx, draft).map(|_| ())
        })
    }

    /// Records a command that is about to run, as `started` (outcome unknown until
    /// `finish_session_command`), taking the approval it needs first when `binding` is given:
    /// the approval is spent, the row and its audit event (`draft(change)`) written, in one
    /// transaction. `None` when no approved request has a use left: nothing is written.
    #[allow(clippy::too_many_arguments)]
    pub fn start_session_command(
        &self,
        session: i64,
        argv: &[String],
        cwd: &str,
        binding: Option<&str>,
        at: &str,
        draft: &dyn Fn(Option<i64>) -> Draft,
    ) -> Result<Option<(i64, Option<i64>)>> {
        self.write("recording a session command", |tx| {
            let change = match binding {
                Some(b) => match take_approval(tx, b)? {
                    Some(c) => Some(c),
                    None => return Ok(None),
                },
                None => None,
            };
            let row = insert_command(
                tx,
                session,
                argv,
                cwd,
                "started",
                "started; the outcome is not known (runbook stopped before the command ended)",
                change,
                at,
            )?;
            append_audit(tx, &draft(change))?;
            Ok(Some((row, change)))
        })
    }

    /// Records how a started command ended, with its audit event.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_session_command(
        &self,
        row: i64,
        decision: &str,
        reason: &str,
        exit_code: Option<i64>,
        output: &str,
        duration_ms: Option<i64>,
        draft: &Draft,
    ) -> Result<()> {
        self.write("recording the end of a session command", |tx| {
            tx.execute(
                "UPDATE session_commands SET decision = ?2, reason = ?3, exit_code = ?4, output = ?5, duration_ms = ?6 WHERE id = ?1",
                params![row, decision, reason, exit_code, output, duration_ms],
            )?;
            append_audit(tx, draft).map(|_| ())
        })
    }

    pub fn session_commands(&self, session: i64) -> Result<Vec<SessionCommand>> {
        self.rows(
            "reading session commands",
            "SELECT id, argv, cwd, decision, reason, change_id, exit_code, output, started_at, duration_ms \
             FROM session_commands WHERE session_id = ?1 ORDER BY id",
            [session],
            |r| {
                Ok(SessionCommand {
                    id: r.get(0)?,
                    argv: argv_of(r.get(1)?),
                    cwd: r.get(2)?,
                    decision: r.get(3)?,
                    reason: r.get(4)?,
                    change_id: r.get(5)?,
                    exit_code: r.get(6)?,
                    output: r.get(7)?,
                    started_at: r.get(8)?,
                    duration_ms: r.get(9)?,
                })
            },
        )
    }

    pub fn request_change(&self, c: &NewChange, draft: &Draft) -> Result<i64> {
        self.write("filing a change request", |tx| {
            tx.execute(
                "INSERT INTO change_requests (objective, argv, cwd, impact, rollback, session_id, requester, binding, status, uses_left, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?10, ?11)",
                params![
                    c.objective,
                    serde_json::to_string(&c.argv).unwrap_or_default(),
                    c.cwd,
                    c.impact,
                    c.rollback,
                    c.session_id,
                    c.requester,
                    c.binding,
                    c.uses,
                    c.created_at,
                    c.expires_at
                ],
            )?;
            audited_insert(tx, draft, "change")
        })
    }

    pub fn change(&self, id: i64) -> Result<Option<ChangeRequest>> {
        self.row(
            "reading a change request",
            &format!("SELECT {CHANGE_COLUMNS} FROM change_requests WHERE id = ?1"),
            [id],
            change_from,
        )
    }

    pub fn changes(&self, limit: usize) -> Result<Vec<ChangeRequest>> {
        self.rows(
            "listing change requests",
            &format!("SELECT {CHANGE_COLUMNS} FROM change_requests ORDER BY id DESC LIMIT ?1"),
            [limit as i64],
            change_from,
        )
    }

    /// Approves or denies a pending request; `false` if it was no longer pending.
    pub fn decide_change(
        &self,
        id: i64,
        status: &str,
        approver: &str,
        at: &str,
        reason: Option<&str>,
        draft: &Draft,
    ) -> Result<bool> {
        self.write("deciding a change request", |tx| {
            let n = tx.execute(
                "UPDATE change_requests SET status = ?2, approver = ?3, decided_at = ?4, reason = ?5 \
                 WHERE id = ?1 AND status = 'pending'",
                params![id, status, approver, at, reason],
            )?;
            if n == 1 {
                append_audit(tx, draft)?;
            }
            Ok(n == 1)
        })
    }
}

/// Spends one use of the oldest approved request bound to `binding`; its id, or `None` when
/// no such approval is left. Inside the write transaction: two commands cannot spend the same
/// last use.
fn take_approval(tx: &super::db::Transaction, binding: &str) -> super::db::Result<Option<i64>> {
    let id: Option<i64> = tx
        .query_row(
            "SELECT id FROM change_requests WHERE binding = ?1 AND status = 'approved' AND uses_left > 0 ORDER BY id LIMIT 1",
            [binding],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = id {
        tx.execute(
            "UPDATE change_requests SET uses_left = uses_left - 1, \
             status = CASE WHEN uses_left - 1 = 0 THEN 'used' ELSE status END WHERE id = ?1",
            [id],
        )?;
    }
    Ok(id)
}

/// A new row of `session_commands`, without an outcome yet; its id.
#[allow(clippy::too_many_arguments)]
fn insert_command(
    tx: &super::db::Transaction,
    session: i64,
    argv: &[String],
    cwd: &str,
    decision: &str,
    reason: &str,
    change: Option<i64>,
    at: &str,
) -> super::db::Result<i64> {
    tx.execute(
        "INSERT INTO session_commands (session_id, argv, cwd, decision, reason, change_id, exit_code, output, started_at, duration_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, '', ?7, NULL)",
        params![session, serde_json::to_string(argv).unwrap_or_default(), cwd, decision, reason, change, at],
    )?;
    tx.last_insert_rowid()
}
