//! Time as runbook stores and shows it.
//!
//! Owns the one text format of timestamps in the store (UTC, millisecond precision, fixed
//! width, so text order is time order) and the local format for people.
//! Invariant: nothing else formats a timestamp for storage.

use jiff::{Timestamp, tz::TimeZone};

pub fn now() -> Timestamp {
    Timestamp::now()
}

/// `2026-11-23T11:32:38.123Z`: fixed width, sorts as text.
pub fn to_text(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub fn from_text(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// Local time for people: `2026-11-23 12:32:38 CET`.
pub fn human(ts: Timestamp) -> String {
    ts.to_zoned(TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// `3m ago`, `2h ago`, `in 5m`.
pub fn relative(ts: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second() - ts.as_second();
    let (n, future) = (secs.unsigned_abs(), secs < 0);
    let text = match n {
        0..=59 => format!("{n}s"),
        60..=3599 => format!("{}m", n / 60),
        3600..=86_399 => format!("{}h{:02}m", n / 3600, (n % 3600) / 60),
        _ => format!("{}d{:02}h", n / 86_400, (n % 86_400) / 3600),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_format_round_trips_and_sorts() {
        let a: Timestamp = "2026-01-02T03:04:05.6Z".parse().unwrap();
        let b: Timestamp = "2026-01-02T03:04:15Z".parse().unwrap();
        assert_eq!(to_text(a), "2026-01-02T03:04:05.600Z");
        assert_eq!(from_text(&to_text(a)), Some(a));
        assert!(to_text(a) < to_text(b));
    }
}
