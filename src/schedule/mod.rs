//! Scheduling: when profiles run, and running them.
//!
//! Owns cron evaluation, the per-profile lock, the profile runner, the crontab rendering and
//! the upkeep between runs (the daemon that ticks them is composed in `cli`). It does not parse configuration (`config`) or speak SQL (`store`).
//! Invariant: a profile never overlaps itself; a second start is recorded as `skipped`.

mod backup_tasks;
pub mod check_tasks;
pub mod crontab;
pub mod fleet_view;
pub(crate) mod gaps;
pub mod lease;
pub mod lock;
mod maintenance;
mod plan;
pub mod runner;
pub mod upkeep;

use jiff::Timestamp;

use crate::config::Schedule;

/// The first fire time strictly after `after`, in the schedule's time zone.
pub fn next_after(schedule: &Schedule, after: Timestamp) -> Option<Timestamp> {
    let zoned = after.to_zoned(schedule.tz.clone());
    schedule
        .cron
        .find_next_occurrence(&zoned, false)
        .ok()
        .map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_fire_time_respects_time_zone() {
        let schedule = Schedule {
            cron: "30 3 * * *".parse().unwrap(),
            tz: jiff::tz::TimeZone::get("Europe/Berlin").unwrap(),
        };
        let after: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        // 03:30 in Berlin (UTC+1 in November) is 02:30 UTC.
        assert_eq!(
            next_after(&schedule, after).unwrap().to_string(),
            "2026-11-24T02:30:00Z"
        );
    }
}
