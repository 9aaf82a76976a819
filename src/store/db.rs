//! The SQL boundary both backends speak: a connection (or a transaction on one), its rows, the
//! values bound and read, and one error type.
//!
//! The queries of `store/` are written once, in SQLite's dialect with `?N` parameters, against
//! [`Conn`] (as are the tests' own reads of a state). On PostgreSQL each statement is rewritten once per connection (`pg_sql`) and
//! prepared; values convert to the type the server inferred for each parameter, so one query
//! text serves both. Nothing outside `store/` (but the tests) sees these types.

use std::cell::RefCell;
use std::collections::HashMap;

use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// A value bound to a parameter or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(Box<rusqlite::Error>),
    #[error("{}", pg_message(.0))]
    Pg(#[from] tokio_postgres::Error),
    #[error("the query returned no rows")]
    NoRows,
    #[error("column {index}: {message}")]
    Column { index: usize, message: String },
    #[error("{0}")]
    Message(String),
}

/// A PostgreSQL error as psql shows it: the server's message (and detail) rather than
/// tokio-postgres's "db error".
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{}: {d}", db.message()),
            None => db.message().to_string(),
        },
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

pub type Result<T> = std::result::Result<T, DbError>;

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(Box::new(e))
    }
}

/// `.optional()` on a single-row result, as rusqlite's `OptionalExtension`.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(DbError::Sqlite(e)) if matches!(*e, rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

pub trait ToValue {
    fn to_value(&self) -> Value;
}

macro_rules! integer_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
integer_to_value!(i64, i32, u32, u64, usize, u16, u8);

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Integer(*self as i64)
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

/// The parameters of one statement.
pub trait Params {
    fn values(self) -> Vec<Value>;
}
impl Params for () {
    fn values(self) -> Vec<Value> {
        Vec::new()
    }
}
impl<T: ToValue, const N: usize> Params for [T; N] {
    fn values(self) -> Vec<Value> {
        self.iter().map(ToValue::to_value).collect()
    }
}
impl Params for &[&dyn ToValue] {
    fn values(self) -> Vec<Value> {
        self.iter().map(|v| v.to_value()).collect()
    }
}
impl Params for Vec<Value> {
    fn values(self) -> Vec<Value> {
        self
    }
}

/// `params![a, b, …]`: parameters of mixed types, as rusqlite's macro of the same name.
macro_rules! params {
    () => { () };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::store::db::ToValue),+] as &[&dyn $crate::store::db::ToValue]
    };
}
pub(crate) use params;

pub trait FromValue: Sized {
    fn from_value(v: Value) -> std::result::Result<Self, String>;
}

impl FromValue for Value {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        Ok(v)
    }
}
impl FromValue for i64 {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Integer(n) => Ok(n),
            Value::Real(f) if f.fract() == 0.0 => Ok(f as i64),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}
macro_rules! narrow_integer {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: Value) -> std::result::Result<Self, String> {
                let n = i64::from_value(v)?;
                <$t>::try_from(n).map_err(|_| format!("{n} is out of range for {}", stringify!($t)))
            }
        }
    )*};
}
narrow_integer!(i32, u32, u64, usize, u16, u8);
impl FromValue for bool {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        i64::from_value(v).map(|n| n != 0)
    }
}
impl FromValue for f64 {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Real(f) => Ok(f),
            Value::Integer(n) => Ok(n as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}
impl FromValue for String {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b),
            Value::Text(s) => Ok(s.into_bytes()),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A column index, as rusqlite's `RowIndex` (by position only).
pub trait RowIndex {
    fn index(self) -> usize;
}
impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One row of a result.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Pg(&'a tokio_postgres::Row),
}

impl Row<'_> {
    pub fn get<I: RowIndex, T: FromValue>(&self, index: I) -> Result<T> {
        let index = index.index();
        let value = match self {
            Row::Sqlite(r) => {
                use rusqlite::types::ValueRef;
                match r.get_ref(index)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Integer(n),
                    ValueRef::Real(f) => Value::Real(f),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                }
            }
            Row::Pg(r) => r.try_get::<_, Value>(index)?,
        };
        T::from_value(value).map_err(|message| DbError::Column { index, message })
    }
}

/// Which server a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A PostgreSQL connection with its prepared statements.
pub struct PgConn {
    pub(super) client: tokio_postgres::Client,
    statements: RefCell<HashMap<String, tokio_postgres::Statement>>,
}

impl PgConn {
    pub(super) fn new(client: tokio_postgres::Client) -> PgConn {
        PgConn {
            client,
            statements: RefCell::new(HashMap::new()),
        }
    }

    fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let stmt = block_on(self.client.prepare(&pg_sql(sql)))?;
        let mut cache = self.statements.borrow_mut();
        if cache.len() >= 512 {
            cache.clear();
        }
        cache.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<tokio_postgres::Row>> {
        let stmt = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        Ok(block_on(self.client.query(&stmt, &refs))?)
    }

    fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64> {
        let stmt = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        Ok(block_on(self.client.execute(&stmt, &refs))?)
    }

    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        Ok(block_on(self.client.batch_execute(sql))?)
    }
}

/// Waits for a client future on this thread. The connection's own task runs on the shared
/// runtime, so this never needs (or conflicts with) a runtime on the calling thread.
pub(super) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

/// A connection, or a transaction open on one: what every query of `store/` runs on.
#[derive(Clone, Copy)]
pub enum Conn<'a> {
    Sqlite(&'a rusqlite::Connection),
    Pg(&'a PgConn),
}

/// The connection a write runs on, inside its transaction.
pub type Transaction<'a> = Conn<'a>;

impl<'a> Conn<'a> {
    /// The clause that ends a `SELECT` of a queue's rows: on PostgreSQL the rows are locked and
    /// rows another transaction holds are passed over (`FOR UPDATE SKIP LOCKED`); SQLite's
    /// write transaction already holds the whole file.
    pub fn skip_locked(&self) -> &'static str {
        match self {
            Conn::Sqlite(_) => "",
            Conn::Pg(_) => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// An SQL expression for the database's clock, in milliseconds since the epoch.
    pub fn now_ms(&self) -> &'static str {
        match self {
            Conn::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
            Conn::Pg(_) => "(extract(epoch FROM clock_timestamp()) * 1000)::bigint",
        }
    }

    /// Wakes the listeners of `channel` when the transaction commits (PostgreSQL's `NOTIFY`);
    /// nothing on SQLite, whose state has no other host to wake.
    pub fn notify(&self, channel: &str) -> Result<()> {
        match self {
            Conn::Sqlite(_) => Ok(()),
            Conn::Pg(_) => self.execute_batch(&format!("NOTIFY {channel}")),
        }
    }

    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        match self {
            Conn::Sqlite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params.values().iter().map(to_sqlite)))?),
            Conn::Pg(c) => Ok(c.execute(sql, params.values())? as usize),
        }
    }

    pub fn query_row<T, P: Params>(&self, sql: &str, params: P, f: impl FnOnce(&Row) -> Result<T>) -> Result<T> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params.values().iter().map(to_sqlite)))?;
                match rows.next()? {
                    Some(r) => f(&Row::Sqlite(r)),
                    None => Err(DbError::NoRows),
                }
            }
            Conn::Pg(c) => match c.query(sql, params.values())?.first() {
                Some(r) => f(&Row::Pg(r)),
                None => Err(DbError::NoRows),
            },
        }
    }

    /// Every row of `sql`, each mapped by `f`.
    pub fn query_all<T, P: Params>(
        &self,
        sql: &str,
        params: P,
        mut f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params.values().iter().map(to_sqlite)))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Sqlite(r))?);
                }
                Ok(out)
            }
            Conn::Pg(c) => c.query(sql, params.values())?.iter().map(|r| f(&Row::Pg(r))).collect(),
        }
    }

    /// Streams every row of `sql` to `f` until it returns false (rows are not collected).
    pub fn for_each<P: Params>(&self, sql: &str, params: P, f: &mut dyn FnMut(&Row) -> Result<bool>) -> Result<()> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params.values().iter().map(to_sqlite)))?;
                while let Some(r) = rows.next()? {
                    if !f(&Row::Sqlite(r))? {
                        break;
                    }
                }
                Ok(())
            }
            Conn::Pg(c) => {
                let stmt = c.statement(sql)?;
                let values = params.values();
                let stream = block_on(c.client.query_raw(&stmt, values.iter()))?;
                let mut stream = Box::pin(stream);
                while let Some(r) = block_on(futures_util::StreamExt::next(&mut stream)) {
                    if !f(&Row::Pg(&r?))? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Pg(c) => c.batch(sql),
        }
    }

    /// Starts a read-only snapshot: every read until `snapshot_end` sees one state.
    pub fn snapshot_begin(&self) -> Result<()> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch("BEGIN")?),
            Conn::Pg(c) => c.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
        }
    }

    pub fn snapshot_end(&self) -> Result<()> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch("COMMIT")?),
            Conn::Pg(c) => c.batch("COMMIT"),
        }
    }

    /// The tables of runbook's schema (not the backend's own, nor the PostgreSQL bookkeeping
    /// tables `runbook_schema` and `runbook_state_version`), by name.
    pub fn tables(&self) -> Result<Vec<String>> {
        let sql = match self {
            Conn::Sqlite(_) => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1"
            }
            Conn::Pg(_) => {
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() \
                 AND table_type = 'BASE TABLE' AND table_name NOT IN ('runbook_schema', 'runbook_state_version') ORDER BY 1"
            }
        };
        self.query_all(sql, (), |r| r.get(0))
    }

    /// The columns of `table`, in their order.
    pub fn columns(&self, table: &str) -> Result<Vec<String>> {
        let sql = match self {
            Conn::Sqlite(_) => "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
            Conn::Pg(_) => {
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_name = ?1 AND table_schema = current_schema() ORDER BY ordinal_position"
            }
        };
        self.query_all(sql, [table], |r| r.get(0))
    }

    /// After rows were inserted with their ids: new rows continue after the largest id
    /// (PostgreSQL's identity sequences; SQLite needs nothing).
    pub fn continue_identities(&self, tables: &[&str]) -> Result<()> {
        let Conn::Pg(_) = self else { return Ok(()) };
        for t in tables {
            let identities: Vec<String> = self.query_all(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_name = ?1 AND table_schema = current_schema() AND is_identity = 'YES'",
                [*t],
                |r| r.get(0),
            )?;
            for c in identities {
                self.query_row(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{t}', '{c}'), coalesce(max({c}), 0) + 1, false) FROM {t}"
                    ),
                    (),
                    |_| Ok(()),
                )?;
            }
        }
        Ok(())
    }

    /// A statement to run (its text is prepared and cached on first use).
    pub fn prepare_cached(&self, sql: &str) -> Result<Stmt<'a>> {
        Ok(Stmt {
            conn: *self,
            sql: sql.to_string(),
        })
    }

    pub fn prepare(&self, sql: &str) -> Result<Stmt<'a>> {
        self.prepare_cached(sql)
    }

    /// The id of the row the last INSERT of this connection made.
    pub fn last_insert_rowid(&self) -> Result<i64> {
        match self {
            Conn::Sqlite(c) => Ok(c.last_insert_rowid()),
            Conn::Pg(_) => self.query_row("SELECT lastval()", (), |r| r.get(0)),
        }
    }
}

/// A statement of a [`Conn`], as rusqlite's `Statement`: `query_map`, `query_row`, `execute`.
pub struct Stmt<'a> {
    conn: Conn<'a>,
    sql: String,
}

impl Stmt<'_> {
    pub fn query_map<T, P: Params>(
        &mut self,
        params: P,
        f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let mut f = f;
        let rows = self.conn.query_all(&self.sql, params, |r| Ok(f(r)))?;
        Ok(rows.into_iter())
    }

    pub fn query_row<T, P: Params>(&mut self, params: P, f: impl FnOnce(&Row) -> Result<T>) -> Result<T> {
        self.conn.query_row(&self.sql, params, f)
    }

    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        self.conn.execute(&self.sql, params)
    }
}

fn to_sqlite(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        Value::Null => V::Null,
        Value::Integer(n) => V::Integer(*n),
        Value::Real(f) => V::Real(*f),
        Value::Text(s) => V::Text(s.clone()),
        Value::Blob(b) => V::Blob(b.clone()),
    }
}

/// Rewrites a statement of SQLite's dialect for PostgreSQL: `?N` and `?` become `$N`,
/// `INSERT OR IGNORE` becomes `ON CONFLICT DO NOTHING`, `instr` becomes `strpos`.
/// Quoted text is left alone.
pub fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut next = 0usize;
    let mut chars = sql.char_indices().peekable();
    let mut quote: Option<char> = None;
    while let Some((_, c)) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                out.push(c);
            }
            '?' => {
                let mut digits = String::new();
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_ascii_digit() {
                        digits.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if digits.is_empty() {
                    next += 1;
                    out.push_str(&format!("${next}"));
                } else {
                    next = next.max(digits.parse().unwrap_or(0));
                    out.push('$');
                    out.push_str(&digits);
                }
            }
            _ => out.push(c),
        }
    }
    let mut sql = out;
    if let Some(at) = sql.find("INSERT OR IGNORE INTO") {
        sql.replace_range(at..at + "INSERT OR IGNORE INTO".len(), "INSERT INTO");
        sql.push_str(" ON CONFLICT DO NOTHING");
    }
    sql.replace("instr(", "strpos(")
}

/// SQLite's schema of a migration, as PostgreSQL's: 64-bit integers, identity keys.
pub fn pg_schema(sql: &str) -> String {
    sql.replace(
        "INTEGER PRIMARY KEY",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    )
    .replace("INTEGER", "BIGINT")
    .replace(" REAL", " DOUBLE PRECISION")
    .replace(" BLOB", " BYTEA")
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let bad = || -> Box<dyn std::error::Error + Sync + Send> { format!("cannot bind {self:?} as {ty}").into() };
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(n), &Type::INT8) => n.to_sql(ty, out),
            (Value::Integer(n), &Type::INT4) => i32::try_from(*n).map_err(|_| bad())?.to_sql(ty, out),
            (Value::Integer(n), &Type::INT2) => i16::try_from(*n).map_err(|_| bad())?.to_sql(ty, out),
            (Value::Integer(n), &Type::BOOL) => (*n != 0).to_sql(ty, out),
            (Value::Integer(n), &Type::FLOAT8) => (*n as f64).to_sql(ty, out),
            (Value::Integer(n), &Type::FLOAT4) => (*n as f32).to_sql(ty, out),
            (Value::Integer(n), &Type::NUMERIC) => numeric(*n as f64, out),
            (Value::Integer(n), _) => n.to_string().as_str().to_sql(&Type::TEXT, out),
            (Value::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (Value::Real(f), &Type::INT8) => (*f as i64).to_sql(ty, out),
            (Value::Real(f), &Type::NUMERIC) => numeric(*f, out),
            (Value::Real(f), _) => f.to_string().as_str().to_sql(&Type::TEXT, out),
            (Value::Text(s), &Type::INT8) => s.parse::<i64>().map_err(|_| bad())?.to_sql(ty, out),
            (Value::Text(s), &Type::BYTEA) => s.as_bytes().to_sql(ty, out),
            (Value::Text(s), &Type::JSONB) => {
                out.extend_from_slice(&[1]);
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            (Value::Text(s), _) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            (Value::Blob(b), _) => b.as_slice().to_sql(&Type::BYTEA, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A number as PostgreSQL's NUMERIC in text-free binary form, through its decimal digits.
fn numeric(f: f64, out: &mut bytes::BytesMut) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
    if !f.is_finite() {
        return Err("cannot bind a non-finite number".into());
    }
    // Integers only (runbook never binds fractions to NUMERIC): base-10000 digits.
    let negative = f < 0.0;
    let mut n = f.abs().trunc() as u128;
    let mut digits = Vec::new();
    while n > 0 {
        digits.push((n % 10000) as i16);
        n /= 10000;
    }
    digits.reverse();
    let weight = digits.len() as i16 - 1;
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.max(0).to_be_bytes());
    out.extend_from_slice(&(if negative { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    for d in digits {
        out.extend_from_slice(&d.to_be_bytes());
    }
    Ok(IsNull::No)
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::BOOL => Value::Integer(bool::from_sql(ty, raw)? as i64),
            Type::INT2 => Value::Integer(i16::from_sql(ty, raw)? as i64),
            Type::INT4 => Value::Integer(i32::from_sql(ty, raw)? as i64),
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::OID => Value::Integer(u32::from_sql(ty, raw)? as i64),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)? as f64),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::NUMERIC => read_numeric(raw)?,
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::JSONB => Value::Text(String::from_utf8_lossy(raw.get(1..).unwrap_or_default()).into_owned()),
            _ => Value::Text(String::from_utf8_lossy(raw).into_owned()),
        })
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// NUMERIC in binary (what `SUM` and `AVG` of integers return): an integer when it has no
/// fraction and fits, a float otherwise.
fn read_numeric(raw: &[u8]) -> std::result::Result<Value, Box<dyn std::error::Error + Sync + Send>> {
    let word = |i: usize| -> std::result::Result<i16, Box<dyn std::error::Error + Sync + Send>> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "short NUMERIC".into())
    };
    let (ndigits, weight, sign) = (word(0)? as usize, word(1)? as i32, word(2)? as u16);
    if sign == 0xC000 {
        return Ok(Value::Real(f64::NAN));
    }
    let mut value = 0f64;
    for i in 0..ndigits {
        value += word(4 + i)? as f64 * 10000f64.powi(weight - i as i32);
    }
    if sign == 0x4000 {
        value = -value;
    }
    Ok(if value.fract() == 0.0 && value.abs() < 9.0e15 {
        Value::Integer(value as i64)
    } else {
        Value::Real(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_and_quoted_text_is_kept() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE x = ?1 AND y = ?2"),
            "SELECT a FROM t WHERE x = $1 AND y = $2"
        );
        assert_eq!(pg_sql("SELECT '?' , ? , ?"), "SELECT '?' , $1 , $2");
        assert_eq!(
            pg_sql("INSERT OR IGNORE INTO t (a) VALUES (?1)"),
            "INSERT INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING"
        );
        assert_eq!(pg_sql("SELECT instr(?4, 'x')"), "SELECT strpos($4, 'x')");
    }

    #[test]
    fn schema_uses_wide_integers_and_identity_keys() {
        assert_eq!(
            pg_schema("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"),
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL)"
        );
    }

    #[test]
    fn numerics_round_trip_through_the_binary_form() {
        for n in [0i64, 1, 9999, 10000, 123_456_789, -42, 10_000_000_000] {
            let mut out = bytes::BytesMut::new();
            numeric(n as f64, &mut out).unwrap();
            assert_eq!(read_numeric(&out).unwrap(), Value::Integer(n), "{n}");
        }
    }
}
