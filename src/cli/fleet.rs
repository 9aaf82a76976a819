//! `runbook fleet status`: the hosts sharing this state, the leader lease, what runs where.

use clap::Subcommand;

use super::{CliError, Ctx, Outcome, output};
use crate::store::Store;
use crate::util::text::duration_ms;

#[derive(Debug, Subcommand)]
pub enum FleetCmd {
    /// The hosts sharing this state, the leader lease and its term, what runs where
    ///
    /// Each host's last heartbeat (a host silent for 20 s is `down`, one that stopped cleanly
    /// `stopped`), the leases with their terms and time left, each profile's `run_on` and the
    /// hosts that run it now, and each host's failing checks. On a state file: this host alone.
    Status,
}

pub fn run(cx: &Ctx, cmd: FleetCmd) -> Result<Outcome, CliError> {
    let FleetCmd::Status = cmd;
    let config = cx.load()?;
    let store = Store::open_state(&config.state)?;
    let view = crate::schedule::fleet_view::view(&config, &store)?;
    cx.out.either(&view, || {
        match &view.leader {
            Some(l) => cx.out.line(format!(
                "leader: {} (term {}, lease renewed, {} left)",
                l.host,
                l.term,
                duration_ms(l.expires_in_ms.max(0) as u64)
            )),
            None if view.mode == "fleet" => cx.out.line("leader: none (no host holds the lease)"),
            None => cx
                .out
                .line(format!("single host: {} (state file, no lease)", config.host)),
        }
        if !view.hosts.is_empty() {
            cx.out.line("");
            let mut t = output::table(&["HOST", "STATE", "LEADER", "LAST HEARTBEAT", "LABELS", "CHECKS"]);
            for h in &view.hosts {
                t.add_row(vec![
                    h.host.clone(),
                    h.state.to_string(),
                    if h.leader { "yes".into() } else { String::new() },
                    format!("{} ago", duration_ms(h.heartbeat_age_ms.max(0) as u64)),
                    h.labels.join(", "),
                    if h.checks_failing.is_empty() {
                        format!("{} ok", h.checks_ok)
                    } else {
                        format!("{} ok, failing: {}", h.checks_ok, h.checks_failing.join(", "))
                    },
                ]);
            }
            output::print_table(&t);
        }
        if !view.profiles.is_empty() {
            cx.out.line("");
            let mut t = output::table(&["PROFILE", "RUN ON", "RUNS ON NOW"]);
            for p in &view.profiles {
                t.add_row(vec![p.name.clone(), p.run_on.clone(), p.hosts.join(", ")]);
            }
            output::print_table(&t);
        }
    });
    Ok(Outcome::Ok)
}
