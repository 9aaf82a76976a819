//! Files that several processes write at once: a file replaced whole, a new file that never
//! replaces one already there, and an append that never loses another writer's.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The directory `path` is in (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `bytes` in a temporary file of this writer's own beside `path` (`.NAME.XXXXXX.tmp`, mode
/// 0666 less the umask, as `std::fs::write` makes it), synced; removed if it is dropped.
fn staged(path: &Path, bytes: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir_of(path))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// Syncs a directory, so that a name just made or removed in it survives a crash.
pub fn fsync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `path` whole or not at all: staged beside it, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    staged(path, bytes)?.persist(path).map_err(|e| e.error)?;
    fsync_dir(dir_of(path));
    Ok(())
}

/// Creates `path` holding `bytes`, whole or not at all: staged beside it, then linked to
/// `path` (a link never replaces). `Ok(false)`: `path` was there already and is untouched.
pub fn create_new(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    match staged(path, bytes)?.persist_noclobber(path) {
        Ok(_) => {
            fsync_dir(dir_of(path));
            Ok(true)
        }
        // The temporary file goes with the error.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.error),
    }
}

/// Appends `text` to the file at `path` in one write with `O_APPEND`, then syncs it: writers
/// at the same time never overwrite each other, and the file keeps its owner, mode and links.
/// A file whose last line has no newline gets one first, so `text` starts on its own line.
pub fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().read(true).append(true).open(path)?;
    let len = f.metadata()?.len();
    let mut out = String::with_capacity(text.len() + 1);
    if len > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            out.push('\n');
        }
    }
    out.push_str(text);
    f.write_all(out.as_bytes())?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_never_replaces_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("note.md");
        assert!(create_new(&p, b"first\n").unwrap());
        assert!(!create_new(&p, b"second\n").unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "first\n");
        // The mode std::fs::write gives (0666 less the umask), not a temporary file's 0600.
        std::fs::write(d.path().join("plain"), "x").unwrap();
        let mode = |n: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(d.path().join(n)).unwrap().permissions().mode()
        };
        assert_eq!(mode("note.md"), mode("plain"));
        write_atomic(&d.path().join("plain"), b"replaced").unwrap();
        assert_eq!(std::fs::read(d.path().join("plain")).unwrap(), b"replaced");
        assert_eq!(mode("note.md"), mode("plain"));
        append(&p, "- more").unwrap();
        std::fs::write(d.path().join("bare"), "no newline").unwrap();
        append(&d.path().join("bare"), "next\n").unwrap();
        assert_eq!(
            append(&d.path().join("new"), "x").unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "first\n- more");
        assert_eq!(
            std::fs::read_to_string(d.path().join("bare")).unwrap(),
            "no newline\nnext\n"
        );
        let mut names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["bare", "note.md", "plain"]);
    }
}
