//! The house rule of ARCHITECTURE.md, checked against the code: every top-level module of
//! `src/` is on a layer of its table, imports only from its own layer or lower ones, and the
//! modules of one layer import each other without a circle. Imports are read as text: every
//! `crate::NAME` path, and each name of a `crate::{…}` group.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// module → layer, from the table's rows `| N | `a`, `b` | … |`.
fn layers(text: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(layer), Some(modules)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Ok(layer) = layer.parse::<u32>() else { continue };
        for m in modules.split(',') {
            out.insert(m.trim().trim_matches('`').to_string(), layer);
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a source text names through `crate::`, comments left out.
fn imports(text: &str) -> BTreeSet<String> {
    names_after(text, "crate::")
}

/// The first names of the paths a source text names after `prefix` (`crate::`, `super::`), a
/// path and each name of a `prefix{…}` group, comments left out.
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find(prefix) {
        rest = &rest[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The names at depth 0 of the group.
            let (mut depth, mut start) = (0, 0);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.insert(ident(&group[start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "self" && m != "super");
    out
}

/// Within each folder of `src/`: file → the sibling files it imports (`super::NAME` or the
/// folder's own `crate::…::NAME` path). `mod.rs`, the folder's facade, and unit tests are
/// left out.
fn sibling_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let dir = f.parent().unwrap();
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        if dir == src || stem == "mod" {
            continue;
        }
        let folder = dir.strip_prefix(&src).unwrap().to_string_lossy().replace('/', "::");
        let whole = std::fs::read_to_string(f).unwrap();
        // A file's unit tests may call the folder's facade by any path; they are not the house.
        let text = whole.split("\n#[cfg(test)]").next().unwrap_or_default();
        let mut used = names_after(text, "super::");
        used.extend(names_after(text, &format!("crate::{folder}::")));
        let siblings = used
            .into_iter()
            .filter(|u| *u != stem && (dir.join(format!("{u}.rs")).is_file() || dir.join(u).join("mod.rs").is_file()))
            .map(|u| format!("{folder}::{u}"));
        g.entry(format!("{folder}::{stem}")).or_default().extend(siblings);
    }
    g
}

/// module → the modules it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let mut used = imports(&std::fs::read_to_string(&f).unwrap());
        used.remove(&module);
        g.entry(module).or_default().extend(used);
    }
    g
}

fn violations(g: &BTreeMap<String, BTreeSet<String>>, layer: &BTreeMap<String, u32>) -> Vec<String> {
    let mut bad = Vec::new();
    for (m, used) in g {
        let Some(&own) = layer.get(m) else {
            bad.push(format!("`{m}` is on no layer of ARCHITECTURE.md"));
            continue;
        };
        for u in used {
            match layer.get(u) {
                Some(&l) if l > own => bad.push(format!("`{m}` (layer {own}) imports `{u}` (layer {l})")),
                Some(_) => {}
                None => bad.push(format!("`{m}` imports `{u}`, which is on no layer")),
            }
        }
    }
    bad.extend(circles(g));
    bad.sort();
    bad.dedup();
    bad
}

/// Every path in `g` back to where it started.
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut bad = Vec::new();
    for start in g.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((m, path)) = stack.pop() {
            for u in g.get(&m).into_iter().flatten() {
                if u == start {
                    let mut circle = path.clone();
                    circle.push(u.clone());
                    bad.push(format!("circle: {}", circle.join(" → ")));
                } else if seen.insert(u.clone()) {
                    let mut p = path.clone();
                    p.push(u.clone());
                    stack.push((u.clone(), p));
                }
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

#[test]
fn no_module_imports_upward_or_in_a_circle() {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).unwrap();
    let layer = layers(&doc);
    assert!(layer.len() >= 15, "the table of ARCHITECTURE.md lists {layer:?}");
    let g = graph();
    assert!(g.len() >= 15, "{g:?}");
    let bad = violations(&g, &layer);
    assert!(
        bad.is_empty(),
        "the house rule of ARCHITECTURE.md is broken:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_file_imports_a_sibling_in_a_circle() {
    let g = sibling_graph();
    assert!(g.len() >= 100, "{} files read", g.len());
    assert!(
        g.values().any(|used| used.contains("mcp::tools")),
        "the scan sees sibling imports: {g:?}"
    );
    let bad = circles(&g);
    assert!(
        bad.is_empty(),
        "files import each other in a circle:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_scan_sees_groups_paths_and_circles() {
    let text =
        "use crate::{alert::{self, Change}, store::Store};\n// crate::api in a comment\nfn f() { crate::cli::run(); }";
    assert_eq!(
        imports(text),
        ["alert", "cli", "store"].into_iter().map(String::from).collect()
    );
    let layer: BTreeMap<String, u32> = [("a", 0), ("b", 0), ("c", 1)]
        .into_iter()
        .map(|(m, l)| (m.to_string(), l))
        .collect();
    let g: BTreeMap<String, BTreeSet<String>> = [("a", vec!["b"]), ("b", vec!["a"]), ("c", vec!["a"])]
        .into_iter()
        .map(|(m, u)| (m.to_string(), u.into_iter().map(String::from).collect()))
        .collect();
    let bad = violations(&g, &layer);
    assert!(bad.iter().any(|b| b.starts_with("circle: a → b → a")), "{bad:?}");
    let mut upward = g.clone();
    upward.insert("a".into(), ["c".to_string()].into());
    assert!(
        violations(&upward, &layer)
            .iter()
            .any(|b| b.contains("`a` (layer 0) imports `c` (layer 1)"))
    );
}
