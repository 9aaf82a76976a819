//! Query strings and paths parsed into our JSON error shape instead of axum's plain text.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Like `axum::extract::Query`, but a malformed query is a JSON 400.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Q(q.0))
            .map_err(|e| ApiError::bad_request("bad_query", e.body_text()))
    }
}

/// An optional JSON request body: none (or an empty one) is `None`; a body that is not the
/// JSON expected is a JSON 400, like every other client error (axum's own `Json` answers
/// those in plain text).
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| OptionalJson(Some(v)))
            .map_err(|e| ApiError::bad_request("bad_json", format!("the request body is not the JSON expected: {e}")))
    }
}

/// Page size: `limit` between 1 and `MAX_LIMIT`, default `DEFAULT_LIMIT`.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

pub fn limit(asked: Option<usize>) -> Result<usize, ApiError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "bad_limit",
            format!("limit {n} is out of range 1..={MAX_LIMIT}"),
        )),
    }
}

/// Cursors are opaque to clients: the last id seen, as 16 hex digits.
pub fn encode_cursor(id: i64) -> String {
    format!("{:016x}", id as u64)
}

pub fn decode_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    match cursor {
        None | Some("") => Ok(None),
        Some(c) if c.len() == 16 => u64::from_str_radix(c, 16)
            .map(|v| Some(v as i64))
            .map_err(|_| ApiError::bad_request("bad_cursor", "cursor is not one this API gave out")),
        Some(_) => Err(ApiError::bad_request(
            "bad_cursor",
            "cursor is not one this API gave out",
        )),
    }
}

/// An id from the path: a positive integer, or 404 (a path that cannot exist).
pub fn id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| ApiError::not_found(format!("no such id `{text}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_cursor(Some(&encode_cursor(42))).unwrap(), Some(42));
        assert!(decode_cursor(Some("zz")).is_err());
        assert!(decode_cursor(Some("gggggggggggggggg")).is_err());
        assert!(limit(Some(0)).is_err() && limit(Some(1001)).is_err() && limit(None).unwrap() == 50);
    }
}
