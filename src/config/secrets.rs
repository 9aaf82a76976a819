//! Secrets: values loaded from `secrets.env_files`, and the redactor that hides them.
//!
//! Owns dotenv parsing and `Redactor`. It does not decide where redaction is applied (every
//! writer of output, logs and audit data calls `redact`). Invariant: a value that came from an
//! env file never leaves the process unredacted, except into the environment of child tasks.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

pub const REDACTED: &str = "[redacted]";

/// Shorter values are not redacted: masking `1` or `yes` everywhere would make output unreadable.
pub const MIN_SECRET_LEN: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// Parses dotenv syntax: `KEY=value`, `export KEY=value`, `#` comments, single quotes (literal),
/// double quotes (with `\n`, `\"`, `\\` escapes). Errors carry the 1-based line.
pub fn parse_env_file(text: &str) -> Result<Vec<EnvVar>, (usize, String)> {
    let mut vars = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((line_no, format!("expected KEY=value, found `{line}`")));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((line_no, format!("`{key}` is not a valid variable name")));
        }
        let value = value.trim();
        let value = if let Some(inner) = value.strip_prefix('\'') {
            inner
                .strip_suffix('\'')
                .ok_or((line_no, "unterminated single quote".to_string()))?
                .to_string()
        } else if let Some(inner) = value.strip_prefix('"') {
            let inner = inner
                .strip_suffix('"')
                .ok_or((line_no, "unterminated double quote".to_string()))?;
            unescape_double(inner)
        } else {
            match value.find(" #") {
                Some(i) => value[..i].trim_end().to_string(),
                None => value.to_string(),
            }
        };
        vars.push(EnvVar {
            key: key.to_string(),
            value,
            line: line_no,
        });
    }
    Ok(vars)
}

fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Replaces every known secret value with `[redacted]`. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
}

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = values.into_iter().filter(|v| v.len() >= MIN_SECRET_LEN).collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor {
            secrets: Arc::new(secrets),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }

    /// `redact`, and also the pieces of a secret that a cut left on either side of each
    /// omission marker (`[… N bytes omitted …]` in captured output): the end of the text
    /// before a marker that begins a secret, and the start of the text after one that ends
    /// a secret, from 4 characters on.
    pub fn redact_cut(&self, text: &str, marker_start: &str, marker_end: &str) -> String {
        let mut out = self.redact(text).into_owned();
        if self.is_empty() || !out.contains(marker_start) {
            return out;
        }
        let mut from = 0;
        while let Some(at) = out[from..].find(marker_start).map(|i| i + from) {
            let Some(end) = out[at..].find(marker_end).map(|i| i + at + marker_end.len()) else {
                break;
            };
            // Before the marker (its newline aside): the longest start of a secret.
            let head_end = if out[..at].ends_with('\n') { at - 1 } else { at };
            let cut_head = self
                .secrets
                .iter()
                .filter_map(|s| partial(s, true).find(|p| out[..head_end].ends_with(p)).map(str::len))
                .max();
            // After the marker (its newline aside): the longest end of a secret.
            let end = if out[end..].starts_with('\n') { end + 1 } else { end };
            let cut_tail = self
                .secrets
                .iter()
                .filter_map(|s| partial(s, false).find(|p| out[end..].starts_with(p)).map(str::len))
                .max();
            let mut replaced = String::with_capacity(out.len());
            replaced.push_str(&out[..head_end - cut_head.unwrap_or(0)]);
            if cut_head.is_some() {
                replaced.push_str(REDACTED);
            }
            replaced.push_str(&out[head_end..end]);
            if cut_tail.is_some() {
                replaced.push_str(REDACTED);
            }
            let next = replaced.len();
            replaced.push_str(&out[end + cut_tail.unwrap_or(0)..]);
            out = replaced;
            from = next;
        }
        out
    }

    /// Redacts every string inside a JSON value, keys included.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&k).into_owned(), v);
                }
            }
            _ => {}
        }
    }
}

/// Reads one env file; errors are (line, message) with line 0 for I/O.
pub fn read_env_file(path: &Path) -> Result<Vec<EnvVar>, (usize, String)> {
    let text = std::fs::read_to_string(path).map_err(|e| (0, format!("cannot read {}: {e}", path.display())))?;
    parse_env_file(&text)
}

/// The proper starts (`head`) or ends of `secret` of at least 4 characters, longest first.
fn partial(secret: &str, head: bool) -> impl Iterator<Item = &str> {
    let bounds: Vec<usize> = secret.char_indices().map(|(i, _)| i).skip(4).collect();
    let mut parts: Vec<&str> = if head {
        bounds.iter().map(|&i| &secret[..i]).collect()
    } else {
        let n = secret.chars().count();
        secret
            .char_indices()
            .skip(1)
            .take(n.saturating_sub(4))
            .map(|(i, _)| &secret[i..])
            .collect()
    };
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parts.into_iter()
}

/// Parts of a key's name that make its value a credential.
const CREDENTIAL_NAMES: &[&str] = &["PASSWORD", "PASSWD", "TOKEN", "SECRET", "KEY", "CREDENTIAL", "DSN"];

/// Whether an env-file value is a secret, to be redacted everywhere: its key looks like a
/// credential (`*PASSWORD*`, `*TOKEN*`, `*SECRET*`, `*KEY*`, `*CREDENTIAL*`, `*DSN*`), or the
/// value is a URL with a password, or the key is in `secrets.redact`; unless the key is in
/// `secrets.plain`. A deploy ref or a host name read from an env file stays readable.
pub fn is_secret(key: &str, value: &str, redact: &[String], plain: &[String]) -> bool {
    if plain.iter().any(|p| p == key) {
        return false;
    }
    let upper = key.to_ascii_uppercase();
    redact.iter().any(|r| r == key) || CREDENTIAL_NAMES.iter().any(|c| upper.contains(c)) || url_with_password(value)
}

/// `scheme://user:password@host…`.
fn url_with_password(value: &str) -> bool {
    value.split_once("://").is_some_and(|(_, rest)| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    })
}

/// Files that hold secrets and are open to other users (mode bits for "others").
/// A secret open to other users, and the command that closes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    pub problem: String,
    pub fix: String,
}

impl std::fmt::Display for Exposure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.problem, self.fix)
    }
}

pub fn exposure_warnings(config: &super::Config) -> Vec<Exposure> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| m.permissions().mode() & 0o7777);
    let mut out = Vec::new();
    for f in &config.secrets.env_files {
        if let Some(m) = mode(f).filter(|m| m & 0o006 != 0) {
            out.push(Exposure {
                problem: format!(
                    "env file {} is {} by other users (mode {m:04o})",
                    f.display(),
                    if m & 0o002 != 0 { "writable" } else { "readable" },
                ),
                fix: format!("chmod o-rwx {}", f.display()),
            });
        }
    }
    if let Some(m) = mode(&config.state.path).filter(|m| m & 0o004 != 0 && !config.state.is_postgres()) {
        out.push(Exposure {
            problem: format!(
                "state file {} is readable by other users (mode {m:04o}): it holds the audit log, outputs and tokens' hashes",
                config.state.path.display()
            ),
            fix: format!("chmod o-r {}", config.state.path.display()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_forms() {
        let vars = parse_env_file("# c\nA=1\nexport B = two words # note\nC='lit $x'\nD=\"a\\nb\"\n").unwrap();
        let got: Vec<(&str, &str)> = vars.iter().map(|v| (v.key.as_str(), v.value.as_str())).collect();
        assert_eq!(
            got,
            vec![("A", "1"), ("B", "two words"), ("C", "lit $x"), ("D", "a\nb")]
        );
        assert_eq!(parse_env_file("ok=1\nnot a var\n").unwrap_err().0, 2);
    }

    #[test]
    fn redacts_longest_first_and_skips_short_values() {
        let r = Redactor::new(["abcd".to_string(), "abcdef".to_string(), "no".to_string()]);
        assert_eq!(r.redact("x abcdef abcd no"), "x [redacted] [redacted] no");
    }

    #[test]
    fn a_secret_cut_by_an_omission_marker_is_redacted_on_both_sides() {
        let r = Redactor::new(["hunter2-very-secret".to_string()]);
        let text = "line\nkey=hunter2-ve\n[… 100 bytes omitted …]\nry-secret and more";
        let out = r.redact_cut(text, "[… ", " bytes omitted …]");
        assert!(!out.contains("hunter2") && !out.contains("ry-secret"), "{out}");
        assert_eq!(
            out,
            "line\nkey=[redacted]\n[… 100 bytes omitted …]\n[redacted] and more"
        );
        // Short pieces (under 4 characters) and other text stay.
        let kept = r.redact_cut("a hu\n[… 1 bytes omitted …]\nxyz", "[… ", " bytes omitted …]");
        assert_eq!(kept, "a hu\n[… 1 bytes omitted …]\nxyz");
    }

    #[test]
    fn a_value_is_a_secret_by_its_key_or_its_form_unless_made_plain() {
        let none: &[String] = &[];
        for (key, value, secret) in [
            ("API_TOKEN", "abc", true),
            ("db_password", "x", true),
            ("STRIPE_SECRET_KEY", "sk_1", true),
            ("DATABASE_DSN", "host=db", true),
            ("AWS_CREDENTIALS", "x", true),
            ("DEPLOY_REF", "main-1f2e3d", false),
            ("APP_HOST", "vps-1", false),
            ("DATABASE_URL", "postgres://app:hunter2@db/app", true),
            ("DATABASE_URL", "postgres://app@db/app", false),
        ] {
            assert_eq!(is_secret(key, value, none, none), secret, "{key}={value}");
        }
        assert!(is_secret("DEPLOY_REF", "x", &["DEPLOY_REF".to_string()], none));
        assert!(!is_secret("PUBLIC_KEY_ID", "x", none, &["PUBLIC_KEY_ID".to_string()]));
    }
}
