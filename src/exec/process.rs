//! Process identity: a pid plus its start time, so a reused pid is not mistaken for a live run.
//!
//! Reads `/proc/PID/stat`; on systems without /proc the start time is unknown and only the
//! pid is compared.

/// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This process's pid and start time.
pub fn current() -> (u32, Option<u64>) {
    let pid = std::process::id();
    (pid, start_time(pid))
}

/// Whether the process that recorded (`pid`, `start`) is still running.
pub fn is_alive(pid: u32, start: Option<u64>) -> bool {
    match (start_time(pid), start) {
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_changed_start_is_not() {
        let (pid, start) = current();
        assert!(start.is_some());
        assert!(is_alive(pid, start));
        assert!(!is_alive(pid, start.map(|s| s + 1)));
        assert!(!is_alive(u32::MAX - 1, None));
    }
}
