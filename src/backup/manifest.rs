//! `manifest.json`, the first entry of every archive: what is inside and how to check it.

use serde::{Deserialize, Serialize};

/// Version of the archive layout this runbook writes and reads.
pub const FORMAT: u32 = 1;
/// Name of the manifest entry, always the first in the tar stream.
pub const MANIFEST_NAME: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub target: String,
    pub host: String,
    pub runbook_version: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub sources: Vec<SourceEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceEntry {
    /// sqlite, postgres, dir or command.
    pub kind: String,
    /// Where it came from (a path, a URL without its password, a command line).
    pub origin: String,
    /// Its path inside the archive (a file, or the top directory of a `dir`).
    pub root: String,
    /// `PRAGMA integrity_check` of the snapshot when it was taken (sqlite only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity_check: Option<String>,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path inside the archive.
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Permission bits (and setuid/setgid/sticky).
    pub mode: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Hex SHA-256 of the content (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where a symlink points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Owner and group (numeric), restored when the restore runs as root. Absent in archives
    /// written before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

impl FileEntry {
    /// An entry with the size, mode and mtime of `meta`; no hash yet.
    pub fn of(path: String, kind: EntryKind, meta: &std::fs::Metadata) -> FileEntry {
        use std::os::unix::fs::MetadataExt;
        FileEntry {
            path,
            kind,
            size: meta.len(),
            mode: meta.mode() & 0o7777,
            mtime: meta.mtime(),
            sha256: None,
            link: None,
            uid: Some(meta.uid()),
            gid: Some(meta.gid()),
        }
    }
}

impl Manifest {
    pub fn files(&self) -> impl Iterator<Item = (&SourceEntry, &FileEntry)> {
        self.sources.iter().flat_map(|s| s.files.iter().map(move |f| (s, f)))
    }

    /// Bytes of file content in the archive.
    pub fn data_bytes(&self) -> u64 {
        self.files().map(|(_, f)| f.size).sum()
    }
}
