//! Probes that need no shell: --shell none and the built-in tcp, http,
//! file and dns checks, against real peers started here.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::Command;

fn failing(server: &Server, needle: &str) -> Response {
    let response = server.wait_for("/healthz", |r| r.text().contains(needle));
    assert_eq!(response.status, 503, "{}", response.text());
    response
}

#[test]
fn shell_none_runs_words_directly() {
    let server = Server::start(&["--shell=none", "--cmd=/bin/sh -c 'exit 3'", "--period=10ms"]);
    assert!(
        failing(&server, "Result of last exec")
            .text()
            .ends_with("error exit status 3\n")
    );
    let quoted = Server::start(&[
        "--shell",
        "none",
        r#"--cmd=printf '%s|' 'a b' "c \"d\"" e\ f $HOME"#,
        "--output",
        "--period=1h",
    ]);
    assert_eq!(
        quoted.wait_status("/healthz", 200).text(),
        "a b|c \"d\"|e f|$HOME|"
    );
}

#[test]
fn shell_flag_chooses_the_shell() {
    let server = Server::start(&[
        "--shell=/bin/sh -e -c",
        "--cmd=false; echo not reached",
        "--period=1h",
    ]);
    assert!(
        failing(&server, "Result of last exec")
            .text()
            .ends_with(", error exit status 1\n")
    );
}

#[test]
fn tcp_check() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server::start(&[&format!("--cmd=tcp://127.0.0.1:{port}"), "--period=10ms"]);
    server.wait_status("/healthz", 200);
    drop(listener);
    let response = failing(&server, "Connection refused");
    assert!(
        response
            .text()
            .contains(&format!("connect 127.0.0.1:{port}")),
        "{}",
        response.text()
    );
}

/// An HTTP peer answering every request on `path` with `status`.
fn http_peer(path: &'static str, status: &str) -> u16 {
    let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    scripted_peer(vec![(path, Some(answer.into_bytes()))]).0
}

#[test]
fn http_check_passes_on_200_to_399() {
    for status in ["200 OK", "302 Found"] {
        let port = http_peer("/ready", status);
        let server = Server::start(&[
            &format!("--cmd=http://localhost:{port}/ready"),
            "--output",
            "--period=10ms",
        ]);
        assert_eq!(
            server.wait_status("/healthz", 200).text(),
            format!("HTTP/1.1 {status}")
        );
    }
    let port = http_peer("/", "500 Internal Server Error");
    let server = Server::start(&[&format!("--cmd=http://127.0.0.1:{port}/"), "--period=10ms"]);
    let text = failing(&server, "HTTP status").text();
    assert!(
        text.contains("Result of last exec: HTTP/1.1 500 Internal Server Error, at"),
        "{text}"
    );
    assert!(
        text.ends_with("error HTTP status 500 (want 200-399)\n"),
        "{text}"
    );
}

/// An HTTP peer answering each path with canned bytes (`None`: the status
/// line, then silence); records the request heads it got. Its port.
fn scripted_peer(
    routes: Vec<(&'static str, Option<Vec<u8>>)>,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let heads = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            heads.lock().unwrap().push(head);
            let answer = routes
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, a)| a.clone());
            match answer {
                Some(Some(bytes)) => {
                    let _ = stream.write_all(&bytes);
                }
                Some(None) => {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n");
                    // Silence, on a thread of its own, until the test ends.
                    std::thread::spawn(move || {
                        std::thread::sleep(std::time::Duration::from_secs(30));
                        drop(stream);
                    });
                }
                None => {
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                }
            }
        }
    });
    (port, seen)
}

fn answer(head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = head.replace('\n', "\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    Some(bytes)
}

#[test]
fn http_check_follows_redirects_and_reads_responses_as_the_kubelet() {
    let big = vec![b'x'; 1 << 20];
    let (port, seen) = scripted_peer(vec![
        (
            "/302-to-500",
            answer(
                "HTTP/1.1 302 Found\nLocation: /500\nContent-Length: 0\n",
                b"",
            ),
        ),
        (
            "/500",
            answer(
                "HTTP/1.1 500 Internal Server Error\nContent-Length: 4\n",
                b"down",
            ),
        ),
        (
            "/301-to-404",
            answer(
                "HTTP/1.1 301 Moved\nLocation: /missing\nContent-Length: 0\n",
                b"",
            ),
        ),
        (
            "/loop",
            answer(
                "HTTP/1.1 302 Found\nLocation: /loop\nContent-Length: 0\n",
                b"",
            ),
        ),
        (
            "/elsewhere",
            answer(
                "HTTP/1.1 302 Found\nLocation: http://other.invalid/x\nContent-Length: 0\n",
                b"",
            ),
        ),
        (
            "/relative",
            answer(
                "HTTP/1.1 307 Temporary Redirect\nLocation: ok\nContent-Length: 0\n",
                b"",
            ),
        ),
        ("/ok", answer("HTTP/1.1 200 OK\nContent-Length: 2\n", b"ok")),
        (
            "/early-hints",
            answer(
                "HTTP/1.1 103 Early Hints\nLink: </a.css>\n\nHTTP/1.1 200 OK\nContent-Length: 2\n",
                b"ok",
            ),
        ),
        ("/silent", None),
        (
            "/malformed",
            answer(
                "HTTP/1.1 200 OK\nBad Header Name: x\nContent-Length: 0\n",
                b"",
            ),
        ),
        (
            "/big",
            answer(
                &format!("HTTP/1.1 200 OK\nContent-Length: {}\n", big.len()),
                &big,
            ),
        ),
        (
            "/chunked",
            answer(
                "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n",
                b"2\r\nok\r\n0\r\n\r\n",
            ),
        ),
        (
            "/cut",
            answer("HTTP/1.1 200 OK\nContent-Length: 100\n", b"only ten b"),
        ),
        (
            "/cut-chunked",
            answer(
                "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n",
                b"10\r\nshort",
            ),
        ),
    ]);
    let url = |path: &str| format!("--cmd=http://127.0.0.1:{port}{path}");
    let mut args = vec!["--period=20ms".to_string(), "--timeout=500ms".to_string()];
    let cases = [
        ("/302-to-500", Some("HTTP status 500")),
        ("/301-to-404", Some("HTTP status 404")),
        ("/loop", Some("stopped after 10 redirects")),
        ("/elsewhere", None),
        ("/relative", None),
        ("/early-hints", None),
        ("/silent", Some("timed out after 500ms")),
        ("/malformed", Some("malformed response")),
        ("/big", None),
        ("/chunked", None),
        ("/cut", Some("cut short after 10 of 100 bytes")),
        ("/cut-chunked", Some("cut short")),
    ];
    for (i, (path, _)) in cases.iter().enumerate() {
        args.push(url(path));
        args.push(format!("--url=/c{i}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    for (i, (path, failure)) in cases.iter().enumerate() {
        let probe = format!("/c{i}");
        match failure {
            None => {
                server.wait_status(&probe, 200);
            }
            Some(why) => {
                let answer = server.wait_for(&probe, |r| {
                    r.status == 503 && r.text().contains("Result of last exec")
                });
                assert!(answer.text().contains(why), "{path}: {}", answer.text());
            }
        }
    }
    server.wait_log(|l| {
        l.contains("is redirected to another host (http://other.invalid/x); not followed")
    });
    let heads = seen.lock().unwrap().clone();
    let first = heads
        .iter()
        .find(|h| h.starts_with("GET /ok "))
        .expect("a request for /ok");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        first.contains(&format!("\r\nUser-Agent: exechealthz/{version}\r\n")),
        "{first}"
    );
    assert!(first.contains("\r\nAccept: */*\r\n"), "{first}");
}

#[test]
fn http_check_times_out_on_a_silent_peer() {
    // Accepts connections (the kernel does) and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server::start(&[
        &format!("--cmd=http://127.0.0.1:{port}/"),
        "--timeout=200ms",
        "--period=10ms",
    ]);
    let answer = failing(
        &server,
        &format!("error http check of http://127.0.0.1:{port}/ timed out after 200ms"),
    );
    assert!(
        !answer.text().contains("process group"),
        "{}",
        answer.text()
    );
    drop(listener);
}

#[test]
fn checks_time_out_after_a_second_by_default() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server::start(&[&format!("--cmd=http://127.0.0.1:{port}/"), "--period=10ms"]);
    let line = server.wait_log(|l| l.contains("probe /healthz: running"));
    assert!(line.ends_with("(timeout 1s)"), "{line}");
    failing(
        &server,
        &format!("error http check of http://127.0.0.1:{port}/ timed out after 1s"),
    );
    drop(listener);
}

#[test]
fn a_cmd_with_a_builtin_scheme_must_be_a_check() {
    for (cmd, says) in [
        ("http://localhost/a b", "no spaces"),
        ("tcp://localhost", "missing :PORT"),
        // The build without TLS names the one with it; the TLS build
        // checks the options.
        (
            "https://localhost/healthz#ca=",
            if cfg!(feature = "tls") {
                "write a file's path"
            } else {
                "TLS is not in this build; use the TLS build (exechealthz-tls"
            },
        ),
        ("HTTP://x:notaport/", "bad port"),
    ] {
        let output = run_to_end(&[&format!("--cmd={cmd}")]);
        assert_eq!(output.status.code(), Some(2), "{cmd}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--cmd number 1") && stderr.contains(says),
            "{cmd}: {stderr}"
        );
    }
}

#[test]
fn file_check() {
    let dir = TempDir::new("filecheck");
    let path = dir.file("ready");
    let server = Server::start(&[&format!("--cmd=file://{path}"), "--period=10ms"]);
    failing(&server, "No such file or directory");
    std::fs::write(&path, "").unwrap();
    server.wait_status("/healthz", 200);
}

/// A DNS peer: answers `ok.test` with one A record, anything else with
/// NXDOMAIN; `silent` never answers.
fn dns_peer(silent: bool) -> (UdpSocket, u16) {
    dns_peer_on("127.0.0.1:0", silent)
}

fn dns_peer_at(address: &str) -> (UdpSocket, u16) {
    dns_peer_on(address, false)
}

fn dns_peer_on(address: &str, silent: bool) -> (UdpSocket, u16) {
    let socket = UdpSocket::bind(address).unwrap();
    let port = socket.local_addr().unwrap().port();
    let peer = socket.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 512];
        while let Ok((n, from)) = peer.recv_from(&mut buffer) {
            if silent || n < 12 {
                continue;
            }
            let query = &buffer[..n];
            // The question: labels from offset 12 to the zero byte, then type, class.
            let end = 12 + query[12..].iter().position(|b| *b == 0).unwrap() + 1;
            let qtype = u16::from_be_bytes([query[end], query[end + 1]]);
            let known = &query[12..end] == b"\x02ok\x04test\x00";
            let mut reply = query[..end + 4].to_vec();
            reply[2] = 0x81; // answer, RD
            reply[3] = if known { 0x80 } else { 0x83 }; // RA; NOERROR or NXDOMAIN
            if known && qtype == 1 {
                reply[7] = 1; // one answer
                reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 1, 2, 3]);
            }
            let _ = peer.send_to(&reply, from);
        }
    });
    (socket, port)
}

#[test]
fn dns_check() {
    let (_peer, port) = dns_peer(false);
    let server = Server::start(&[
        &format!("--cmd=dns://127.0.0.1:{port}/ok.test"),
        "--output",
        "--period=10ms",
    ]);
    let text = server.wait_status("/healthz", 200).text();
    assert!(text.starts_with("ok.test: 1 A record(s)"), "{text}");
    let missing = Server::start(&[
        &format!("--cmd=dns://127.0.0.1:{port}/missing.test"),
        "--period=10ms",
    ]);
    let text = failing(&missing, "NXDOMAIN").text();
    assert!(
        text.contains("missing.test: NXDOMAIN from 127.0.0.1"),
        "{text}"
    );
}

#[test]
fn dns_check_times_out_on_a_silent_server() {
    let (_peer, port) = dns_peer(true);
    let server = Server::start(&[
        &format!("--cmd=dns://127.0.0.1:{port}/ok.test"),
        "--timeout=200ms",
        "--period=10ms",
    ]);
    failing(&server, "error dns check of ok.test timed out after 200ms");
}

#[test]
fn checks_show_in_metrics_and_status_like_commands() {
    let server = Server::start(&["--cmd=file:///nonexistent-exechealthz", "--period=10ms"]);
    failing(&server, "nonexistent");
    let status = server.get("/status").text();
    assert!(
        status.starts_with("[-]/healthz failed: /nonexistent-exechealthz: No such file"),
        "{status}"
    );
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("exechealthz_probe_last_exit_code{probe=\"/healthz\"} 1"),
        "{metrics}"
    );
}

#[test]
fn unknown_schemes_are_start_up_errors() {
    let output = run_to_end(&["--cmd=gopher://x/y"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown scheme gopher://"), "{stderr}");
}

#[test]
fn tcp_check_on_a_bracketed_ipv6_address() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let server = Server::start(&[
        &format!("--cmd=tcp://[::1]:{port}"),
        "--output",
        "--period=1h",
    ]);
    assert_eq!(
        server.wait_status("/healthz", 200).text(),
        format!("connected to [::1]:{port}")
    );
}

/// UDP port 53 of loopback address `ip`, bound, where a private mount
/// namespace can be made (so that its own /etc/resolv.conf can name it);
/// `None`, the test skipped, where either needs root that we lack.
fn port_53_in_a_mount_namespace(ip: &str) -> Option<UdpSocket> {
    let ok = Command::new("unshare")
        .args(["--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let Ok(socket) = UdpSocket::bind(format!("{ip}:53")) else {
        eprintln!("SKIPPED: cannot bind {ip}:53 (needs root)");
        return None;
    };
    if !ok {
        eprintln!("SKIPPED: cannot create a mount namespace (needs root)");
        return None;
    }
    Some(socket)
}

#[test]
fn dns_check_without_a_server_uses_resolv_conf() {
    // A private mount namespace whose /etc/resolv.conf names our peer; it
    // must listen on port 53, so it takes a loopback address of its own.
    let Some(socket) = port_53_in_a_mount_namespace("127.0.0.77") else {
        return;
    };
    drop(socket);
    let (_peer, _) = dns_peer_at("127.0.0.77:53");
    let dir = TempDir::new("resolv");
    let conf = dir.file("resolv.conf");
    std::fs::write(&conf, "search example.invalid\nnameserver 127.0.0.77\n").unwrap();
    let mut command = Command::new("unshare");
    command.args(["--mount", "/bin/sh", "-c"]).arg(format!(
        "mount --bind {conf} /etc/resolv.conf && exec {BIN} --cmd=dns:///ok.test --output --period=1h --port=0"
    ));
    let server = Server::start_command(command);
    let text = server.wait_status("/healthz", 200).text();
    assert!(
        text.starts_with("ok.test: 1 A record(s) from 127.0.0.77:53"),
        "{text}"
    );
    // The search list, as glibc and nslookup use it: `ok` (fewer dots than
    // ndots 1) is asked with each domain first; `ok.` only as written;
    // a name found nowhere names every one tried.
    std::fs::write(
        &conf,
        "search example.invalid test\nnameserver 127.0.0.77\n",
    )
    .unwrap();
    let output = Command::new("unshare")
        .args(["--mount", "/bin/sh", "-c"])
        .arg(format!(
            "mount --bind {conf} /etc/resolv.conf && exec {BIN} check dns:///ok dns:///ok. dns:///nope"
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "ok dns:///ok", "{stdout}");
    assert_eq!(lines[1], "failed dns:///ok.: NXDOMAIN", "{stdout}");
    assert_eq!(lines[2], "failed dns:///nope: NXDOMAIN", "{stdout}");
    let server = Server::start_command({
        let mut command = Command::new("unshare");
        command.args(["--mount", "/bin/sh", "-c"]).arg(format!(
            "mount --bind {conf} /etc/resolv.conf && exec {BIN} --cmd=dns:///nope --output --period=1h --port=0"
        ));
        command
    });
    let text = server
        .wait_for("/healthz", |r| r.text().contains("Result of last exec"))
        .text();
    assert!(
        text.contains(
            "nope: NXDOMAIN from 127.0.0.77:53 (also tried nope.example.invalid, nope.test)"
        ),
        "{text}"
    );
}

/// The kubelet's redirect rule at its edge: its checker refuses the
/// request that would follow a 10th redirect (`len(via) >= 10`), so a
/// chain of 9 redirects passes (10 requests) and one of 10 fails, in the
/// server and in `check`, after exactly 10 requests.
#[test]
fn http_check_makes_at_most_ten_requests_as_the_kubelet() {
    const HOPS: [&str; 11] = [
        "/r0", "/r1", "/r2", "/r3", "/r4", "/r5", "/r6", "/r7", "/r8", "/r9", "/r10",
    ];
    let mut routes = vec![("/r0", answer("HTTP/1.1 200 OK\nContent-Length: 2\n", b"ok"))];
    for hop in 1..HOPS.len() {
        let head = format!(
            "HTTP/1.1 302 Found\nLocation: {}\nContent-Length: 0\n",
            HOPS[hop - 1]
        );
        routes.push((HOPS[hop], answer(&head, b"")));
    }
    let (port, seen) = scripted_peer(routes);
    let nine = format!("http://127.0.0.1:{port}/r9");
    let ten = format!("http://127.0.0.1:{port}/r10");
    let (code, lines, stderr) = check(&[&nine]);
    assert_eq!((code, lines), (0, vec![format!("ok {nine}")]), "{stderr}");
    assert_eq!(seen.lock().unwrap().len(), 10);
    seen.lock().unwrap().clear();
    let (code, lines, _) = check(&[&ten]);
    assert_eq!(code, 1);
    assert!(
        lines[0].ends_with(&format!(
            "stopped after 10 redirects (last to http://127.0.0.1:{port}/r0)"
        )),
        "{lines:?}"
    );
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 10, "{heads:?}");
    assert!(
        !heads.iter().any(|h| h.starts_with("GET /r0 ")),
        "{heads:?}"
    );
    let server = Server::start(&[&format!("--cmd={ten}"), "--period=1h"]);
    let text = server
        .wait_for("/healthz", |r| r.text().contains("Result of last exec"))
        .text();
    assert!(text.contains("stopped after 10 redirects"), "{text}");
}

/// A resolver that takes queries and never answers, named by a private
/// mount namespace's own /etc/resolv.conf (5 s a try, 3 tries: glibc's
/// lookup would hang for 15 s): the lookup is bounded by `--timeout` as
/// every other phase is, runs go on at their period, and a lookup still
/// stuck holds one thread, not one per run.
#[test]
fn a_hanging_name_lookup_is_bounded_by_the_timeout() {
    let Some(silent) = port_53_in_a_mount_namespace("127.0.0.78") else {
        return;
    };
    let dir = TempDir::new("resolv-hangs");
    let conf = dir.file("resolv.conf");
    std::fs::write(
        &conf,
        "nameserver 127.0.0.78\noptions timeout:5 attempts:3\n",
    )
    .unwrap();
    let in_namespace = |args: &str| {
        let mut command = Command::new("unshare");
        command.args(["--mount", "/bin/sh", "-c"]).arg(format!(
            "mount --bind {conf} /etc/resolv.conf && exec {BIN} {args}"
        ));
        command
    };
    let server = Server::start_command(in_namespace(
        "--cmd=http://svc.test:18080/ --period=200ms --timeout=1s --port=0",
    ));
    let text = server
        .wait_for("/healthz", |r| r.text().contains("Result of last exec"))
        .text();
    assert!(
        text.contains("http check of http://svc.test:18080/: name resolution timed out after 1s"),
        "{text}"
    );
    let lookups = || {
        std::fs::read_dir(format!("/proc/{}/task", server.pid()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.trim() == "lookup")
            .count()
    };
    // Runs follow each other at the timeout's pace while the first lookup
    // is still stuck (it would return at 15 s), on that one thread.
    eventually("4 runs while the lookup hangs", || {
        let metrics = server.get("/metrics").text();
        assert!(lookups() <= 1, "{} lookup threads", lookups());
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("exechealthz_probe_runs_total{probe=\"/healthz\"} "))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&runs| runs >= 4)
    });
    assert!(silent.local_addr().is_ok());
    let output = in_namespace("check --timeout 300ms http://svc.test:18080/ grpc://svc.test:1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "failed http://svc.test:18080/: http check of http://svc.test:18080/: \
             name resolution timed out after 300ms"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("grpc check of grpc://svc.test:1/: name resolution timed out"),
        "{stdout}"
    );
}

/// A header's value is a peer's text: a C1 control in it (obs-text, which
/// HTTP allows there; httparse drops a reason phrase that has any) is
/// escaped in `check`'s line and in the 503 body. (The build without TLS
/// only: its refusal of the https:// redirect carries the location; the
/// TLS build follows it. The escaping is the same code in both.)
#[test]
#[cfg(not(feature = "tls"))]
fn a_peers_header_text_is_shown_escaped() {
    let (port, _) = scripted_peer(vec![(
        "/",
        answer(
            "HTTP/1.1 302 Found\nLocation: https://127.0.0.1/\u{9b}31m\u{85}caf\u{e9}\nContent-Length: 0\n",
            b"",
        ),
    )]);
    let target = format!("http://127.0.0.1:{port}/");
    let escaped = "redirected to https://127.0.0.1/\\u{9b}31m\\u{85}caf\u{e9}";
    let (code, lines, _) = check(&[&target]);
    assert_eq!(code, 1);
    assert!(lines[0].contains(escaped), "{lines:?}");
    assert!(!lines[0].contains(['\u{85}', '\u{9b}']), "{lines:?}");
    let server = Server::start(&[&format!("--cmd={target}"), "--period=1h"]);
    let body = server
        .wait_for("/healthz", |r| r.text().contains("Result of last exec"))
        .text();
    assert!(body.contains(escaped), "{body:?}");
    assert!(!body.contains(['\u{85}', '\u{9b}']), "{body:?}");
}

/// A redirect to another host is a state, logged when it starts and when
/// it stops, with the probe's URL: not a line per run.
#[test]
fn a_redirect_to_another_host_is_logged_when_it_starts_and_stops() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let away = Arc::new(AtomicBool::new(true));
    let answers = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (flag, count) = (Arc::clone(&away), Arc::clone(&answers));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let answer: &[u8] = if flag.load(Ordering::SeqCst) {
                b"HTTP/1.1 302 Found\r\nLocation: http://other.invalid/x\r\nContent-Length: 0\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            };
            let _ = stream.write_all(answer);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let server = Server::start(&[
        &format!("--cmd=http://127.0.0.1:{port}/here"),
        "--url=/probe",
        "--period=10ms",
    ]);
    let line = server.wait_log(|l| l.contains("redirected to another host"));
    assert!(
        line.contains(&format!(
            "probe /probe: http://127.0.0.1:{port}/here is redirected to another host \
             (http://other.invalid/x); not followed, and its answer judged, as the kubelet does"
        )),
        "{line}"
    );
    eventually("20 redirected runs", || {
        (answers.load(Ordering::SeqCst) >= 20).then_some(())
    });
    away.store(false, Ordering::SeqCst);
    server.wait_log(|l| l.contains("probe /probe: no longer redirected to another host"));
    let logs = server.logs();
    let told = logs.iter().filter(|l| l.contains("another host")).count();
    assert_eq!(told, 2, "{logs:#?}");
}

// `exechealthz check TARGET...`: the same checks, run once.

/// Runs `exechealthz check ARGS`: exit status, stdout lines, stderr.
fn check(args: &[&str]) -> (i32, Vec<String>, String) {
    let output = Command::new(BIN).arg("check").args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Why the server's probe of `target` fails: the end of its 503 body.
fn server_reason(target: &str) -> String {
    let server = Server::start(&[&format!("--cmd={target}"), "--period=10ms"]);
    let text = server
        .wait_for("/healthz", |r| {
            r.status == 503 && r.text().contains(" UTC, error ")
        })
        .text();
    text.split_once(" UTC, error ")
        .unwrap()
        .1
        .trim_end()
        .to_string()
}

#[test]
fn check_runs_each_scheme_once_with_the_servers_reasons() {
    let dir = TempDir::new("oneshot");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = {
        let gone = TcpListener::bind("127.0.0.1:0").unwrap();
        gone.local_addr().unwrap().port()
    };
    let http_ok = http_peer("/ready", "204 No Content");
    let http_bad = http_peer("/", "500 Internal Server Error");
    let (_dns, dns) = dns_peer(false);
    let file = dir.file("ready");
    std::fs::write(&file, "").unwrap();
    let passing = [
        format!("tcp://127.0.0.1:{open}"),
        format!("http://127.0.0.1:{http_ok}/ready"),
        format!("file://{file}"),
        format!("dns://127.0.0.1:{dns}/ok.test"),
    ];
    for target in &passing {
        let (code, lines, stderr) = check(&[target]);
        assert_eq!((code, lines), (0, vec![format!("ok {target}")]), "{stderr}");
    }
    let failing = [
        format!("tcp://127.0.0.1:{closed}"),
        format!("http://127.0.0.1:{http_bad}/"),
        format!("file://{}", dir.file("missing")),
        format!("dns://127.0.0.1:{dns}/missing.test"),
    ];
    for target in &failing {
        let (code, lines, _) = check(&[target]);
        let reason = server_reason(target);
        assert_eq!(
            (code, lines),
            (1, vec![format!("failed {target}: {reason}")])
        );
    }
    // Several at once: one failing fails them all, and each has its line,
    // in the order given.
    let mixed = [&passing[0], &failing[0], &passing[2], &failing[2]];
    let mixed: Vec<&str> = mixed.iter().map(|t| t.as_str()).collect();
    let (code, lines, _) = check(&mixed);
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 4);
    for (line, target) in lines.iter().zip(&mixed) {
        assert!(line.contains(*target), "{line}");
    }
    assert!(lines[0].starts_with("ok ") && lines[1].starts_with("failed "));
    let passing: Vec<&str> = passing.iter().map(String::as_str).collect();
    assert_eq!(check(&passing).0, 0);
}

#[test]
fn check_keeps_one_deadline_for_targets_that_never_answer() {
    // Accepts connections (the kernel does) and never answers; a DNS
    // server that never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let (_dns, dns) = dns_peer(true);
    let http = format!("http://127.0.0.1:{port}/");
    let dns = format!("dns://127.0.0.1:{dns}/ok.test");
    let started = std::time::Instant::now();
    let (code, lines, _) = check(&["--timeout=300ms", &http, &dns]);
    let took = started.elapsed();
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [
            format!("failed {http}: http check of {http} timed out after 300ms"),
            format!("failed {dns}: dns check of ok.test timed out after 300ms"),
        ]
    );
    assert!(
        took < std::time::Duration::from_millis(400),
        "took {took:?}"
    );
    // The default is the kubelet's 1 s.
    let started = std::time::Instant::now();
    let (code, lines, _) = check(&[&http]);
    assert_eq!(code, 1);
    assert!(lines[0].ends_with("timed out after 1s"), "{lines:?}");
    assert!(started.elapsed() < std::time::Duration::from_millis(1100));
}

#[test]
fn check_usage_errors_exit_1_and_point_to_its_help() {
    for (args, says) in [
        (&[][..], "no target"),
        (&["echo ok"][..], "not a check URL"),
        (&["--bogus", "tcp://a:1"][..], "unknown flag --bogus"),
        (&["tcp://a"][..], "missing :PORT"),
        (&["--timeout=soon", "tcp://a:1"][..], "--timeout"),
    ] {
        let (code, lines, stderr) = check(args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(lines.is_empty(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            stderr.contains("see 'exechealthz check --help'"),
            "{stderr}"
        );
    }
    let (code, lines, _) = check(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        lines[0].starts_with("Usage: exechealthz check"),
        "{lines:?}"
    );
    // `check` is a subcommand only as the first argument; the server's
    // help points to it.
    let output = run_to_end(&["--quiet", "check"]);
    assert_eq!(output.status.code(), Some(2));
    let help = run_to_end(&["--help"]);
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("exechealthz check [--timeout D] TARGET...")
    );
}

#[test]
fn check_exit_status_does_not_depend_on_stdout() {
    use std::process::Stdio;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = format!("tcp://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    for target in [open.as_str(), "tcp://127.0.0.1:1"] {
        let want = if target == open { 0 } else { 1 };
        let status = Command::new(BIN)
            .args(["check", target])
            .stdout(full())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(want), "{target}, stdout full");
        let mut child = Command::new(BIN)
            .args(["check", target])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        assert_eq!(
            child.wait().unwrap().code(),
            Some(want),
            "{target}, stdout closed"
        );
    }
}
