//! The walker over the spanned YAML tree: typed getters that record an error and carry on.
//!
//! Owns `Cx` (the error list, env-file variables, the secret redactor) and `Fields` (a mapping
//! whose keys were checked). Every getter returns `None` after recording a located error, so
//! validation continues and reports every problem in one pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::config::diagnostic::{Diagnostic, suggest};
use crate::config::interp;
use crate::config::secrets::Redactor;
use crate::config::units::HumanDuration;
use crate::config::yaml::{Kind, Node, Pos};

pub(in crate::config) struct Cx<'a> {
    pub(super) file: &'a Path,
    pub(super) src: &'a str,
    pub(in crate::config) diags: Vec<Diagnostic>,
    /// Variables from env files (secrets), which win over the process environment.
    pub(super) env_files: HashMap<String, String>,
    /// Redacts env-file values from names derived from them (task names).
    pub(super) redactor: Redactor,
    /// (mapping, key) pairs already suggested for a misspelt key: not reported missing again.
    pub(super) suggested: Vec<(Pos, &'static str)>,
    /// Names under `checks:`, which profile tasks may refer to.
    pub(super) check_names: Vec<String>,
    /// Names under `backups:`, which tasks and `backup_age` checks may refer to.
    pub(super) backup_names: Vec<String>,
    /// The backup targets that have `offsite:` (which `push:` tasks need).
    pub(super) offsite_names: Vec<String>,
    /// Every backup target named under `backups:`, also those whose own errors kept them out
    /// of `backup_names`: a reference to one is not an error of its own.
    pub(super) declared_backups: Vec<String>,
    /// Backup targets named by checks, with where: checked once `backups:` is read.
    pub(super) backup_refs: Vec<(Pos, String)>,
}

pub(super) struct Fields<'n> {
    /// (key, position of the key, value)
    pub(super) entries: Vec<(&'n str, Pos, &'n Node)>,
    pub(super) pos: Pos,
}

impl<'n> Fields<'n> {
    /// A key's value; an explicit null counts as absent.
    pub(super) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
            .filter(|v| !matches!(v.kind, Kind::Null))
    }
}

impl<'a> Cx<'a> {
    /// The errors found, with env-file values redacted from their messages.
    pub(in crate::config) fn into_diagnostics(self) -> Vec<Diagnostic> {
        let redactor = self.redactor;
        self.diags
            .into_iter()
            .map(|mut d| {
                d.message = redactor.redact(&d.message).into_owned();
                d
            })
            .collect()
    }

    /// The directory of the file being validated.
    pub(super) fn file_dir(&self) -> std::path::PathBuf {
        self.file.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    pub(in crate::config) fn new(file: &'a Path, src: &'a str) -> Self {
        Cx {
            file,
            src,
            diags: Vec::new(),
            env_files: HashMap::new(),
            redactor: Redactor::default(),
            suggested: Vec::new(),
            check_names: Vec::new(),
            backup_names: Vec::new(),
            offsite_names: Vec::new(),
            declared_backups: Vec::new(),
            backup_refs: Vec::new(),
        }
    }

    pub(super) fn error(&mut self, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        self.diags
            .push(Diagnostic::new(self.file.to_path_buf(), self.src, pos, message).with_hint(hint));
    }

    pub(super) fn map<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&'static str]) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.error(
                node.pos,
                format!("{what} must be a mapping, found {}", node.describe()),
                None,
            );
            return None;
        };
        let mut seen = HashSet::new();
        let mut fields = Fields {
            entries: Vec::new(),
            pos: node.pos,
        };
        for (key, value) in entries {
            let Kind::Scalar { value: name, .. } = &key.kind else {
                self.error(key.pos, format!("keys of {what} must be plain names"), None);
                continue;
            };
            if !seen.insert(name.as_str()) {
                self.error(
                    key.pos,
                    format!("duplicate key `{name}` in {what}"),
                    Some("remove one of them".into()),
                );
                continue;
            }
            if !allowed.is_empty() && !allowed.contains(&name.as_str()) {
                let suggestion = suggest(name, allowed.iter().copied());
                if let Some(s) = suggestion.and_then(|s| allowed.iter().find(|a| **a == s)) {
                    self.suggested.push((node.pos, s));
                }
                let hint = suggestion
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| Some(format!("known keys here: {}", allowed.join(", "))));
                self.error(key.pos, format!("unknown key `{name}` in {what}"), hint);
                continue;
            }
            fields.entries.push((name.as_str(), key.pos, value));
        }
        Some(fields)
    }

    /// A mapping of strings (`headers:`, `labels:`, `env:`), each value `${VAR}`-expanded.
    pub(super) fn string_map(&mut self, node: Option<&Node>, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(n) = node
            && let Some(m) = self.map(n, what, &[])
        {
            for (k, _, v) in &m.entries {
                if let Some(val) = self.string(v, &format!("{what}.{k}")) {
                    out.insert(k.to_string(), val);
                }
            }
        }
        out
    }

    /// A required string key of `f`; missing is reported (once) with an example.
    pub(super) fn required(&mut self, f: &Fields, key: &str, what: &str, example: &str) -> Option<String> {
        match f.get(key) {
            Some(n) => self.string(n, &format!("{what}.{key}")),
            None => {
                self.missing(f.pos, key, format!("{what} needs `{key}`"), example);
                None
            }
        }
    }

    /// Reports a missing required key, unless a misspelling of it was already reported.
    pub(super) fn missing(&mut self, map: Pos, key: &str, message: String, hint: &str) {
        if !self.suggested.iter().any(|(p, k)| *p == map && *k == key) {
            self.error(map, message, Some(hint.to_string()));
        }
    }

    pub(super) fn lookup(&self, name: &str) -> Option<String> {
        self.env_files.get(name).cloned().or_else(|| std::env::var(name).ok())
    }

    /// A scalar value as a string, with `${VAR}` expanded.
    pub(super) fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        let Kind::Scalar { value, .. } = &node.kind else {
            self.error(
                node.pos,
                format!("{what} must be a string, found {}", node.describe()),
                None,
            );
            return None;
        };
        match interp::expand(value, &|n| self.lookup(n)) {
            Ok(v) => Some(v),
            Err(msg) => {
                let hint = if msg.contains("is not set") {
                    Some(
                        "set it in the environment or in a secrets.env_files file, or give a default: ${NAME:-value}"
                            .into(),
                    )
                } else {
                    Some("write `$$` for a literal `$`".into())
                };
                self.error(node.pos, format!("{what}: {msg}"), hint);
                None
            }
        }
    }

    pub(super) fn parsed<T>(
        &mut self,
        node: &Node,
        what: &str,
        parse: fn(&str) -> Result<T, String>,
        hint: &str,
    ) -> Option<T> {
        let text = self.string(node, what)?;
        match parse(&text) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.error(node.pos, format!("{what}: {msg}"), Some(hint.to_string()));
                None
            }
        }
    }

    pub(super) fn duration(&mut self, node: &Node, what: &str) -> Option<HumanDuration> {
        let d = self.parsed(
            node,
            what,
            HumanDuration::parse,
            "durations look like 90s, 10m, 1h30m, 26h",
        )?;
        if d.0.is_zero() {
            self.error(node.pos, format!("{what} must be longer than zero"), None);
            return None;
        }
        Some(d)
    }

    pub(super) fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.kind {
            Kind::Scalar { value, plain: true } if value == "true" => Some(true),
            Kind::Scalar { value, plain: true } if value == "false" => Some(false),
            _ => {
                self.error(node.pos, format!("{what} must be true or false"), None);
                None
            }
        }
    }

    pub(super) fn u64(&mut self, node: &Node, what: &str) -> Option<u64> {
        match &node.kind {
            Kind::Scalar { value, .. } => match value.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(
                        node.pos,
                        format!("{what} must be a whole number, found `{value}`"),
                        None,
                    );
                    None
                }
            },
            _ => {
                self.error(
                    node.pos,
                    format!("{what} must be a whole number, found {}", node.describe()),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        let Kind::Seq(items) = &node.kind else {
            self.error(
                node.pos,
                format!("{what} must be a list, found {}", node.describe()),
                None,
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match self.string(item, what) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}
