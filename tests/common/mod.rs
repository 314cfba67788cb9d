//! Test harness: starts the real binary on a free port and talks real HTTP
//! to it over `std::net::TcpStream`. Every wait polls with a deadline.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_exechealthz");

/// Generous: CI runs on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(15);

pub struct Server {
    pub child: Child,
    pub address: SocketAddr,
    /// The wall clock just before and just after the process was spawned.
    pub spawned: (std::time::SystemTime, std::time::SystemTime),
    logs: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Server {
    /// Starts `exechealthz ARGS --port 0` and waits for its listening line.
    pub fn start(args: &[&str]) -> Server {
        let mut command = Command::new(BIN);
        command.args(args).arg("--port=0");
        Server::start_command(command)
    }

    /// Starts a prepared command whose stderr carries our log, and waits for
    /// the listening line.
    pub fn start_command(command: Command) -> Server {
        Server::start_with_stdin(command, Stdio::null())
    }

    /// As `start_command`, with `stdin` as the server's standard input.
    pub fn start_with_stdin(command: Command, stdin: Stdio) -> Server {
        let mut server = Server::spawn(command, stdin);
        let line = server.wait_log(|l| l.contains(" listening on "));
        // `listening on [::]:PORT`, in a text or a JSON line.
        let address = line.split(" listening on ").nth(1).unwrap();
        let address = address.split(['"', ' ']).next().unwrap();
        let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
        server.address = SocketAddr::from(([127, 0, 0, 1], port));
        server
    }

    /// Starts `exechealthz --period=10ms` under `prlimit --nofile=N`, waits
    /// for its probe to pass; returns it with the connection cap it logged.
    pub fn start_with_nofile(nofile: u32) -> (Server, usize) {
        let mut command = Command::new("prlimit");
        command.args([
            &format!("--nofile={nofile}:{nofile}"),
            BIN,
            "--period=10ms",
            "--port=0",
        ]);
        let server = Server::start_command(command);
        server.wait_status("/healthz", 200);
        let line = server.wait_log(|l| l.contains("client connections at once"));
        let cap = line
            .split("serving at most ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no cap in {line}"));
        (server, cap)
    }

    /// Starts a command expected to exit before it serves: its log is
    /// collected, and nothing waits for a listening line.
    pub fn start_to_fail(command: Command) -> Server {
        Server::spawn(command, Stdio::null())
    }

    fn spawn(mut command: Command, stdin: Stdio) -> Server {
        let before = std::time::SystemTime::now();
        let mut child = command
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start exechealthz");
        let spawned = (before, std::time::SystemTime::now());
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
        });
        Server {
            child,
            address: "127.0.0.1:1".parse().unwrap(),
            spawned,
            logs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path)
    }

    pub fn request(&self, method: &str, path: &str) -> Response {
        http(self.address, method, path)
    }

    /// Polls `path` until `accept` holds; panics with the last answer.
    pub fn wait_for(&self, path: &str, accept: impl Fn(&Response) -> bool) -> Response {
        let start = Instant::now();
        loop {
            let response = self.get(path);
            if accept(&response) {
                return response;
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "timed out waiting on {path}; last answer: {response:?}\nlogs: {:#?}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn wait_status(&self, path: &str, status: u16) -> Response {
        self.wait_for(path, |r| r.status == status)
    }

    /// Waits for a log line matching `accept` and returns it.
    pub fn wait_log(&self, accept: impl Fn(&str) -> bool) -> String {
        let (lines, changed) = &*self.logs;
        let mut guard = lines.lock().unwrap();
        let start = Instant::now();
        loop {
            if let Some(line) = guard.iter().find(|l| accept(l)) {
                return line.clone();
            }
            let left = DEADLINE
                .checked_sub(start.elapsed())
                .unwrap_or_else(|| panic!("timed out waiting for a log line; logs: {:#?}", *guard));
            guard = changed.wait_timeout(guard, left).unwrap().0;
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.0.lock().unwrap().clone()
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "server did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn signal(&self, signal: i32) {
        let rc = unsafe { libc_kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first, so the server kills its probes' process groups and
        // no test leaves commands running behind it.
        if let Ok(None) = self.child.try_wait() {
            unsafe { libc_kill(self.child.id() as i32, SIGTERM) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
    fn getrlimit(resource: i32, limit: *mut [u64; 2]) -> i32;
    fn setrlimit(resource: i32, limit: *const [u64; 2]) -> i32;
}

/// Raises this test process's soft descriptor limit to its hard limit, for
/// tests that hold thousands of connections.
pub fn raise_open_files_limit() {
    const RLIMIT_NOFILE: i32 = 7;
    let mut limit = [0u64; 2];
    unsafe {
        assert_eq!(getrlimit(RLIMIT_NOFILE, &mut limit), 0);
        limit[0] = limit[1];
        assert_eq!(setrlimit(RLIMIT_NOFILE, &limit), 0);
    }
}

pub const SIGTERM: i32 = 15;
pub const SIGINT: i32 = 2;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn http(address: SocketAddr, method: &str, path: &str) -> Response {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    send_raw(address, raw.as_bytes())
}

/// A fresh `GET /healthz` with `Connection: close`, waiting at most
/// `timeout` for the answer: its status, or None if there was none (a
/// refusal, a reset, a timeout).
pub fn fresh_get_status(address: SocketAddr, timeout: Duration) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&address, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).ok()?;
    (!bytes.is_empty()).then(|| parse_response(&bytes).status)
}

/// Sends raw bytes and parses the response read to end of stream.
pub fn send_raw(address: SocketAddr, raw: &[u8]) -> Response {
    let mut stream = TcpStream::connect_timeout(&address, DEADLINE).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read response");
    parse_response(&bytes)
}

pub fn parse_response(bytes: &[u8]) -> Response {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Response {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(
            format!(
                "exechealthz-{name}-{}-{:?}",
                std::process::id(),
                Instant::now()
            )
            .replace([' ', '{', '}', ':', ','], ""),
        );
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` until it returns Some, with the shared deadline.
pub fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    eventually_within(DEADLINE, what, check)
}

/// `eventually`, with a deadline of its own for long waits.
pub fn eventually_within<T>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A token unique to this test run, for finding our commands in /proc.
pub fn unique_sleep() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // `sleep 999.<digits>`: a real sleep whose argv we can search for.
    format!(
        "999.{}{:04}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every process as (pid, its /proc directory).
pub fn processes() -> impl Iterator<Item = (u32, std::path::PathBuf)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((pid, entry.path()))
        })
}

/// Pids of processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for (pid, dir) in processes() {
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // Not the server (or unshare) whose own arguments carry the command.
        if cmdline.contains(needle) && !cmdline.contains("exechealthz") {
            // Zombies have an empty cmdline, so these are live processes.
            found.push(pid);
        }
    }
    found
}

/// A field of /proc/PID/status, in its unit (kB for memory).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Runs the binary to completion with `args` (for flag errors, --help).
pub fn run_to_end(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{args:?} did not exit; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (pid, state) of the children of `parent`, from /proc/*/stat.
pub fn children_of(parent: u32) -> Vec<(u32, char)> {
    let mut found = Vec::new();
    for (pid, dir) in processes() {
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let mut fields = after.split(' ');
        let state = fields.next().unwrap().chars().next().unwrap();
        let ppid: u32 = fields.next().unwrap().parse().unwrap();
        if ppid == parent {
            found.push((pid, state));
        }
    }
    found
}

/// A Python tool from tests/tools that serves on a port it prints first.
pub struct Tool {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: BufReader<ChildStdout>,
    pub port: u16,
}

impl Tool {
    /// Starts `tests/tools/SCRIPT ARGS` with its stderr in `stderr`; `None`
    /// (the test skips) when its Python packages are missing, unless CI
    /// requires them.
    pub fn start(script: &str, args: &[&str], stderr: Stdio, env: &[(&str, &str)]) -> Option<Tool> {
        let mut child = Command::new("python3")
            .arg(format!(
                "{}/tests/tools/{script}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        if line.is_empty() && child.wait().unwrap().code() == Some(3) {
            assert!(
                std::env::var_os("EXECHEALTHZ_REQUIRE_TOOLS").is_none(),
                "{script}: Python packages missing (pip install grpcio grpcio-health-checking h2 cryptography)"
            );
            eprintln!(
                "SKIPPED: {script} needs grpcio, grpcio-health-checking, h2 and cryptography"
            );
            return None;
        }
        let port = line
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("{script}: first line {line:?}"));
        Some(Tool {
            child,
            stdin,
            stdout,
            port,
        })
    }

    /// A command to the gRPC server (`set SERVICE STATUS`), once done.
    pub fn tell(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok", "{command}");
    }

    /// Asks the gRPC server to stop, and waits until it has.
    pub fn quit(mut self) {
        writeln!(self.stdin.as_mut().unwrap(), "quit").unwrap();
        self.report();
    }

    /// Waits for the tool to end by itself; the rest of its stdout.
    pub fn report(&mut self) -> String {
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < DEADLINE, "the peer did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut rest = String::new();
        while self.stdout.read_line(&mut rest).unwrap() > 0 {}
        rest
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
