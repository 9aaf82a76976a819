//! `audit archive`: move old events out of the state file into compressed files that keep
//! the chain verifiable.
//!
//! Owns the files (`audit-<first>-<last>.jsonl.zst`, events exactly as hashed) and their
//! anchor rows (last seq and hash, the file's SHA-256). Invariant: the chain left in the state
//! file continues from the newest anchor, so `audit verify` works across the boundary.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AuditArchive, Store, StoreError};
use crate::audit::{Draft, Event, GENESIS, Verifier};
use crate::clock;
use crate::config::Redactor;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the audit chain is broken at seq {0}: not archiving it")]
    Broken(i64),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An event as archived: every field as hashed.
#[derive(Debug, Serialize, Deserialize)]
struct Archived {
    seq: i64,
    ts: String,
    actor: String,
    kind: String,
    subject: String,
    data: String,
    prev_hash: String,
    hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchivePlan {
    pub before: String,
    pub events: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub file: Option<PathBuf>,
    pub sha256: Option<String>,
    pub applied: bool,
}

/// Where archive files go unless told: `<state>.audit/` beside the state file.
pub fn default_dir(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".audit");
    PathBuf::from(name)
}

/// `before` as the archive takes it: an RFC 3339 time, or a date (its midnight, UTC).
pub fn parse_before(before: &str) -> Option<String> {
    clock::from_text(before)
        .or_else(|| clock::from_text(&format!("{before}T00:00:00Z")))
        .map(clock::to_text)
}

/// Plans (and with `apply`, does) moving every event older than `before` into `dir`.
pub fn archive(
    store: &Store,
    before: &str,
    dir: &Path,
    apply: bool,
    redactor: &Redactor,
) -> Result<ArchivePlan, ArchiveError> {
    let v = super::chain::scan_chain(store, &mut |_| {})?;
    if let Some(b) = v.first_break {
        return Err(ArchiveError::Broken(b.seq));
    }
    let mut plan = ArchivePlan {
        before: before.to_string(),
        events: 0,
        first_seq: None,
        last_seq: None,
        file: None,
        sha256: None,
        applied: false,
    };
    let mut last_hash = String::new();
    store.audit_before(before, &mut |e| {
        plan.events += 1;
        plan.first_seq.get_or_insert(e.seq);
        plan.last_seq = Some(e.seq);
        last_hash = e.hash.clone();
        true
    })?;
    let (Some(first), Some(last)) = (plan.first_seq, plan.last_seq) else {
        return Ok(plan);
    };
    let file = dir.join(format!("audit-{first:012}-{last:012}.jsonl.zst"));
    plan.file = Some(file.clone());
    if !apply {
        return Ok(plan);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = file.with_extension("zst.tmp");
    let written = (|| -> Result<(), ArchiveError> {
        let f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let mut enc = zstd::stream::write::Encoder::new(std::io::BufWriter::new(f), 3).map_err(io(&tmp))?;
        let mut failed = None;
        store.audit_before(before, &mut |e: &Event| {
            let line = serde_json::to_string(&Archived {
                seq: e.seq,
                ts: e.ts.clone(),
                actor: e.actor.clone(),
                kind: e.kind.clone(),
                subject: e.subject.clone(),
                data: e.data.clone(),
                prev_hash: e.prev_hash.clone(),
                hash: e.hash.clone(),
            })
            .unwrap_or_default();
            if let Err(err) = writeln!(enc, "{line}") {
                failed = Some(err);
                return false;
            }
            true
        })?;
        if let Some(e) = failed {
            return Err(io(&tmp)(e));
        }
        let f = enc
            .finish()
            .map_err(io(&tmp))?
            .into_inner()
            .map_err(|e| io(&tmp)(e.into_error()))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &file).map_err(io(&file))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let sha = crate::util::digest::hash_file(&file).map_err(io(&file))?.1;
    let draft = Draft::new(
        "audit.archived",
        "audit",
        json!({ "first_seq": first, "last_seq": last, "events": plan.events, "file": file, "sha256": sha, "before": before }),
        redactor,
    );
    store.seal_audit_archive(
        &AuditArchive {
            first_seq: first,
            last_seq: last,
            last_hash,
            file: file.display().to_string(),
            sha256: sha.clone(),
        },
        &clock::to_text(clock::now()),
        &draft,
    )?;
    plan.sha256 = Some(sha);
    plan.applied = true;
    Ok(plan)
}

/// One archive file held against its record and the chain before it.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub file: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub ok: bool,
    pub detail: String,
}

/// Checks every recorded archive file: present, its SHA-256, and its events chained from the
/// previous file (or the start) to the recorded anchor.
pub fn check_files(store: &Store) -> Result<Vec<FileCheck>, StoreError> {
    let mut out = Vec::new();
    let mut anchor: Option<(i64, String)> = None;
    for a in store.audit_archives()? {
        let detail = check_file(Path::new(&a.file), &a.sha256, anchor.clone(), a.last_seq, &a.last_hash);
        out.push(FileCheck {
            file: a.file,
            first_seq: a.first_seq,
            last_seq: a.last_seq,
            ok: detail.is_ok(),
            detail: detail.unwrap_or_else(|e| e),
        });
        anchor = Some((a.last_seq, a.last_hash));
    }
    Ok(out)
}

fn check_file(
    path: &Path,
    sha: &str,
    anchor: Option<(i64, String)>,
    last: i64,
    last_hash: &str,
) -> Result<String, String> {
    let got = crate::util::digest::hash_file(path)
        .map_err(|e| format!("cannot be read: {e}"))?
        .1;
    if got != sha {
        return Err(format!("its SHA-256 is {got}, the state file recorded {sha}"));
    }
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let dec = zstd::stream::read::Decoder::new(f).map_err(|e| e.to_string())?;
    let mut v = Verifier::after(anchor);
    for line in std::io::BufReader::new(dec).lines() {
        let line = line.map_err(|e| e.to_string())?;
        let a: Archived = serde_json::from_str(&line).map_err(|e| format!("a line is not an event: {e}"))?;
        let e = Event {
            seq: a.seq,
            ts: a.ts,
            actor: a.actor,
            kind: a.kind,
            subject: a.subject,
            data: a.data,
            prev_hash: a.prev_hash,
            hash: a.hash,
        };
        if !v.feed(&e) {
            let b = v.first_break.unwrap_or(crate::audit::Break {
                seq: e.seq,
                reason: "broken".into(),
            });
            return Err(format!("broken at seq {}: {}", b.seq, b.reason));
        }
    }
    match v.head() {
        Some((s, h)) if *s == last && h == last_hash => Ok(format!("{} events chain to the anchor", v.checked)),
        Some((s, _)) => Err(format!("ends at seq {s}, the anchor is seq {last}")),
        None => Err(format!(
            "empty (expected events up to seq {last}, from {})",
            GENESIS.get(..8).unwrap_or("")
        )),
    }
}
