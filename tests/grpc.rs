//! The grpc:// check against a real gRPC server that this project did not
//! write (Python's grpcio with its standard health service), and against
//! scripted HTTP/2 peers (tests/tools/h2_peer.py) for what real servers
//! rarely send. Each peer is a Python process on a free port.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `exechealthz check ARGS`: exit status and stdout.
fn check(args: &[&str]) -> (i32, String) {
    let output = Command::new(BIN).arg("check").args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// A gRPC server with the health service (or, with `--no-health`, none),
/// logging its HTTP/2 transport's events to `log`.
fn grpc_server(args: &[&str], log: &str) -> Option<Tool> {
    let stderr = std::fs::File::create(log).unwrap();
    Tool::start(
        "grpc_server.py",
        args,
        stderr.into(),
        &[("GRPC_VERBOSITY", "debug"), ("GRPC_TRACE", "http")],
    )
}

#[test]
fn a_real_grpc_server_passes_and_fails_as_the_kubelet_decides() {
    let dir = TempDir::new("grpc-real");
    let log = dir.file("server.log");
    let Some(mut server) = grpc_server(&[], &log) else {
        return;
    };
    let url = format!("grpc://127.0.0.1:{}", server.port);
    let mut calls = 0;
    let mut expect = |target: &str, code: i32, says: &str| {
        let (status, out) = check(&[target]);
        assert_eq!(status, code, "{target}: {out}");
        assert!(out.contains(says), "{target}: {out}");
        calls += 1;
    };
    expect(&url, 0, "ok grpc://");
    expect(&format!("{url}/"), 0, "ok grpc://");
    expect(
        &format!("{url}/no.such.Service"),
        1,
        "health rpc failed: NOT_FOUND",
    );
    // Services with dots and slashes, in each status.
    for (service, status, code, says) in [
        ("my.pkg.Svc", "SERVING", 0, "ok grpc://"),
        ("my.pkg/Svc", "SERVING", 0, "ok grpc://"),
        (
            "my.pkg.Svc",
            "NOT_SERVING",
            1,
            "service unhealthy (responded with \"NOT_SERVING\")",
        ),
        (
            "my.pkg.Svc",
            "UNKNOWN",
            1,
            "service unhealthy (responded with \"UNKNOWN\")",
        ),
        (
            "my.pkg.Svc",
            "SERVICE_UNKNOWN",
            1,
            "service unhealthy (responded with \"SERVICE_UNKNOWN\")",
        ),
    ] {
        server.tell(&format!("set {service} {status}"));
        expect(&format!("{url}/{service}"), code, says);
    }
    // The server's overall health is the empty service.
    server.tell("set - NOT_SERVING");
    expect(&url, 1, "responded with \"NOT_SERVING\"");
    server.quit();
    // Every call ended with our GOAWAY, and none with a reset: the server
    // has no connection error to log.
    let log = std::fs::read_to_string(&log).unwrap();
    let goaways = log.matches("got goaway with last stream id 0").count();
    assert_eq!(goaways, calls, "GOAWAYs the server got, for {calls} calls");
    for noise in ["reset by peer", "Broken pipe", "Connection refused"] {
        assert!(!log.contains(noise), "the server logged {noise:?}");
    }
    // No line at grpc's ERROR level (`E1206 10:15:01.123 ...`).
    let errors = log
        .lines()
        .filter(|l| l.starts_with('E') && l[1..].starts_with(|c: char| c.is_ascii_digit()));
    assert_eq!(errors.count(), 0, "the server logged errors:\n{log}");
}

#[test]
fn a_server_without_the_health_service_is_unimplemented() {
    let dir = TempDir::new("grpc-nohealth");
    let Some(server) = grpc_server(&["--no-health"], &dir.file("server.log")) else {
        return;
    };
    let (status, out) = check(&[&format!("grpc://127.0.0.1:{}", server.port)]);
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains(
            "this server does not implement the gRPC health protocol (grpc.health.v1.Health)"
        ),
        "{out}"
    );
}

/// A probe's (runs, first run of the current streak) from /status.
fn streak(server: &Server) -> (u64, bool, u64) {
    let text = server.get("/status?format=json").text();
    let number = |key: &str| -> u64 {
        let at = text.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
        text[at..]
            .split([',', '}'])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let passes = text.contains("\"passes\":true");
    let runs = number("runs");
    let streak = number(if passes {
        "consecutive_successes"
    } else {
        "consecutive_failures"
    });
    (runs, passes, runs + 1 - streak)
}

#[test]
fn the_probe_flips_with_the_servers_status_within_two_periods() {
    let dir = TempDir::new("grpc-flip");
    let Some(mut grpc) = grpc_server(&[], &dir.file("server.log")) else {
        return;
    };
    let server = Server::start(&[
        &format!("--cmd=grpc://127.0.0.1:{}", grpc.port),
        "--period=100ms",
    ]);
    server.wait_status("/healthz", 200);
    for (status, passes) in [("NOT_SERVING", false), ("SERVING", true)] {
        grpc.tell(&format!("set - {status}"));
        // Runs counted now may have asked before the change; the second
        // run after it must see it.
        let (runs_before, _, _) = streak(&server);
        let (_, _, first) = eventually("the probe to flip", || {
            let now = streak(&server);
            (now.1 == passes).then_some(now)
        });
        assert!(
            first <= runs_before + 2,
            "flipped to {status} at run {first}, {runs_before} runs when it changed"
        );
        let answer = server.get("/healthz");
        if passes {
            assert_eq!(answer.status, 200, "{}", answer.text());
        } else {
            assert_eq!(answer.status, 503);
            assert!(
                answer
                    .text()
                    .contains("error service unhealthy (responded with \"NOT_SERVING\")"),
                "{}",
                answer.text()
            );
        }
    }
}

#[test]
fn timeouts_say_which_step_ran_out() {
    // A listener whose queue is full: connect never completes.
    let Some(full) = Tool::start("h2_peer.py", &["backlog-full"], Stdio::null(), &[]) else {
        return;
    };
    // A server that accepts (the kernel does) and never sends its
    // HTTP/2 preface: not connected either, in gRPC's (and the kubelet's)
    // sense.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    for port in [full.port, silent_port] {
        let server = Server::start(&[
            &format!("--cmd=grpc://127.0.0.1:{port}/svc"),
            "--timeout=300ms",
            "--period=10ms",
        ]);
        let reason = format!(
            "error grpc check of grpc://127.0.0.1:{port}/svc: timeout: failed to connect \
             service \"127.0.0.1:{port}\" within 300ms"
        );
        server.wait_for("/healthz", |r| {
            r.status == 503 && r.text().contains(&reason)
        });
        let metrics = server.get("/metrics").text();
        assert!(
            !metrics.contains("exechealthz_probe_timeouts_total{probe=\"/healthz\"} 0"),
            "{metrics}"
        );
    }
    // Ready (its SETTINGS came), then no answer: the call timed out. (A
    // 2 s timeout: a loaded machine's Python may take a while to send its
    // SETTINGS, and then the connection was not ready, rightly.)
    let Some(ready) = Tool::start("h2_peer.py", &["settings-then-silent"], Stdio::null(), &[])
    else {
        return;
    };
    let (status, out) = check(&[
        "--timeout=2s",
        &format!("grpc://127.0.0.1:{}/svc", ready.port),
    ]);
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains(&format!(
            "grpc check of grpc://127.0.0.1:{}/svc: health rpc timed out after 2s",
            ready.port
        )),
        "{out}"
    );
    // The one deadline holds for the whole call.
    let start = Instant::now();
    let (status, out) = check(&[
        "--timeout=300ms",
        &format!("grpc://127.0.0.1:{silent_port}"),
    ]);
    assert_eq!(status, 1, "{out}");
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_closed_port_and_an_http1_server_fail_with_their_reasons() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap().port();
    drop(listener);
    let (status, out) = check(&[&format!("grpc://127.0.0.1:{closed}")]);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("Connection refused"), "{out}");
    // Our own server is a plain HTTP/1.1 server.
    let http1 = Server::start(&["--cmd=true"]);
    let (status, out) = check(&[&format!("grpc://127.0.0.1:{}", http1.address.port())]);
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains("not an HTTP/2 server: it answered in HTTP/1 (HTTP/1.1 "),
        "{out}"
    );
}

/// Runs the check against `h2_peer.py SCENARIO`: check's exit status and
/// output, and what the peer saw.
fn against(scenario: &str, service: &str) -> Option<(i32, String, String)> {
    let peer = Tool::start("h2_peer.py", &[scenario], Stdio::inherit(), &[])?;
    let (status, out) = check(&[
        "--timeout=3s",
        &format!("grpc://127.0.0.1:{}/{service}", peer.port),
    ]);
    let mut peer = peer;
    Some((status, out, peer.report()))
}

#[test]
fn scripted_peers_that_answer_serving_pass() {
    for scenario in [
        "serving",
        // grpc-go decides at the trailers: what comes after is dropped.
        "message-after-trailers",
        "continuation",
        "padded-priority",
        "ping-first",
        "goaway-then-answer",
    ] {
        let Some((status, out, saw)) = against(scenario, "svc") else {
            return;
        };
        assert_eq!(status, 0, "{scenario}: {out}\npeer: {saw}");
        assert!(!saw.contains("error"), "{scenario}: {saw}");
        assert!(saw.contains("client-goaway 0\n"), "{scenario}: {saw}");
        assert!(saw.contains("settings-acked"), "{scenario}: {saw}");
        assert!(saw.contains("request-message 5\n"), "{scenario}: {saw}");
        if scenario == "serving" {
            // The request, as a gRPC client makes it (HPACK-decoded by the
            // peer), for the service named in the URL.
            for header in [
                ":method: POST",
                ":scheme: http",
                ":path: /grpc.health.v1.Health/Check",
                "content-type: application/grpc",
                "te: trailers",
                "user-agent: exechealthz/",
                "grpc-timeout: ",
            ] {
                assert!(
                    saw.contains(&format!("request-header {header}")),
                    "{header}: {saw}"
                );
            }
            assert!(saw.contains("request-service svc\n"), "{saw}");
            let millis: u32 = saw
                .split("request-header grpc-timeout: ")
                .nth(1)
                .and_then(|rest| rest.split('m').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!((1..=3000).contains(&millis), "grpc-timeout {millis}m");
        }
        if scenario == "ping-first" {
            assert!(saw.contains("ping-acked 70696e67706f6e67"), "{saw}");
        }
    }
}

#[test]
fn a_server_that_talks_on_after_its_answer_does_not_hold_the_check() {
    // It sends PINGs for 4 s after answering; waiting for it to close
    // (so our close is clean) stops after 100 ms, well within --timeout.
    let Some(peer) = Tool::start("h2_peer.py", &["chatty"], Stdio::null(), &[]) else {
        return;
    };
    let start = Instant::now();
    let (status, out) = check(&["--timeout=3s", &format!("grpc://127.0.0.1:{}", peer.port)]);
    assert_eq!(status, 0, "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

/// A service name is percent-decoded: one with a space, `?` or `#` can
/// be asked for; the request's message names it decoded.
#[test]
fn a_service_name_is_percent_decoded() {
    let Some((status, out, saw)) = against("serving", "a%20b%3Fc%23d") else {
        return;
    };
    assert_eq!(status, 0, "{out}\npeer: {saw}");
    assert!(saw.contains("request-service a b?c#d\n"), "{saw}");
    assert!(saw.contains("request-message 9\n"), "{saw}");
}

#[test]
fn requests_keep_to_the_servers_frame_size_and_windows() {
    // A 20,000-byte service name: its DATA needs two frames of 16 KiB.
    let long = "s".repeat(20_000);
    let Some((status, out, saw)) = against("small-frames", &long) else {
        return;
    };
    assert_eq!(status, 0, "{out}\npeer: {saw}");
    // 5 bytes of gRPC prefix, 4 of protobuf tag and length, then the name.
    assert!(saw.contains("data-frames 16384,3625\n"), "{saw}");
    assert!(saw.contains("request-message 20004\n"), "{saw}");
    // A stream window of 0: no DATA until WINDOW_UPDATE, then 3 bytes.
    let (status, out, saw) = against("zero-window", "svc").unwrap();
    assert_eq!(status, 0, "{out}\npeer: {saw}");
    assert!(!saw.contains("error"), "{saw}");
    assert!(saw.contains("first-data 3\n"), "{saw}");
    assert!(saw.contains("data-frames 3,7\n"), "{saw}");
}

#[test]
fn scripted_peers_fail_with_their_reasons() {
    for (scenario, says) in [
        (
            "not-serving",
            "service unhealthy (responded with \"NOT_SERVING\")",
        ),
        (
            "trailers-only",
            "this server does not implement the gRPC health protocol \
             (grpc.health.v1.Health): Method not found!",
        ),
        (
            "rst",
            "the server reset the stream (RST_STREAM REFUSED_STREAM)",
        ),
        (
            "goaway",
            "the server closed the connection before the answer \
             (GOAWAY ENHANCE_YOUR_CALM: \"too_many_pings\")",
        ),
        (
            "short-frame",
            "connection closed in the middle of the answer",
        ),
        (
            "oversized-frame",
            "a frame of 20000 bytes, over the 16384 we allow (FRAME_SIZE_ERROR)",
        ),
        ("huge-headers", "a header block over 16 KiB"),
        ("big-message", "a response body over 4101 bytes"),
        (
            "bad-max-frame",
            "SETTINGS_MAX_FRAME_SIZE 100, outside 16384",
        ),
        ("status-404", "HTTP status 404 (want 200 and a gRPC answer)"),
        ("not-grpc", "content-type \"text/html\" is not gRPC"),
        (
            "garbage",
            "not an HTTP/2 server: its first bytes are not a SETTINGS frame",
        ),
        (
            "http1",
            "not an HTTP/2 server: it answered in HTTP/1 (HTTP/1.1 400 Bad Request)",
        ),
        // grpc-go's rules, where a looser reading would pass.
        (
            "status-in-headers",
            "the server closed the stream without sending trailers (no grpc-status)",
        ),
        (
            "two-grpc-statuses",
            "malformed gRPC answer: grpc-status twice in one header block",
        ),
        ("two-http-statuses", "malformed response: :status twice"),
        (
            "two-content-types",
            "malformed gRPC answer: content-type twice in one header block",
        ),
        (
            "two-messages",
            "more than one message in a unary answer (7 bytes after a message of 2)",
        ),
        ("no-message", "the answer has no message"),
    ] {
        let Some((status, out, saw)) = against(scenario, "svc") else {
            return;
        };
        assert_eq!(status, 1, "{scenario}: {out}\npeer: {saw}");
        assert!(out.contains(says), "{scenario}: {out}\npeer: {saw}");
        assert!(!saw.contains("error"), "{scenario}: {saw}");
    }
}

#[test]
fn bad_grpc_urls_are_start_up_errors_naming_the_flag() {
    for (url, says) in [
        ("grpc://localhost", "missing :PORT"),
        ("grpc://localhost:x", "bad port x"),
        ("grpc://localhost:99999", "bad port 99999"),
        ("grpc://localhost:80/a b", "no spaces"),
        ("grpc://localhost:80/svc?x=1", "with no query"),
        ("grpc://localhost:80/svc#frag", "unknown option \"frag\""),
        (
            "grpc://localhost:80/svc#header=A:b",
            "option \"header\" does not apply to grpc://",
        ),
        (
            "grpc://localhost:80/a%zz",
            "bad percent-escape in the service name",
        ),
        (
            "grpcs://localhost:443#server-name=a..b",
            if cfg!(feature = "tls") {
                "write a DNS name"
            } else {
                "TLS is not in this build; use the TLS build (exechealthz-tls"
            },
        ),
    ] {
        let output = run_to_end(&[&format!("--cmd={url}")]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains("--cmd number 1"), "{url}: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
    }
}

/// A peer's grpc-message that decodes to ESC, BEL and NUL reaches no
/// output raw: `check`'s stdout, the 503 body and /status show escapes;
/// printable UTF-8 stays as it is.
#[test]
fn a_peers_control_characters_are_escaped_everywhere_they_are_shown() {
    let escaped = "health rpc failed: UNAVAILABLE: \\x1b[31mred\\x07\\x00end café";
    let Some((status, out, _)) = against("escape-message", "svc") else {
        return;
    };
    assert_eq!(status, 1, "{out}");
    assert!(out.contains(escaped), "{out:?}");
    assert!(!out.contains(['\u{1b}', '\u{7}', '\0']), "{out:?}");
    let Some(peer) = Tool::start("h2_peer.py", &["escape-message"], Stdio::inherit(), &[]) else {
        return;
    };
    let server = Server::start(&[
        &format!("--cmd=grpc://127.0.0.1:{}/svc", peer.port),
        "--period=1h",
    ]);
    let body = server
        .wait_for("/healthz", |r| r.text().contains("Result of last exec"))
        .text();
    assert!(body.contains(escaped), "{body:?}");
    for path in ["/healthz", "/status", "/status?format=json"] {
        let text = server.get(path).text();
        assert!(
            !text.contains(['\u{1b}', '\u{7}', '\0']),
            "{path}: {text:?}"
        );
        assert!(text.contains("end café"), "{path}: {text:?}");
    }
}
