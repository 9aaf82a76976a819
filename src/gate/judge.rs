//! Sampling and judging, in the manner of an Argo Rollouts analysis: each sample is pass,
//! fail, inconclusive or error; a measure fails past `failure_limit` failures, is an error
//! past `consecutive_error_limit` errors in a row, and inconclusive past
//! `inconclusive_limit`; a `dry_run` measure is recorded and never blocks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use crate::check::Outcome;
use crate::clock;
use crate::config::Config;
use crate::config::gates::{Compare, Gate, Measure};

/// One sample of one measure.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at: String,
    pub verdict: &'static str,
    pub ok: bool,
    pub detail: String,
    /// Every value measured: `latency_ms`, and each value a comparison names (null when the
    /// probe did not report it).
    pub values: BTreeMap<String, Option<f64>>,
    /// The comparisons that did not hold, or could not be judged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A comparison with its baseline and the bound it made.
#[derive(Debug, Clone, Serialize)]
pub struct Bound {
    pub value: String,
    pub condition: String,
    pub baseline: Option<f64>,
    pub bound: Option<f64>,
}

/// One measure judged.
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    pub name: String,
    pub kind: String,
    pub count: u32,
    pub interval_ms: u64,
    pub limits: serde_json::Value,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compare: Vec<Bound>,
    pub samples: Vec<Sample>,
    pub failures: u32,
    pub inconclusive: u32,
    pub errors: u32,
    /// pass, fail, inconclusive, error, or dry-run.
    pub verdict: String,
    /// For a dry-run measure: what it would have been.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_be: Option<String>,
}

impl Judged {
    /// A condition judged once from runbook's own state.
    pub fn single(name: &str, ok: bool, detail: String) -> Judged {
        let verdict = if ok { "pass" } else { "fail" };
        Judged {
            name: name.to_string(),
            kind: name.to_string(),
            count: 1,
            interval_ms: 0,
            limits: json!({ "failure_limit": 0, "inconclusive_limit": 0, "consecutive_error_limit": 0 }),
            compare: Vec::new(),
            samples: vec![Sample {
                at: clock::to_text(clock::now()),
                verdict,
                ok,
                detail,
                values: BTreeMap::new(),
                notes: Vec::new(),
            }],
            failures: u32::from(!ok),
            inconclusive: 0,
            errors: 0,
            verdict: verdict.into(),
            would_be: None,
        }
    }

    /// The mean of each value over the samples that measured it.
    pub fn means(&self) -> BTreeMap<String, f64> {
        let mut sums: BTreeMap<String, (f64, u32)> = BTreeMap::new();
        for s in &self.samples {
            for (k, v) in &s.values {
                if let Some(v) = v {
                    let e = sums.entry(k.clone()).or_default();
                    e.0 += v;
                    e.1 += 1;
                }
            }
        }
        sums.into_iter().map(|(k, (sum, n))| (k, sum / n as f64)).collect()
    }
}

/// A comparison of a value (by name) with the bound it makes, if it can be judged.
type Bounded = (String, Compare, Option<f64>);

/// A value of an outcome by name: `latency_ms`, or a field of its data (`phases_ms.tls`).
fn value(o: &Outcome, name: &str) -> Option<f64> {
    if name == "latency_ms" {
        return Some(o.latency_ms as f64);
    }
    let pointer = format!("/{}", name.replace('.', "/"));
    let v = o.data.pointer(&pointer)?;
    v.as_f64().or_else(|| v.as_bool().map(|b| if b { 1.0 } else { 0.0 }))
}

fn sample(o: &Outcome, bounds: &[Bounded]) -> Sample {
    let mut values = BTreeMap::from([("latency_ms".to_string(), Some(o.latency_ms as f64))]);
    let mut notes = Vec::new();
    let mut verdict = if o.ok {
        "pass"
    } else if o.data.get("error").is_some_and(|e| e.is_string()) {
        "error"
    } else {
        "fail"
    };
    for (name, cmp, bound) in bounds {
        let v = value(o, name);
        values.insert(name.clone(), v);
        if verdict != "pass" {
            continue;
        }
        match (v, bound) {
            (None, _) => {
                notes.push(format!("{name}: not measured"));
                verdict = "inconclusive";
            }
            // Relative to a baseline there is none of yet: recorded, not judged.
            (Some(_), None) => notes.push(format!("{name}: no passing run to compare with yet")),
            (Some(v), Some(b)) if !cmp.holds(v, *b) => {
                notes.push(format!("{name} {v} is not {} {b} ({})", cmp.op, cmp.text));
                verdict = "fail";
            }
            _ => {}
        }
    }
    Sample {
        at: o.at.clone(),
        verdict,
        ok: o.ok,
        detail: o.detail.clone(),
        values,
        notes,
    }
}

/// The verdict of a measure from its samples and limits.
fn judge(m: &Measure, samples: &[Sample]) -> (String, u32, u32, u32) {
    let count = |v: &str| samples.iter().filter(|s| s.verdict == v).count() as u32;
    let (failures, inconclusive, errors) = (count("fail"), count("inconclusive"), count("error"));
    let mut run = 0u32;
    let mut longest = 0u32;
    for s in samples {
        run = if s.verdict == "error" { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let verdict = if failures > m.failure_limit {
        "fail"
    } else if longest > m.consecutive_error_limit {
        "error"
    } else if inconclusive > m.inconclusive_limit {
        "inconclusive"
    } else {
        "pass"
    };
    (verdict.to_string(), failures, inconclusive, errors)
}

/// Samples every measure of `gate` at once, each on its own cadence.
pub(super) fn measure_all(
    config: &Arc<Config>,
    gate: &Gate,
    baseline: &serde_json::Value,
    progress: &(dyn Fn(&str, &Sample) + Sync),
) -> Vec<Judged> {
    let rt = crate::util::runtime::runtime();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Sample)>();
    let start = Instant::now();
    let plans: Vec<(Measure, Vec<Bounded>)> = gate
        .measures
        .iter()
        .map(|m| {
            let bounds = m
                .compare
                .iter()
                .map(|(name, c)| {
                    let base = baseline.get(&m.name).and_then(|b| b.get(name)).and_then(|v| v.as_f64());
                    (name.clone(), c.clone(), c.bound(base))
                })
                .collect();
            (m.clone(), bounds)
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (m, bounds)) in plans.iter().cloned().enumerate() {
        let (config, tx) = (config.clone(), tx.clone());
        tasks.spawn_on(
            async move {
                for k in 0..m.count {
                    let due = start + m.interval.0 * k;
                    tokio::time::sleep_until(due.into()).await;
                    let o = crate::check::probe(&config, &m.name, &m.check).await;
                    let _ = tx.send((i, sample(&o, &bounds)));
                }
            },
            rt.handle(),
        );
    }
    drop(tx);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); plans.len()];
    for (i, s) in rx {
        progress(&plans[i].0.name, &s);
        samples[i].push(s);
    }
    rt.block_on(async { while tasks.join_next().await.is_some() {} });
    plans
        .iter()
        .zip(samples)
        .map(|((m, bounds), samples)| {
            let (verdict, failures, inconclusive, errors) = judge(m, &samples);
            let dry = gate.dry_run.contains(&m.name);
            Judged {
                name: m.name.clone(),
                kind: m.kind.clone(),
                count: m.count,
                interval_ms: m.interval.0.as_millis() as u64,
                limits: json!({
                    "failure_limit": m.failure_limit,
                    "inconclusive_limit": m.inconclusive_limit,
                    "consecutive_error_limit": m.consecutive_error_limit,
                }),
                compare: bounds
                    .iter()
                    .map(|(name, c, bound)| Bound {
                        value: name.clone(),
                        condition: c.text.clone(),
                        baseline: baseline.get(&m.name).and_then(|b| b.get(name)).and_then(|v| v.as_f64()),
                        bound: *bound,
                    })
                    .collect(),
                samples,
                failures,
                inconclusive,
                errors,
                verdict: if dry { "dry-run".into() } else { verdict.clone() },
                would_be: dry.then_some(verdict),
            }
        })
        .collect()
}

/// The gate's verdict: any fail fails it, then any error, then any inconclusive.
pub(super) fn verdict(measures: &[Judged]) -> &'static str {
    let any = |v: &str| measures.iter().any(|m| m.verdict == v);
    if any("fail") {
        "fail"
    } else if any("error") {
        "error"
    } else if any("inconclusive") {
        "inconclusive"
    } else {
        "pass"
    }
}
