//! Named non-overlap locks of a state: "one run of this profile at a time", for every
//! process that shares the state.
//!
//! On a state file the lock is an OS file lock beside it (`util::lock`); on PostgreSQL it is a
//! session advisory lock held on a connection of its own, so processes on other hosts that
//! share the database are refused too. Either way the holder's death releases it: the kernel
//! closes the file, the server ends the session.
//! Invariants: while a `StateLock` lives no other process, and no other thread of this one,
//! holds the same name; dropping it releases the name at once.

use std::collections::HashSet;
use std::sync::Mutex;

use super::connection::Store;
use super::db::{Conn, DbError};
use super::postgres::Pooled;
use super::{Result, StoreError};

/// A held lock; released when dropped.
pub struct StateLock<'s> {
    held: Held<'s>,
}

enum Held<'s> {
    File(crate::util::lock::ProfileLock),
    Pg {
        conn: Box<Pooled<'s>>,
        key: i64,
        name: String,
        names: &'s Mutex<HashSet<String>>,
    },
}

impl std::fmt::Debug for StateLock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.held {
            Held::File(l) => write!(f, "StateLock(file {})", l.path.display()),
            Held::Pg { name, key, .. } => write!(f, "StateLock(advisory {key} for {name})"),
        }
    }
}

/// The advisory lock key of `name` (FNV-1a, 64 bits, over a prefix no other lock of runbook's
/// uses). Advisory locks are per database, so two states never share one.
pub(super) fn advisory_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "runbook:lock:".bytes().chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

impl Store {
    /// Takes the lock `name` if it is free; `None` while another holder has it.
    pub fn try_lock(&self, name: &str) -> Result<Option<StateLock<'_>>> {
        let Some((pool, names)) = self.lock_pool() else {
            return crate::util::lock::try_lock(self.path(), name)
                .map(|l| l.map(|l| StateLock { held: Held::File(l) }))
                .map_err(|source| StoreError::Lock {
                    name: name.to_string(),
                    place: crate::util::lock::lock_dir(self.path()).display().to_string(),
                    error: source.to_string(),
                });
        };
        let failed = |source: DbError| StoreError::Lock {
            name: name.to_string(),
            place: self.label().to_string(),
            error: source.to_string(),
        };
        // A session may take an advisory lock it already holds: threads of this process are
        // told apart here, before the server is asked.
        if !names.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string()) {
            return Ok(None);
        }
        let forget = || {
            names.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        };
        let conn = match pool.get() {
            Ok(c) => c,
            Err(e) => {
                forget();
                return Err(failed(e));
            }
        };
        let key = advisory_key(name);
        let got: std::result::Result<bool, DbError> =
            Conn::Pg(conn.conn()).query_row("SELECT pg_try_advisory_lock(?1)", [key], |r| r.get(0));
        match got {
            Ok(true) => Ok(Some(StateLock {
                held: Held::Pg {
                    conn: Box::new(conn),
                    key,
                    name: name.to_string(),
                    names,
                },
            })),
            Ok(false) => {
                forget();
                Ok(None)
            }
            Err(e) => {
                forget();
                Err(failed(e))
            }
        }
    }
}

impl Drop for StateLock<'_> {
    fn drop(&mut self) {
        if let Held::Pg { conn, key, name, names } = &mut self.held {
            // An unlock that fails leaves the lock to the session: the broken connection is
            // closed, not pooled, and the server releases its locks with it.
            if Conn::Pg(conn.conn())
                .query_row("SELECT pg_advisory_unlock(?1)", [*key], |r| r.get::<_, bool>(0))
                .is_err()
            {
                conn.discard();
            }
            names.lock().unwrap_or_else(|e| e.into_inner()).remove(name.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_differ_by_name_and_from_the_write_lock() {
        let a = super::advisory_key("hourly");
        assert_ne!(a, super::advisory_key("daily"));
        assert_eq!(a, super::advisory_key("hourly"));
        assert_ne!(a, 0x72_75_6e_62_6f_6f_6b);
    }
}
