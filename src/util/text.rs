//! Text as a person reads it: command lines with every control character escaped, hex,
//! durations.

/// `text` with every control character written as an escape (`\r`, `\x1b`): what a person
/// reads on a terminal is then what the text holds.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A command line as a person reads it: shell-quoted, and every control character escaped
/// (`$'…\r…'`), so that a carriage return or a terminal escape inside an argument can never
/// make a command look like another one on a screen.
pub fn display(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.chars().any(char::is_control) {
                format!("$'{}'", escape_controls(&a.replace('\\', "\\\\").replace('\'', "\\'")))
            } else {
                shlex::try_quote(a).map_or_else(|_| a.clone(), |q| q.into_owned())
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// `1.23s`, `45ms`, `2m03s`.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.2}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// The innermost cause of an error, which is what a person needs ("connection refused"
/// rather than "error sending request").
pub fn innermost(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped_never_raw() {
        let argv = vec!["rm".to_string(), "-rf /\rsystemctl status app\x1b[K".to_string()];
        let shown = display(&argv);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "rm $'-rf /\\rsystemctl status app\\x1b[K'");
        assert_eq!(display(&["ls".into(), "a b".into()]), "ls 'a b'");
    }
}
