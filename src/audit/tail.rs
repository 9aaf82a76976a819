//! A lost tail: the audit head file beside the state file against the chain in it.
//!
//! Judges whether the chain ends before the event `<state>.audit-head` records
//! (`store::head`), or holds another event at its seq. Invariant: it changes nothing.

use serde::Serialize;

/// The head file held against the chain.
#[derive(Debug, Clone, Serialize)]
pub struct TailJudged {
    pub file: String,
    pub recorded_seq: i64,
    pub recorded_hash: String,
    pub ok: bool,
    pub detail: String,
}

/// Judges the recorded head against a verified chain that ends at `head_seq` (0 when empty),
/// continues from `anchor` (the last archived event) and holds `hash_of(seq)`.
pub fn judge(
    file: &std::path::Path,
    recorded: (i64, &str),
    head_seq: i64,
    anchor: Option<&(i64, String)>,
    hash_of: &dyn Fn(i64) -> Option<String>,
) -> TailJudged {
    let (recorded_seq, recorded_hash) = recorded;
    let (ok, detail) = if recorded_seq > head_seq {
        let missing = recorded_seq - head_seq;
        (
            false,
            format!(
                "the state file ends at seq {head_seq}, but seq {} was committed: {missing} committed event{} lost (a crash, or an older copy of the state file put back)",
                recorded_seq,
                if missing == 1 { " was" } else { "s were" }
            ),
        )
    } else if let Some(hash) = hash_of(recorded_seq) {
        if hash == recorded_hash {
            (
                true,
                format!("the newest committed event (seq {}) is here", recorded_seq),
            )
        } else {
            (
                false,
                format!(
                    "seq {} is not the event that was committed as seq {0}: the events from there on were lost and written again",
                    recorded_seq
                ),
            )
        }
    } else if anchor.is_some_and(|(last, _)| recorded_seq <= *last) {
        (true, format!("seq {} was archived", recorded_seq))
    } else {
        (
            false,
            format!("seq {} is not in the chain the state file holds", recorded_seq),
        )
    };
    TailJudged {
        file: file.display().to_string(),
        recorded_seq,
        recorded_hash: recorded_hash.to_string(),
        ok,
        detail,
    }
}
