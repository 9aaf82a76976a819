//! Where work runs in fleet mode: `run_on` of profiles and checks.

use schemars::JsonSchema;
use serde::Serialize;

/// Where a profile or a check runs in fleet mode (see `Profile::run_on`, `Check::run_on`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOn {
    /// Once per tick across the fleet: the leader runs it.
    #[default]
    Any,
    /// On every host.
    All,
    /// On the hosts with one of these names or labels.
    Hosts(Vec<String>),
}

impl RunOn {
    pub fn is_any(&self) -> bool {
        *self == RunOn::Any
    }

    /// Whether a host named `host` with `labels` runs it when it is due (for `Any`: only
    /// while that host leads the fleet, which the caller knows).
    pub fn includes(&self, host: &str, labels: &[String]) -> bool {
        match self {
            RunOn::Any | RunOn::All => true,
            RunOn::Hosts(names) => names.iter().any(|n| n == host || labels.contains(n)),
        }
    }

    /// How runbook.yaml spells it.
    pub fn display(&self) -> String {
        match self {
            RunOn::Any => "any".into(),
            RunOn::All => "all".into(),
            RunOn::Hosts(h) => h.join(", "),
        }
    }
}
