//! Evidence files: the run as JSON, sealed by the SHA-256 of its canonical form (the document
//! without its `sha256` field, keys sorted, no spaces), which the audit chain also records.

use std::path::{Path, PathBuf};

use super::GateError;

pub const FORMAT: &str = "runbook-gate-evidence/1";

/// The SHA-256 of a document's canonical form, its own `sha256` field left out.
pub fn seal(doc: &serde_json::Value) -> String {
    let mut doc = doc.clone();
    if let Some(map) = doc.as_object_mut() {
        map.remove("sha256");
    }
    let canonical = serde_json::to_vec(&sorted(doc)).unwrap_or_default();
    crate::util::hex(ring::digest::digest(&ring::digest::SHA256, &canonical).as_ref())
}

/// The same value with every object's keys in order, whatever map the parser kept.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<(String, serde_json::Value)> = m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().collect())
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Writes `doc` sealed to `dir/<gate>-<stamp>.json` (`-2`, `-3`… when taken), atomically:
/// a temporary file synced, then renamed. Returns the path and the seal.
pub fn write(dir: &Path, gate: &str, stamp: &str, mut doc: serde_json::Value) -> Result<(PathBuf, String), GateError> {
    let io = |p: &Path, e: std::io::Error| GateError::Io(p.to_path_buf(), e);
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let sha = seal(&doc);
    doc["sha256"] = serde_json::Value::String(sha.clone());
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
    let mut n = 1;
    loop {
        let name = if n == 1 {
            format!("{gate}-{stamp}.json")
        } else {
            format!("{gate}-{stamp}-{n}.json")
        };
        let path = dir.join(name);
        // A new name only: an evidence file is never overwritten.
        if crate::util::file::create_new(&path, text.as_bytes()).map_err(|e| io(&path, e))? {
            return Ok((path, sha));
        }
        n += 1;
    }
}
