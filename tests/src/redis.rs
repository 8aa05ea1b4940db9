//! A throw-away Redis server for tests: Debian's `redis-server` on a free loopback port, its files
//! in the test's log directory, no persistence; stopped (and started again on the same port) by
//! tests of what happens when it is gone. A missing `redis-server` fails with the command that
//! installs it.

use crate::procs::{log_dir, Proc};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct Redis {
    proc: Option<Proc>,
    dir: PathBuf,
    pub port: u16,
}

/// `redis-server` on PATH (Debian's package puts it in /usr/bin).
fn binary() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("redis-server"))
                .find(|b| b.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "Redis is not installed (no redis-server on PATH): run `make redis` (or `make test`), which runs `apt-get install -y redis-server`"
            )
        })
}

impl Redis {
    /// A fresh server for test `name`, started and answering PING.
    pub fn start(name: &str) -> Redis {
        let port = crate::free_port();
        let dir = log_dir(name).join(format!("redis-{port}"));
        std::fs::create_dir_all(&dir).expect("the Redis directory");
        let mut redis = Redis {
            proc: None,
            dir,
            port,
        };
        redis.start_server();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port, empty; returns when it answers PING.
    pub fn start_server(&mut self) {
        let mut cmd = Command::new(binary());
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .current_dir(&self.dir);
        let proc = Proc::start("redis", cmd, &self.dir);
        self.proc = Some(proc);
        crate::procs::wait_for("Redis answering PING", Duration::from_secs(20), || {
            self.ping().then_some(())
        });
    }

    /// Stops the server at once (SIGKILL: an outage, not a shutdown).
    pub fn stop_server(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Whether the server answers `PING` with `+PONG`.
    pub fn ping(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}
