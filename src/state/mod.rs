//! Script state (`monitor_state`): namespaced keys that scripts and checks keep between runs.
//!
//! Owns get/set and the import of legacy text cache files. Not the store itself: the store
//! persists, this module decides what an import means. Invariant: an import is idempotent; a
//! second identical import changes nothing, and existing keys survive unless `overwrite`.

use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};

use crate::audit::Draft;
use crate::config::Redactor;
use crate::store::{StateEntry, Store, StoreError};
use crate::util::{ExitClass, Explain};

/// Files larger than this are not imported (a cache file is small; a big file is a mistake).
pub const MAX_IMPORT_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("`{0}` is not a directory")]
    NotADirectory(PathBuf),
    #[error("key {namespace}/{key} comes from both {first} and {second}")]
    ConflictAcrossFiles {
        namespace: String,
        key: String,
        first: String,
        second: String,
    },
    #[error("key {namespace}/{key} appears twice in {file}")]
    Conflict {
        namespace: String,
        key: String,
        file: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Explain for StateError {
    fn class(&self) -> ExitClass {
        match self {
            StateError::Store(s) => s.class(),
            _ => ExitClass::Usage,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            StateError::Store(s) => s.kind(),
            _ => self.class().name(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            StateError::Store(s) => s.hint(),
            StateError::ConflictAcrossFiles { .. } => Some("import the files separately with --namespace".into()),
            StateError::Conflict { .. } => Some("keep one line per key in that file".into()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// New key.
    Add,
    /// Same value already stored.
    Unchanged,
    /// Different value stored; kept because `overwrite` is off.
    Keep,
    /// Different value stored; replaced.
    Overwrite,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportItem {
    pub namespace: String,
    pub key: String,
    pub source: String,
    pub action: Action,
    #[serde(skip)]
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportPlan {
    pub dir: String,
    pub namespace: String,
    pub overwrite: bool,
    pub items: Vec<ImportItem>,
    pub skipped: Vec<Skipped>,
}

impl ImportPlan {
    pub fn count(&self, action: Action) -> usize {
        self.items.iter().filter(|i| i.action == action).count()
    }

    fn writes(&self) -> Vec<(String, String, String)> {
        self.items
            .iter()
            .filter(|i| matches!(i.action, Action::Add | Action::Overwrite))
            .map(|i| (i.namespace.clone(), i.key.clone(), i.value.clone()))
            .collect()
    }
}

/// A file of `key=value` lines (comments and blank lines allowed) holds many keys.
fn key_value_lines(text: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (k, v) = line.split_once('=')?;
        let k = k.trim();
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return None;
        }
        pairs.push((k.to_string(), v.trim().to_string()));
    }
    (!pairs.is_empty()).then_some(pairs)
}

/// Reads a directory of legacy cache files into a plan. One file is one key (its name without
/// extension; the value is the content without the final newline), or, when every line is
/// `key=value`, one key per line.
pub fn plan_import(
    store: &Store,
    dir: &Path,
    namespace: Option<&str>,
    overwrite: bool,
) -> Result<ImportPlan, StateError> {
    if !dir.is_dir() {
        return Err(StateError::NotADirectory(dir.to_path_buf()));
    }
    let namespace = namespace.map(str::to_string).unwrap_or_else(|| {
        dir.canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "default".into())
    });
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Read { path, source }
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();

    let mut plan = ImportPlan {
        dir: dir.display().to_string(),
        namespace: namespace.clone(),
        overwrite,
        items: Vec::new(),
        skipped: Vec::new(),
    };
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let skip = |reason: &str| Skipped {
            path: path.display().to_string(),
            reason: reason.to_string(),
        };
        if name.starts_with('.') {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(read_err(&path))?;
        if !meta.is_file() {
            plan.skipped.push(skip("not a regular file"));
            continue;
        }
        if meta.len() > MAX_IMPORT_FILE {
            plan.skipped.push(skip("larger than 1 MiB"));
            continue;
        }
        let bytes = std::fs::read(&path).map_err(read_err(&path))?;
        let Ok(text) = String::from_utf8(bytes) else {
            plan.skipped.push(skip("not UTF-8 text"));
            continue;
        };
        let pairs = key_value_lines(&text).unwrap_or_else(|| {
            let stem = Path::new(&name)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or(name.clone());
            vec![(stem, text.strip_suffix('\n').unwrap_or(&text).to_string())]
        });
        for (key, value) in pairs {
            if let Some(prev) = plan.items.iter().find(|i| i.key == key) {
                return Err(if prev.source == name {
                    StateError::Conflict {
                        namespace,
                        key,
                        file: name,
                    }
                } else {
                    StateError::ConflictAcrossFiles {
                        namespace,
                        key,
                        first: prev.source.clone(),
                        second: name,
                    }
                });
            }
            let action = match store.state_get(&namespace, &key)? {
                None => Action::Add,
                Some(e) if e.value == value => Action::Unchanged,
                Some(_) if overwrite => Action::Overwrite,
                Some(_) => Action::Keep,
            };
            plan.items.push(ImportItem {
                namespace: namespace.clone(),
                key,
                source: name.clone(),
                action,
                value,
            });
        }
    }
    Ok(plan)
}

/// Writes what the plan adds or overwrites, with one audit event, in one transaction.
pub fn apply_import(store: &Store, plan: &ImportPlan, redactor: &Redactor) -> Result<usize, StateError> {
    let writes = plan.writes();
    if writes.is_empty() {
        return Ok(0);
    }
    let keys: Vec<_> = plan
        .items
        .iter()
        .filter(|i| matches!(i.action, Action::Add | Action::Overwrite))
        .map(|i| json!({ "key": i.key, "action": i.action, "source": i.source }))
        .collect();
    let draft = Draft::new(
        "state.imported",
        &plan.namespace,
        json!({ "dir": plan.dir, "overwrite": plan.overwrite, "keys": keys }),
        redactor,
    );
    store.state_put(&writes, &draft)?;
    Ok(writes.len())
}

/// Sets one key (audited). Returns the previous entry.
pub fn set(
    store: &Store,
    namespace: &str,
    key: &str,
    value: &str,
    redactor: &Redactor,
) -> Result<Option<StateEntry>, StateError> {
    let previous = store.state_get(namespace, key)?;
    let draft = Draft::new(
        "state.set",
        &format!("{namespace}/{key}"),
        json!({ "namespace": namespace, "key": key, "created": previous.is_none() }),
        redactor,
    );
    store.state_put(&[(namespace.to_string(), key.to_string(), value.to_string())], &draft)?;
    Ok(previous)
}
