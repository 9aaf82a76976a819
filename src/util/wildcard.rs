//! Shell-style wildcards (`*`, `?`) for file names and tag names.
//!
//! Owns matching only; no directories, no character classes.

/// Whether `text` matches `pattern`, where `*` is any run of characters and `?` one character.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("app-*.tar.zst", "app-2026-11-23.tar.zst"));
        assert!(!matches("app-*.tar.zst", "app-2026.tar.gz"));
        assert!(matches("deploy-*", "deploy-"));
        assert!(matches("v?.?", "v1.2"));
        assert!(!matches("v?.?", "v1.23"));
        assert!(matches("*", ""));
    }
}
