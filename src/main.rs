//! runbook's entry point: parse the command line, set up logging, dispatch, map the outcome to
//! an exit code (0 ok · 1 failed · 2 usage/config · 3 internal).

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

use runbook::cli::{self, Cli, Command, LogFormat, Outcome};

fn init_logging(cli: &Cli) {
    let default = if matches!(cli.command, Command::Daemon(_) | Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    let level = cli
        .log_level
        .as_deref()
        .unwrap_or(default)
        .parse::<tracing::level_filters::LevelFilter>()
        .unwrap_or(tracing::level_filters::LevelFilter::INFO);
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some() && !std::io::stderr().is_terminal();
    let json = match cli.log_format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => under_systemd,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    runbook::store::guard_file_size_limit();
    let json = cli.json;
    match cli::dispatch(cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(cli::error::EXIT_FAILED),
        Ok(Outcome::Code(c)) => ExitCode::from(c),
        Err(e) => {
            if json {
                cli::output::emit(&format!("{}\n", serde_json::json!({ "error": e })));
            } else {
                eprint!("{}", e.render());
            }
            ExitCode::from(e.exit)
        }
    }
}
