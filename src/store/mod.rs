//! The store: runbook's persistent state behind one API of domain types.
//!
//! Owns every SQL statement of the state (the queries of each area in a file of its own,
//! written once against `db::Conn`), the two backends (`sqlite`, `postgres`) with their
//! migrations, and transactions (`connection`). Domain modules call `Store` methods with
//! domain values and never see SQL or a backend's types.
//! Invariant: a state change and its audit event commit in one transaction, or neither does.

mod alerts;
pub mod archive;
mod audit_log;
mod backups;
pub mod chain;
mod check_results;
mod connection;
pub mod copy;
pub mod db;
mod deploys;
pub mod drift;
mod fence;
pub mod fleet;
mod gates;
pub mod head;
mod heartbeats;
mod incidents;
mod locks;
mod notifications;
pub mod postgres;
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
pub use connection::{Location, Store};
pub use db::{Backend, DbError};
pub use deploys::Deploy;
pub use drift::{DriftAck, DriftRecord};
pub use gates::GateRun;
pub use heartbeats::Heartbeat;
pub use incidents::Incident;
pub use locks::StateLock;
pub use notifications::{ChannelHealth, NewNotification, Notification};
pub use sessions::{ChangeRequest, NewChange, Session, SessionCommand};
pub use tokens::{ApiToken, MetricsSnapshot};
pub use types::*;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    /// `what` is "state file PATH" or "PostgreSQL state URL".
    #[error("cannot open the {what}: {source}")]
    Open { what: String, source: DbError },
    #[error("{what}: {context}: {source}")]
    Query {
        what: String,
        /// The state file (or a PostgreSQL state's local anchor), to tell a full disk.
        path: PathBuf,
        context: &'static str,
        source: DbError,
    },
    #[error("{what} is at schema version {current}, newer than this runbook knows ({head})")]
    Ahead { what: String, current: u32, head: u32 },
    /// `place` is the lock directory of a state file, or the PostgreSQL state.
    #[error("cannot take the lock `{name}` ({place}): {error}")]
    Lock { name: String, place: String, error: String },
}

impl StoreError {
    /// Whether SQLite refused a write because the state file is read-only to this process (a
    /// read-only mount, the kernel's read-only sandbox).
    pub fn is_read_only(&self) -> bool {
        use rusqlite::ErrorCode;
        match self {
            StoreError::Open {
                source: DbError::Sqlite(e),
                ..
            }
            | StoreError::Query {
                source: DbError::Sqlite(e),
                ..
            } => matches!(e.sqlite_error_code(), Some(ErrorCode::ReadOnly)),
            _ => false,
        }
    }
}

impl crate::util::Explain for StoreError {
    fn class(&self) -> crate::util::ExitClass {
        crate::util::ExitClass::Internal
    }

    fn kind(&self) -> &'static str {
        "state"
    }

    fn hint(&self) -> Option<String> {
        let (source, path) = match self {
            StoreError::Open { source, .. } => (source, None),
            StoreError::Query { source, path, .. } => (source, Some(path)),
            StoreError::CreateDir { .. } => {
                return Some("create the directory or point state.url somewhere writable".into());
            }
            StoreError::Ahead { .. } => {
                return Some("upgrade runbook; this state was written by a newer version".into());
            }
            StoreError::Lock { .. } => {
                return Some(
                    "locks live beside the state file (a directory that must be writable) or in the PostgreSQL state (which must be reachable)".into(),
                );
            }
        };
        match source {
            DbError::Sqlite(e) => sqlite_hint(e, path.map(|p| p.as_path())),
            DbError::Pg(e) => pg_hint(e),
            _ => None,
        }
    }
}

fn sqlite_hint(e: &rusqlite::Error, path: Option<&std::path::Path>) -> Option<String> {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::ReadOnly) | Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) => Some(
            "the state file or its directory is not writable: fix its permissions or mount, or point state.url elsewhere; nothing was changed".into(),
        ),
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure) if file_size_limit_reached() => Some(
            "the state file reached this process's file size limit (ulimit -f, LimitFSIZE=): raise the limit and retry; the change was rolled back".into(),
        ),
        Some(ErrorCode::DiskFull) => Some(DISK_FULL.into()),
        Some(ErrorCode::SystemIoFailure) if path.is_some_and(disk_full) => Some(DISK_FULL.into()),
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

fn pg_hint(e: &tokio_postgres::Error) -> Option<String> {
    use tokio_postgres::error::SqlState;
    let Some(code) = e.code() else {
        return Some(
            "PostgreSQL did not answer: check that it runs and that state.url names the right host and port; nothing was changed".into(),
        );
    };
    let message = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
    Some(match code {
        c if *c == SqlState::INVALID_PASSWORD => {
            "the server refused the password: check the URL, PGPASSWORD or ~/.pgpass (mode 0600)".into()
        }
        c if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION && message.contains("no encryption") => {
            "the server accepts only encrypted connections: add ?sslmode=require (or verify-full) to state.url".into()
        }
        c if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION || *c == SqlState::INVALID_CATALOG_NAME => {
            "the server refused this user or database: check state.url and pg_hba.conf".into()
        }
        c if *c == SqlState::READ_ONLY_SQL_TRANSACTION || *c == SqlState::INSUFFICIENT_PRIVILEGE => {
            "the PostgreSQL role cannot write the state: give it ownership of the database (or connect to the primary); nothing was changed".into()
        }
        c if *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CANNOT_CONNECT_NOW => {
            "PostgreSQL is shutting down or starting: retry when it is up; nothing was half-written".into()
        }
        _ => return None,
    })
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
