//! Check options in the URL's fragment, against real peers this project
//! did not write: Python's http.server (over TCP and a Unix socket), the
//! `h2` library's server for h2c://, grpcio with an interceptor recording
//! metadata (over TCP and a Unix socket). Each peer records what it got;
//! the tests read the record. Also: the per-probe period and timeout seen
//! from a running server's /metrics, and bad options as start-up errors.

mod common;

use common::*;
use std::process::{Command, Stdio};

/// Runs `exechealthz check ARGS`: exit status and stdout lines.
fn check(args: &[&str]) -> (i32, Vec<String>) {
    let output = Command::new(BIN).arg("check").args(args).output().unwrap();
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    (output.status.code().unwrap_or(-1), lines)
}

/// `record_server.py MODE LOG [--unix PATH]`, and its log's path.
fn recorder(dir: &TempDir, mode: &str, unix: Option<&str>) -> Option<(Tool, String)> {
    let log = dir.file(&format!(
        "{mode}-{}.log",
        if unix.is_some() { "unix" } else { "tcp" }
    ));
    let mut args = vec![mode, log.as_str()];
    if let Some(path) = unix {
        args.extend(["--unix", path]);
    }
    let tool = Tool::start("record_server.py", &args, Stdio::inherit(), &[])?;
    Some((tool, log))
}

/// The requests a recorder logged: each `METHOD PATH`, then its fields.
fn recorded(log: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| line.split('|').map(str::to_string).collect())
        .collect()
}

/// The one request for `path` in the log; panics if it is not there once.
fn request(log: &str, path: &str) -> Vec<String> {
    let all = recorded(log);
    let mut found = all.iter().filter(|r| r[0].ends_with(&format!(" {path}")));
    let one = found
        .next()
        .unwrap_or_else(|| panic!("no {path} in {all:?}"));
    assert!(found.next().is_none(), "{path} twice in {all:?}");
    one.clone()
}

fn has(fields: &[String], field: &str) -> bool {
    fields.iter().any(|f| f == field)
}

fn named(fields: &[String], name: &str) -> usize {
    let prefix = format!("{}: ", name.to_ascii_lowercase());
    fields
        .iter()
        .filter(|f| f.to_ascii_lowercase().starts_with(&prefix))
        .count()
}

#[test]
fn http_options_against_python_http_server_over_tcp_and_a_unix_socket() {
    let dir = TempDir::new("options-http");
    let socket = dir.file("app.sock");
    let Some((tcp, tcp_log)) = recorder(&dir, "http", None) else {
        return;
    };
    let Some((_unix, unix_log)) = recorder(&dir, "http", Some(&socket)) else {
        return;
    };
    let base = format!("http://127.0.0.1:{}", tcp.port);
    let headers = "header=Host:app.test&header=User-Agent:kube-probe/1.37\
                   &header=X-Token:a%20b&header=X-Token:c&header=Accept:";
    let passing = [
        format!("{base}/ok#{headers}&body=good%20here"),
        format!("{base}/204#status=200,204"),
        format!("{base}/moved#status=301"),
        format!("{base}/404#status=404"),
        format!("{base}/big#body=marker"),
        format!("http://app.test:9999/ok#socket={socket}&header=X-Via:unix"),
    ];
    for target in &passing {
        let (code, lines) = check(&[target]);
        assert_eq!((code, lines), (0, vec![format!("ok {target}")]));
    }
    for (target, says) in [
        (
            format!("{base}/ok#body=bad"),
            "the body does not contain \"bad\"",
        ),
        // 15 KiB in: past the 10 KiB the kubelet reads.
        (
            format!("{base}/big#body=late"),
            "the body does not contain \"late\" (in the 10240 bytes read of it",
        ),
        (
            format!("{base}/204#status=200"),
            "HTTP status 204 (want 200)",
        ),
    ] {
        let (code, lines) = check(&[&target]);
        assert_eq!(code, 1, "{target}: {lines:?}");
        assert!(lines[0].contains(says), "{target}: {lines:?}");
    }
    // Unlisted redirects are followed and the end of the chain judged:
    // /found-404 ends at a listed 404, /moved at /ok's listed 200.
    for target in [
        format!("{base}/found-404#status=200,404-404"),
        format!("{base}/moved#status=200-299,400"),
    ] {
        let (code, lines) = check(&[&target]);
        assert_eq!(code, 0, "{target}: {lines:?}");
    }

    // What the servers got: the kubelet's httpHeaders rules.
    let all = recorded(&tcp_log);
    let first_ok = all.iter().find(|r| r[0] == "GET /ok").expect("GET /ok");
    assert!(has(first_ok, "Host: app.test"), "{first_ok:?}");
    assert!(has(first_ok, "User-Agent: kube-probe/1.37"), "{first_ok:?}");
    assert_eq!(named(first_ok, "User-Agent"), 1, "{first_ok:?}");
    assert!(
        has(first_ok, "X-Token: a b") && has(first_ok, "X-Token: c"),
        "{first_ok:?}"
    );
    assert_eq!(named(first_ok, "Accept"), 0, "{first_ok:?}");
    // No fragment in any request target.
    assert!(all.iter().all(|r| !r[0].contains('#')), "{all:?}");
    // A listed 3xx is not followed: /moved#status=301 made one request.
    let moved = all.iter().filter(|r| r[0] == "GET /moved").count();
    assert_eq!(moved, 2, "{all:?}");
    let unix = request(&unix_log, "/ok");
    assert!(has(&unix, "Host: app.test:9999"), "{unix:?}");
    assert!(has(&unix, "X-Via: unix"), "{unix:?}");
    assert!(has(
        &unix,
        &format!("User-Agent: exechealthz/{}", env!("CARGO_PKG_VERSION"))
    ));
    assert!(has(&unix, "Accept: */*"), "{unix:?}");
}

#[test]
fn h2c_is_the_http_check_over_http2_against_the_h2_library() {
    let dir = TempDir::new("options-h2c");
    let socket = dir.file("h2.sock");
    let Some((tcp, log)) = recorder(&dir, "h2c", None) else {
        return;
    };
    let Some((_unix, unix_log)) = recorder(&dir, "h2c", Some(&socket)) else {
        return;
    };
    let base = format!("h2c://127.0.0.1:{}", tcp.port);
    for target in [
        format!("{base}/ok#header=Host:app.test&header=X-Token:t&body=good"),
        format!("{base}/moved"),
        format!("{base}/204"),
        format!("{base}/big#body=marker"),
        format!("h2c://app.test/ok#socket={socket}&header=Accept:"),
    ] {
        let (code, lines) = check(&[&target]);
        assert_eq!((code, lines), (0, vec![format!("ok {target}")]));
    }
    for (target, says) in [
        (format!("{base}/404"), "HTTP status 404 (want 200-399)"),
        (
            format!("{base}/found-404"),
            "HTTP status 404 (want 200-399)",
        ),
        (
            format!("{base}/big#body=late"),
            "the body does not contain \"late\"",
        ),
    ] {
        let (code, lines) = check(&[&target]);
        assert_eq!(code, 1, "{target}: {lines:?}");
        assert!(lines[0].contains(says), "{target}: {lines:?}");
    }
    let all = recorded(&log);
    assert!(!all.iter().any(|r| r[0].starts_with("ERROR")), "{all:?}");
    let ok = all
        .iter()
        .find(|r| r[0] == "GET /ok" && has(r, ":authority: app.test"))
        .unwrap_or_else(|| panic!("{all:?}"));
    assert!(has(ok, "x-token: t") && has(ok, "accept: */*"), "{ok:?}");
    assert!(has(ok, ":scheme: http"), "{ok:?}");
    // The redirect is followed on a new connection: /moved, then /ok.
    assert_eq!(
        all.iter().filter(|r| r[0] == "GET /ok").count(),
        2,
        "{all:?}"
    );
    let unix = request(&unix_log, "/ok");
    assert!(has(&unix, ":authority: app.test:80"), "{unix:?}");
    assert_eq!(named(&unix, "accept"), 0, "{unix:?}");

    // A server that answers in HTTP/1 (this one) fails at once, saying so;
    // so does the server's probe.
    let http1 = Server::start(&["--cmd=true", "--period=1h"]);
    let target = format!("h2c://127.0.0.1:{}/healthz", http1.address.port());
    let (code, lines) = check(&[&target]);
    assert_eq!(code, 1);
    assert!(
        lines[0].contains("not an HTTP/2 server: it answered in HTTP/1 (HTTP/1.1 "),
        "{lines:?}"
    );
    let server = Server::start(&[
        &format!("--cmd={base}/ok#header=X-Probe:server"),
        "--period=1h",
        "--output",
    ]);
    assert_eq!(server.wait_status("/healthz", 200).text(), "HTTP/2 200");
}

/// An h2c:// answer's `:status` as Go's HTTP/2 client reads it (x/net
/// http2 `handleResponse`: `strconv.Atoi`, so a sign and leading zeros are
/// taken), which the kubelet's HTTP2 probe then judges: a code out of
/// 100-999 or not a number is a malformed answer.
#[test]
fn h2c_status_is_read_as_go_reads_it() {
    for (status, passes) in [
        ("200", true),
        ("399", true),
        ("0200", true),
        ("+200", true),
        ("20", false),
        ("099", false),
        ("2x0", false),
        ("", false),
    ] {
        let scenario = format!("h2c-status:{status}");
        let Some(mut peer) = Tool::start("h2_peer.py", &[&scenario], Stdio::inherit(), &[]) else {
            return;
        };
        let (code, lines) = check(&["--timeout=3s", &format!("h2c://127.0.0.1:{}/", peer.port)]);
        let saw = peer.report();
        if passes {
            assert_eq!(code, 0, "{status}: {lines:?}\npeer: {saw}");
            assert_eq!(lines, [format!("ok h2c://127.0.0.1:{}/", peer.port)]);
        } else {
            assert_eq!(code, 1, "{status}: {lines:?}");
            assert!(
                lines[0].ends_with(": malformed :status"),
                "{status}: {lines:?}"
            );
        }
        assert!(!saw.contains("error"), "{status}: {saw}");
    }
}

#[test]
fn grpc_metadata_reaches_grpcio_over_tcp_and_a_unix_socket() {
    let dir = TempDir::new("options-grpc");
    let socket = dir.file("grpc.sock");
    let (tcp_log, unix_log) = (dir.file("tcp.log"), dir.file("unix.log"));
    let Some(tcp) = Tool::start(
        "grpc_server.py",
        &["--record", &tcp_log],
        Stdio::inherit(),
        &[],
    ) else {
        return;
    };
    let Some(_unix) = Tool::start(
        "grpc_server.py",
        &["--record", &unix_log, "--unix", &socket],
        Stdio::inherit(),
        &[],
    ) else {
        return;
    };
    let target = format!(
        "grpc://127.0.0.1:{}#metadata=Authorization:Bearer%20t0k&metadata=trace-bin:%00%01%FF",
        tcp.port
    );
    let via_unix = format!("grpc://app.test:50051#socket={socket}&metadata=x-via:unix");
    for target in [&target, &via_unix] {
        let (code, lines) = check(&["--timeout=3s", target]);
        assert_eq!((code, lines), (0, vec![format!("ok {target}")]));
    }
    let tcp = std::fs::read_to_string(&tcp_log).unwrap();
    assert!(tcp.contains("authorization: Bearer t0k"), "{tcp}");
    assert!(tcp.contains(r"trace-bin: b'\x00\x01\xff'"), "{tcp}");
    let unix = std::fs::read_to_string(&unix_log).unwrap();
    assert!(unix.contains("x-via: unix"), "{unix}");
}

/// The metric `name` of the probe at `url`, from /metrics.
fn metric(server: &Server, name: &str, url: &str) -> f64 {
    let text = server.get("/metrics").text();
    let prefix = format!("{name}{{probe=\"{url}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_probes_own_period_timeout_and_thresholds_as_seen_from_metrics() {
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = open.local_addr().unwrap().port();
    // A listener that accepts and never answers: an h2c check waits.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let server = Server::start(&[
        "--period=1h",
        "--timeout=5s",
        &format!("--cmd=tcp://127.0.0.1:{port}#period=20ms"),
        "--url=/fast",
        &format!("--cmd=tcp://127.0.0.1:{port}"),
        "--url=/slow",
        &format!("--cmd=h2c://127.0.0.1:{silent_port}/#timeout=200ms&period=50ms"),
        "--url=/short",
    ]);
    eventually("10 runs of /fast", || {
        (metric(&server, "exechealthz_probe_runs_total", "/fast") >= 10.0).then_some(())
    });
    // The flag's period for the other: one run so far.
    assert_eq!(
        metric(&server, "exechealthz_probe_runs_total", "/slow"),
        1.0
    );
    eventually("2 timeouts of /short", || {
        (metric(&server, "exechealthz_probe_timeouts_total", "/short") >= 2.0).then_some(())
    });
    let took = metric(&server, "exechealthz_probe_last_duration_seconds", "/short");
    assert!((0.2..3.0).contains(&took), "a run of /short took {took} s");
    let text = server.wait_for("/short", |r| r.status == 503).text();
    assert!(text.contains("timed out after 200ms"), "{text}");
    let logs = server.logs().join("\n");
    assert!(
        logs.contains("probe /fast: running") && logs.contains("every 20ms"),
        "{logs}"
    );
    assert!(logs.contains("every 50ms (timeout 200ms)"), "{logs}");
    drop(silent);
}

#[test]
fn success_threshold_from_the_url_holds_the_verdict() {
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = open.local_addr().unwrap().port();
    let server = Server::start(&[
        &format!("--cmd=tcp://127.0.0.1:{port}#period=1h&success-threshold=2"),
        "--url=/healthz",
        &format!("--cmd=tcp://127.0.0.1:{port}"),
        "--url=/flag",
        "--period=10ms",
    ]);
    let text = server
        .wait_for("/healthz", |r| r.text().contains("consecutive successes"))
        .text();
    assert!(
        text.contains("1 of 2 consecutive successes needed to pass"),
        "{text}"
    );
    // Its own hour-long period: while the flag's probe runs every 10 ms,
    // still one run, still not passing.
    eventually("5 runs of /flag", || {
        (metric(&server, "exechealthz_probe_runs_total", "/flag") >= 5.0).then_some(())
    });
    assert_eq!(
        metric(&server, "exechealthz_probe_runs_total", "/healthz"),
        1.0
    );
    assert_eq!(server.get("/flag").status, 200);
    assert_eq!(server.get("/healthz").status, 503);
}

#[test]
fn bad_options_are_start_up_errors_naming_the_flag_and_the_key() {
    for (cmd, says) in [
        ("http://h/#bogus=1", "unknown option \"bogus\""),
        ("http://h/#status=99", "option status=99"),
        ("http://h/#body=a&body=b", "option \"body\" given twice"),
        (
            "tcp://h:1#header=A:b",
            "option \"header\" does not apply to tcp://",
        ),
        (
            "grpc://h:1#status=200",
            "option \"status\" does not apply to grpc://",
        ),
        ("h2c://h/#socket=rel", "write an absolute path"),
        ("dns:///a.test#period=0s", "greater than zero"),
    ] {
        let output = run_to_end(&[&format!("--cmd={cmd}")]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{cmd}: {stderr}");
        assert!(stderr.contains("--cmd number 1"), "{cmd}: {stderr}");
        assert!(stderr.contains(says), "{cmd}: {stderr}");
        let output = Command::new(BIN).args(["check", cmd]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "check {cmd}: {stderr}");
        let url = cmd.split('#').next().unwrap();
        assert!(
            stderr.contains(&format!("{url}: ")),
            "check {cmd}: {stderr}"
        );
        assert!(stderr.contains(says), "check {cmd}: {stderr}");
    }
}
