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

/// A span of whole seconds for people: `42s`, `3m`, `2h05m`, `6d03h`.
pub fn span(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d{:02}h", secs / 86_400, (secs % 86_400) / 3600),
    }
}

/// `3m ago`, `2h ago`, `in 5m`.
pub fn relative(ts: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second() - ts.as_second();
    let (text, future) = (span(secs.unsigned_abs()), secs < 0);
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
    fn spans_read_as_people_say_them() {
        let now: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let ago = |secs: i64| relative(now - jiff::SignedDuration::from_secs(secs), now);
        assert_eq!(ago(0), "0s ago");
        assert_eq!(ago(59), "59s ago");
        assert_eq!(ago(150), "2m ago");
        assert_eq!(ago(2 * 3600 + 5 * 60), "2h05m ago");
        assert_eq!(ago(6 * 86_400 + 3 * 3600 + 59), "6d03h ago");
        assert_eq!(relative(now + jiff::SignedDuration::from_secs(300), now), "in 5m");
    }

    #[test]
    fn storage_format_round_trips_and_sorts() {
        let a: Timestamp = "2026-01-02T03:04:05.6Z".parse().unwrap();
        let b: Timestamp = "2026-01-02T03:04:15Z".parse().unwrap();
        assert_eq!(to_text(a), "2026-01-02T03:04:05.600Z");
        assert_eq!(from_text(&to_text(a)), Some(a));
        assert!(to_text(a) < to_text(b));
    }
}
