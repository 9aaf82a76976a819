//! A lost tail: the audit head file beside the state file against the chain in it.
//!
//! The store records the newest committed event in `<state>.audit-head` after each commit
//! (store::head). A state file that lost committed events (a crash that took the last
//! transactions with it, a restore of an older copy) holds a chain that ends before that
//! event, or that holds another event at its seq. This module judges that; it changes nothing.

use serde::Serialize;

use crate::store::head::Head;

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
    recorded: &Head,
    head_seq: i64,
    anchor: Option<&(i64, String)>,
    hash_of: &dyn Fn(i64) -> Option<String>,
) -> TailJudged {
    let (ok, detail) = if recorded.seq > head_seq {
        let missing = recorded.seq - head_seq;
        (
            false,
            format!(
                "the state file ends at seq {head_seq}, but seq {} was committed: {missing} committed event{} lost (a crash, or an older copy of the state file put back)",
                recorded.seq,
                if missing == 1 { " was" } else { "s were" }
            ),
        )
    } else if let Some(hash) = hash_of(recorded.seq) {
        if hash == recorded.hash {
            (
                true,
                format!("the newest committed event (seq {}) is here", recorded.seq),
            )
        } else {
            (
                false,
                format!(
                    "seq {} is not the event that was committed as seq {0}: the events from there on were lost and written again",
                    recorded.seq
                ),
            )
        }
    } else if anchor.is_some_and(|(last, _)| recorded.seq <= *last) {
        (true, format!("seq {} was archived", recorded.seq))
    } else {
        (
            false,
            format!("seq {} is not in the chain the state file holds", recorded.seq),
        )
    };
    TailJudged {
        file: file.display().to_string(),
        recorded_seq: recorded.seq,
        recorded_hash: recorded.hash.clone(),
        ok,
        detail,
    }
}
