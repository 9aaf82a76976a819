//! The audit head file: the newest committed audit event (seq and hash), kept beside the state
//! file (`<state>.audit-head`) so that a state file which lost committed events is caught.
//!
//! Owns that small file and its update rule; it never opens the database's own files (a second
//! descriptor on them would drop SQLite's POSIX locks when closed). Invariant: the file only
//! moves forward along the chain it names: it is never rewritten by a chain that does not
//! contain the event it records, so evidence of a lost tail stays until someone looks.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The newest audit event recorded in the head file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

/// `<state>.audit-head`.
pub fn path_for(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".audit-head");
    PathBuf::from(name)
}

/// The lock serializing updates of the head file between processes: its own file in the
/// state's lock directory, never the head file itself (which is replaced by rename).
fn lock_path(state: &Path) -> PathBuf {
    let mut name = state
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "runbook".into());
    name.push(".locks");
    state.with_file_name(name).join("@audit-head.lock")
}

/// The head recorded for `state`; `None` when there is no file or it cannot be read.
pub fn read(state: &Path) -> Option<Head> {
    parse(&std::fs::read_to_string(path_for(state)).ok()?)
}

fn parse(text: &str) -> Option<Head> {
    let mut parts = text.split_whitespace();
    let seq = parts.next()?.parse().ok()?;
    let hash = parts.next()?.to_string();
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(Head { seq, hash })
}

/// What an update found in the head file.
#[derive(Debug, PartialEq, Eq)]
pub enum Advance {
    /// The file now names the new head (or already named it or a newer head of this chain).
    Recorded,
    /// The file names an event this chain does not hold: committed events were lost. The file
    /// is left as it is, as the evidence `audit verify` reports.
    Diverged(Head),
}

/// Records `new` as the head after a commit whose first event followed `before` (the head the
/// transaction found). `hash_at(seq)` answers the hash this chain holds at `seq`, `None` when
/// it holds no such event, `Some(None)` when the event was archived out of the state file.
pub fn advance(
    state: &Path,
    before: Option<&Head>,
    new: &Head,
    hash_at: &mut dyn FnMut(i64) -> Option<Option<String>>,
) -> std::io::Result<Advance> {
    let lock = lock_path(state);
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let guard = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)?;
    guard.lock()?;
    let Some(recorded) = read(state) else {
        write_atomic(state, new)?;
        return Ok(Advance::Recorded);
    };
    let ours = if recorded.seq == new.seq {
        Some(recorded.hash == new.hash)
    } else if Some(recorded.seq) == before.map(|b| b.seq) {
        before.map(|b| b.hash == recorded.hash)
    } else {
        // A head another process recorded meanwhile, or one left behind by a crash between
        // a commit and this update: ask the chain itself.
        match hash_at(recorded.seq) {
            Some(Some(h)) => Some(h == recorded.hash),
            Some(None) => Some(true),
            None => None,
        }
    };
    match ours {
        Some(true) if recorded.seq < new.seq => write_atomic(state, new).map(|()| Advance::Recorded),
        Some(true) => Ok(Advance::Recorded),
        // Not in this chain: either newer than anything here (the tail was lost) or a
        // different event at that seq (lost, then written again).
        _ => Ok(Advance::Diverged(recorded)),
    }
}

/// Replaces the head file: a temp file renamed over it, so a reader sees the old or the new
/// head, never half of one. Not fsynced: a head file older than the chain is only less
/// evidence, never a false alarm.
fn write_atomic(state: &Path, head: &Head) -> std::io::Result<()> {
    let path = path_for(state);
    let mut tmp = path.clone().into_os_string();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp)?;
    let written = f
        .write_all(format!("{} {}\n", head.seq, head.hash).as_bytes())
        .and_then(|()| std::fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Forgets the recorded head (after an operator accepted a restored state file).
pub fn forget(state: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path_for(state)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(seq: i64, c: char) -> Head {
        Head {
            seq,
            hash: c.to_string().repeat(64),
        }
    }

    #[test]
    fn moves_forward_along_its_chain_and_keeps_the_evidence_of_another() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s.db");
        let mut none = |_| None;
        assert_eq!(advance(&state, None, &h(1, 'a'), &mut none).unwrap(), Advance::Recorded);
        assert_eq!(read(&state), Some(h(1, 'a')));
        assert_eq!(
            advance(&state, Some(&h(1, 'a')), &h(2, 'b'), &mut none).unwrap(),
            Advance::Recorded
        );
        assert_eq!(read(&state), Some(h(2, 'b')));
        // An older commit's late update leaves the newer head.
        assert_eq!(
            advance(&state, Some(&h(0, '0')), &h(1, 'a'), &mut |_| Some(Some(
                "b".repeat(64)
            )))
            .unwrap(),
            Advance::Recorded
        );
        assert_eq!(read(&state), Some(h(2, 'b')));
        // The state file lost event 2 and a new event 2 was written: the file is kept.
        assert_eq!(
            advance(&state, Some(&h(1, 'a')), &h(2, 'c'), &mut none).unwrap(),
            Advance::Diverged(h(2, 'b'))
        );
        assert_eq!(
            advance(&state, Some(&h(2, 'c')), &h(3, 'd'), &mut none).unwrap(),
            Advance::Diverged(h(2, 'b'))
        );
        assert_eq!(read(&state), Some(h(2, 'b')));
        forget(&state).unwrap();
        assert_eq!(
            advance(&state, Some(&h(3, 'd')), &h(4, 'e'), &mut none).unwrap(),
            Advance::Recorded
        );
        assert_eq!(read(&state), Some(h(4, 'e')));
    }
}
