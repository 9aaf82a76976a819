//! A network namespace with a loopback of its own, for a host whose network a test cuts in the
//! kernel: the host reaches PostgreSQL and the webhook receiver through `socat` forwarders
//! (TCP inside the namespace, Unix sockets across it), and `cut` takes its loopback down, so
//! its packets are dropped without a reset, as in a real partition.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// PostgreSQL's Unix socket on this machine kind.
const PG_SOCKET: &str = "/var/run/postgresql/.s.PGSQL.5432";

pub struct Netns {
    pub name: String,
    dir: tempfile::TempDir,
    forwarders: Vec<Child>,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Netns {
    /// A new namespace with its loopback up, forwarding its 127.0.0.1:5432 to the machine's
    /// PostgreSQL and its 127.0.0.1:`ports` to the same ports outside; `None` where namespaces
    /// cannot be made (no privilege, no `ip` or `socat`).
    pub fn create(ports: &[u16]) -> Option<Netns> {
        let name = format!("rbtest{}", std::process::id());
        let socat = Command::new("socat")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !socat || !std::path::Path::new(PG_SOCKET).exists() || !ip(&["netns", "add", &name]) {
            return None;
        }
        let mut ns = Netns {
            name,
            dir: tempfile::tempdir().unwrap(),
            forwarders: Vec::new(),
        };
        assert!(ip(&["-n", &ns.name, "link", "set", "lo", "up"]));
        ns.forward_inside(5432, PG_SOCKET.into());
        for &port in ports {
            let sock = ns.dir.path().join(format!("{port}.sock"));
            ns.spawn(
                &[],
                &[
                    &format!("UNIX-LISTEN:{},fork", sock.display()),
                    &format!("TCP:127.0.0.1:{port}"),
                ],
            );
            ns.forward_inside(port, sock);
        }
        // Ready when a connection inside reaches the database.
        let ready = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns.name,
                    "psql",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "test",
                ])
                .args(["-tAc", "SELECT 1"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(
            ready,
            "the forwarder in namespace {} does not reach PostgreSQL",
            ns.name
        );
        Some(ns)
    }

    fn forward_inside(&mut self, port: u16, to: PathBuf) {
        let name = self.name.clone();
        self.spawn(
            &["ip", "netns", "exec", &name],
            &[
                &format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"),
                &format!("UNIX-CONNECT:{}", to.display()),
            ],
        );
    }

    fn spawn(&mut self, wrapper: &[&str], args: &[&str]) {
        let mut argv: Vec<&str> = wrapper.to_vec();
        argv.push("socat");
        argv.extend(args);
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat");
        self.forwarders.push(child);
        std::thread::sleep(Duration::from_millis(100));
    }

    /// The prefix that runs a program inside the namespace.
    pub fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", self.name.as_str()]
    }

    /// Takes the namespace's loopback down: every packet between the host and its forwarders
    /// is dropped from now on.
    pub fn cut(&self) {
        assert!(ip(&["-n", &self.name, "link", "set", "lo", "down"]));
    }

    pub fn restore(&self) {
        assert!(ip(&["-n", &self.name, "link", "set", "lo", "up"]));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.forwarders {
            let _ = c.kill();
            let _ = c.wait();
        }
        ip(&["netns", "del", &self.name]);
    }
}
