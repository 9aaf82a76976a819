//! Guarded operator sessions: read-only diagnosis by default; state changes only through
//! approved, recorded, bounded commands (DESIGN.md §7).
//!
//! This version has the command policy (`policy`): what a diagnostic session may run, what
//! needs an approved change request, and what is never allowed. Sessions, change requests
//! and `session exec` build on it.

pub mod policy;

pub use policy::{Class, Policy};
