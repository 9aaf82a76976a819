//! A tool's answer and how the call ended: what every tool returns, and what the audit
//! chain records of it.

use serde_json::{Value, json};

use crate::util::Explain;

/// How a call ended, as the audit chain records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Refused,
    PendingApproval,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Refused => "refused",
            Outcome::PendingApproval => "pending approval",
            Outcome::Failed => "failed",
        }
    }
}

/// A tool's answer: what the assistant reads, and how the call ended.
pub struct Reply {
    pub outcome: Outcome,
    pub value: Value,
}

impl Reply {
    pub fn allowed(value: Value) -> Self {
        Reply {
            outcome: Outcome::Allowed,
            value,
        }
    }

    pub fn refused(reason: impl Into<String>, hint: Option<String>) -> Self {
        Reply {
            outcome: Outcome::Refused,
            value: json!({ "refused": reason.into(), "hint": hint }),
        }
    }

    /// A call that broke inside runbook.
    pub fn broken(why: &str) -> Self {
        Reply {
            outcome: Outcome::Failed,
            value: json!({ "error": why }),
        }
    }

    pub fn failed(e: &(impl Explain + ?Sized)) -> Self {
        Reply {
            outcome: Outcome::Failed,
            value: json!({ "error": e.to_string(), "hint": e.hint() }),
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self.outcome, Outcome::Refused | Outcome::Failed)
    }
}
