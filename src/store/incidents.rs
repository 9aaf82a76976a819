//! SQL for incidents: each change written with its audit event in one transaction.

use super::db::{OptionalExtension, Row, params};
use serde::Serialize;

use super::Result;
use super::audit_log::append_audit;
use super::connection::Store;
use crate::audit::Draft;

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub id: i64,
    pub slug: String,
    pub title: String,
    pub severity: String,
    /// triage, investigating, mitigated, resolved, closed, cancelled
    pub state: String,
    pub commander: String,
    pub classification: Option<String>,
    pub cause: Option<String>,
    /// The markdown note, when incidents.dir is set.
    pub note: Option<String>,
    pub opened_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
}

const COLUMNS: &str =
    "id, slug, title, severity, state, commander, classification, cause, note, opened_at, updated_at, closed_at";

fn from_row(r: &Row) -> super::db::Result<Incident> {
    Ok(Incident {
        id: r.get(0)?,
        slug: r.get(1)?,
        title: r.get(2)?,
        severity: r.get(3)?,
        state: r.get(4)?,
        commander: r.get(5)?,
        classification: r.get(6)?,
        cause: r.get(7)?,
        note: r.get(8)?,
        opened_at: r.get(9)?,
        updated_at: r.get(10)?,
        closed_at: r.get(11)?,
    })
}

impl Store {
    /// Opens an incident, or returns the one of that slug already open (opening is idempotent);
    /// the bool says whether it is new.
    pub fn open_incident(&self, i: &Incident, draft: &Draft) -> Result<(Incident, bool)> {
        self.write("opening an incident", |tx| {
            let existing = tx
                .query_row(
                    &format!("SELECT {COLUMNS} FROM incidents WHERE slug = ?1"),
                    [&i.slug],
                    from_row,
                )
                .optional()?;
            if let Some(e) = existing {
                return Ok((e, false));
            }
            tx.execute(
                "INSERT INTO incidents (slug, title, severity, state, commander, note, opened_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![i.slug, i.title, i.severity, i.state, i.commander, i.note, i.opened_at],
            )?;
            let id = tx.last_insert_rowid()?;
            append_audit(tx, draft)?;
            Ok((Incident { id, ..i.clone() }, true))
        })
    }

    /// Writes the incident as changed, with the audit event of the change.
    pub fn update_incident(&self, i: &Incident, draft: &Draft) -> Result<()> {
        self.write("updating an incident", |tx| {
            tx.execute(
                "UPDATE incidents SET state = ?2, commander = ?3, classification = ?4, cause = ?5, updated_at = ?6, \
                 closed_at = ?7, severity = ?8 WHERE id = ?1",
                params![
                    i.id,
                    i.state,
                    i.commander,
                    i.classification,
                    i.cause,
                    i.updated_at,
                    i.closed_at,
                    i.severity
                ],
            )?;
            append_audit(tx, draft)?;
            Ok(())
        })
    }

    /// An incident by its slug or its number.
    pub fn incident(&self, id: &str) -> Result<Option<Incident>> {
        self.row(
            "reading an incident",
            &format!("SELECT {COLUMNS} FROM incidents WHERE slug = ?1 OR CAST(id AS TEXT) = ?1"),
            [id],
            from_row,
        )
    }

    /// Incidents newest first; only those not closed or cancelled when `open`.
    pub fn incidents(&self, open: bool, limit: i64) -> Result<Vec<Incident>> {
        self.rows(
            "listing incidents",
            &format!(
                "SELECT {COLUMNS} FROM incidents WHERE (?1 = 0 OR state NOT IN ('closed', 'cancelled')) ORDER BY id DESC LIMIT ?2"
            ),
            params![open, limit],
            from_row,
        )
    }
}
