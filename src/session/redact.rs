//! Redaction of command output in sessions: env-file secrets (the config's redactor), and the
//! usual shapes of credentials that no config names.

use std::sync::OnceLock;

use regex::Regex;

use crate::config::Redactor;

/// A credential shape: a literal that every match contains (checked first, so output
/// without it never pays for the regex), the pattern, and its replacement.
struct Shape {
    needle: fn(&str) -> bool,
    pattern: &'static str,
    with: &'static str,
    re: OnceLock<Option<Regex>>,
}

static SHAPES: [Shape; 3] = [
    // PEM private keys, whole blocks.
    Shape {
        needle: |t| t.contains("PRIVATE KEY-----"),
        pattern: r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?-----END ([A-Z0-9 ]*)PRIVATE KEY-----",
        with: "-----BEGIN ${1}PRIVATE KEY----- [REDACTED] -----END ${2}PRIVATE KEY-----",
        re: OnceLock::new(),
    },
    // Authorization headers: Bearer, Basic, token.
    Shape {
        needle: |t| {
            t.as_bytes()
                .windows(13)
                .any(|w| w.eq_ignore_ascii_case(b"authorization"))
        },
        pattern: r"(?i)(authorization:\s*(?:bearer|basic|token)\s+)[^\s'\x22]+",
        with: "${1}[REDACTED]",
        re: OnceLock::new(),
    },
    // Credentials in URLs: scheme://user:password@host
    Shape {
        needle: |t| t.contains("://") && t.contains('@'),
        pattern: r"([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+):[^\s@/]+@",
        with: "${1}:[REDACTED]@",
        re: OnceLock::new(),
    },
];

pub fn output(redactor: &Redactor, text: &str) -> String {
    let mut out = redactor.redact_cut(text, crate::exec::OMITTED_START, crate::exec::OMITTED_END);
    for shape in &SHAPES {
        if !(shape.needle)(&out) {
            continue;
        }
        if let Some(re) = shape.re.get_or_init(|| Regex::new(shape.pattern).ok()) {
            out = re.replace_all(&out, shape.with).into_owned();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_of_every_usual_shape_are_redacted() {
        let r = Redactor::new(["s3cr3t-from-env".to_string()]);
        let text = "DB_PASSWORD=s3cr3t-from-env\n\
                    curl -H 'Authorization: Bearer abc.def.ghi' https://x\n\
                    postgres://app:hunter2@db:5432/app\n\
                    -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        let out = output(&r, text);
        for secret in ["s3cr3t-from-env", "abc.def.ghi", "hunter2", "b3BlbnNzaC1rZXk"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("postgres://app:[REDACTED]@db:5432/app"), "{out}");
        assert!(out.contains("Authorization: Bearer [REDACTED]"), "{out}");
        let shouted = output(&r, "AUTHORIZATION: BEARER tok3n");
        assert_eq!(shouted, "AUTHORIZATION: BEARER [REDACTED]");
        let plain = "host-1\nno credentials here: https://example.org/a@b\n";
        assert_eq!(output(&r, plain), plain);
    }
}
