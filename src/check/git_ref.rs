//! git ref probe: is the live checkout at the expected commit, ref or tag, and clean?

use std::time::Duration;

use serde_json::json;

use super::Finding;
use crate::config::checks::GitRefProbe;
use crate::exec::{self, Cancel, Spec};
use crate::util::wildcard;

async fn git(repo: &std::path::Path, args: &[&str], timeout: Duration) -> Result<(bool, String), String> {
    let mut argv = vec!["git".to_string(), "-C".to_string(), repo.to_string_lossy().into_owned()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let spec = Spec::new(argv, timeout);
    let out = tokio::task::spawn_blocking(move || exec::run(&spec, &Cancel::default()))
        .await
        .map_err(|e| format!("the git probe crashed: {e}"))?
        .map_err(|e| e.to_string())?;
    if out.success() {
        Ok((true, out.stdout.trim().to_string()))
    } else {
        Ok((false, out.stderr.lines().next().unwrap_or("").trim().to_string()))
    }
}

fn looks_like_sha(s: &str) -> bool {
    (7..=40).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

pub(super) async fn probe(p: &GitRefProbe, timeout: Duration) -> Result<Finding, super::ProbeError> {
    let (ok, head) = git(&p.repo, &["rev-parse", "HEAD"], timeout).await?;
    if !ok {
        return Err(super::ProbeError::Failed(format!(
            "{} is not a git checkout with a commit: {head}",
            p.repo.display()
        )));
    }
    let short = head.get(..12).unwrap_or(&head).to_string();
    let (matched, what) = if p.expect.contains('*') || p.expect.contains('?') {
        let pattern = p.expect.strip_prefix("refs/tags/").unwrap_or(&p.expect);
        let (_, tags) = git(&p.repo, &["tag", "--points-at", "HEAD"], timeout).await?;
        let tag = tags.lines().find(|t| wildcard::matches(pattern, t)).map(str::to_string);
        let what = match &tag {
            Some(t) => format!("HEAD {short} is tagged {t}"),
            None => format!("no tag matching {} points at HEAD {short}", p.expect),
        };
        (tag.is_some(), what)
    } else if looks_like_sha(&p.expect) {
        let m = head.starts_with(&p.expect.to_lowercase());
        (
            m,
            if m {
                format!("HEAD is {short}")
            } else {
                format!("HEAD is {short}, expected {}", p.expect)
            },
        )
    } else {
        let spec = format!("{}^{{commit}}", p.expect);
        let (found, target) = git(&p.repo, &["rev-parse", "--verify", "--quiet", &spec], timeout).await?;
        if !found {
            (false, format!("{} does not exist in {}", p.expect, p.repo.display()))
        } else if target == head {
            (true, format!("HEAD {short} is {}", p.expect))
        } else {
            (
                false,
                format!(
                    "HEAD is {short}, {} is {}",
                    p.expect,
                    target.get(..12).unwrap_or(&target)
                ),
            )
        }
    };
    let mut detail = what;
    let mut dirty = None;
    if p.clean {
        let (_, status) = git(&p.repo, &["status", "--porcelain", "--untracked-files=no"], timeout).await?;
        let changed = status.lines().count();
        dirty = Some(changed);
        if changed > 0 {
            detail.push_str(&format!("; working tree has {changed} changed file(s)"));
        }
    }
    let ok = matched && dirty.unwrap_or(0) == 0;
    Ok(Finding::new(
        ok,
        detail,
        json!({ "head": head, "expect": p.expect, "changed_files": dirty }),
    ))
}
