//! Check results: recorded per probe, the latest of each, and the latency histograms.

use super::db::{OptionalExtension, params};

use super::Result;
use super::connection::Store;
use super::types::*;

/// A check's latency histogram: non-cumulative counts per bucket, sum (ms), count.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    pub check: String,
    pub counts: Vec<i64>,
    pub sum_ms: i64,
    pub count: i64,
}

/// Upper bounds (ms) of the check latency histogram's buckets; one more bucket catches the rest.
pub const LATENCY_BOUNDS_MS: &[i64] = &[5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

impl Store {
    /// Records check outcomes (one transaction for the batch).
    pub fn record_check_results(&self, host: &str, results: &[CheckResult]) -> Result<()> {
        self.write("recording check results", |tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO check_results (check_name, host, kind, ok, latency_ms, detail, data, at, run_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for r in results {
                stmt.execute(params![
                    r.check,
                    host,
                    r.kind,
                    r.ok,
                    r.latency_ms,
                    r.detail,
                    r.data,
                    r.at,
                    r.run_id
                ])?;
            }
            let mut latest = tx.prepare_cached(
                "INSERT INTO check_latest (check_name, kind, ok, latency_ms, detail, data, at, run_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (check_name) DO UPDATE SET kind = excluded.kind, \
                 ok = excluded.ok, latency_ms = excluded.latency_ms, detail = excluded.detail, data = excluded.data, \
                 at = excluded.at, run_id = excluded.run_id",
            )?;
            for r in results {
                latest.execute(params![r.check, r.kind, r.ok, r.latency_ms, r.detail, r.data, r.at, r.run_id])?;
            }
            let mut read = tx.prepare_cached("SELECT buckets, sum_ms, count FROM check_latency WHERE check_name = ?1")?;
            let mut write = tx.prepare_cached(
                "INSERT INTO check_latency (check_name, buckets, sum_ms, count) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (check_name) DO UPDATE SET buckets = excluded.buckets, sum_ms = excluded.sum_ms, count = excluded.count",
            )?;
            for r in results {
                let (buckets, sum, count): (String, i64, i64) =
                    read.query_row([&r.check], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).optional()?.unwrap_or_default();
                let mut counts: Vec<i64> = buckets.split(',').filter_map(|c| c.parse().ok()).collect();
                counts.resize(LATENCY_BOUNDS_MS.len() + 1, 0);
                let slot = LATENCY_BOUNDS_MS.iter().position(|b| r.latency_ms <= *b).unwrap_or(LATENCY_BOUNDS_MS.len());
                counts[slot] += 1;
                let text = counts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
                write.execute(params![r.check, text, sum + r.latency_ms, count + 1])?;
            }
            Ok(())
        })
    }

    /// The latest outcome of each check.
    pub fn latest_check_results(&self) -> Result<Vec<CheckResult>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT check_name, kind, ok, latency_ms, detail, data, at, run_id FROM check_latest ORDER BY check_name",
            )
            .map_err(self.err("reading check results"))?;
        stmt.query_map((), |r| {
            Ok(CheckResult {
                check: r.get(0)?,
                kind: r.get(1)?,
                ok: r.get(2)?,
                latency_ms: r.get(3)?,
                detail: r.get(4)?,
                data: r.get(5)?,
                at: r.get(6)?,
                run_id: r.get(7)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err("reading check results"))
    }

    /// Per check: non-cumulative counts per `LATENCY_BOUNDS_MS` bucket (+1 overflow), sum (ms), count.
    pub fn check_latency(&self) -> Result<Vec<LatencyHistogram>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached("SELECT check_name, buckets, sum_ms, count FROM check_latency ORDER BY check_name")
            .map_err(self.err("reading check latency"))?;
        stmt.query_map((), |r| {
            let text: String = r.get(1)?;
            let mut counts: Vec<i64> = text.split(',').filter_map(|c| c.parse().ok()).collect();
            counts.resize(LATENCY_BOUNDS_MS.len() + 1, 0);
            Ok(LatencyHistogram {
                check: r.get(0)?,
                counts,
                sum_ms: r.get(2)?,
                count: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err("reading check latency"))
    }

    // ---- monitor_state ----
}
