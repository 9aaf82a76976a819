//! Offsite copies: `backup push` and `backup pull` to an S3-compatible bucket or another
//! directory, through `object_store` (one code path for both).
//!
//! Invariants: an archive counts as offsite only when its sidecar is there and names the local
//! SHA-256 (the sidecar goes last, so the next push resumes an interrupted one); a pull renames
//! an archive into place only when its hash matches the remote sidecar.

mod pull;
mod push;
mod remote;
mod upload;

pub use pull::{PullReport, pull};
pub use push::{PushReport, push};
pub(crate) use remote::CHECK_PREFIX;
pub(crate) use remote::newest_first;
pub use remote::{Remote, list};
