//! `runbook completions SHELL` and `runbook man [--dir DIR]`: the clap tree rendered for the
//! shell and for man(1), so completions and pages never drift from the commands.

use std::path::Path;

use clap::CommandFactory;
use serde_json::json;

use super::{Cli, CliError, Ctx, Outcome};

pub fn completions(cx: &Ctx, shell: clap_complete::Shell) -> Result<Outcome, CliError> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "runbook", &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    if cx.out.json {
        cx.out.json(&json!({ "shell": shell.to_string(), "script": script }));
    } else {
        super::output::emit(&script);
    }
    Ok(Outcome::Ok)
}

pub fn man(cx: &Ctx, dir: Option<&Path>) -> Result<Outcome, CliError> {
    let internal = |e: std::io::Error| CliError::internal(format!("cannot write the manual: {e}"), None);
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(internal)?;
            clap_mangen::generate_to(Cli::command(), dir).map_err(internal)?;
            let mut pages: Vec<String> = std::fs::read_dir(dir)
                .map_err(internal)?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("runbook") && n.ends_with(".1"))
                .collect();
            pages.sort();
            let value = json!({ "dir": dir, "pages": pages });
            cx.out.either(&value, || {
                cx.out
                    .line(format!("wrote {} manual pages to {}", pages.len(), dir.display()))
            });
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(internal)?;
            let page = String::from_utf8_lossy(&page).into_owned();
            if cx.out.json {
                cx.out.json(&json!({ "page": page }));
            } else {
                super::output::emit(&page);
            }
        }
    }
    Ok(Outcome::Ok)
}
