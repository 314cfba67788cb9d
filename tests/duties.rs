//! Process duties under what a cluster throws at a sidecar: every signal,
//! a stdout that cannot be written, command output that would drive a
//! terminal or forge log lines.

mod common;

use common::*;
use std::process::{Command, Stdio};

const SIGQUIT: i32 = 3;
const SIGHUP: i32 = 1;
const SIGUSR1: i32 = 10;
const SIGUSR2: i32 = 12;
const SIGPIPE: i32 = 13;
const SIGALRM: i32 = 14;

#[test]
fn sigquit_stops_gracefully_like_sigterm() {
    let token = unique_sleep();
    let cmd = format!("sleep {token} & sleep {token}");
    let mut server = Server::start(&["--cmd", &cmd]);
    eventually("the probe command to run", || {
        (processes_with(&token).len() >= 2).then_some(())
    });
    server.signal(SIGQUIT);
    assert_eq!(server.wait_exit().code(), Some(0));
    eventually("the probe's group to be gone", || {
        processes_with(&token).is_empty().then_some(())
    });
    server.wait_log(|l| l.contains("received SIGQUIT; stopping probes"));
}

#[test]
fn other_signals_are_logged_and_ignored() {
    let token = unique_sleep();
    let mut server = Server::start(&["--cmd", &format!("sleep {token}"), "--timeout=1h"]);
    eventually("the probe command to run", || {
        (!processes_with(&token).is_empty()).then_some(())
    });
    for (signal, name) in [
        (SIGHUP, "SIGHUP"),
        (SIGUSR1, "SIGUSR1"),
        (SIGUSR2, "SIGUSR2"),
        (SIGALRM, "SIGALRM"),
        (SIGPIPE, "SIGPIPE"),
    ] {
        server.signal(signal);
        server.wait_log(|l| l.contains(&format!("received {name}; ignored")));
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "{name} stopped it"
        );
    }
    // Still serving, and its command still running as its child.
    assert_eq!(server.get("/").status, 200);
    assert!(!processes_with(&token).is_empty());
}

#[test]
fn a_panic_kills_the_commands_groups_then_aborts() {
    // The test binary is a debug build, where EXECHEALTHZ_TEST_PANIC_URL
    // makes that probe's loop panic when its second run is due (2 s here).
    // By then the slow probe's first run has started its two sleeps, and
    // its second run starts as soon as the hook kills the first: a command
    // started during the exit must not outlive it either.
    let token = unique_sleep();
    let dir = TempDir::new("panic");
    let started = dir.0.join("started");
    let slow = format!(
        "sleep {token} & sleep {token} & touch {}; wait",
        started.display()
    );
    let mut command = Command::new(BIN);
    command
        .args(["--cmd", &slow, "--url=/slow", "--timeout=1h"])
        .args(["--cmd=true", "--url=/boom", "--period=2s", "--port=0"])
        .env("EXECHEALTHZ_TEST_PANIC_URL", "/boom");
    let mut server = Server::start_command(command);
    let status = server.wait_exit();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(6), "aborted: {status:?}");
    server.wait_log(|l| l.contains("panic: ") && l.contains("test panic in the loop of /boom"));
    assert!(started.exists(), "the slow probe's sleeps never started");
    eventually("the slow probe's groups to be gone", || {
        processes_with(&token).is_empty().then_some(())
    });
}

#[test]
fn a_stdout_that_cannot_be_written_is_an_error_not_a_panic() {
    for flag in ["--version", "--help"] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let output = Command::new(BIN)
            .arg(flag)
            .stdout(Stdio::from(full))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{flag}: {stderr}");
        assert!(
            stderr.contains("cannot write to standard output"),
            "{flag}: {stderr}"
        );
        assert!(!stderr.contains("panic"), "{flag}: {stderr}");
    }
}

#[test]
fn command_output_cannot_forge_log_lines_or_drive_a_terminal() {
    let server = Server::start(&[
        r"--cmd=printf 'a\033[2J\rb\n2026/01/01 00:00:00 forged\0c'; exit 3",
        "--period=10ms",
    ]);
    let line = server.wait_log(|l| l.contains("exit status 3"));
    assert!(line.contains(r"a\x1b[2J\rb\n2026/01/01"), "{line}");
    assert!(line.contains(r"forged\x00c"), "{line}");
    for line in server.logs() {
        assert!(
            !line.contains(['\x1b', '\r', '\0']),
            "raw control character in {line:?}"
        );
        assert!(!line.starts_with("2026/01/01"), "forged line {line:?}");
    }
}

#[test]
fn a_descriptor_limit_too_low_to_run_and_serve_is_an_error_that_names_it() {
    let two_probes = ["--cmd=true", "--url=/a", "--cmd=true", "--url=/b"];
    for limit in [8, 16] {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={limit}:{limit}"))
            .arg(BIN)
            .args(two_probes)
            .args(["--port=0", "--period=1h"]);
        let mut server = Server::start_to_fail(command);
        let status = server.wait_exit();
        let line = server.wait_log(|l| l.contains(&format!("RLIMIT_NOFILE is {limit}: ")));
        assert!(
            line.contains("running 2 probes and serving needs 15"),
            "{line}"
        );
        assert_eq!(status.code(), Some(1), "limit {limit}: {line}");
        let logs = server.logs();
        assert!(!logs.iter().any(|l| l.contains("listening on")), "{logs:?}");
    }
    // Enough for both: it serves.
    let mut command = Command::new("prlimit");
    command
        .args(["--nofile=64:64", BIN])
        .args(two_probes)
        .arg("--port=0");
    let server = Server::start_command(command);
    server.wait_status("/a", 200);
    server.wait_status("/b", 200);
}

/// Whether `setpriv` can run the binary as user 65534 here (root, and the
/// binary readable by everyone), for limits that root ignores.
fn can_run_as_nobody() -> bool {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "--version",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_thread_limit_at_start_is_an_error_that_names_it() {
    if !can_run_as_nobody() {
        assert!(
            std::env::var_os("EXECHEALTHZ_REQUIRE_TOOLS").is_none(),
            "setpriv cannot run the binary as 65534"
        );
        eprintln!("skipped: setpriv cannot run the binary as user 65534");
        return;
    }
    // RLIMIT_NPROC counts the threads of the user: every limit from "not
    // even one more thread" to "enough threads, no room for commands".
    let mut exited = 0;
    for limit in 1..=6 {
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "prlimit",
        ]);
        command.arg(format!("--nproc={limit}:{limit}"));
        command.args([BIN, "--port=0", "--period=1h"]);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        // A limit that stops the start does so at once; one that does not
        // leaves it serving.
        let began = std::time::Instant::now();
        let mut status = None;
        while status.is_none() && began.elapsed() < std::time::Duration::from_secs(2) {
            status = child.try_wait().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let status = match status {
            Some(status) => status,
            None => {
                // It started: serving, with commands failing to start.
                let _ = child.kill();
                child.wait().unwrap();
                let text = reader.join().unwrap();
                assert!(!text.contains("panic"), "limit {limit}: {text}");
                continue;
            }
        };
        exited += 1;
        let text = reader.join().unwrap();
        assert_eq!(status.code(), Some(1), "limit {limit}: {status:?} {text}");
        assert!(
            text.contains(&format!("RLIMIT_NPROC is {limit}")),
            "limit {limit}: {text}"
        );
        assert!(!text.contains("panic"), "limit {limit}: {text}");
    }
    assert!(exited >= 2, "no limit was tight enough to stop the start");
}

/// A metric's value from `/metrics` text (no labels).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A server whose probe logs a 4 KB failure line every 10 ms (a 64 KiB
/// pipe fills in a moment), with its stderr read up to the listening line
/// and no further.
fn start_logging_heavily() -> (
    Reaped,
    std::io::BufReader<std::process::ChildStderr>,
    std::net::SocketAddr,
) {
    start_logging(&[
        "--period=10ms",
        "--cmd=head -c 4000 /dev/zero | tr '\\0' x; exit 1",
    ])
}

/// A child process killed and reaped when dropped, so that a failed test
/// leaves no server running.
struct Reaped(std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server started with `args`, its stderr read up to the listening line.
fn start_logging(
    args: &[&str],
) -> (
    Reaped,
    std::io::BufReader<std::process::ChildStderr>,
    std::net::SocketAddr,
) {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .arg("--port=0")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains(" listening on ") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no listening line"
        );
    }
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    (
        Reaped(child),
        stderr,
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
    )
}

#[test]
fn a_stuck_stderr_blocks_nothing_and_what_was_dropped_is_said() {
    use std::io::BufRead;
    // 20 probes log two short lines a run each, every 10 ms: stderr's pipe
    // and then our queue fill in a moment, and the queue stays full to
    // within a line (so a count line queued there would be dropped too).
    let mut args = vec!["--period=10ms".to_string()];
    for i in 0..20 {
        args.push(format!("--url=/p{i}"));
        args.push("--cmd=exit 1".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut child, mut stderr, address) = start_logging(&args);
    // Nobody reads stderr now: lines are dropped, probing and serving go on.
    let runs = |text: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with("exechealthz_probe_runs_total{"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap()
    };
    let dropped_at = eventually("log lines to be dropped", || {
        let text = http(address, "GET", "/metrics").text();
        (metric(&text, "exechealthz_log_lines_dropped_total")? > 0.0).then(|| runs(&text))
    });
    eventually("probing to go on", || {
        let text = http(address, "GET", "/metrics").text();
        (runs(&text) >= dropped_at + 20.0).then_some(())
    });
    // Read again: the writer drains, then says how many were dropped, and
    // the counts it gives add up to the metric (a count line is never
    // dropped itself, which would lose its count).
    let said = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let said_by_reader = std::sync::Arc::clone(&said);
    std::thread::spawn(move || {
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap_or(0) > 0 {
            if line.contains("log lines were dropped while stderr was not taking them") {
                let count: u64 = line.split(' ').nth(2).unwrap().parse().unwrap();
                said_by_reader.fetch_add(count, std::sync::atomic::Ordering::SeqCst);
            }
            line.clear();
        }
    });
    eventually("the dropped lines said to add up to the metric", || {
        let text = http(address, "GET", "/metrics").text();
        let total = metric(&text, "exechealthz_log_lines_dropped_total")? as u64;
        (said.load(std::sync::atomic::Ordering::SeqCst) == total).then_some(())
    });
    assert!(said.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sigterm_ends_it_while_stderr_is_stuck() {
    let (mut child, stderr, address) = start_logging_heavily();
    eventually("stderr to be stuck", || {
        let text = http(address, "GET", "/metrics").text();
        (metric(&text, "exechealthz_log_lines_dropped_total")? > 0.0).then_some(())
    });
    // SAFETY: plain kill of our own child.
    unsafe { libc_kill(child.id() as i32, SIGTERM) };
    let status = eventually("the exit", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
    drop(stderr);
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}
