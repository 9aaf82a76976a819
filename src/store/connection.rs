//! The store handle: one backend (an embedded SQLite file or a PostgreSQL database), its
//! migrations, its transactions, and the token that says whether the state changed.
//!
//! The queries of each area are in the files beside it (`runs`, `alerts`, `audit_log`, …),
//! each an `impl Store` over `write`, `rows`, `row` and `conn` here.
//! Invariants: every write runs in one transaction that holds the state's single write lock
//! (SQLite's `BEGIN IMMEDIATE`; PostgreSQL's transaction advisory lock), so the audit chain
//! and every "read, then write" rule see the writes before them; an error rolls it back.

use std::path::{Path, PathBuf};

use super::db::{self, Backend, Conn, DbError, OptionalExtension, Params, Row, Transaction};
use super::head::{self, Head};
use super::types::*;
use super::{Result, StoreError, postgres, sqlite};

/// Where a state lives, as `state.url` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database; `local` anchors the files that stay on this host (locks, audit
    /// archives), as a state file's path does.
    Postgres { url: String, local: PathBuf },
}

impl Location {
    /// Where `state:` of runbook.yaml puts the state.
    pub fn of(state: &crate::config::model::StateConfig) -> Location {
        if state.is_postgres() {
            Location::Postgres {
                url: state.url.clone(),
                local: state.path.clone(),
            }
        } else {
            Location::Sqlite(state.path.clone())
        }
    }

    /// The state file, or the anchor of a PostgreSQL state's local files.
    pub fn local_path(&self) -> &Path {
        match self {
            Location::Sqlite(p) => p,
            Location::Postgres { local, .. } => local,
        }
    }
}

pub struct Store {
    db: Db,
    location: Location,
    /// What errors name: "state file PATH" or "PostgreSQL state URL" (without its password).
    label: String,
    /// Where the newest committed audit event is recorded after each commit (see `head`);
    /// only for a state file, which can be swapped or rolled back behind runbook's back.
    head: Option<head::HeadFile>,
    /// PostgreSQL: the connections that hold advisory locks (`try_lock`), each for as long as
    /// its lock is held, and the names this process holds.
    locks: Option<(postgres::Pool, std::sync::Mutex<std::collections::HashSet<String>>)>,
}

/// Locks held at once by one process on PostgreSQL (each holds a connection while held).
const LOCKS_MAX: usize = 64;

enum Db {
    Sqlite(sqlite::Sqlite),
    Pg(Box<postgres::Pool>),
}

/// A connection taken for reads (the SQLite connection's lock, or a pooled PostgreSQL one).
pub(super) enum ConnGuard<'s> {
    Sqlite(std::sync::MutexGuard<'s, rusqlite::Connection>),
    Pg(Box<postgres::Pooled<'s>>),
}

impl ConnGuard<'_> {
    pub(super) fn db(&self) -> Conn<'_> {
        match self {
            ConnGuard::Sqlite(c) => Conn::Sqlite(c),
            ConnGuard::Pg(c) => Conn::Pg(c.conn()),
        }
    }
    pub(super) fn prepare_cached(&self, sql: &str) -> db::Result<db::Stmt<'_>> {
        self.db().prepare_cached(sql)
    }
    pub(super) fn prepare(&self, sql: &str) -> db::Result<db::Stmt<'_>> {
        self.db().prepare_cached(sql)
    }
    pub(super) fn query_row<T, P: Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row) -> db::Result<T>,
    ) -> db::Result<T> {
        self.db().query_row(sql, params, f)
    }
}

thread_local! {
    /// The audit head before and after the events appended by the write transaction running
    /// on this thread (`Store::write` holds its connection for its whole length, so one
    /// transaction at a time per thread).
    pub(super) static APPENDED: std::cell::RefCell<Option<(Option<Head>, Head)>> = const { std::cell::RefCell::new(None) };
}

impl Store {
    /// Opens (creating if needed) the state file and applies pending migrations.
    pub fn open(path: &Path) -> Result<Store> {
        Self::open_at(&Location::Sqlite(path.to_path_buf()))
    }

    /// Opens an existing state file without creating or migrating it; `None` if absent.
    pub fn open_existing(path: &Path) -> Result<Option<Store>> {
        Self::open_existing_at(&Location::Sqlite(path.to_path_buf()))
    }

    /// Opens (creating and migrating if needed) the state of runbook.yaml's `state:`.
    pub fn open_state(state: &crate::config::model::StateConfig) -> Result<Store> {
        Self::open_at(&Location::of(state))
    }

    /// Opens the existing state of runbook.yaml's `state:`; `None` if there is none yet.
    pub fn open_existing_state(state: &crate::config::model::StateConfig) -> Result<Option<Store>> {
        Self::open_existing_at(&Location::of(state))
    }

    /// Opens (creating and migrating if needed) the state `location` names.
    pub fn open_at(location: &Location) -> Result<Store> {
        let store = match location {
            Location::Sqlite(path) => Self::sqlite(path, true)?,
            Location::Postgres { url, local } => Self::postgres(url, local)?,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Opens a state that exists, without creating or migrating it; `None` if there is none
    /// (no file; a database without runbook's tables).
    pub fn open_existing_at(location: &Location) -> Result<Option<Store>> {
        match location {
            Location::Sqlite(path) if !path.exists() => Ok(None),
            Location::Sqlite(path) => Self::sqlite(path, false).map(Some),
            Location::Postgres { url, local } => {
                let store = Self::postgres(url, local)?;
                Ok((store.migration_state()?.current > 0).then_some(store))
            }
        }
    }

    fn sqlite(path: &Path, create: bool) -> Result<Store> {
        let label = format!("state file {}", path.display());
        let db = sqlite::Sqlite::open(path, create).map_err(|source| match source {
            sqlite::OpenError::Dir(source) => StoreError::CreateDir {
                path: path.parent().unwrap_or(path).to_path_buf(),
                source,
            },
            sqlite::OpenError::Db(source) => StoreError::Open {
                what: label.clone(),
                source: source.into(),
            },
        })?;
        Ok(Store {
            db: Db::Sqlite(db),
            location: Location::Sqlite(path.to_path_buf()),
            label,
            head: Some(head::HeadFile::new(path)),
            locks: None,
        })
    }

    fn postgres(url: &str, local: &Path) -> Result<Store> {
        let label = format!("PostgreSQL state {}", postgres::redact(url));
        let pool = postgres::Pool::new(url, postgres::POOL_MAX).map_err(|source| StoreError::Open {
            what: label.clone(),
            source,
        })?;
        let locks = postgres::Pool::new(url, LOCKS_MAX).map_err(|source| StoreError::Open {
            what: label.clone(),
            source,
        })?;
        // Connect now, so that a wrong URL, password or TLS setting is told at once.
        drop(pool.get().map_err(|source| StoreError::Open {
            what: label.clone(),
            source,
        })?);
        Ok(Store {
            db: Db::Pg(Box::new(pool)),
            location: Location::Postgres {
                url: url.to_string(),
                local: local.to_path_buf(),
            },
            label,
            head: None,
            locks: Some((locks, Default::default())),
        })
    }

    /// The schema version this binary migrates to.
    pub fn head_version() -> u32 {
        sqlite::MIGRATIONS.len() as u32
    }

    /// The state file, or the anchor of a PostgreSQL state's host-local files.
    pub fn path(&self) -> &Path {
        self.location.local_path()
    }

    /// What errors name: "state file PATH" or "PostgreSQL state URL".
    pub(super) fn label(&self) -> &str {
        &self.label
    }

    /// PostgreSQL: the pool that holds advisory locks, and the names held by this process.
    pub(super) fn lock_pool(&self) -> Option<(&postgres::Pool, &std::sync::Mutex<std::collections::HashSet<String>>)> {
        self.locks.as_ref().map(|(p, n)| (p, n))
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Pg(_) => Backend::Postgres,
        }
    }

    /// A token that changes whenever anyone (this process or another) commits a change to
    /// the state: SQLite's `PRAGMA data_version`, or PostgreSQL's state version row, which
    /// every write transaction bumps.
    pub fn data_version(&self) -> Result<i64> {
        let sql = match self.db {
            Db::Sqlite(_) => "PRAGMA data_version",
            Db::Pg(_) => postgres::STATE_VERSION,
        };
        self.conn()?
            .query_row(sql, (), |r| r.get(0))
            .map_err(self.err("reading the data version"))
    }

    /// The server's version ("15.20" …); SQLite's library version for a state file.
    pub fn server_version(&self) -> Result<String> {
        let sql = match self.db {
            Db::Sqlite(_) => "SELECT sqlite_version()",
            Db::Pg(_) => "SHOW server_version",
        };
        self.conn()?
            .query_row(sql, (), |r| r.get(0))
            .map_err(self.err("reading the server version"))
    }

    /// Whether `data_version` is a read of memory (SQLite's shared memory) rather than a
    /// round trip to a server, so that a caller on an async runtime may call it in place.
    pub fn version_is_local(&self) -> bool {
        matches!(self.db, Db::Sqlite(_))
    }

    /// The pool's connections in use and open (PostgreSQL), for `db status`.
    pub fn pool_use(&self) -> Option<(usize, usize)> {
        match &self.db {
            Db::Sqlite(_) => None,
            Db::Pg(p) => Some(p.usage()),
        }
    }

    pub(super) fn conn(&self) -> Result<ConnGuard<'_>> {
        Ok(match &self.db {
            Db::Sqlite(s) => ConnGuard::Sqlite(s.lock()),
            Db::Pg(p) => ConnGuard::Pg(Box::new(p.get().map_err(self.err("connecting"))?)),
        })
    }

    pub(super) fn err(&self, context: &'static str) -> impl FnOnce(DbError) -> StoreError + '_ {
        move |source| StoreError::Query {
            what: self.label.clone(),
            path: self.location.local_path().to_path_buf(),
            context,
            source,
        }
    }

    /// Every row of `sql` (a cached statement) with `params`, each mapped by `f`.
    pub(super) fn rows<T, P: Params>(
        &self,
        context: &'static str,
        sql: &str,
        params: P,
        f: impl FnMut(&Row) -> db::Result<T>,
    ) -> Result<Vec<T>> {
        self.conn()?.db().query_all(sql, params, f).map_err(self.err(context))
    }

    /// The row of `sql` with `params`, mapped by `f`; `None` when there is none.
    pub(super) fn row<T, P: Params>(
        &self,
        context: &'static str,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row) -> db::Result<T>,
    ) -> Result<Option<T>> {
        self.conn()?
            .db()
            .query_row(sql, params, f)
            .optional()
            .map_err(self.err(context))
    }

    /// Streams the rows of `sql` to `f` until it returns false.
    pub(super) fn each(
        &self,
        context: &'static str,
        sql: &str,
        params: impl Params,
        f: &mut dyn FnMut(&Row) -> db::Result<bool>,
    ) -> Result<()> {
        self.conn()?.db().for_each(sql, params, f).map_err(self.err(context))
    }

    /// Runs `f` in a write transaction (holding the state's write lock) and commits.
    pub(super) fn write<T>(&self, context: &'static str, f: impl FnOnce(&Transaction) -> db::Result<T>) -> Result<T> {
        APPENDED.with(|a| a.borrow_mut().take());
        match &self.db {
            Db::Sqlite(s) => {
                let mut conn = s.lock();
                let value = sqlite::write(&mut conn, f).map_err(self.err(context))?;
                if let (Some(head), Some((before, new))) = (&self.head, APPENDED.with(|a| a.borrow_mut().take())) {
                    record_head(head, Conn::Sqlite(&conn), before.as_ref(), &new);
                }
                Ok(value)
            }
            Db::Pg(p) => {
                let mut conn = p.get().map_err(self.err(context))?;
                conn.write(f).map_err(self.err(context))
            }
        }
    }

    pub fn migration_state(&self) -> Result<MigrationState> {
        let current = match &self.db {
            Db::Sqlite(s) => sqlite::version(&s.lock()),
            Db::Pg(p) => p.get().and_then(|c| postgres::version(c.conn())),
        }
        .map_err(self.err("reading the schema version"))?;
        Ok(MigrationState {
            current,
            head: Self::head_version(),
        })
    }

    /// Applies pending migrations, each in its own transaction.
    pub fn migrate(&self) -> Result<MigrationState> {
        let state = self.migration_state()?;
        if state.current > state.head {
            return Err(StoreError::Ahead {
                what: self.label.clone(),
                current: state.current,
                head: state.head,
            });
        }
        if state.current < state.head {
            match &self.db {
                Db::Sqlite(s) => sqlite::migrate(&mut s.lock()),
                Db::Pg(p) => p.get().and_then(|mut c| c.migrate()),
            }
            .map_err(self.err("applying a migration"))?;
        }
        self.migration_state()
    }
}

/// Moves the audit head file to `new` after a commit. The commit stands whatever happens
/// here: a head file left behind only makes a lost tail harder to prove.
fn record_head(head: &head::HeadFile, conn: Conn, before: Option<&Head>, new: &Head) {
    let mut hash_at = |seq: i64| -> Option<Option<String>> {
        let found: Option<String> = conn
            .query_row("SELECT hash FROM audit_events WHERE seq = ?1", [seq], |r| r.get(0))
            .optional()
            .ok()?;
        match found {
            Some(h) => Some(Some(h)),
            None => conn
                .query_row(
                    "SELECT 1 FROM audit_archives WHERE ?1 BETWEEN first_seq AND last_seq",
                    [seq],
                    |_| Ok(()),
                )
                .optional()
                .ok()?
                .map(|()| None),
        }
    };
    match head.advance(before, new, &mut hash_at) {
        Ok(head::Advance::Recorded) => {}
        Ok(head::Advance::Diverged(h)) => tracing::warn!(
            recorded = h.seq,
            now = new.seq,
            "the audit head file names an event this state file does not hold: committed events were lost; run `runbook audit verify`"
        ),
        Err(e) => tracing::debug!(error = %e, "cannot record the audit head"),
    }
}
