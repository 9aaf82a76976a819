//! Redaction of command output in sessions: env-file secrets (the config's redactor), and the
//! usual shapes of credentials that no config names.

use std::sync::OnceLock;

use regex::Regex;

use crate::config::Redactor;

fn patterns() -> &'static [(Regex, &'static str)] {
    static P: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    P.get_or_init(|| {
        [
            // PEM private keys, whole blocks.
            (
                r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?-----END ([A-Z0-9 ]*)PRIVATE KEY-----",
                "-----BEGIN ${1}PRIVATE KEY----- [REDACTED] -----END ${2}PRIVATE KEY-----",
            ),
            // Authorization headers: Bearer, Basic, token.
            (
                r"(?i)(authorization:\s*(?:bearer|basic|token)\s+)[^\s'\x22]+",
                "${1}[REDACTED]",
            ),
            // Credentials in URLs: scheme://user:password@host
            (r"([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+):[^\s@/]+@", "${1}:[REDACTED]@"),
        ]
        .into_iter()
        .filter_map(|(p, r)| Regex::new(p).ok().map(|re| (re, r)))
        .collect()
    })
}

pub fn output(redactor: &Redactor, text: &str) -> String {
    let mut out = redactor.redact(text).into_owned();
    for (re, with) in patterns() {
        out = re.replace_all(&out, *with).into_owned();
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
    }
}
