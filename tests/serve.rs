//! The Go original's behaviour, as the seed README shows it, and the
//! HTTP surface: probe URLs, index, /quit, 404, 405, HEAD, logs.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn readme_example_single_command() {
    let dir = TempDir::new("readme");
    let test_file = dir.file("test");
    let cmd = format!("ls {test_file}");
    let server = Server::start(&["--cmd", &cmd, "--period=20ms"]);

    let failing = server.wait_for("/healthz", |r| r.text().contains("Result of last exec"));
    assert_eq!(failing.status, 503);
    let body = failing.text();
    assert!(
        body.starts_with("Healthz probe on /healthz error: Result of last exec: ls: cannot access"),
        "{body}"
    );
    assert!(body.contains("No such file or directory\n, at "), "{body}");
    assert!(body.ends_with(", error exit status 2\n"), "{body}");
    assert!(body.contains(" +0000 UTC"), "{body}");

    std::fs::write(&test_file, "").unwrap();
    let ok = server.wait_status("/healthz", 200);
    assert_eq!(ok.text(), "ok");
    assert_eq!(ok.header("Content-Type"), Some("text/plain; charset=utf-8"));
}

#[test]
fn readme_example_multiple_urls_and_commands() {
    let dir = TempDir::new("multi");
    let (one, two) = (dir.file("test1"), dir.file("test2"));
    let server = Server::start(&[
        &format!("--cmd=ls {one}"),
        "--url=/healthz1",
        &format!("--cmd=ls {two}"),
        "--url=/healthz2",
        "--period=20ms",
    ]);
    for url in ["/healthz1", "/healthz2"] {
        let failing = server.wait_for(url, |r| r.text().contains("Result of last exec"));
        assert_eq!(failing.status, 503);
    }
    std::fs::write(&two, "").unwrap();
    server.wait_status("/healthz2", 200);
    let first = server.get("/healthz1");
    assert_eq!(first.status, 503);
    assert!(
        first
            .text()
            .starts_with("Healthz probe on /healthz1 error: ")
    );
    assert!(
        first.text().contains(&one),
        "the first URL serves the first command"
    );
    assert_eq!(
        server.get("/healthz").status,
        404,
        "no default URL with --url"
    );
    std::fs::write(&one, "").unwrap();
    server.wait_status("/healthz1", 200);
}

#[test]
fn single_dash_spelling_with_separate_values() {
    // `-cmd "ls /tmp/test"`, the README's form, and booleans as `-output`.
    let server = Server::start(&["-cmd", "echo single-dash", "-period", "10ms", "-output"]);
    let response = server.wait_status("/healthz", 200);
    assert_eq!(response.text(), "single-dash\n");
}

#[test]
fn double_dash_spelling_with_equals() {
    let server = Server::start(&["--cmd=echo double-dash", "--period=10ms", "--output=true"]);
    let response = server.wait_status("/healthz", 200);
    assert_eq!(response.text(), "double-dash\n");
}

#[test]
fn default_command_serves_ok() {
    let server = Server::start(&[]);
    assert_eq!(server.wait_status("/healthz", 200).text(), "ok");
}

#[test]
fn first_run_happens_at_start_up() {
    // With a one-hour period, only a run at start-up can make this pass.
    let server = Server::start(&["--cmd=true", "--period=1h"]);
    server.wait_status("/healthz", 200);
}

#[test]
fn no_result_yet_is_503_not_ok() {
    let dir = TempDir::new("pending");
    let gate = dir.file("gate");
    // The first run waits for the test to open the gate.
    let cmd = format!("while [ ! -e {gate} ]; do sleep 0.01; done");
    let server = Server::start(&["--cmd", &cmd]);
    let response = server.get("/healthz");
    assert_eq!(response.status, 503);
    assert!(
        response
            .text()
            .contains("no verdict yet: the first run has not finished"),
        "{}",
        response.text()
    );
    std::fs::write(&gate, "").unwrap();
    server.wait_status("/healthz", 200);
}

/// Start times (ns since the epoch) that `cmd` appended to `file`.
fn starts(file: &str) -> Vec<u128> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn runs_never_overlap_and_a_late_run_starts_the_next_at_once() {
    let dir = TempDir::new("overlap");
    let (log, lock) = (dir.file("starts"), dir.file("lock"));
    // Each run takes 500ms, longer than the 400ms period. mkdir is atomic:
    // it fails if another run holds the lock.
    let cmd = format!(
        "mkdir {lock} || echo overlap >> {log}.bad; date +%s%N >> {log}; sleep 0.5; rmdir {lock}"
    );
    let server = Server::start(&["--cmd", &cmd, "--period=400ms"]);
    let times = eventually("five runs", || Some(starts(&log)).filter(|t| t.len() >= 5));
    drop(server);
    assert!(
        !std::path::Path::new(&format!("{log}.bad")).exists(),
        "runs overlapped"
    );
    let mut gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000)
        .collect();
    assert!(
        gaps.iter().all(|g| *g >= 500),
        "a run started before the last ended: {gaps:?}"
    );
    // Waiting for the next tick (Go's ticker) would give 800ms, waiting a
    // period after the end 900ms; starting at once gives about 500ms.
    gaps.sort();
    assert!(
        gaps[gaps.len() / 2] < 750,
        "next run did not start at once: {gaps:?}"
    );
}

#[test]
fn head_has_no_body_and_other_methods_get_405() {
    let server = Server::start(&["--period=10ms"]);
    server.wait_status("/healthz", 200);
    let head = server.request("HEAD", "/healthz");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD sent a body: {:?}", head.text());
    for method in ["POST", "PUT", "DELETE"] {
        let response = server.request(method, "/healthz");
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(
            response.header("Allow"),
            Some("GET, HEAD, OPTIONS"),
            "{method}"
        );
    }
    assert_eq!(server.request("POST", "/").status, 405);
}

#[test]
fn head_on_a_failing_probe_is_503_without_body() {
    let server = Server::start(&["--cmd=false", "--period=10ms"]);
    server.wait_status("/healthz", 503);
    let head = server.request("HEAD", "/healthz");
    assert_eq!(head.status, 503);
    assert!(head.body.is_empty());
}

#[test]
fn unknown_paths_are_404() {
    let server = Server::start(&[]);
    for path in [
        "/nope",
        "/healthz/extra",
        "/debug/pprof/",
        "/quit",
        "/metricsx",
    ] {
        assert_eq!(server.get(path).status, 404, "{path}");
    }
}

#[test]
fn query_strings_do_not_change_the_route() {
    let server = Server::start(&["--period=10ms"]);
    server.wait_status("/healthz", 200);
    assert_eq!(server.get("/healthz?x=1").text(), "ok");
}

#[test]
fn verbose_answers_in_the_apiservers_style() {
    let server = Server::start(&[
        "--cmd=true",
        "--url=/a",
        "--cmd=exit 4",
        "--url=/b",
        "--period=10ms",
    ]);
    server.wait_status("/a", 200);
    server.wait_for("/b", |r| r.text().contains("exit status 4"));
    let passing = server.get("/a?verbose");
    assert_eq!(passing.status, 200);
    assert_eq!(passing.text(), "[+]/a ok\nhealthz check passed\n");
    let failing = server.get("/b?verbose=true");
    assert_eq!(failing.status, 503);
    assert_eq!(
        failing.text(),
        "[-]/b failed: exit status 4\nhealthz check failed\n"
    );
}

#[test]
fn unavailable_bodies_end_with_a_newline_as_gos_http_error() {
    let server = Server::start(&["--cmd=echo out; exit 2", "--period=10ms"]);
    let failing = server.wait_for("/healthz", |r| r.text().contains("exit status 2"));
    assert_eq!(failing.status, 503);
    assert!(
        failing.text().ends_with(", error exit status 2\n"),
        "{}",
        failing.text()
    );
    let ok = Server::start(&["--period=10ms"]);
    assert_eq!(
        ok.wait_status("/healthz", 200).text(),
        "ok",
        "no newline on 200"
    );
}

#[test]
fn logs_a_line_per_run_and_per_request_as_the_original() {
    let server = Server::start(&["--cmd=true", "--period=1h"]);
    server.wait_log(|l| l.ends_with(" Worker running true to serve /healthz"));
    let mut stream = std::net::TcpStream::connect(server.address).unwrap();
    let port = stream.local_addr().unwrap().port();
    std::io::Write::write_all(
        &mut stream,
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut answer).unwrap();
    server.wait_log(|l| {
        l.ends_with(&format!(
            " Client ip 127.0.0.1:{port} requesting /healthz probe servicing cmd true"
        ))
    });
    // In JSON logs, the same events with their fields.
    let json = Server::start(&["--cmd=true", "--period=1h", "--log-format=json"]);
    let line = json.wait_log(|l| l.contains("Worker running true to serve /healthz"));
    assert!(
        line.starts_with('{')
            && line.contains("\"url\":\"/healthz\"")
            && line.contains("\"cmd\":\"true\""),
        "{line}"
    );
    json.wait_status("/healthz", 200);
    let line = json.wait_log(|l| l.contains("requesting /healthz probe"));
    assert!(line.contains("\"client\":\"127.0.0.1:"), "{line}");
    // Neither with --quiet.
    let quiet = Server::start(&["--cmd=true", "--period=10ms", "--quiet"]);
    quiet.wait_status("/healthz", 200);
    assert!(
        quiet
            .logs()
            .iter()
            .all(|l| !l.contains("Worker running") && !l.contains("Client ip")),
        "{:#?}",
        quiet.logs()
    );
}

#[test]
fn a_latency_shorter_than_the_period_is_warned_of() {
    let server = Server::start(&["--period=10s", "--latency=5s"]);
    server.wait_log(|l| l.contains("warning: --latency 5s is shorter than --period 10s"));
}

#[test]
fn index_lists_probes_and_endpoints() {
    let server = Server::start(&["--cmd=true", "--url=/a", "--cmd=echo <b>", "--url=/<b>"]);
    let index = server.get("/");
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let page = index.text();
    assert!(
        page.contains("href=\"/a\"") && page.contains("href=\"/&lt;b&gt;\""),
        "URLs are listed, escaped: {page}"
    );
    assert!(!page.contains("echo"), "commands are not served: {page}");
    assert!(!page.contains("/quit"), "no /quit unless enabled: {page}");
}

#[test]
fn quit_is_404_unless_enabled() {
    let mut server = Server::start(&[]);
    assert_eq!(server.get("/quit").status, 404);
    assert!(server.child.try_wait().unwrap().is_none(), "still running");

    let mut server_quit = Server::start(&["--enable-quit"]);
    assert!(server_quit.get("/").text().contains("/quit"));
    assert_eq!(server_quit.request("PUT", "/quit").status, 405);
    let response = server_quit.get("/quit");
    assert_eq!(response.status, 200);
    assert!(server_quit.wait_exit().success());
    drop(server);
}

#[test]
fn stale_result_is_503_and_the_watchdog_logs_it() {
    let dir = TempDir::new("stale");
    let hang = dir.file("hang");
    // Passes at once, then hangs (until its timeout) once the test asks.
    let cmd = format!("if [ -e {hang} ]; then sleep 30; fi");
    let server = Server::start(&[
        "--cmd",
        &cmd,
        "--period=10ms",
        "--latency=300ms",
        "--timeout=1h",
    ]);
    server.wait_status("/healthz", 200);
    std::fs::write(&hang, "").unwrap();
    let stale = server.wait_status("/healthz", 503);
    assert!(
        stale
            .text()
            .starts_with("Latest result too old to be useful: Result of last exec: "),
        "{}",
        stale.text()
    );
    assert!(stale.text().ends_with("error None.\n"), "{}", stale.text());
    let line = server.wait_log(|l| l.contains("no result for"));
    assert!(
        line.contains("probe /healthz") && line.contains("--latency 300ms"),
        "{line}"
    );
    assert!(line.contains("has been running for"), "{line}");
}

#[test]
fn output_flag_serves_the_commands_output() {
    let server = Server::start(&["--cmd=printf 'line1\\nline2'", "--output", "--period=10ms"]);
    assert_eq!(server.wait_status("/healthz", 200).text(), "line1\nline2");
}

#[test]
fn logs_use_gos_format_and_say_where_we_listen() {
    let server = Server::start(&["--cmd=exit 3", "--period=10ms"]);
    let failure = server.wait_log(|l| l.contains("error exit status 3"));
    let listening = server.wait_log(|l| l.contains("listening on"));
    assert!(
        listening.contains("[::]:"),
        "default is dual-stack: {listening}"
    );
    for line in [&failure, &listening] {
        let bytes = line.as_bytes();
        let shape = bytes.len() > 20
            && bytes[..19].iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'/',
                10 => *b == b' ',
                13 | 16 => *b == b':',
                _ => b.is_ascii_digit(),
            })
            && bytes[19] == b' ';
        assert!(shape, "not Go's log format: {line}");
    }
    assert!(
        failure.contains("Healthz probe on /healthz error: "),
        "{failure}"
    );
}

#[test]
fn quiet_logs_only_errors() {
    let passing = Server::start(&["--quiet", "--period=10ms"]);
    passing.wait_status("/healthz", 200);
    let failing = Server::start(&["--quiet", "--cmd=false", "--period=10ms"]);
    failing.wait_log(|l| l.contains("error exit status 1"));
    let loud = Server::start(&["--period=10ms"]);
    loud.wait_log(|l| l.contains("is now passing"));
    // The start-up line is kept; informational lines are not.
    failing.wait_log(|l| l.contains("is now failing"));
    assert!(
        loud.logs()
            .iter()
            .any(|l| l.contains("probe /healthz: running"))
    );
    let logs = passing.logs();
    assert!(
        logs.len() == 1 && logs[0].contains("listening on"),
        "{logs:#?}"
    );
    let logs = failing.logs();
    assert!(
        !logs.iter().any(|l| l.contains("probe /healthz: running")),
        "{logs:#?}"
    );
}

#[test]
fn explicit_free_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = std::process::Command::new(BIN);
    command.arg(format!("--port={port}"));
    let server = Server::start_command(command);
    assert_eq!(server.address.port(), port);
    assert_eq!(server.wait_status("/healthz", 200).text(), "ok");
}

#[test]
fn default_address_serves_ipv4_and_ipv6() {
    let server = Server::start(&["--period=10ms"]);
    server.wait_status("/healthz", 200);
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, server.address.port()));
    if std::net::TcpStream::connect(v6).is_err() && std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped the IPv6 half: this machine has no IPv6 loopback");
        return;
    }
    assert_eq!(http(v6, "GET", "/healthz").status, 200);
}

#[test]
fn address_flag_binds_only_there() {
    let server = Server::start(&["--address=127.0.0.1"]);
    assert!(
        server
            .wait_log(|l| l.contains("listening on"))
            .contains("127.0.0.1:")
    );
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, server.address.port()));
    assert!(
        std::net::TcpStream::connect(v6).is_err(),
        "IPv6 must not be served"
    );
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = run_to_end(&["--address=0.0.0.0", &format!("--port={port}")]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot listen") && stderr.contains(&port.to_string()),
        "{stderr}"
    );
}

#[test]
fn a_slow_probe_does_not_slow_the_others() {
    let server = Server::start(&[
        "--cmd=sleep 30",
        "--url=/slow",
        "--cmd=true",
        "--url=/fast",
        "--period=10ms",
    ]);
    let start = Instant::now();
    server.wait_status("/fast", 200);
    assert_eq!(server.get("/slow").status, 503);
    assert!(start.elapsed() < Duration::from_secs(15));
}

#[test]
fn stdout_and_stderr_are_combined_in_order() {
    let server = Server::start(&[
        "--cmd=echo out; echo err >&2; echo out2",
        "--output",
        "--period=1h",
    ]);
    assert_eq!(
        server.wait_status("/healthz", 200).text(),
        "out\nerr\nout2\n"
    );
}

#[test]
fn commands_read_end_of_file_on_stdin() {
    // `cat` would wait forever on an open stdin; the timeout would fail it.
    // The server's own stdin is a pipe that stays open (and empty) for the
    // whole test: commands must not inherit it.
    let mut command = Command::new(BIN);
    command.args(["--cmd=cat", "--timeout=5s", "--period=1h", "--port=0"]);
    let server = Server::start_with_stdin(command, Stdio::piped());
    assert_eq!(server.wait_status("/healthz", 200).text(), "ok");
}
