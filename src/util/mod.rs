//! Leaf utilities every layer may use: what an error means ([`Explain`]), wildcard matching,
//! text as a person reads it, files that several processes write at once, the
//! Tokio runtime of the synchronous parts, file hashing, and the signatures of `ssh-keygen`.
//! Nothing here imports another module of the crate.

pub mod digest;
pub mod explain;
pub mod file;
pub mod lock;
pub mod runtime;
pub mod sshsig;
pub mod text;
pub mod tls;
pub mod wildcard;

pub use explain::{ExitClass, Explain};
pub use text::{display, duration_ms, escape_controls, hex, innermost};
