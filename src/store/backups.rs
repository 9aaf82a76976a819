//! SQL for backup archives: recorded on create, marked on verify, drill and prune.

use super::db::{Row, params};
use serde::Serialize;

use super::Result;
use super::audit_log::append_audit;
use super::connection::Store;
use crate::audit::Draft;

/// An archive as the store knows it.
#[derive(Debug, Clone, Serialize)]
pub struct BackupRecord {
    pub id: i64,
    pub target: String,
    pub path: String,
    pub created_at: String,
    pub host: String,
    pub size: i64,
    pub sha256: String,
    pub files: i64,
    pub data_bytes: i64,
    pub duration_ms: i64,
    pub verified_at: Option<String>,
    pub verify_ok: Option<bool>,
    pub verify_detail: Option<String>,
    pub drilled_at: Option<String>,
    pub drill_ok: Option<bool>,
    pub drill_ms: Option<i64>,
}

/// An offsite upload in progress (`backup push`): the parts sent so far, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsiteUpload {
    pub url: String,
    pub archive: String,
    /// The archive's SHA-256 when the upload began: a different file starts over.
    pub sha256: String,
    /// The S3 multipart upload id (`dir` for a directory).
    pub upload_id: String,
    pub part_size: i64,
    /// Per part sent: the id the store gave it (S3's ETag; empty for a directory).
    pub parts: Vec<String>,
    pub started_at: String,
    /// Pushes in a row whose first request to this upload failed.
    pub failed_starts: i64,
}

#[derive(Debug, Clone)]
pub struct NewBackup {
    pub target: String,
    pub path: String,
    pub created_at: String,
    pub host: String,
    pub size: i64,
    pub sha256: String,
    pub files: i64,
    pub data_bytes: i64,
    pub duration_ms: i64,
}

const COLUMNS: &str = "id, target, path, created_at, host, size, sha256, files, data_bytes, duration_ms, \
    verified_at, verify_ok, verify_detail, drilled_at, drill_ok, drill_ms";

fn from_row(r: &Row) -> super::db::Result<BackupRecord> {
    Ok(BackupRecord {
        id: r.get(0)?,
        target: r.get(1)?,
        path: r.get(2)?,
        created_at: r.get(3)?,
        host: r.get(4)?,
        size: r.get(5)?,
        sha256: r.get(6)?,
        files: r.get(7)?,
        data_bytes: r.get(8)?,
        duration_ms: r.get(9)?,
        verified_at: r.get(10)?,
        verify_ok: r.get(11)?,
        verify_detail: r.get(12)?,
        drilled_at: r.get(13)?,
        drill_ok: r.get(14)?,
        drill_ms: r.get(15)?,
    })
}

/// Per target, for `/metrics`.
#[derive(Debug, Clone)]
pub struct BackupMetrics {
    pub target: String,
    /// The newest archive.
    pub created_at: String,
    pub size: i64,
    /// The newest archive that passed verification.
    pub verified_created_at: Option<String>,
    /// Recovery time of the latest successful drill.
    pub drill_ms: Option<i64>,
}

impl Store {
    /// One row per target with an archive.
    pub fn backup_metrics(&self) -> Result<Vec<BackupMetrics>> {
        self.rows(
            "reading backup metrics",
            "SELECT b.target, b.created_at, b.size, \
                   (SELECT max(created_at) FROM backups v WHERE v.target = b.target AND v.pruned_at IS NULL AND v.verify_ok = 1), \
                   (SELECT drill_ms FROM backups d WHERE d.target = b.target AND d.drill_ok = 1 ORDER BY d.drilled_at DESC LIMIT 1) \
                 FROM backups b WHERE b.pruned_at IS NULL AND b.id = \
                   (SELECT id FROM backups n WHERE n.target = b.target AND n.pruned_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 1) \
                 ORDER BY b.target",
            (),
            |r| {
            Ok(BackupMetrics {
                target: r.get(0)?,
                created_at: r.get(1)?,
                size: r.get(2)?,
                verified_created_at: r.get(3)?,
                drill_ms: r.get(4)?,
            })
            },
        )
    }

    /// Records a new archive and its audit event in one transaction.
    pub fn record_backup(&self, b: &NewBackup, draft: &Draft) -> Result<i64> {
        self.write("recording a backup", |tx| {
            tx.execute(
                "INSERT INTO backups (target, path, created_at, host, size, sha256, files, data_bytes, duration_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT(path) DO UPDATE SET created_at = excluded.created_at, size = excluded.size, \
                 sha256 = excluded.sha256, files = excluded.files, data_bytes = excluded.data_bytes, \
                 duration_ms = excluded.duration_ms, pruned_at = NULL, verified_at = NULL, verify_ok = NULL, \
                 verify_detail = NULL, drilled_at = NULL, drill_ok = NULL, drill_ms = NULL",
                params![
                    b.target,
                    b.path,
                    b.created_at,
                    b.host,
                    b.size,
                    b.sha256,
                    b.files,
                    b.data_bytes,
                    b.duration_ms
                ],
            )?;
            let id = tx.query_row("SELECT id FROM backups WHERE path = ?1", [&b.path], |r| r.get(0))?;
            append_audit(tx, draft)?;
            Ok(id)
        })
    }

    /// Archives not pruned, newest first; of one target if given.
    pub fn list_backups(&self, target: Option<&str>) -> Result<Vec<BackupRecord>> {
        self.rows(
            "listing backups",
            &format!(
                "SELECT {COLUMNS} FROM backups WHERE pruned_at IS NULL AND (CAST(?1 AS TEXT) IS NULL OR target = ?1) \
                 ORDER BY created_at DESC, id DESC"
            ),
            [target],
            from_row,
        )
    }

    pub fn backup_by_path(&self, path: &str) -> Result<Option<BackupRecord>> {
        self.row(
            "reading a backup",
            &format!("SELECT {COLUMNS} FROM backups WHERE path = ?1 AND pruned_at IS NULL"),
            [path],
            from_row,
        )
    }

    /// Records the outcome of `backup verify`.
    pub fn mark_verified(&self, id: i64, at: &str, ok: bool, detail: &str, draft: &Draft) -> Result<()> {
        self.write("recording a verification", |tx| {
            tx.execute(
                "UPDATE backups SET verified_at = ?2, verify_ok = ?3, verify_detail = ?4 WHERE id = ?1",
                params![id, at, ok, detail],
            )?;
            append_audit(tx, draft).map(|_| ())
        })
    }

    /// Records the outcome of `backup drill`.
    pub fn mark_drilled(&self, id: i64, at: &str, ok: bool, recovery_ms: i64, draft: &Draft) -> Result<()> {
        self.write("recording a drill", |tx| {
            tx.execute(
                "UPDATE backups SET drilled_at = ?2, drill_ok = ?3, drill_ms = ?4 WHERE id = ?1",
                params![id, at, ok, recovery_ms],
            )?;
            append_audit(tx, draft).map(|_| ())
        })
    }

    /// Marks archives pruned (their files are gone), one audit event for the batch.
    pub fn mark_pruned(&self, ids: &[i64], at: &str, draft: &Draft) -> Result<()> {
        self.write("recording pruned backups", |tx| {
            let mut stmt = tx.prepare_cached("UPDATE backups SET pruned_at = ?2 WHERE id = ?1")?;
            for id in ids {
                stmt.execute(params![id, at])?;
            }
            append_audit(tx, draft).map(|_| ())
        })
    }
}

impl Store {
    pub fn offsite_upload(&self, url: &str, archive: &str) -> Result<Option<OffsiteUpload>> {
        self.row(
            "reading an offsite upload",
            "SELECT sha256, upload_id, part_size, parts, started_at, failed_starts FROM offsite_uploads WHERE url = ?1 AND archive = ?2",
            params![url, archive],
            |r| {
                let parts: String = r.get(3)?;
                Ok(OffsiteUpload {
                    url: url.to_string(),
                    archive: archive.to_string(),
                    sha256: r.get(0)?,
                    upload_id: r.get(1)?,
                    part_size: r.get(2)?,
                    parts: serde_json::from_str(&parts).unwrap_or_default(),
                    started_at: r.get(4)?,
                    failed_starts: r.get(5)?,
                })
            },
        )
    }

    /// Records an upload and the parts sent so far (each part is saved once it is stored).
    pub fn save_offsite_upload(&self, u: &OffsiteUpload) -> Result<()> {
        let parts = serde_json::to_string(&u.parts).unwrap_or_else(|_| "[]".into());
        self.write("recording an offsite upload", |tx| {
            tx.execute(
                "INSERT INTO offsite_uploads (url, archive, sha256, upload_id, part_size, parts, started_at, failed_starts) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (url, archive) DO UPDATE SET sha256 = ?3, upload_id = ?4, part_size = ?5, parts = ?6, \
                 started_at = ?7, failed_starts = ?8",
                params![u.url, u.archive, u.sha256, u.upload_id, u.part_size, parts, u.started_at, u.failed_starts],
            )
            .map(|_| ())
        })
    }

    pub fn forget_offsite_upload(&self, url: &str, archive: &str) -> Result<()> {
        self.write("forgetting an offsite upload", |tx| {
            tx.execute(
                "DELETE FROM offsite_uploads WHERE url = ?1 AND archive = ?2",
                params![url, archive],
            )
            .map(|_| ())
        })
    }
}
