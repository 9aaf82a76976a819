//! SQL probe: one scalar from the application's own database (SQLite or PostgreSQL), read-only.

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

/// The server's own message when there is one ("database \"x\" does not exist"), not "db error".
fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string()),
    }
}

/// The first column of the first row, from PostgreSQL, in a read-only transaction.
async fn pg_scalar(url: &str, query: &str) -> Result<Value, String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to PostgreSQL: {}", pg_error(&e)))?;
    let driver = tokio::spawn(connection);
    let result = client.simple_query(&format!("BEGIN READ ONLY; {query}")).await;
    drop(client);
    driver.abort();
    let messages = result.map_err(|e| {
        format!(
            "query failed: {}",
            e.as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string())
        )
    })?;
    let row = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .ok_or("the query returned no row")?;
    Ok(match row.get(0) {
        None => Value::Null,
        Some(text) => text
            .parse::<i64>()
            .map(|i| json!(i))
            .or_else(|_| text.parse::<f64>().map(|f| json!(f)))
            .unwrap_or_else(|_| json!(text)),
    })
}

pub(super) async fn probe(p: &SqlProbe) -> Result<Finding, super::ProbeError> {
    let value = if p.url.starts_with("postgres://") || p.url.starts_with("postgresql://") {
        pg_scalar(&p.url, &p.query).await?
    } else {
        let (path, query) = (p.url.clone(), p.query.clone());
        tokio::task::spawn_blocking(move || scalar(&path, &query))
            .await
            .map_err(|e| format!("the sql probe crashed: {e}"))??
    };
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
