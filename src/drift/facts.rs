//! What the host says now, per resource kind: files, ports, services, packages, users,
//! groups, kernel parameters, commands, git checkouts, mounts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// One observed attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Text(String),
    List(Vec<String>),
    /// The host could not say (no systemctl, a command that failed to start…).
    Unknown(String),
    /// Content that is matched and never shown (a file's, a page's: it may be a secret).
    Hidden(String),
}

impl Fact {
    pub fn yes(b: bool) -> Fact {
        Fact::Text(b.to_string())
    }
    pub fn shown(&self) -> String {
        match self {
            Fact::Text(t) => t.clone(),
            Fact::List(l) => format!("[{}]", l.join(", ")),
            Fact::Unknown(why) => format!("unknown ({why})"),
            Fact::Hidden(_) => "does not".into(),
        }
    }
}

pub type Facts = BTreeMap<String, Fact>;

/// Runs a program; (exit code, stdout) or why it could not run.
pub(super) fn run(argv: &[&str]) -> Result<(i32, String), String> {
    let spec = crate::exec::Spec::new(argv.iter().map(|a| a.to_string()).collect(), Duration::from_secs(30));
    let out = crate::exec::run(&spec, &Default::default()).map_err(|e| e.to_string())?;
    Ok((out.exit_code.unwrap_or(-1), out.stdout))
}

fn name_by_id(file: &str, id: u32) -> String {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == id.to_string()).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| id.to_string())
}

pub fn file(path: &str, asked: &[&str]) -> Facts {
    use std::os::unix::fs::MetadataExt;
    let mut f = Facts::new();
    let Ok(m) = std::fs::symlink_metadata(path) else {
        f.insert("exists".into(), Fact::yes(false));
        return f;
    };
    f.insert("exists".into(), Fact::yes(true));
    let kind = if m.file_type().is_symlink() {
        "symlink"
    } else if m.is_dir() {
        "directory"
    } else {
        "file"
    };
    f.insert("type".into(), Fact::Text(kind.into()));
    f.insert("mode".into(), Fact::Text(format!("{:04o}", m.mode() & 0o7777)));
    f.insert("owner".into(), Fact::Text(name_by_id("/etc/passwd", m.uid())));
    f.insert("group".into(), Fact::Text(name_by_id("/etc/group", m.gid())));
    f.insert("size".into(), Fact::Text(m.size().to_string()));
    if m.is_file() && asked.contains(&"sha256") {
        let fact = match crate::util::digest::hash_file(Path::new(path)) {
            Ok((_, sha)) => Fact::Text(sha),
            Err(e) => Fact::Unknown(e.to_string()),
        };
        f.insert("sha256".into(), fact);
    }
    if m.is_file() && asked.contains(&"contains") {
        // Read to match only: `Hidden` content is never shown.
        let fact = match std::fs::read(path) {
            Ok(bytes) => Fact::Hidden(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) => Fact::Unknown(e.to_string()),
        };
        f.insert("contains".into(), fact);
    }
    f
}

/// A listening TCP socket: (address, port, socket inode).
#[derive(Debug, Clone)]
pub struct Listener {
    pub v6: bool,
    pub address: String,
    pub port: u16,
    inode: u64,
}

/// Every listening TCP socket, from /proc/net/tcp and tcp6.
pub fn listeners() -> Vec<Listener> {
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        for line in std::fs::read_to_string(file).unwrap_or_default().lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let Some((addr, port)) = cols[1].split_once(':') else {
                continue;
            };
            let Ok(port) = u16::from_str_radix(port, 16) else {
                continue;
            };
            let address = if v6 {
                let bytes: Vec<u8> = (0..16)
                    .filter_map(|i| u8::from_str_radix(addr.get(i * 2..i * 2 + 2)?, 16).ok())
                    .collect();
                // Four little-endian 32-bit words.
                let mut b = [0u8; 16];
                for w in 0..4 {
                    for k in 0..4 {
                        b[w * 4 + k] = *bytes.get(w * 4 + 3 - k).unwrap_or(&0);
                    }
                }
                std::net::Ipv6Addr::from(b).to_string()
            } else {
                let n = u32::from_str_radix(addr, 16).unwrap_or(0);
                std::net::Ipv4Addr::from(n.swap_bytes()).to_string()
            };
            out.push(Listener {
                v6,
                address,
                port,
                inode: cols[9].parse().unwrap_or(0),
            });
        }
    }
    out
}

/// The command name of the process holding socket `inode`, found through /proc/*/fd.
fn owner_of(inode: u64) -> Option<String> {
    let want = format!("socket:[{inode}]");
    for p in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = p.file_name();
        if !pid.to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()) {
                return std::fs::read_to_string(p.path().join("comm"))
                    .ok()
                    .map(|c| c.trim().to_string());
            }
        }
    }
    None
}

/// `tcp:PORT`, `tcp:ADDRESS:PORT`, `tcp6:PORT`.
pub fn port(key: &str, all: &[Listener], asked: &[&str]) -> Facts {
    let (proto, rest) = key.split_once(':').unwrap_or(("tcp", key));
    let (address, port) = match rest.rsplit_once(':') {
        Some((a, p)) => (Some(a.trim_matches(['[', ']'])), p),
        None => (None, rest),
    };
    let port: u16 = port.parse().unwrap_or(0);
    let hits: Vec<&Listener> = all
        .iter()
        .filter(|l| l.port == port && l.v6 == (proto == "tcp6") && address.is_none_or(|a| l.address == a))
        .collect();
    let mut f = Facts::new();
    f.insert("listening".into(), Fact::yes(!hits.is_empty()));
    f.insert(
        "address".into(),
        Fact::List(hits.iter().map(|l| l.address.clone()).collect()),
    );
    if asked.contains(&"process") {
        let owners: Vec<String> = hits.iter().filter_map(|l| owner_of(l.inode)).collect();
        f.insert("process".into(), Fact::List(owners));
    }
    f
}

pub fn service(unit: &str) -> Facts {
    let mut f = Facts::new();
    for (attr, verb, yes) in [("active", "is-active", "active"), ("enabled", "is-enabled", "enabled")] {
        let fact = match run(&["systemctl", verb, "--", unit]) {
            Ok((_, out)) => Fact::yes(out.trim() == yes),
            Err(e) => Fact::Unknown(e),
        };
        f.insert(attr.into(), fact);
    }
    f
}

/// Units enabled now (`systemctl list-unit-files --state=enabled`).
pub fn enabled_services() -> Result<Vec<String>, String> {
    let (_, out) = run(&[
        "systemctl",
        "list-unit-files",
        "--state=enabled",
        "--type=service",
        "--no-legend",
        "--no-pager",
    ])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect())
}

pub fn package(name: &str) -> Facts {
    let mut f = Facts::new();
    match run(&["dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", "--", name]) {
        Ok((0, out)) => {
            let (status, version) = out.trim().split_once(' ').unwrap_or((out.trim(), ""));
            f.insert("installed".into(), Fact::yes(status == "installed"));
            f.insert("version".into(), Fact::Text(version.to_string()));
        }
        Ok(_) => {
            f.insert("installed".into(), Fact::yes(false));
        }
        Err(e) => {
            f.insert("installed".into(), Fact::Unknown(e));
        }
    }
    f
}

fn entries(file: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(':').map(String::from).collect())
        .collect()
}

pub fn user(name: &str) -> Facts {
    let mut f = Facts::new();
    let Some(u) = entries("/etc/passwd")
        .into_iter()
        .find(|e| e.first().is_some_and(|n| n == name) && e.len() >= 7)
    else {
        f.insert("exists".into(), Fact::yes(false));
        return f;
    };
    let groups: Vec<String> = entries("/etc/group")
        .into_iter()
        .filter(|g| g.len() >= 4 && (g[2] == u[3] || g[3].split(',').any(|m| m == name)))
        .map(|g| g[0].clone())
        .collect();
    f.insert("exists".into(), Fact::yes(true));
    f.insert("uid".into(), Fact::Text(u[2].clone()));
    f.insert("gid".into(), Fact::Text(u[3].clone()));
    f.insert("home".into(), Fact::Text(u[5].clone()));
    f.insert("shell".into(), Fact::Text(u[6].clone()));
    f.insert("groups".into(), Fact::List(groups));
    f
}

pub fn group(name: &str) -> Facts {
    let mut f = Facts::new();
    let Some(g) = entries("/etc/group")
        .into_iter()
        .find(|e| e.first().is_some_and(|n| n == name) && e.len() >= 4)
    else {
        f.insert("exists".into(), Fact::yes(false));
        return f;
    };
    f.insert("exists".into(), Fact::yes(true));
    f.insert("gid".into(), Fact::Text(g[2].clone()));
    f.insert(
        "members".into(),
        Fact::List(g[3].split(',').filter(|m| !m.is_empty()).map(String::from).collect()),
    );
    f
}

pub fn kernel_param(name: &str) -> Facts {
    let path = Path::new("/proc/sys").join(name.replace('.', "/"));
    let fact = match std::fs::read_to_string(&path) {
        Ok(v) => Fact::Text(v.split_whitespace().collect::<Vec<_>>().join(" ")),
        Err(e) => Fact::Unknown(e.to_string()),
    };
    Facts::from([("value".to_string(), fact)])
}

pub fn command(line: &str) -> Facts {
    match run(&["/bin/sh", "-c", line]) {
        Ok((code, out)) => Facts::from([
            ("exit".to_string(), Fact::Text(code.to_string())),
            ("stdout".to_string(), Fact::Text(out)),
        ]),
        Err(e) => Facts::from([("exit".to_string(), Fact::Unknown(e))]),
    }
}

pub fn git(dir: &str) -> Facts {
    let mut f = Facts::new();
    match run(&["git", "-C", dir, "rev-parse", "HEAD"]) {
        Ok((0, sha)) => {
            f.insert("sha".into(), Fact::Text(sha.trim().to_string()));
            let refs = run(&[
                "git",
                "-C",
                dir,
                "for-each-ref",
                "--points-at",
                "HEAD",
                "--format=%(refname:short)",
            ])
            .map(|(_, o)| o.lines().map(String::from).collect())
            .unwrap_or_default();
            f.insert("ref".into(), Fact::List(refs));
            let clean = run(&["git", "-C", dir, "status", "--porcelain", "--untracked-files=no"])
                .map(|(c, o)| c == 0 && o.trim().is_empty())
                .unwrap_or(false);
            f.insert("clean".into(), Fact::yes(clean));
        }
        Ok((_, _)) => {
            f.insert("sha".into(), Fact::Unknown(format!("{dir} is not a git checkout")));
        }
        Err(e) => {
            f.insert("sha".into(), Fact::Unknown(e));
        }
    }
    f
}

pub fn mount(target: &str) -> Facts {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut f = Facts::new();
    match mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .rfind(|c| c.len() >= 4 && c[1] == target)
    {
        Some(c) => {
            f.insert("exists".into(), Fact::yes(true));
            f.insert("source".into(), Fact::Text(c[0].into()));
            f.insert("fstype".into(), Fact::Text(c[2].into()));
            f.insert("opts".into(), Fact::List(c[3].split(',').map(String::from).collect()));
        }
        None => {
            f.insert("exists".into(), Fact::yes(false));
        }
    }
    f
}

/// One GET of `url` on a connection of its own: its status and body (the body only matched,
/// never shown).
pub fn http(url: &str) -> Facts {
    let fetched = crate::util::runtime::runtime().block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| e.to_string())?;
        let resp = client.get(url).send().await.map_err(|e| crate::util::innermost(&e))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        Ok::<_, String>((status, body))
    });
    match fetched {
        Ok((status, body)) => Facts::from([
            ("status".to_string(), Fact::Text(status.to_string())),
            ("body".to_string(), Fact::Hidden(body)),
        ]),
        Err(e) => Facts::from([("status".to_string(), Fact::Unknown(e))]),
    }
}
