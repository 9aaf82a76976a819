//! SQL probe: one scalar from the application's own SQLite database, read-only.

use rusqlite::types::ValueRef;
use serde_json::{Value, json};

use super::Finding;
use crate::config::checks::SqlProbe;

fn scalar(path: &str, query: &str) -> Result<Value, String> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open {path} read-only: {e}"))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    conn.query_row(query, [], |r| {
        Ok(match r.get_ref(0)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => json!(i),
            ValueRef::Real(f) => json!(f),
            ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
            ValueRef::Blob(b) => json!(format!("<{} bytes>", b.len())),
        })
    })
    .map_err(|e| format!("query failed: {e}"))
}

pub(super) async fn probe(p: &SqlProbe) -> Result<Finding, String> {
    let (path, query) = (p.url.clone(), p.query.clone());
    let value = tokio::task::spawn_blocking(move || scalar(&path, &query))
        .await
        .map_err(|e| format!("the sql probe crashed: {e}"))??;
    let e = &p.expect;
    let number = value.as_f64();
    let mut problems = Vec::new();
    if let Some(want) = &e.equals {
        let same = match (want.as_f64(), number) {
            (Some(a), Some(b)) => a == b,
            _ => want == &value,
        };
        if !same {
            problems.push(format!("expected {want}"));
        }
    }
    if let Some(max) = e.max
        && number.is_none_or(|n| n > max)
    {
        problems.push(format!("expected at most {max}"));
    }
    if let Some(min) = e.min
        && number.is_none_or(|n| n < min)
    {
        problems.push(format!("expected at least {min}"));
    }
    let data = json!({ "value": value });
    Ok(if problems.is_empty() {
        Finding::new(true, format!("query returned {value}"), data)
    } else {
        Finding::new(false, format!("query returned {value}, {}", problems.join(", ")), data)
    })
}
