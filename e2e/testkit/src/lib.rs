//! Test support shared by Weft's integration tests.
//!
//! Everything here starts *real* processes: the binaries come from the version-keyed cache that
//! `e2e/testbins/build.sh` fills (`$WEFT_TESTBINS_DIR/bin`, default `~/.cache/weft/testbins/bin`).
//!
//! Child processes are started through [`owned`], so none of them can outlive the process that
//! started them, even when it crashes or is killed: see [`owned::spawn`].

pub mod owned;
pub mod registry;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Errors from starting test processes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required binary is not in the test-binary cache.
    #[error("test binary {name} not found at {path}: run e2e/testbins/build.sh (or set WEFT_TESTBINS_DIR)")]
    MissingBinary {
        /// Binary name.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Spawning or talking to a process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A process did not become ready in time.
    #[error("{name} was not ready within {timeout:?}; its log:\n{log}")]
    NotReady {
        /// Process name.
        name: String,
        /// How long we waited.
        timeout: Duration,
        /// The tail of its log.
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The directory holding the cached test binaries.
pub fn testbins_dir() -> PathBuf {
    let base = std::env::var_os("WEFT_TESTBINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"));
            home.join(".cache/weft/testbins")
        });
    base.join("bin")
}

/// Path of a cached test binary, or an error telling how to build it.
pub fn testbin(name: &str) -> Result<PathBuf, Error> {
    let path = testbins_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingBinary {
            name: name.to_string(),
            path,
        })
    }
}

/// A free TCP port on `ip` (the port is released before returning, so a race is possible but rare).
pub fn free_port_on(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A child process whose stdout and stderr go to a log file, terminated when dropped
/// (SIGTERM, then SIGKILL after a short grace period).
#[derive(Debug)]
pub struct Supervised {
    name: String,
    child: Child,
    log_path: PathBuf,
    /// Set once the child has been reaped: its pid (and process group id) may then be reused.
    exited: Option<std::process::ExitStatus>,
}

impl Supervised {
    /// Spawns `cmd` with its output appended to `log_path`.
    pub fn spawn(name: &str, mut cmd: Command, log_path: &Path) -> Result<Self, Error> {
        let log = File::create(log_path).map_err(io(format!("create log {}", log_path.display())))?;
        let log2 = log.try_clone().map_err(io("clone log handle"))?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        let child = owned::spawn(cmd).map_err(io(format!("spawn {name}")))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log_path: log_path.to_path_buf(),
            exited: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The path of the process's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `max` bytes of the process's log.
    pub fn log_tail(&self, max: u64) -> String {
        read_tail(&self.log_path, max)
    }

    /// Reaps the child if it has exited; returns its exit status once it has.
    fn reap(&mut self) -> Option<std::process::ExitStatus> {
        if self.exited.is_none()
            && let Ok(Some(status)) = owned::try_wait(&mut self.child)
        {
            self.exited = Some(status);
        }
        self.exited
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.reap().is_none()
    }

    /// Waits up to `timeout` for the process to exit on its own and returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.reap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until it accepts TCP connections on `addr`, or fails with its log.
    pub fn wait_tcp(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_running() {
                break;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Error::NotReady {
            name: self.name.clone(),
            timeout,
            log: self.log_tail(8192),
        })
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process and everything in its process group,
    /// unless it has already been reaped.
    pub fn signal(&self, signal: i32) {
        if self.exited.is_none() {
            owned::signal_group(self.child.id(), signal);
        }
    }

    /// Terminates the process: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.signal(libc::SIGKILL);
        if let Ok(status) = owned::wait(&mut self.child) {
            self.exited = Some(status);
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The last `max` bytes of a file, lossily decoded.
pub fn read_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// A real `nats-server` on a free loopback port, with JetStream (stored under its directory), stopped
/// when dropped.
#[derive(Debug)]
pub struct NatsServer {
    process: Supervised,
    port: u16,
    _dir: Option<TempDir>,
}

impl NatsServer {
    /// Starts a nats-server from the test-binary cache on a free port of 127.0.0.1.
    pub fn start() -> Result<Self, Error> {
        Self::start_on_port(free_port())
    }

    /// Starts a nats-server on the given port (used to restart one at the same address).
    pub fn start_on_port(port: u16) -> Result<Self, Error> {
        let dir = TempDir::new("nats")?;
        let mut server = Self::start_in(dir.path(), port)?;
        server._dir = Some(dir);
        Ok(server)
    }

    /// Starts a nats-server on `port` of 127.0.0.1 with the configuration file `config` (its TLS and
    /// authorization blocks, e.g.) and its log at `dir/nats.log`; `dir` is not removed on drop.
    pub fn start_with_config(dir: &Path, port: u16, config: &str) -> Result<Self, Error> {
        let path = dir.join("nats.conf");
        std::fs::write(&path, config).map_err(|e| Error::Io {
            what: format!("write {}", path.display()),
            source: e,
        })?;
        Self::spawn_in(dir, port, &["-c", &path.to_string_lossy()])
    }

    /// Starts a nats-server on `port` with its log at `dir/nats.log`; `dir` is not removed on drop.
    pub fn start_in(dir: &Path, port: u16) -> Result<Self, Error> {
        Self::spawn_in(dir, port, &[])
    }

    fn spawn_in(dir: &Path, port: u16, extra: &[&str]) -> Result<Self, Error> {
        let bin = testbin("nats-server")?;
        let mut cmd = Command::new(bin);
        cmd.args(extra);
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        // JetStream backs wasi:keyvalue's NATS backend.
        cmd.arg("-js").arg("-sd").arg(dir.join("jetstream"));
        let mut process = Supervised::spawn("nats-server", cmd, &dir.join("nats.log"))?;
        process.wait_tcp(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(20))?;
        Ok(Self {
            process,
            port,
            _dir: None,
        })
    }

    /// The path of the server's log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// The client URL, e.g. `nats://127.0.0.1:4222`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server now (to test reconnects).
    pub fn stop(&mut self) {
        self.process.stop(Duration::from_secs(5));
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log_tail(64 * 1024)
    }
}

/// A temporary directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system temp dir (or `$WEFT_TEST_TMP`).
    pub fn new(prefix: &str) -> Result<Self, Error> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let base = std::env::var_os("WEFT_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("weft-{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(io(format!("create {}", path.display())))?;
        Ok(Self(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_server_starts_accepts_connections_and_stops() {
        let mut nats = NatsServer::start().expect("start nats-server");
        let addr = SocketAddr::from(([127, 0, 0, 1], nats.port()));
        assert!(
            TcpStream::connect(addr).is_ok(),
            "nats-server accepts connections"
        );
        nats.stop();
        assert!(
            !wait_for_tcp(addr, Duration::from_millis(300)),
            "port closed after stop"
        );
    }

    #[test]
    fn missing_binary_names_the_build_script() {
        let err = testbin("definitely-not-a-binary").unwrap_err();
        assert!(err.to_string().contains("e2e/testbins/build.sh"), "{err}");
    }
}
