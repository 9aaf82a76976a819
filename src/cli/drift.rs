//! `runbook drift` and `runbook baseline capture`.

use clap::Subcommand;
use serde_json::json;

use super::output;
use super::{CliError, Ctx, Outcome};

#[derive(Debug, Subcommand)]
pub enum BaselineCmd {
    /// Print today's host as a baseline (YAML under `baseline:`): listening ports (closed
    /// world), enabled services, users, groups, and the files given (modes, owners and
    /// SHA-256, never their content)
    Capture {
        /// Only these kinds: port, service, user, group, file (comma-separated or repeated)
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// A file to include (repeatable)
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<String>,
    },
}

pub fn drift(cx: &Ctx) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let items = crate::drift::drift(&config);
    let value = json!({ "drift": !items.is_empty(), "declared": config.baseline.resources.len(), "items": items });
    cx.out.either(&value, || {
        if items.is_empty() {
            cx.out.line(format!(
                "no drift: {} declared resource(s) as declared",
                config.baseline.resources.len()
            ));
            return;
        }
        let mut t = output::table(&["CHANGE", "KIND", "KEY", "ATTRIBUTE", "EXPECTED", "ACTUAL"]);
        for i in &items {
            t.add_row(vec![
                i.change.clone(),
                i.kind.clone(),
                i.key.clone(),
                i.attribute.clone(),
                output::one_line(&i.expected, 40),
                output::one_line(&i.actual, 40),
            ]);
        }
        output::print_table(&t);
        cx.out.line(format!("{} difference(s)", items.len()));
    });
    Ok(if items.is_empty() { Outcome::Ok } else { Outcome::Failed })
}

pub fn baseline(cx: &Ctx, cmd: BaselineCmd) -> Result<Outcome, CliError> {
    match cmd {
        BaselineCmd::Capture { only, files } => {
            let yaml = crate::drift::capture(&only, &files);
            if cx.out.json {
                cx.out.json(&json!({ "yaml": yaml }));
            } else {
                print!("{yaml}");
            }
            Ok(Outcome::Ok)
        }
    }
}
