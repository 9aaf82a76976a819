//! Which archives a keep policy keeps (pure: no files, no store).
//!
//! An archive stays if any rule keeps it: `last` the newest N; `daily`, `weekly`, `monthly`
//! the newest archive of each of the N most recent days, ISO weeks or months that have one
//! (UTC). Whatever the policy, the newest verified archive stays, so pruning can never leave
//! a target with nothing known to restore.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;

use crate::config::backups::KeepPolicy;

/// The calendar bucket (day, ISO week or month) a time falls in.
type Bucket = dyn Fn(Timestamp) -> (i32, i32);

fn utc(t: Timestamp) -> jiff::civil::Date {
    t.to_zoned(jiff::tz::TimeZone::UTC).date()
}

/// What the policy needs to know of an archive.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: i64,
    pub created: Timestamp,
    pub verified: bool,
}

/// Ids kept, each with why (`last`, `daily`, …, `newest verified`).
pub fn keep(policy: &KeepPolicy, archives: &[Candidate]) -> BTreeMap<i64, Vec<&'static str>> {
    let mut newest_first: Vec<&Candidate> = archives.iter().collect();
    newest_first.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    let mut kept: BTreeMap<i64, Vec<&'static str>> = BTreeMap::new();
    if let Some(n) = policy.last {
        for a in newest_first.iter().take(n as usize) {
            kept.entry(a.id).or_default().push("last");
        }
    }
    let rules: [(&'static str, Option<u32>, &Bucket); 3] = [
        ("daily", policy.daily, &|t| {
            let d = utc(t);
            (d.year() as i32, d.day_of_year() as i32)
        }),
        ("weekly", policy.weekly, &|t| {
            let w = utc(t).iso_week_date();
            (w.year() as i32, w.week() as i32)
        }),
        ("monthly", policy.monthly, &|t| {
            let d = utc(t);
            (d.year() as i32, d.month() as i32)
        }),
    ];
    for (why, n, bucket) in rules {
        let Some(n) = n else { continue };
        let mut seen = HashSet::new();
        for a in &newest_first {
            if seen.len() >= n as usize {
                break;
            }
            if seen.insert(bucket(a.created)) {
                kept.entry(a.id).or_default().push(why);
            }
        }
    }
    if let Some(v) = newest_first.iter().find(|a| a.verified) {
        kept.entry(v.id).or_default().push("newest verified");
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str, id: i64, verified: bool) -> Candidate {
        Candidate {
            id,
            created: s.parse().unwrap(),
            verified,
        }
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_and_last_the_newest_n() {
        let a = vec![
            at("2026-11-01T01:00:00Z", 1, false),
            at("2026-11-01T13:00:00Z", 2, false),
            at("2026-11-02T01:00:00Z", 3, false),
            at("2026-11-03T01:00:00Z", 4, false),
            at("2026-11-03T02:00:00Z", 5, false),
        ];
        let k = keep(
            &KeepPolicy {
                daily: Some(2),
                ..KeepPolicy::default()
            },
            &a,
        );
        assert_eq!(k.keys().copied().collect::<Vec<_>>(), vec![3, 5]);
        let k = keep(
            &KeepPolicy {
                last: Some(1),
                daily: Some(3),
                ..KeepPolicy::default()
            },
            &a,
        );
        assert_eq!(k.keys().copied().collect::<Vec<_>>(), vec![2, 3, 5]);
        assert_eq!(k[&5], vec!["last", "daily"]);
    }

    #[test]
    fn weekly_and_monthly_buckets_and_the_newest_verified_always_stays() {
        let a = vec![
            at("2026-09-30T00:00:00Z", 1, true),
            at("2026-10-05T00:00:00Z", 2, false),
            at("2026-10-20T00:00:00Z", 3, false),
            at("2026-10-21T00:00:00Z", 4, false),
        ];
        let k = keep(
            &KeepPolicy {
                weekly: Some(2),
                ..KeepPolicy::default()
            },
            &a,
        );
        // 20 and 21 October share an ISO week; 5 October is the week before that.
        assert_eq!(k.keys().copied().collect::<Vec<_>>(), vec![1, 2, 4]);
        assert_eq!(k[&1], vec!["newest verified"]);
        let k = keep(
            &KeepPolicy {
                monthly: Some(1),
                ..KeepPolicy::default()
            },
            &a,
        );
        assert_eq!(k.keys().copied().collect::<Vec<_>>(), vec![1, 4]);
    }
}
