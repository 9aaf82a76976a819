//! Resource limits of child processes: rlimits set in the child, or a systemd scope.
//!
//! Invariants: between fork and exec the child makes only raw `prctl` and `setrlimit` calls
//! (no allocation, no locks); limits apply to the task's process, never to runbook itself.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use rustix::process::{Resource, Rlimit, Signal, set_parent_process_death_signal, setrlimit};

use crate::config::Limits;

#[derive(Debug, thiserror::Error)]
#[error("systemd_run: {0}")]
pub struct SystemdUnavailable(pub String);

/// Prepares the child: it dies with the thread that started it (so a runner killed with
/// SIGKILL leaves no orphaned task), and gets RLIMIT_AS / RLIMIT_CPU / RLIMIT_NOFILE.
pub fn prepare_child(cmd: &mut Command, limits: &Limits, under_systemd: bool) {
    // Under systemd-run, memory is capped by MemoryMax= on the scope instead of RLIMIT_AS.
    let memory = if under_systemd {
        None
    } else {
        limits.memory_max.map(|m| m.0)
    };
    let cpu = limits.cpu_time.map(|d| d.0.as_secs().max(1));
    let nofile = limits.nofile;
    let set = move |resource, value: u64| {
        setrlimit(
            resource,
            Rlimit {
                current: Some(value),
                maximum: Some(value),
            },
        )
    };
    // SAFETY: the closure only performs setrlimit syscalls, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            set_parent_process_death_signal(Some(Signal::KILL))?;
            if let Some(m) = memory {
                set(Resource::As, m)?;
            }
            if let Some(c) = cpu {
                set(Resource::Cpu, c)?;
            }
            if let Some(n) = nofile {
                set(Resource::Nofile, n)?;
            }
            Ok(())
        });
    }
}

/// Prefixes `argv` with `systemd-run --scope …` when the task asks for it.
pub fn wrap(argv: Vec<String>, limits: &Limits) -> Result<Vec<String>, SystemdUnavailable> {
    if !limits.systemd_run {
        return Ok(argv);
    }
    if !Path::new("/run/systemd/system").is_dir() {
        return Err(SystemdUnavailable(
            "this host is not running systemd (/run/systemd/system is missing); remove `systemd_run: true` and use memory_max/cpu_time rlimits instead".into(),
        ));
    }
    let Some(binary) = find_in_path("systemd-run") else {
        return Err(SystemdUnavailable(
            "`systemd-run` is not on PATH; install systemd or remove `systemd_run: true`".into(),
        ));
    };
    let mut wrapped = vec![binary, "--scope".into(), "--quiet".into(), "--collect".into()];
    if let Some(m) = limits.memory_max {
        wrapped.extend(["-p".into(), format!("MemoryMax={}", m.0)]);
    }
    if let Some(q) = limits.cpu_quota {
        wrapped.extend(["-p".into(), format!("CPUQuota={q}")]);
    }
    wrapped.push("--".into());
    wrapped.extend(argv);
    Ok(wrapped)
}

fn find_in_path(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}
