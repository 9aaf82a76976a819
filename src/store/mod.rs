//! The store: runbook's persistent state behind one API of domain types.
//!
//! Owns every SQL statement (`sqlite.rs`; a PostgreSQL backend will sit beside it), migrations
//! and transactions. Domain modules call `Store` methods with domain values and never see SQL.
//! Invariant: a state change and its audit event commit in one transaction, or neither does.

mod sqlite;
mod types;

pub use sqlite::Store;
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

impl StoreError {
    /// What the operator can do about it.
    pub fn hint(&self) -> Option<String> {
        use rusqlite::ErrorCode;
        let code = match self {
            StoreError::Open { source, .. } | StoreError::Sqlite { source, .. } => source.sqlite_error_code(),
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
            Some(ErrorCode::DiskFull) => Some(
                "the disk holding the state file is full: free space and retry; the change was rolled back, nothing was half-written".into(),
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

pub type Result<T> = std::result::Result<T, StoreError>;
