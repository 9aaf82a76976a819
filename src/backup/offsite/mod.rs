//! Offsite copies: `backup push` and `backup pull` to an S3-compatible bucket or another
//! directory, through `object_store` (one code path for both).
//!
//! An archive counts as offsite when its sidecar is there and names the same SHA-256 as the
//! local one: the sidecar is uploaded last, so an interrupted push is resumed by the next
//! one. The archive it was on continues from its last stored part (recorded in the state
//! file), unless it is encrypted on the way, which starts over. A pull writes to a
//! temporary name, hashes what it receives, and renames only when the hash matches the
//! remote sidecar.

mod pull;
mod push;
mod remote;
mod upload;

pub use pull::{PullReport, pull};
pub use push::{PushReport, push};
pub(crate) use remote::CHECK_PREFIX;
pub use remote::{Remote, list};
