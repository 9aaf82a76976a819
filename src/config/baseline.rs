//! `baseline:`: the host as declared, resource by resource, written as Goss writes it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

/// What a declared attribute must be.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "match", content = "value", rename_all = "snake_case")]
pub enum Matcher {
    /// Equal to this.
    Equals(String),
    /// Anything but this (`!value`).
    Not(String),
    /// Matches this regular expression (`/regex/`).
    Regex(String),
    /// A number greater than this (`{ gt: N }`).
    Gt(f64),
    /// A number less than this (`{ lt: N }`).
    Lt(f64),
    /// A list holding each of these (a YAML list).
    ContainsAll(Vec<String>),
    /// A version satisfying `>=1.2`, `<2`, `=1.4.3-1`… (compared as dpkg compares).
    Version(String),
}

/// One declared resource: its kind (`file`, `port`…), its key (a path, `tcp:443`…) and the
/// attributes it must have.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Resource {
    pub kind: String,
    pub key: String,
    pub expect: BTreeMap<String, Matcher>,
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct Baseline {
    pub resources: Vec<Resource>,
    /// Any listening port not declared is drift (`ports: { closed: true }`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed_ports: bool,
    /// Any enabled unit not declared is drift (`services: { enabled_closed: true }`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed_services: bool,
}

/// The attributes each kind knows.
pub const KINDS: &[(&str, &[&str])] = &[
    (
        "file",
        &["exists", "type", "mode", "owner", "group", "sha256", "contains", "size"],
    ),
    ("port", &["listening", "process", "address"]),
    ("service", &["active", "enabled"]),
    ("package", &["installed", "version"]),
    ("user", &["exists", "uid", "gid", "home", "shell", "groups"]),
    ("group", &["exists", "gid", "members"]),
    ("kernel_param", &["value"]),
    ("command", &["exit", "stdout"]),
    ("git", &["sha", "ref", "clean"]),
    ("mount", &["exists", "fstype", "opts", "source"]),
    ("http", &["status", "body"]),
];
