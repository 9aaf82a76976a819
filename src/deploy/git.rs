//! The git a deploy needs: resolving a ref to a commit (tags or commits, never a moving
//! branch unless allowed), checking its SSH signature, making and removing release worktrees.

use std::path::Path;
use std::time::Duration;

use super::DeployError;

/// Runs git with `args`; its trimmed stdout, or what it said on failure.
pub(super) fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut argv = vec!["git".to_string(), "-C".into(), dir.display().to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let out = crate::exec::run(
        &crate::exec::Spec::new(argv, Duration::from_secs(600)),
        &Default::default(),
    )
    .map_err(|e| e.to_string())?;
    if out.success() {
        Ok(out.stdout.trim().to_string())
    } else {
        Err(out.summary(Duration::from_secs(600)))
    }
}

fn commit_of(repo: &Path, name: &str) -> Option<String> {
    git(
        repo,
        &["rev-parse", "--verify", "--quiet", &format!("{name}^{{commit}}")],
    )
    .ok()
    .filter(|s| s.len() == 40)
}

/// The commit `reference` names, as `refs` allows: `tags` takes a tag, `sha` a commit id
/// (7 to 40 hex digits); a branch only with `allow_branch`.
pub(super) fn resolve(repo: &Path, refs: &str, reference: &str, allow_branch: bool) -> Result<String, DeployError> {
    let refuse = |why: String| DeployError::Ref(reference.to_string(), why);
    if reference.is_empty()
        || reference.starts_with('-')
        || reference.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(refuse("not a ref name".into()));
    }
    if let Some(sha) = commit_of(repo, &format!("refs/tags/{reference}"))
        && refs == "tags"
    {
        return Ok(sha);
    }
    if let Some(sha) = commit_of(repo, &format!("refs/heads/{reference}")) {
        return if allow_branch {
            Ok(sha)
        } else {
            Err(refuse(
                "is a branch, and a branch moves: deploy a tag or a commit, or pass --allow-branch".into(),
            ))
        };
    }
    let hex = (7..=40).contains(&reference.len()) && reference.chars().all(|c| c.is_ascii_hexdigit());
    match (refs, hex) {
        ("sha", true) => commit_of(repo, reference)
            .filter(|sha| sha.starts_with(&reference.to_ascii_lowercase()))
            .ok_or_else(|| refuse(format!("no such commit in {}", repo.display()))),
        ("sha", false) => Err(refuse("refs: sha takes a commit id (7 to 40 hex digits)".into())),
        _ => Err(refuse(format!("no such tag in {} (refs: tags)", repo.display()))),
    }
}

/// The tag (or commit) carries an SSH signature by one of `allowed_signers`.
pub(super) fn verify_signature(
    repo: &Path,
    refs: &str,
    reference: &str,
    sha: &str,
    allowed_signers: &Path,
) -> Result<(), DeployError> {
    let signers = format!("gpg.ssh.allowedSignersFile={}", allowed_signers.display());
    let (verb, what) = if refs == "tags" {
        ("verify-tag", reference)
    } else {
        ("verify-commit", sha)
    };
    git(repo, &["-c", "gpg.format=ssh", "-c", &signers, verb, what])
        .map(|_| ())
        .map_err(|e| DeployError::Signature(reference.to_string(), e))
}
