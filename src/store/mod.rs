//! The store: runbook's persistent state behind one API of domain types.
//!
//! Owns every SQL statement (the connection in `sqlite.rs`, the queries of each area in a file
//! of its own; a PostgreSQL backend will sit beside them), migrations
//! and transactions. Domain modules call `Store` methods with domain values and never see SQL.
//! Invariant: a state change and its audit event commit in one transaction, or neither does.

mod alerts;
pub mod archive;
mod audit_log;
mod backups;
pub mod chain;
mod check_results;
mod deploys;
pub mod drift;
mod gates;
pub mod head;
mod heartbeats;
mod incidents;
mod notifications;
mod runs;
mod script_state;
mod sessions;
mod sqlite;
mod tokens;
mod types;

pub use alerts::{Alert, AlertFilter, AlertStatus, AlertTx, CheckState, Cutoff, Delivery, NewAlert, Pruned, Silence};
pub use audit_log::AuditArchive;
pub use backups::{BackupMetrics, BackupRecord, NewBackup, OffsiteUpload};
pub use check_results::{LATENCY_BOUNDS_MS, LatencyHistogram};
pub use deploys::Deploy;
pub use drift::{DriftAck, DriftRecord};
pub use gates::GateRun;
pub use heartbeats::Heartbeat;
pub use incidents::Incident;
pub use notifications::{ChannelHealth, NewNotification, Notification};
pub use sessions::{ChangeRequest, NewChange, Session, SessionCommand};
pub use sqlite::Store;
pub use tokens::{ApiToken, MetricsSnapshot};
pub use types::*;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the state file {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("state file {path}: {context}: {source}")]
    Sqlite {
        path: PathBuf,
        context: &'static str,
        source: rusqlite::Error,
    },
    #[error("state file {path} is at schema version {current}, newer than this runbook knows ({head})")]
    Ahead { path: PathBuf, current: u32, head: u32 },
}

impl crate::util::Explain for StoreError {
    fn class(&self) -> crate::util::ExitClass {
        crate::util::ExitClass::Internal
    }

    fn kind(&self) -> &'static str {
        "state"
    }

    fn hint(&self) -> Option<String> {
        use rusqlite::ErrorCode;
        let (code, path) = match self {
            StoreError::Open { source, path } | StoreError::Sqlite { source, path, .. } => {
                (source.sqlite_error_code(), path)
            }
            StoreError::CreateDir { .. } => {
                return Some("create the directory or point state.url somewhere writable".into());
            }
            StoreError::Ahead { .. } => {
                return Some("upgrade runbook; this state was written by a newer version".into());
            }
        };
        match code {
            Some(ErrorCode::ReadOnly) | Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) => Some(
                "the state file or its directory is not writable: fix its permissions or mount, or point state.url elsewhere; nothing was changed".into(),
            ),
            Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure) if file_size_limit_reached() => Some(
                "the state file reached this process's file size limit (ulimit -f, LimitFSIZE=): raise the limit and retry; the change was rolled back".into(),
            ),
            Some(ErrorCode::DiskFull) => Some(DISK_FULL.into()),
            Some(ErrorCode::SystemIoFailure) if disk_full(path) => Some(DISK_FULL.into()),
            Some(ErrorCode::SystemIoFailure) => Some(
                "an I/O error on the state file: check free space, the disk (dmesg) and the file's permissions".into(),
            ),
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                Some("another runbook process holds the state file; retry in a moment".into())
            }
            Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
                Some("the state file is damaged or not a runbook database; restore it from a backup".into())
            }
            _ => None,
        }
    }
}

const DISK_FULL: &str = "the disk holding the state file is full: free space and retry; the change was rolled back, nothing was half-written";

/// Whether the filesystem holding `path` has no space left for unprivileged writes.
fn disk_full(path: &std::path::Path) -> bool {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    rustix::fs::statvfs(dir).map(|s| s.f_bavail == 0).unwrap_or(false)
}

static FILE_SIZE_LIMIT: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> = std::sync::OnceLock::new();

/// Turns SIGXFSZ (a write past the file size limit) from a silent kill into an error: with a
/// handler installed the write fails with EFBIG, the transaction rolls back, and the error
/// names the limit. A handler, not SIG_IGN, so that child processes start with the default.
pub fn guard_file_size_limit() {
    let flag = FILE_SIZE_LIMIT.get_or_init(Default::default);
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGXFSZ, flag.clone()) {
        tracing::debug!(error = %e, "cannot handle SIGXFSZ");
    }
}

/// Whether a write of this process went past its file size limit.
pub fn file_size_limit_reached() -> bool {
    FILE_SIZE_LIMIT
        .get()
        .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
}

pub type Result<T> = std::result::Result<T, StoreError>;
