//! Turning a target's sources into manifest entries and files to read.
//!
//! SQLite databases are snapshotted in threads of their own while the archive is written
//! (`sqlite.rs`); PostgreSQL dumps (`pg_dump`) and `command:` dumps go to a scratch
//! directory next to the archives first; directory trees are listed in place and read while
//! the archive is written.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::manifest::{EntryKind, FileEntry, SourceEntry};
use super::sqlite::Pending;
use super::{BackupError, pg};
use crate::config::Config;
use crate::config::backups::{BackupTarget, DEFAULT_DUMP_TIMEOUT, DirSource, Source};
use crate::exec::{Cancel, Spec};
use crate::util::wildcard;

/// Manifest entries (hashes still empty) and, for each file entry, where to read it.
pub struct Gathered {
    pub sources: Vec<SourceEntry>,
    pub origins: Vec<Vec<Option<PathBuf>>>,
    /// Things skipped (sockets, unreadable entries), said to the operator.
    pub warnings: Vec<String>,
    /// SQLite snapshots being taken while the archive is written (in threads of their own).
    pub pending: Vec<Pending>,
}

impl Gathered {
    /// Sources in the order they go into the archive: the SQLite snapshots first, then the
    /// rest. A reader of the archive (verify, drill) can only check a database once it has all
    /// of it; with the databases first, those checks run while the rest of the archive
    /// streams, instead of after it. A streamed snapshot (WAL mode) is read as it is taken;
    /// a copied one (rollback mode) is waited for.
    pub fn write_order(&self) -> Vec<usize> {
        let first: HashSet<usize> = self.pending.iter().map(|p| p.source).collect();
        let mut order: Vec<usize> = self.pending.iter().map(|p| p.source).collect();
        order.extend((0..self.sources.len()).filter(|i| !first.contains(i)));
        order
    }
}

/// How the manifest names a source's kind.
pub(super) fn kind(source: &Source) -> &'static str {
    match source {
        Source::Sqlite(_) => "sqlite",
        Source::Postgres(_) => "postgres",
        Source::Command(_) => "command",
        Source::Dir(_) => "dir",
    }
}

/// Where a source's data comes from, as the manifest records it: the path, the URL without
/// its password, or the command (redacted).
pub(super) fn origin(config: &Config, source: &Source) -> String {
    match source {
        Source::Sqlite(path) => path.display().to_string(),
        Source::Postgres(url) => config.redactor.redact(&pg::Conn::parse(url).url).into_owned(),
        Source::Command(c) => {
            let argv = crate::config::Program::Run(c.run.clone()).argv();
            config.redactor.redact(&crate::util::display(&argv)).into_owned()
        }
        Source::Dir(d) => d.path.display().to_string(),
    }
}

/// The name a source's data has in the archive, before a suffix that keeps two of the same
/// name apart (`sqlite/app.db`, `dir/data`, `postgres/app.dump`, `command/x.sql`).
pub(super) fn root(source: &Source) -> String {
    match source {
        Source::Sqlite(path) => format!("sqlite/{}", file_name(path, "database.db")),
        Source::Postgres(url) => {
            let db = pg::Conn::parse(url).database().unwrap_or_else(|| "postgres".into());
            format!("postgres/{}.dump", db.replace('/', "_"))
        }
        Source::Command(c) => format!("command/{}", c.name),
        Source::Dir(d) => format!("dir/{}", file_name(&d.path, "dir")),
    }
}

pub fn gather(
    config: &Config,
    target: &BackupTarget,
    scratch: &Path,
    cancel: &Cancel,
) -> Result<Gathered, BackupError> {
    let mut g = Gathered {
        sources: Vec::new(),
        origins: Vec::new(),
        warnings: Vec::new(),
        pending: Vec::new(),
    };
    let mut roots = HashSet::new();
    let timeout = target.timeout.map(|d| d.0).unwrap_or(DEFAULT_DUMP_TIMEOUT);
    for (i, source) in target.sources.iter().enumerate() {
        let (entry, origins) = match source {
            Source::Sqlite(path) => {
                let root = unique(&mut roots, root(source));
                let snap = scratch.join(format!("{i}-sqlite.db"));
                g.pending.push(super::sqlite::start(i, path.clone(), snap.clone()));
                // Size, mode and time are those of the snapshot once it is taken.
                let meta = std::fs::metadata(path).map_err(|e| BackupError::io(path, e))?;
                let mut f = FileEntry::of(root.clone(), EntryKind::File, &meta);
                f.size = 0;
                let entry = SourceEntry {
                    kind: kind(source).into(),
                    origin: origin(config, source),
                    root,
                    // Filled in when the check (running meanwhile) is done.
                    integrity_check: Some(String::new()),
                    files: vec![f],
                };
                (entry, vec![Some(snap)])
            }
            Source::Postgres(url) => {
                let conn = pg::Conn::parse(url);
                let root = unique(&mut roots, root(source));
                let dump = scratch.join(format!("{i}-postgres.dump"));
                pg::dump(&conn, &dump, &config.env, timeout, cancel).map_err(|e| match e {
                    BackupError::Dump { what, detail } => BackupError::Dump {
                        what: config.redactor.redact(&what).into_owned(),
                        detail: config.redactor.redact(&detail).into_owned(),
                    },
                    other => other,
                })?;
                let f = file_entry(&root, &dump)?;
                let entry = SourceEntry {
                    kind: kind(source).into(),
                    origin: origin(config, source),
                    root,
                    integrity_check: None,
                    files: vec![f],
                };
                (entry, vec![Some(dump)])
            }
            Source::Command(c) => {
                let root = unique(&mut roots, root(source));
                let out = scratch.join(format!("{i}-command.out"));
                let argv = crate::config::Program::Run(c.run.clone()).argv();
                let mut spec = Spec::new(argv.clone(), timeout);
                spec.env = config.env.clone();
                spec.cwd = Some(config.base_dir());
                spec.stdout_to = Some(out.clone());
                let shown = config.redactor.redact(&crate::util::display(&argv)).into_owned();
                run_dump(config, &spec, cancel, &shown)?;
                let f = file_entry(&root, &out)?;
                let entry = SourceEntry {
                    kind: kind(source).into(),
                    origin: origin(config, source),
                    root,
                    integrity_check: None,
                    files: vec![f],
                };
                (entry, vec![Some(out)])
            }
            Source::Dir(d) => {
                let root = unique(&mut roots, root(source));
                let (files, origins) = walk(d, &root, &mut g.warnings)?;
                let entry = SourceEntry {
                    kind: kind(source).into(),
                    origin: origin(config, source),
                    root,
                    integrity_check: None,
                    files,
                };
                (entry, origins)
            }
        };
        g.sources.push(entry);
        g.origins.push(origins);
    }
    Ok(g)
}

fn file_name(path: &Path, default: &str) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// `root`, or `root-2`, `root-3`… if an earlier source took it.
fn unique(taken: &mut HashSet<String>, root: String) -> String {
    let mut candidate = root.clone();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{root}-{n}");
        n += 1;
    }
    candidate
}

fn file_entry(archive_path: &str, on_disk: &Path) -> Result<FileEntry, BackupError> {
    let meta = std::fs::metadata(on_disk).map_err(|e| BackupError::io(on_disk, e))?;
    Ok(FileEntry::of(archive_path.to_string(), EntryKind::File, &meta))
}

fn run_dump(config: &Config, spec: &Spec, cancel: &Cancel, what: &str) -> Result<(), BackupError> {
    super::run_tool(spec, cancel, what, &config.redactor).map(|_| ())
}

fn excluded(patterns: &[String], rel: &str, name: &str, is_dir: bool) -> bool {
    patterns.iter().any(|p| {
        if p.ends_with('/') && !is_dir {
            return false;
        }
        let p = p.trim_end_matches('/');
        let anchored = p.starts_with('/') || p.starts_with("./");
        let p = p.strip_prefix("./").unwrap_or(p).trim_start_matches('/');
        if anchored || p.contains('/') || p == "**" {
            path_matches(p, rel)
        } else {
            wildcard::matches(p, name)
        }
    })
}

/// A `/`-separated pattern against a `/`-separated path, name by name; `**` is any run of
/// names, none included.
fn path_matches(pattern: &str, path: &str) -> bool {
    fn go(p: &[&str], t: &[&str]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((&"**", rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some((first, rest)) => t.first().is_some_and(|n| wildcard::matches(first, n)) && go(rest, &t[1..]),
        }
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let t: Vec<&str> = path.split('/').collect();
    go(&p, &t)
}

type Listing = (Vec<FileEntry>, Vec<Option<PathBuf>>);

/// Lists a tree depth first, names sorted, without following symlinks.
fn walk(d: &DirSource, root: &str, warnings: &mut Vec<String>) -> Result<Listing, BackupError> {
    let meta = std::fs::symlink_metadata(&d.path).map_err(|e| BackupError::io(&d.path, e))?;
    if !meta.is_dir() {
        return Err(BackupError::io(
            &d.path,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let mut root_entry = FileEntry::of(root.to_string(), EntryKind::Dir, &meta);
    root_entry.size = 0;
    let mut files = vec![root_entry];
    let mut origins = vec![None];
    let mut stack = vec![(d.path.clone(), String::new())];
    while let Some((dir, rel_dir)) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| BackupError::io(&dir, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let path = dir.join(&name);
            // Archive entries and the manifest name files in UTF-8: another name would be
            // changed on the way in (and two could become one), so it is left out, loudly.
            let Some(name_s) = name.to_str().map(str::to_string) else {
                warnings.push(format!(
                    "{}: the name is not UTF-8 (skipped: it cannot be archived under its own name)",
                    path.display()
                ));
                continue;
            };
            let rel = if rel_dir.is_empty() {
                name_s.clone()
            } else {
                format!("{rel_dir}/{name_s}")
            };
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    if !excluded(&d.exclude, &rel, &name_s, false) {
                        warnings.push(format!("{}: {e} (skipped)", path.display()));
                    }
                    continue;
                }
            };
            let ft = meta.file_type();
            if excluded(&d.exclude, &rel, &name_s, ft.is_dir()) {
                continue;
            }
            let mut entry = FileEntry::of(format!("{root}/{rel}"), EntryKind::File, &meta);
            entry.size = 0;
            if ft.is_dir() {
                entry.kind = EntryKind::Dir;
                files.push(entry);
                origins.push(None);
                subdirs.push((path, rel));
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path).map_err(|e| BackupError::io(&path, e))?;
                let Some(target) = target.to_str() else {
                    warnings.push(format!(
                        "{}: the link's target is not UTF-8 (skipped: it cannot be archived as it is)",
                        path.display()
                    ));
                    continue;
                };
                entry.kind = EntryKind::Symlink;
                entry.link = Some(target.to_string());
                files.push(entry);
                origins.push(None);
            } else if ft.is_file() {
                entry.size = meta.len();
                files.push(entry);
                origins.push(Some(path));
            } else {
                warnings.push(format!(
                    "{}: not a file, directory or symlink (skipped)",
                    path.display()
                ));
            }
        }
        // Depth first in name order: push in reverse so the first name is walked first.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok((files, origins))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_taken_out_of_a_postgres_url() {
        // (URL, what is left of it, the password)
        let cases = [
            (
                "postgres://app:s3cr3t@db:5432/app",
                "postgres://app@db:5432/app",
                Some("s3cr3t"),
            ),
            ("postgres://app@db/app", "postgres://app@db/app", None),
            ("dbname=app", "dbname=app", None),
            // As libpq reads them: escapes decoded, the password taken out of the query too.
            (
                "postgres://app:p%40ss%2Fw@db/app?sslmode=require",
                "postgres://app@db/app?sslmode=require",
                Some("p@ss/w"),
            ),
            (
                "postgres://app@db/app?sslmode=disable&password=s%3Dcr3t",
                "postgres://app@db/app?sslmode=disable",
                Some("s=cr3t"),
            ),
            ("postgres://app@db/app?password=x", "postgres://app@db/app", Some("x")),
            // Unescaped `?` and `@` in a password: all of it is taken out.
            ("postgres://app:pa?ss@db/app", "postgres://app@db/app", Some("pa?ss")),
            ("postgres://app:p@ss@db/app", "postgres://app@db/app", Some("p@ss")),
            (
                "postgres://db?application_name=a@b&password=secret",
                "postgres://db?application_name=a@b",
                Some("secret"),
            ),
        ];
        for (url, left, password) in cases {
            assert_eq!(
                pg::split_password(url),
                (left.to_string(), password.map(str::to_string)),
                "{url}"
            );
        }
    }

    #[test]
    fn exclusions_match_names_anywhere_and_paths_from_the_top() {
        let p = vec!["*.log".to_string(), "cache/".to_string(), "tmp/*.partial".to_string()];
        assert!(excluded(&p, "a/b/x.log", "x.log", false));
        assert!(excluded(&p, "a/cache", "cache", true));
        assert!(excluded(&p, "tmp/f.partial", "f.partial", false));
        assert!(!excluded(&p, "a/tmp/f.partial", "f.partial", false));
        assert!(!excluded(&p, "notes.txt", "notes.txt", false));
        // `*` stays within a name; `**` spans directories.
        assert!(!excluded(&p, "tmp/deep/keep.partial", "keep.partial", false));
        let deep = vec!["tmp/**/*.partial".to_string()];
        assert!(excluded(&deep, "tmp/deep/er/x.partial", "x.partial", false));
        assert!(excluded(&deep, "tmp/x.partial", "x.partial", false));
        // A trailing `/` is for directories only.
        assert!(!excluded(&p, "sub/cache", "cache", false));
        // `./sub` and `/sub` are `sub` from the top.
        for top in ["./sub", "/sub"] {
            let t = vec![top.to_string()];
            assert!(excluded(&t, "sub", "sub", true), "{top}");
            assert!(!excluded(&t, "a/sub", "sub", true), "{top}");
        }
    }
}
