//! What a failure means to the person who ran the command: how it ends the command (its
//! class, the exit status) and what they can do about it (a hint). Every library error that
//! reaches a command implements [`Explain`] beside its type; `cli::error` turns it into the
//! message, the hint and the exit status.

/// How a failure ends a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// A check, gate, verification or task failed (exit 1).
    Failed,
    /// The command or the configuration is wrong (exit 2).
    Usage,
    /// The state file, the disk or the host failed us (exit 3).
    Internal,
}

impl ExitClass {
    /// `failed`, `usage` or `internal`.
    pub fn name(self) -> &'static str {
        match self {
            ExitClass::Failed => "failed",
            ExitClass::Usage => "usage",
            ExitClass::Internal => "internal",
        }
    }
}

pub trait Explain: std::error::Error {
    fn class(&self) -> ExitClass;

    /// What the operator can do about it.
    fn hint(&self) -> Option<String> {
        None
    }

    /// The error's kind in `--json` output (`"state"`, `"config"`, `"backup"`); by default the
    /// class's name.
    fn kind(&self) -> &'static str {
        self.class().name()
    }
}
