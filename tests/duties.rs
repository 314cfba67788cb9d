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
