//! Consistent snapshots of a live SQLite database, and `PRAGMA integrity_check`.
//!
//! Owns both ways in: a WAL-mode database streamed page by page (`sqlite_dbpage`) from one
//! read transaction and checked in it; a rollback-journal one copied to scratch with the
//! online backup API, its lock held only for the copy. Invariant: the archived file is a
//! self-contained rollback-mode database, page for page what the application saw at one
//! instant.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::BackupError;

/// How long a snapshot waits for a writer's lock before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pages go to the archive in chunks of this size, at most [`CHUNKS_IN_FLIGHT`] ahead.
const CHUNK: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 4;

/// A snapshot ready to be archived: its size, and its bytes (streamed, or a file to read).
pub struct Taken {
    pub size: u64,
    /// The pages, as they are read (WAL mode); `None` when the snapshot is a file.
    pub stream: Option<Pages>,
}

/// A snapshot being taken in a thread of its own. `ready` says when it can be archived (or
/// why not); `check` gives its `PRAGMA integrity_check` once the archive has all of it.
pub struct Pending {
    pub source: usize,
    pub ready: Receiver<Result<Taken, String>>,
    pub check: JoinHandle<String>,
}

/// Starts the snapshot of `from` for source `source`. A rollback-mode database is copied to
/// `copy` (which the caller reads once `ready` says so); a WAL database is streamed.
pub fn start(source: usize, from: PathBuf, copy: PathBuf) -> Pending {
    let (tx, ready) = std::sync::mpsc::channel();
    let check = std::thread::spawn(move || snapshot(&from, &copy, &tx));
    Pending { source, ready, check }
}

/// The snapshot thread: returns the integrity check's result (empty when there is none,
/// because the snapshot failed or the archive stopped taking it).
fn snapshot(from: &Path, copy: &Path, ready: &std::sync::mpsc::Sender<Result<Taken, String>>) -> String {
    let conn = match open_source(from).and_then(|c| {
        let wal = c
            .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
            .map_err(|e| sqlite_error(from, e))?
            .eq_ignore_ascii_case("wal");
        Ok((c, wal))
    }) {
        Ok((c, true)) => c,
        Ok((c, false)) => {
            drop(c);
            let taken = backup_copy(from, copy)
                .and_then(|()| std::fs::metadata(copy).map_err(|e| BackupError::io(copy, e)))
                .map(|m| Taken {
                    size: m.len(),
                    stream: None,
                });
            let ok = taken.is_ok();
            let _ = ready.send(taken.map_err(|e| e.to_string()));
            return if ok {
                integrity_check(copy, false)
            } else {
                String::new()
            };
        }
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return String::new();
        }
    };
    // One read transaction from the page count to the end of the check: every page and the
    // check see the database as of its first read.
    let begun = conn.execute_batch("BEGIN").and_then(|()| {
        let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        Ok((size.max(0) as u64, pages.max(0) as u64))
    });
    let (page_size, pages) = match begun {
        Ok(p) => p,
        Err(e) => {
            let _ = ready.send(Err(sqlite_error(from, e).to_string()));
            return String::new();
        }
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let taken = Taken {
        size: page_size * pages,
        stream: Some(Pages {
            rx,
            chunk: Vec::new(),
            at: 0,
            left: page_size * pages,
        }),
    };
    if ready.send(Ok(taken)).is_err() {
        return String::new();
    }
    match stream_pages(&conn, pages, &tx) {
        Ok(true) => {}
        // The archive stopped reading: nothing to check.
        Ok(false) => return String::new(),
        Err(e) => {
            let _ = tx.send(Err(io::Error::other(format!("{}: {}", from.display(), e))));
            return String::new();
        }
    }
    drop(tx);
    let result = check(&conn).unwrap_or_else(|e| format!("cannot be checked: {e}"));
    let _ = conn.execute_batch("COMMIT");
    result
}

/// Sends every page, in order, in chunks; page 1 says "rollback mode" (the archived file has
/// no WAL). Returns false when the reader went away.
fn stream_pages(conn: &Connection, pages: u64, tx: &SyncSender<io::Result<Vec<u8>>>) -> Result<bool, String> {
    let e = |e: rusqlite::Error| e.to_string();
    let mut stmt = conn
        .prepare("SELECT data FROM sqlite_dbpage ORDER BY pgno")
        .map_err(e)?;
    let mut rows = stmt.query([]).map_err(e)?;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut seen = 0u64;
    while let Some(row) = rows.next().map_err(e)? {
        let page = row.get_ref(0).and_then(|v| Ok(v.as_blob()?)).map_err(e)?;
        let at = chunk.len();
        chunk.extend_from_slice(page);
        if seen == 0 && page.len() >= 20 {
            // File format write and read versions: 2 (WAL) becomes 1 (legacy, rollback).
            chunk[at + 18] = 1;
            chunk[at + 19] = 1;
        }
        seen += 1;
        if chunk.len() >= CHUNK
            && tx
                .send(Ok(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))))
                .is_err()
        {
            return Ok(false);
        }
    }
    if seen != pages {
        return Err(format!("read {seen} pages of the {pages} the database has"));
    }
    Ok(chunk.is_empty() || tx.send(Ok(chunk)).is_ok())
}

/// The pages of a streamed snapshot, as a reader. Ending before the size it announced is an
/// error (the snapshot thread stopped), never a short file.
pub struct Pages {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    left: u64,
}

impl Read for Pages {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(next) => {
                    self.chunk = next?;
                    self.at = 0;
                }
                Err(_) if self.left == 0 => return Ok(0),
                Err(_) => {
                    return Err(io::Error::other(format!(
                        "the snapshot stopped with {} bytes still to come",
                        self.left
                    )));
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

fn open_source(from: &Path) -> Result<Connection, BackupError> {
    if !from.is_file() {
        return Err(BackupError::io(
            from,
            io::Error::new(io::ErrorKind::NotFound, "no such database file"),
        ));
    }
    let conn = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| sqlite_error(from, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| sqlite_error(from, e))?;
    Ok(conn)
}

/// Whether SQLite could not read a database because another connection holds it (busy or
/// locked), rather than for what is in the files (damaged, not a database, a hot journal
/// that a read-only open cannot roll back).
pub fn is_locked(e: &BackupError) -> bool {
    matches!(
        e,
        BackupError::Sqlite {
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error {
                    code: rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked,
                    ..
                },
                _
            ),
            ..
        }
    )
}

fn sqlite_error(path: &Path, source: rusqlite::Error) -> BackupError {
    BackupError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// A consistent copy of a live SQLite database in a file of its own: one backup step over
/// all pages, under one read transaction. The copy is self-contained (journal mode DELETE).
/// A database that stays locked for [`BUSY_TIMEOUT`] (another connection holding an
/// exclusive lock) is an error, not a wait without end.
pub fn backup_copy(from: &Path, to: &Path) -> Result<(), BackupError> {
    copy_within(from, to, BUSY_TIMEOUT)
}

fn copy_within(from: &Path, to: &Path, patience: Duration) -> Result<(), BackupError> {
    let src = open_source(from)?;
    let err = |e| sqlite_error(from, e);
    src.busy_timeout(patience).map_err(err)?;
    let mut dst = Connection::open(to).map_err(err)?;
    // Scratch space: no journal, no fsync (the archive is what is made durable).
    dst.execute_batch("PRAGMA synchronous=OFF; PRAGMA journal_mode=OFF;")
        .map_err(err)?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst).map_err(err)?;
        let started = std::time::Instant::now();
        loop {
            match backup.step(-1).map_err(err)? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => continue,
                // Busy (the step already waited `patience` for the lock) or locked: another
                // connection holds the database. Try again until the patience runs out.
                _ if started.elapsed() >= patience => {
                    return Err(err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some(format!(
                            "the database stayed locked for {} s: another connection holds it (an exclusive \
                             transaction or locking_mode=EXCLUSIVE)",
                            patience.as_secs_f64().round()
                        )),
                    )));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    // The copy keeps its own journal mode out of the archive: one self-contained file.
    dst.execute_batch("PRAGMA journal_mode=DELETE;").map_err(err)
}

/// `PRAGMA integrity_check` of a database file, opened read-only, as one line: `ok`, the
/// problems joined, or why it could not be checked.
///
/// `mmap` reads the pages straight from the page cache (one syscall per page otherwise:
/// about 0.5 s of a 1 GiB check), at the price of the mapped file counting in the process's
/// resident set; create leaves it off, so its memory stays small.
pub fn integrity_check(file: &Path, mmap: bool) -> String {
    let run = |conn: Connection| -> rusqlite::Result<String> {
        if mmap {
            conn.query_row("PRAGMA mmap_size = 68719476736", [], |_| Ok(()))?;
        }
        check(&conn)
    };
    match Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY) {
        Ok(conn) => run(conn).unwrap_or_else(|e| format!("cannot be checked: {e}")),
        Err(e) => format!("cannot be opened: {e}"),
    }
}

fn check(conn: &Connection) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(rows.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &Path, wal: bool) -> PathBuf {
        let path = dir.join(if wal { "wal.db" } else { "rollback.db" });
        let c = Connection::open(&path).unwrap();
        if wal {
            c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).unwrap();
            c.execute_batch("PRAGMA wal_autocheckpoint=0").unwrap();
        }
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX tv ON t(v);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
             INSERT INTO t(v) SELECT printf('%0500d', i) FROM n;",
        )
        .unwrap();
        // Kept open so a WAL database keeps its -wal file (nothing checkpointed into the
        // main file yet): the snapshot must read through it.
        std::mem::forget(c);
        path
    }

    fn take(from: &Path, dir: &Path) -> (Vec<u8>, String, bool) {
        let p = start(0, from.to_path_buf(), dir.join("copy.db"));
        let taken = p.ready.recv().unwrap().unwrap();
        let streamed = taken.stream.is_some();
        let mut bytes = Vec::new();
        match taken.stream {
            Some(mut s) => {
                s.read_to_end(&mut bytes).unwrap();
            }
            None => bytes = std::fs::read(dir.join("copy.db")).unwrap(),
        }
        assert_eq!(bytes.len() as u64, taken.size);
        (bytes, p.check.join().unwrap(), streamed)
    }

    #[test]
    fn a_wal_database_is_streamed_and_a_rollback_one_copied_both_self_contained() {
        for wal in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let from = db(dir.path(), wal);
            let (bytes, check, streamed) = take(&from, dir.path());
            assert_eq!(streamed, wal);
            assert_eq!(check, "ok");
            assert_eq!(&bytes[18..20], &[1, 1], "rollback mode in the header");
            let restored = dir.path().join("restored.db");
            std::fs::write(&restored, &bytes).unwrap();
            assert_eq!(integrity_check(&restored, false), "ok");
            let c = Connection::open(&restored).unwrap();
            let n: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
            assert_eq!(n, 5000);
            let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
            assert_eq!(mode, "delete");
        }
    }

    #[test]
    fn a_damaged_wal_database_is_streamed_with_the_damage_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.db");
        {
            let c = Connection::open(&path).unwrap();
            c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).unwrap();
            c.execute_batch(
                "CREATE TABLE big(b TEXT); CREATE INDEX big_b ON big(b);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
                 INSERT INTO big SELECT printf('%08d', i) FROM n;
                 PRAGMA wal_checkpoint(TRUNCATE);",
            )
            .unwrap();
        }
        // The last page (an index page) scribbled over: the database opens, the check fails.
        let mut db = std::fs::read(&path).unwrap();
        let at = db.len() - 4096;
        db[at..at + 8].fill(0x55);
        std::fs::write(&path, &db).unwrap();

        let (bytes, check, streamed) = take(&path, dir.path());
        assert!(streamed);
        assert_ne!(check, "ok");
        assert!(!check.is_empty());
        // Archived as it is: the damage is there for a restore to see, not hidden.
        assert_eq!(&bytes[bytes.len() - 4096..bytes.len() - 4088], &[0x55; 8]);
    }

    #[test]
    fn pages_that_stop_short_are_an_error() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let mut pages = Pages {
            rx,
            chunk: Vec::new(),
            at: 0,
            left: 8192,
        };
        tx.send(Ok(vec![7u8; 4096])).unwrap();
        drop(tx);
        let mut got = Vec::new();
        let e = pages.read_to_end(&mut got).unwrap_err();
        assert_eq!(got.len(), 4096);
        assert!(e.to_string().contains("4096 bytes still to come"), "{e}");
    }

    #[test]
    fn a_database_locked_past_the_patience_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let from = db(dir.path(), false);
        let holder = Connection::open(&from).unwrap();
        holder
            .execute_batch("BEGIN EXCLUSIVE; INSERT INTO t(v) VALUES ('x');")
            .unwrap();
        let started = std::time::Instant::now();
        let e = copy_within(&from, &dir.path().join("copy.db"), Duration::from_millis(300)).unwrap_err();
        assert!(
            is_locked(&e),
            "a lock is told apart: a restore must not copy files around it"
        );
        let e = e.to_string();
        assert!(e.contains("rollback.db") && e.contains("stayed locked"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(20), "gave up in time");
        // Once the lock goes, the same copy works.
        holder.execute_batch("COMMIT").unwrap();
        copy_within(&from, &dir.path().join("copy2.db"), Duration::from_millis(300)).unwrap();
        assert_eq!(integrity_check(&dir.path().join("copy2.db"), false), "ok");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_not_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("app.db");
        std::fs::write(&garbage, vec![0x5au8; 8192]).unwrap();
        let e = backup_copy(&garbage, &dir.path().join("copy.db")).unwrap_err();
        assert!(!is_locked(&e), "{e}");
    }

    #[test]
    fn a_missing_database_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = start(0, dir.path().join("nope.db"), dir.path().join("copy.db"));
        let e = p.ready.recv().unwrap().err().unwrap();
        assert!(e.contains("nope.db"), "{e}");
        assert_eq!(p.check.join().unwrap(), "");
    }

    #[test]
    fn a_reader_that_goes_away_ends_the_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let from = db(dir.path(), true);
        let p = start(0, from.clone(), dir.path().join("copy.db"));
        let taken = p.ready.recv().unwrap().unwrap();
        drop(taken);
        // The thread ends (it does not wait on a reader that is gone) ...
        p.check.join().unwrap();
        // ... and no read transaction is left behind: a checkpoint can take the whole WAL.
        let c = Connection::open(&from).unwrap();
        let busy: i64 = c
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0);
    }
}
