//! `deploy:`: applications deployed from a pinned ref into releases, switched atomically.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Serialize;

use super::program::Program;

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DeployApp {
    /// A local git repository (bare or not), or a URL git can fetch (mirrored under `path`).
    pub repo: String,
    /// The application's directory: `releases/<sha>-<UTC>/`, `shared/`, and `current`, a link
    /// to the live release.
    pub path: PathBuf,
    /// What REF may be: `tags` (a tag) or `sha` (a full commit id). A branch moves, so it is
    /// refused unless `--allow-branch`.
    pub refs: String,
    /// An `allowed_signers` file: the tag (or commit) must carry an SSH signature by one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_signers: Option<PathBuf>,
    /// Entries of `shared/` linked into each release (`.env`, `uploads`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<String>,
    /// Commands run in the new release before it goes live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build: Vec<Program>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrate: Option<Program>,
    /// The migration only adds (the old release still works with the new schema): no backup
    /// before it. Otherwise `backup` names the target archived first.
    pub expand_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// Commands run in `current` after the switch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart: Vec<Program>,
    /// The gate that must pass before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_before: Option<String>,
    /// The gate that must pass after the restart; otherwise the previous good release goes
    /// back live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_after: Option<String>,
    /// Good releases kept by `deploy prune`; the live one and the previous good are never removed.
    pub keep: u32,
}
