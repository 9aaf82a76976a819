//! `gates:`: named sets of measurements a release (or a rollback) must pass.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Serialize;

use super::checks::{Check, Severity};
use super::units::HumanDuration;

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Gate {
    /// What is measured, in order: named checks, then the built-in conditions (each a probe of
    /// its own: `migration_at_head`, `backup_verified_within`, `git_clean`, `disk_free`, and
    /// `require_verified_backup`).
    pub measures: Vec<Measure>,
    /// Any open alert of at least this severity fails the gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_open_alerts: Option<Severity>,
    /// runbook.yaml must load with no warning (`config check --strict`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub config_valid: bool,
    /// The host must match `baseline:` (acknowledged drift aside).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drift_clean: bool,
    /// Checks measured and recorded without blocking the gate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<String>,
    /// The git repository where `--release REF` resolves to a commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<PathBuf>,
    /// Channels told when the gate does not pass, with what failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

/// One thing a gate measures, sampled like an Argo Rollouts analysis: `count` measurements
/// `interval` apart; more failures than `failure_limit` fail it, more inconclusive results
/// than `inconclusive_limit` leave it inconclusive, more errors in a row than
/// `consecutive_error_limit` make it an error.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Measure {
    /// The check's name, or the condition's (`disk_free`, `git_clean`…).
    pub name: String,
    /// `check`, or the condition's kind.
    pub kind: String,
    /// The probe measured.
    pub check: Check,
    pub count: u32,
    pub interval: HumanDuration,
    pub failure_limit: u32,
    pub inconclusive_limit: u32,
    pub consecutive_error_limit: u32,
    /// Conditions on measured values (`latency_ms: "<= +10%"`), by value name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub compare: BTreeMap<String, Compare>,
}

/// `<= +10%`, `< 250`, `>= -5`: an absolute bound, or one relative to the mean measured by
/// the last passing run of the same gate.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Compare {
    pub op: String,
    pub value: f64,
    /// `percent` (+10% of the baseline), `delta` (+5 on the baseline) or `absolute`.
    pub relative: String,
    /// As written.
    pub text: String,
}

impl Compare {
    pub fn parse(text: &str) -> Result<Compare, String> {
        let t = text.trim();
        let op = ["<=", ">=", "==", "!=", "<", ">"]
            .into_iter()
            .find(|op| t.starts_with(op))
            .ok_or_else(|| format!("`{text}` starts with none of <=, <, >=, >, ==, !="))?;
        let rest = t[op.len()..].trim();
        let (number, relative) = match rest.strip_suffix('%') {
            Some(n) => (n, "percent"),
            None if rest.starts_with(['+', '-']) => (rest, "delta"),
            None => (rest, "absolute"),
        };
        if relative == "percent" && !number.starts_with(['+', '-']) {
            return Err(format!(
                "`{text}`: a percentage is relative to the baseline: write +{number}% or -{number}%"
            ));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{text}`: `{number}` is not a number"))?;
        Ok(Compare {
            op: op.to_string(),
            value,
            relative: relative.to_string(),
            text: t.to_string(),
        })
    }

    /// The bound for a measured value, given the baseline; `None` when it needs a baseline
    /// and there is none.
    pub fn bound(&self, baseline: Option<f64>) -> Option<f64> {
        match self.relative.as_str() {
            "absolute" => Some(self.value),
            "delta" => baseline.map(|b| b + self.value),
            _ => baseline.map(|b| b + b * self.value / 100.0),
        }
    }

    pub fn holds(&self, measured: f64, bound: f64) -> bool {
        match self.op.as_str() {
            "<=" => measured <= bound,
            ">=" => measured >= bound,
            "<" => measured < bound,
            ">" => measured > bound,
            "==" => measured == bound,
            _ => measured != bound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Compare;

    #[test]
    fn comparisons_are_absolute_or_relative_to_the_baseline() {
        let c = Compare::parse("<= +10%").unwrap();
        assert_eq!(c.bound(Some(200.0)), Some(220.0));
        assert_eq!(c.bound(None), None);
        assert!(c.holds(220.0, 220.0) && !c.holds(220.1, 220.0));
        assert_eq!(Compare::parse("< 250").unwrap().bound(None), Some(250.0));
        assert_eq!(Compare::parse(">= -5").unwrap().bound(Some(10.0)), Some(5.0));
        assert!(Compare::parse("<= 10%").is_err());
        assert!(Compare::parse("about 5").is_err());
        assert!(Compare::parse("<= fast").is_err());
    }
}
