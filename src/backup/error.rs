//! The one error type of backups, with the hint each case gives the operator.

use std::path::{Path, PathBuf};

use crate::store::StoreError;
use crate::util::{ExitClass, Explain};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no backup target `{0}` in the configuration")]
    UnknownTarget(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("{what} failed: {detail}")]
    Dump { what: String, detail: String },
    #[error("another backup of `{0}` is running")]
    Busy(String),
    #[error("no archive of `{0}` is recorded")]
    NoArchive(String),
    #[error("offsite: {0}")]
    Offsite(String),
    #[error("backup target `{0}` has no `offsite:`")]
    NoOffsite(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BackupError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        BackupError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl Explain for BackupError {
    fn class(&self) -> ExitClass {
        match self {
            BackupError::Store(s) => s.class(),
            BackupError::UnknownTarget(_) | BackupError::NoArchive(_) | BackupError::NoOffsite(_) => ExitClass::Usage,
            BackupError::Dump { .. } | BackupError::Busy(_) | BackupError::Offsite(_) => ExitClass::Failed,
            _ => ExitClass::Internal,
        }
    }

    fn kind(&self) -> &'static str {
        match (self, self.class()) {
            (BackupError::Store(s), _) => s.kind(),
            (_, ExitClass::Internal) => "backup",
            (_, class) => class.name(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            BackupError::UnknownTarget(_) => Some("list the targets with: runbook config show".into()),
            BackupError::Io { source, .. } if source.raw_os_error() == Some(28) => Some(
                "the destination is full: prune old archives (runbook backup prune TARGET --apply) or free space"
                    .into(),
            ),
            BackupError::Busy(_) => Some("wait for it to finish; a crashed one releases its lock by itself".into()),
            BackupError::NoArchive(t) => Some(format!("create one first: runbook backup create {t}")),
            BackupError::NoOffsite(_) => {
                Some("add `offsite: { url: s3://bucket/prefix }` (or a directory) to the target".into())
            }
            BackupError::Store(e) => e.hint(),
            _ => None,
        }
    }
}
