//! Disk probe: free space and free inodes of the filesystem holding a path.

use serde_json::json;

use super::Finding;
use crate::config::ByteSize;
use crate::config::checks::{DiskProbe, Threshold};

fn judge(label: &str, free: u64, total: u64, min: Threshold, unit: fn(u64) -> String) -> (bool, String) {
    let pct = if total == 0 {
        100.0
    } else {
        free as f64 * 100.0 / total as f64
    };
    let ok = match min {
        Threshold::Percent(p) => pct >= p.0 as f64,
        Threshold::Amount(n) => free >= n,
    };
    let need = match min {
        Threshold::Percent(p) => p.to_string(),
        Threshold::Amount(n) => unit(n),
    };
    (ok, format!("{label} {pct:.1}% free ({}), need {need}", unit(free)))
}

pub(super) fn probe(p: &DiskProbe) -> Result<Finding, super::ProbeError> {
    let st =
        rustix::fs::statvfs(&p.path).map_err(|e| format!("cannot stat filesystem of {}: {e}", p.path.display()))?;
    let block = st.f_frsize.max(1);
    let (free_bytes, total_bytes) = (st.f_bavail * block, st.f_blocks * block);
    let mut ok = true;
    let mut parts = Vec::new();
    if let Some(min) = p.min_free {
        let (good, text) = judge("space", free_bytes, total_bytes, min, |n| ByteSize(n).human());
        ok &= good;
        parts.push(text);
    }
    if let Some(min) = p.min_free_inodes
        && st.f_files > 0
    {
        let (good, text) = judge("inodes", st.f_favail, st.f_files, min, |n| n.to_string());
        ok &= good;
        parts.push(text);
    }
    let data = json!({
        "path": p.path, "free_bytes": free_bytes, "total_bytes": total_bytes,
        "free_inodes": st.f_favail, "total_inodes": st.f_files,
    });
    Ok(Finding::new(
        ok,
        format!("{}: {}", p.path.display(), parts.join("; ")),
        data,
    ))
}
