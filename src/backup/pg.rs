//! PostgreSQL through its own client tools (`pg_dump`, `pg_restore`, `createdb`, `dropdb`,
//! `psql`), run through `exec/` with the password in `PGPASSWORD`, never in argv.

use std::path::Path;
use std::time::Duration;

use super::BackupError;
use crate::exec::{Cancel, Spec};

const TOOL_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// A connection: the URL without its password, and the password.
#[derive(Debug, Clone)]
pub struct Conn {
    pub url: String,
    password: Option<String>,
}

impl Conn {
    pub fn parse(url: &str) -> Conn {
        let (url, password) = split_password(url);
        Conn { url, password }
    }

    /// The same server and user, another database.
    pub fn with_database(&self, db: &str) -> Conn {
        let (base, query) = match self.url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (self.url.as_str(), None),
        };
        let server = match base.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('/') {
                Some((host, _)) => format!("{scheme}://{host}"),
                None => base.to_string(),
            },
            None => base.to_string(),
        };
        Conn {
            url: match query {
                Some(q) => format!("{server}/{db}?{q}"),
                None => format!("{server}/{db}"),
            },
            password: self.password.clone(),
        }
    }

    /// The database name in the URL.
    pub fn database(&self) -> Option<String> {
        let base = self.url.split('?').next()?;
        let (_, rest) = base.split_once("://")?;
        let (_, db) = rest.split_once('/')?;
        (!db.is_empty()).then(|| db.to_string())
    }

    fn spec(&self, argv: Vec<String>, env: &[(String, String)]) -> Spec {
        let mut spec = Spec::new(argv, TOOL_TIMEOUT);
        spec.env = env.to_vec();
        if let Some(p) = &self.password {
            spec.env.push(("PGPASSWORD".into(), p.clone()));
        }
        spec
    }

    /// The environment a child needs to reach this database (`PGPASSWORD`).
    pub fn env(&self) -> Vec<(String, String)> {
        self.password
            .iter()
            .map(|p| ("PGPASSWORD".to_string(), p.clone()))
            .collect()
    }
}

fn run(spec: &Spec, what: &str) -> Result<String, BackupError> {
    super::run_tool(spec, &Cancel::default(), what, &crate::config::Redactor::default())
}

pub fn createdb(admin: &Conn, name: &str, env: &[(String, String)]) -> Result<(), BackupError> {
    let spec = admin.spec(
        vec![
            "createdb".into(),
            "--no-password".into(),
            format!("--maintenance-db={}", admin.url),
            name.into(),
        ],
        env,
    );
    run(&spec, &format!("createdb {name}")).map(|_| ())
}

pub fn dropdb(admin: &Conn, name: &str, env: &[(String, String)]) -> Result<(), BackupError> {
    let spec = admin.spec(
        vec![
            "dropdb".into(),
            "--no-password".into(),
            "--if-exists".into(),
            format!("--maintenance-db={}", admin.url),
            name.into(),
        ],
        env,
    );
    run(&spec, &format!("dropdb {name}")).map(|_| ())
}

/// `pg_restore` of a custom-format dump into `into`. `live` is a restore over the database
/// the dump came from: what exists is dropped first, and tables get their owners and grants
/// back (the application's role must keep its access). Otherwise (a drill's scratch
/// database) the objects belong to whoever restores them.
pub fn restore(into: &Conn, dump: &Path, live: bool, env: &[(String, String)]) -> Result<(), BackupError> {
    let mut argv = vec![
        "pg_restore".to_string(),
        "--no-password".into(),
        "--exit-on-error".into(),
    ];
    if live {
        argv.extend(["--clean".into(), "--if-exists".into()]);
    } else {
        argv.extend(["--no-owner".into(), "--no-privileges".into()]);
    }
    argv.push(format!("--dbname={}", into.url));
    argv.push(dump.display().to_string());
    run(&into.spec(argv, env), "pg_restore").map(|_| ())
}

/// `pg_dump --format=custom` into `to`; `cancel` stops it (a daemon shutting down does not
/// wait out the dump's timeout).
pub fn dump(
    from: &Conn,
    to: &Path,
    env: &[(String, String)],
    timeout: Duration,
    cancel: &Cancel,
) -> Result<(), BackupError> {
    let mut spec = from.spec(
        vec![
            "pg_dump".into(),
            "--format=custom".into(),
            "--no-password".into(),
            format!("--file={}", to.display()),
            format!("--dbname={}", from.url),
        ],
        env,
    );
    spec.timeout = timeout;
    super::run_tool(
        &spec,
        cancel,
        &format!("pg_dump of {}", from.url),
        &crate::config::Redactor::default(),
    )
    .map(|_| ())
}

/// Tables outside the system schemas.
pub fn table_count(db: &Conn, env: &[(String, String)]) -> Result<u64, BackupError> {
    let spec = db.spec(
        vec![
            "psql".into(),
            "--no-password".into(),
            "-tA".into(),
            "-c".into(),
            "SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                .into(),
            db.url.clone(),
        ],
        env,
    );
    let out = run(&spec, "psql")?;
    Ok(out.trim().parse().unwrap_or(0))
}

/// `postgres://user:secret@host/db` → (`postgres://user@host/db`, `Some(secret)`). The
/// password is percent-decoded, as libpq decodes it (`p%40ss` is `p@ss`), and one given as
/// `?password=…` is taken out of the query too: it must reach neither a command line nor the
/// manifest.
pub fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    // The credentials end at the last `@` before the path (or, without one, before the
    // query): a password with an unescaped `@` or `?` (`app:p@ss?@db/app`) is still taken
    // out whole, and no part of it is left in the URL for the command line.
    let region = match rest.find('/') {
        Some(i) => i,
        None => rest.find('?').unwrap_or(rest.len()),
    };
    let (userinfo, after) = match rest[..region].rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let mut password = None;
    let user = userinfo.map(|u| match u.split_once(':') {
        Some((user, pass)) => {
            password = Some(percent_decode(pass));
            user
        }
        None => u,
    });
    let (place, query) = match after.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (after, None),
    };
    let mut out = format!("{scheme}://");
    if let Some(u) = user {
        out.push_str(u);
        out.push('@');
    }
    out.push_str(place);
    if let Some(q) = query {
        let mut kept = Vec::new();
        for pair in q.split('&') {
            match pair.strip_prefix("password=") {
                Some(p) => password = Some(percent_decode(p)),
                None => kept.push(pair),
            }
        }
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    (out, password)
}

/// `%XX` escapes decoded, as libpq decodes a URI's parts.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_database_on_the_same_server() {
        let c = Conn::parse("postgres://app:pw@db:5432/app?sslmode=disable");
        assert_eq!(c.database().as_deref(), Some("app"));
        let d = c.with_database("scratch");
        assert_eq!(d.url, "postgres://app@db:5432/scratch?sslmode=disable");
        assert_eq!(d.env(), vec![("PGPASSWORD".to_string(), "pw".to_string())]);
    }
}
