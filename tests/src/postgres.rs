//! A throw-away PostgreSQL server for tests: `initdb` into a temporary directory, bound to
//! 127.0.0.1 on a free port, stopped and removed when dropped.
//!
//! PostgreSQL refuses to run as root, so as root (CI) its commands run as the `postgres` user the
//! Debian package creates. A missing PostgreSQL fails the test with the command that installs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The superuser the tests' brokers connect as; its password reaches them by env or file only.
pub const USER: &str = "scopegate";
pub const PASSWORD: &str = "test-only-pg-password";

pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

/// `initdb`'s directory: on PATH, else the newest `/usr/lib/postgresql/<ver>/bin` (Debian keeps
/// the server binaries there).
fn bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
    });
    if let Some(d) = on_path {
        // /usr/local/bin may hold symlinks; keep the directory of the real binaries.
        return std::fs::canonicalize(d.join("initdb"))
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin): run `make postgres` (or `make test`), which runs `apt-get install -y postgresql`"
        ),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl Postgres {
    /// A fresh cluster, started and ready.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "scopegate-pg-{}-{}",
            std::process::id(),
            crate::free_port()
        ));
        std::fs::create_dir_all(&dir).expect("create the PostgreSQL directory");
        let pg = Postgres {
            bin,
            dir,
            port: crate::free_port(),
        };
        std::fs::write(pg.dir.join("pwfile"), PASSWORD).expect("write the password file");
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&pg.dir)
                .status()
                .expect("run chown");
            assert!(
                st.success(),
                "chown {} to the `postgres` user (as root, PostgreSQL runs as `postgres`; the Debian package creates it)",
                pg.dir.display()
            );
        }
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data().to_string_lossy(),
                "-U",
                USER,
                "--pwfile",
                &pg.dir.join("pwfile").to_string_lossy(),
                "--auth",
                "scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.start_server();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs one of the server's tools (as `postgres` when we are root); panics with its output.
    fn run(&self, tool: &str, args: &[&str]) -> String {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .env("PGPASSWORD", PASSWORD)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{tool} {args:?} failed ({}):\n{text}",
            out.status
        );
        text
    }

    /// (Re)starts the server on the same port and data; returns when it accepts connections.
    pub fn start_server(&self) {
        let opts = format!(
            "-h 127.0.0.1 -p {} -k {} -c max_connections=300 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &self.dir.join("server.log").to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server (fast shutdown: open sessions are cut, as in an outage).
    pub fn stop_server(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
        );
    }

    /// Creates database `name`; returns its URL (no password: that goes by env or file).
    pub fn create_database(&self, name: &str) -> String {
        self.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                name,
            ],
        );
        self.url(name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The server's log, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Waits until the server accepts connections again (after `start_server` from another thread).
    pub fn wait_ready(&self, timeout: Duration) {
        crate::procs::wait_for("PostgreSQL accepting connections", timeout, || {
            std::net::TcpStream::connect(("127.0.0.1", self.port))
                .ok()
                .map(|_| ())
        });
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = cmd
            .args(["-D"])
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
