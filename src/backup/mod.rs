//! Backups that are known to restore: create, verify, drill, restore, prune and copy offsite.
//!
//! Owns the life of an archive file. Invariant: an archive that is listed was completely
//! written and recorded; a crash at any point leaves nothing that `backup list` shows or
//! `backup verify` accepts.

pub mod archive;
mod catalog;
mod create;
pub mod crypt;
pub mod drill;
mod error;
pub mod extract;
pub(crate) mod fsutil;
pub mod manifest;
mod mapfault;
pub mod offsite;
mod pg;
mod prune;
pub mod recover;
pub mod restore;
pub mod retention;
pub mod scratch;
pub mod sha2x;
pub mod source;
pub mod sqlite;
pub mod stream;
pub mod tarwalk;
pub mod verify;

pub use catalog::{
    Listed, latest, list, newest_verified, next_to_drill, target, target_named_in, target_of, target_of_any,
};
pub(crate) use catalog::{is_archive_of, record_of, records_in_dest};
pub use create::{Created, SizeVerdict, create};
pub use error::BackupError;
pub(crate) use fsutil::{remove_tree, run_tool};
pub use prune::{PrunePlan, prune};
pub use verify::{VerifyReport, verify};

/// What a long operation reports as it goes.
pub enum Progress<'a> {
    Phase(&'a str),
    /// Bytes of data the phase will read.
    Total(u64),
    /// More bytes read.
    Advance(u64),
}
