//! Child processes that die with the test binary, with their output kept in files for post-mortems.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static HOOKED: std::sync::Once = std::sync::Once::new();

extern "C" fn kill_all() {
    if let Ok(pids) = LIVE.lock() {
        for pid in pids.iter() {
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}

/// Where a test's process logs go: `target/it-logs/<name>/`.
pub fn log_dir(name: &str) -> PathBuf {
    let d = crate::repo_root().join("target/it-logs").join(name);
    std::fs::create_dir_all(&d).expect("log dir");
    d
}

/// A running child, killed on drop (and at exit of the test binary, whatever happens).
pub struct Proc {
    pub name: String,
    child: Child,
    pub stderr_path: PathBuf,
    pub stdout_path: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr sent to files in `dir`.
    pub fn start(name: &str, mut cmd: Command, dir: &Path) -> Proc {
        crate::slots::hold();
        HOOKED.call_once(|| unsafe {
            libc::atexit(kill_all);
        });
        let stdout_path = dir.join(format!("{name}.stdout"));
        let stderr_path = dir.join(format!("{name}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        LIVE.lock().expect("pid list").push(child.id());
        Proc {
            name: name.to_string(),
            child,
            stderr_path,
            stdout_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it.
    pub fn wait_stdout_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(f) = std::fs::File::open(&self.stdout_path) {
                for line in BufReader::new(f).lines().map_while(Result::ok) {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before printing `{prefix}`:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print `{prefix}` in time:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Whether it has exited, and how.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(mut pids) = LIVE.lock() {
            let id = self.child.id();
            pids.retain(|p| *p != id);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it returns `Some`, or fails with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
