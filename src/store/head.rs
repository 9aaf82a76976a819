//! The audit head file (`<state>.audit-head`): the newest committed audit event (seq and
//! hash), kept beside the state file so that a state file which lost committed events is caught.
//!
//! Owns that file: one fixed-size record rewritten in place under an exclusive lock.
//! Invariants: it never opens the database's own files (closing a second descriptor would drop
//! SQLite's locks); it only moves forward along the chain it names, so evidence of a lost
//! tail stays until someone looks.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The newest audit event recorded in the head file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

/// One record: the seq right-aligned in 20 digits, a space, 64 hex digits, a newline. A fixed
/// size, so an update is one `pwrite` over the old record in place.
const RECORD: usize = 20 + 1 + 64 + 1;

/// `<state>.audit-head`.
pub fn path_for(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".audit-head");
    PathBuf::from(name)
}

/// The head recorded for `state`; `None` when there is no file or it cannot be read. Read
/// under a shared lock, so never half of an update.
pub fn read(state: &Path) -> Option<Head> {
    let file = File::open(path_for(state)).ok()?;
    file.lock_shared().ok()?;
    read_from(&file)
}

fn read_from(file: &File) -> Option<Head> {
    let mut buf = [0u8; RECORD];
    let n = file.read_at(&mut buf, 0).ok()?;
    parse(std::str::from_utf8(&buf[..n]).ok()?)
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

/// The head file of one state file, kept open by the store that updates it.
pub struct HeadFile {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl HeadFile {
    pub fn new(state: &Path) -> Self {
        HeadFile {
            path: path_for(state),
            file: Mutex::new(None),
        }
    }

    /// Records `new` as the head after a commit whose first event followed `before` (the
    /// head the transaction found). `hash_at(seq)` answers the hash this chain holds at
    /// `seq`: `None` when it holds no such event, `Some(None)` when the event was archived.
    /// Updates of all processes serialize on an exclusive lock of the file.
    pub fn advance(
        &self,
        before: Option<&Head>,
        new: &Head,
        hash_at: &mut dyn FnMut(i64) -> Option<Option<String>>,
    ) -> std::io::Result<Advance> {
        let mut slot = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // A file deleted since it was opened (an operator accepting a restored state file)
        // is made again, not written into where nobody can read it.
        if slot
            .as_ref()
            .is_some_and(|f| f.metadata().map_or(true, |m| m.nlink() == 0))
        {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&self.path)?,
            );
        }
        let Some(file) = slot.as_ref() else {
            return Ok(Advance::Recorded);
        };
        file.lock()?;
        let recorded = read_from(file);
        let newer = recorded.as_ref().is_none_or(|r| r.seq < new.seq);
        let judged = judge(recorded, before, new, hash_at);
        let written = match judged {
            Advance::Recorded if newer => file.write_all_at(format!("{:>20} {}\n", new.seq, new.hash).as_bytes(), 0),
            _ => Ok(()),
        };
        let _ = file.unlock();
        written.map(|()| judged)
    }
}

/// Whether `recorded` (what the file holds) belongs to the chain that just committed `new`.
fn judge(
    recorded: Option<Head>,
    before: Option<&Head>,
    new: &Head,
    hash_at: &mut dyn FnMut(i64) -> Option<Option<String>>,
) -> Advance {
    let Some(recorded) = recorded else {
        return Advance::Recorded;
    };
    let ours = if recorded.seq == new.seq {
        Some(recorded.hash == new.hash)
    } else if Some(recorded.seq) == before.map(|b| b.seq) {
        before.map(|b| b.hash == recorded.hash)
    } else {
        // A head another process recorded meanwhile, or one left behind by a crash between
        // a commit and its update: ask the chain itself.
        match hash_at(recorded.seq) {
            Some(Some(h)) => Some(h == recorded.hash),
            Some(None) => Some(true),
            None => None,
        }
    };
    match ours {
        Some(true) => Advance::Recorded,
        // Not in this chain: newer than anything here (the tail was lost), or a different
        // event at that seq (lost, then written again).
        _ => Advance::Diverged(recorded),
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
        let file = HeadFile::new(&state);
        let mut none = |_| None;
        assert_eq!(file.advance(None, &h(1, 'a'), &mut none).unwrap(), Advance::Recorded);
        assert_eq!(read(&state), Some(h(1, 'a')));
        assert_eq!(
            file.advance(Some(&h(1, 'a')), &h(2, 'b'), &mut none).unwrap(),
            Advance::Recorded
        );
        assert_eq!(read(&state), Some(h(2, 'b')));
        // An older commit's late update (another process) leaves the newer head.
        let other = HeadFile::new(&state);
        assert_eq!(
            other
                .advance(Some(&h(0, '0')), &h(1, 'a'), &mut |_| Some(Some("b".repeat(64))))
                .unwrap(),
            Advance::Recorded
        );
        assert_eq!(read(&state), Some(h(2, 'b')));
        // The state file lost event 2 and a new event 2 was written: the file is kept.
        assert_eq!(
            file.advance(Some(&h(1, 'a')), &h(2, 'c'), &mut none).unwrap(),
            Advance::Diverged(h(2, 'b'))
        );
        assert_eq!(
            file.advance(Some(&h(2, 'c')), &h(3, 'd'), &mut none).unwrap(),
            Advance::Diverged(h(2, 'b'))
        );
        assert_eq!(read(&state), Some(h(2, 'b')));
        // Deleted while open: made again.
        std::fs::remove_file(path_for(&state)).unwrap();
        assert_eq!(
            file.advance(Some(&h(3, 'd')), &h(4, 'e'), &mut none).unwrap(),
            Advance::Recorded
        );
        assert_eq!(read(&state), Some(h(4, 'e')));
        assert_eq!(std::fs::read_to_string(path_for(&state)).unwrap().len(), RECORD);
    }
}
