//! Who is acting: the OS user running this process.
//!
//! Owns the lookup of the user name for the real uid (from /etc/passwd, falling back to
//! `uid:N`). Invariant: never taken from an environment variable a user could set freely.

pub fn current() -> String {
    let uid = rustix::process::getuid().as_raw();
    name_for(uid).unwrap_or_else(|| format!("uid:{uid}"))
}

fn name_for(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}
