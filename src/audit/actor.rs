//! Who is acting: the OS user running this process, or the caller a server acts for.
//!
//! Owns the lookup of the user name for the real uid (from /etc/passwd, falling back to
//! `uid:N`), and the scope in which a server thread acts for an authenticated caller
//! (`acting_as`). Invariant: never taken from an environment variable a user could set freely.

use std::cell::RefCell;

thread_local! {
    static ACTING_AS: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` with `who` as the actor of every audit event drafted on this thread meanwhile:
/// an API request changes state for its token (or a ping for its check), not for the OS user
/// the server runs as.
pub fn acting_as<T>(who: &str, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ACTING_AS.with(|a| *a.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(ACTING_AS.with(|a| a.borrow_mut().replace(who.to_string())));
    f()
}

pub fn current() -> String {
    if let Some(who) = ACTING_AS.with(|a| a.borrow().clone()) {
        return who;
    }
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
