//! The HTTP server as RFC 9110/9112 and a kubelet see it: answered from the
//! first accepted connection on, one listening socket only, half-closes,
//! absolute-form targets, OPTIONS, percent-decoding, obs-text, immediate
//! refusal of bytes that are not HTTP/1.x, and a bounded thread count.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Sends `raw` (then half-closes if `shut`) and reads to end of stream,
/// allowing `within` for the whole answer: far less than the deadline a
/// server that missed the point would wait out.
fn exchange_within(address: SocketAddr, raw: &[u8], shut: bool, within: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(within)).unwrap();
    stream.write_all(raw).unwrap();
    if shut {
        stream.shutdown(Shutdown::Write).unwrap();
    }
    let mut bytes = Vec::new();
    if let Err(e) = stream.read_to_end(&mut bytes) {
        panic!(
            "no end of stream within {within:?} ({e}); got {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    bytes
}

/// Long enough for a loaded machine, far shorter than the 30 s deadlines
/// the servers below are given.
const PROMPT: Duration = Duration::from_secs(5);

fn slow_deadlines(extra: &[&str]) -> Server {
    let mut args = vec!["--period=10ms", "--head-timeout=30s", "--idle-timeout=30s"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn a_half_close_after_a_request_gets_the_answer_then_a_close() {
    let server = slow_deadlines(&[]);
    server.wait_status("/healthz", 200);
    let bytes = exchange_within(
        server.address,
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
        true,
        PROMPT,
    );
    let response = parse_response(&bytes);
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    // Pipelined, then half-closed: both answered, then the close.
    let two = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let bytes = exchange_within(server.address, two, true, PROMPT);
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
}

#[test]
fn a_half_close_with_nothing_pending_closes_at_once() {
    let server = slow_deadlines(&[]);
    assert!(exchange_within(server.address, b"", true, PROMPT).is_empty());
    let partial = b"GET /healthz HTTP/1.1\r\nHost: a\r\n";
    assert!(exchange_within(server.address, partial, true, PROMPT).is_empty());
}

#[test]
fn bytes_that_are_not_http_are_refused_at_once() {
    let server = slow_deadlines(&[]);
    for raw in [
        &b"SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n"[..],
        b"GET /\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"PRI * HTTP/2.0\r\n",
    ] {
        let bytes = exchange_within(server.address, raw, false, PROMPT);
        let response = parse_response(&bytes);
        assert!(
            [400, 505].contains(&response.status),
            "{:?}: {response:?}",
            String::from_utf8_lossy(raw)
        );
        assert_eq!(response.header("Connection"), Some("close"));
    }
}

#[test]
fn absolute_form_targets_are_routed_by_their_path() {
    let server = Server::start(&["--period=10ms"]);
    server.wait_status("/healthz", 200);
    for target in [
        format!("http://{}/healthz", server.address),
        "http://example.com/healthz?x=1".to_string(),
        "HTTP://a:1/healthz".to_string(),
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let response = send_raw(server.address, raw.as_bytes());
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "ok"),
            "{target}"
        );
    }
    let raw = b"GET http://a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    assert!(
        send_raw(server.address, raw)
            .text()
            .contains("<h1>exechealthz</h1>")
    );
}

#[test]
fn options_answers_what_is_allowed() {
    let server = Server::start(&["--enable-quit"]);
    let star = server.request("OPTIONS", "*");
    assert_eq!(star.status, 204);
    assert_eq!(star.header("Allow"), Some("GET, HEAD, POST, OPTIONS"));
    assert!(star.header("Content-Length").is_none(), "{star:?}");
    assert!(star.body.is_empty());
    let probe = server.request("OPTIONS", "/healthz");
    assert_eq!(probe.status, 204);
    assert_eq!(probe.header("Allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(
        server.request("OPTIONS", "/quit").header("Allow"),
        Some("GET, POST, OPTIONS")
    );
    assert_eq!(server.request("OPTIONS", "/nope").status, 404);
    assert_eq!(server.request("GET", "*").status, 400);
    assert_eq!(server.request("DELETE", "/healthz").status, 405);
}

#[test]
fn targets_are_percent_decoded_before_routing() {
    let server = Server::start(&["--cmd=true", "--url=/é", "--cmd=true", "--url=/a%b"]);
    server.wait_status("/%C3%A9", 200);
    assert_eq!(server.get("/%c3%a9").status, 200);
    server.wait_status("/a%25b", 200);
    assert_eq!(server.get("/a%b").status, 400);
    assert_eq!(server.get("/%68ealthz").status, 404);
    assert_eq!(server.get("/%zz").status, 400);
    assert_eq!(server.get("/%C3").status, 404);
    assert_eq!(server.get("/a%2").status, 400);

    let default = Server::start(&["--period=10ms"]);
    default.wait_status("/%68ealthz", 200);
    assert_eq!(default.get("/%68%65%61%6C%74%68%7A").text(), "ok");
}

#[test]
fn urls_a_client_cannot_send_are_start_up_errors() {
    for url in ["/a?b", "/a#b", "/a\tb", "healthz", "/a\u{7f}"] {
        let output = run_to_end(&["--cmd=true", &format!("--url={url}")]);
        assert_eq!(output.status.code(), Some(2), "{url:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--url"), "{url:?}: {stderr}");
    }
}

#[test]
fn header_values_may_carry_obs_text() {
    let server = Server::start(&["--period=10ms"]);
    server.wait_status("/healthz", 200);
    let raw =
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Name: caf\xe9 \xff\r\nConnection: close\r\n\r\n";
    let response = send_raw(server.address, raw);
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
}

/// Sockets of `pid` that listen: (TCP ports, Unix listeners).
fn listening_sockets(pid: u32) -> (Vec<u16>, usize) {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // State 0A is LISTEN; field 9 is the inode.
            if f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap();
    let unix_listeners = unix
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Flags 00010000: __SO_ACCEPTCON, a listening socket.
            let listening = u32::from_str_radix(f[3], 16).unwrap() & 0x10000 != 0;
            listening && inodes.iter().any(|i| i == f[6])
        })
        .count();
    (ports, unix_listeners)
}

#[test]
fn nothing_listens_but_the_port() {
    let server = Server::start(&["--cmd=true", "--url=/a", "--cmd=true", "--url=/b"]);
    server.wait_status("/a", 200);
    let (ports, unix) = listening_sockets(server.pid());
    assert_eq!(ports, [server.address.port()]);
    assert_eq!(unix, 0, "a Unix socket listens");
}

fn threads(pid: u32) -> u64 {
    proc_status(pid, "Threads")
}

#[test]
fn threads_stay_few() {
    let one = Server::start(&["--period=10ms"]);
    one.wait_status("/healthz", 200);
    // Under load from many connections too.
    let held: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(one.address).unwrap())
        .collect();
    for _ in 0..20 {
        assert_eq!(one.get("/healthz").status, 200);
    }
    assert!(threads(one.pid()) <= 7, "{} threads", threads(one.pid()));
    drop(held);

    let three = Server::start(&[
        "--cmd=true",
        "--url=/a",
        "--cmd=true",
        "--url=/b",
        "--cmd=true",
        "--url=/c",
    ]);
    three.wait_status("/c", 200);
    assert!(
        threads(three.pid()) <= 9,
        "{} threads",
        threads(three.pid())
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A GET of `/` on a fresh connection, answered within `PROMPT`.
fn index_status(address: SocketAddr) -> Result<u16, String> {
    let mut stream = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(PROMPT)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .map_err(|e| format!("read: {e}"))?;
    if bytes.is_empty() {
        return Err("closed without an answer".into());
    }
    Ok(parse_response(&bytes).status)
}

#[test]
fn every_request_is_answered_from_the_first_moment() {
    for start in 0..20 {
        let port = free_port();
        let mut child = Command::new(BIN)
            .args(["--period=10ms", &format!("--port={port}"), "--quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        // The first request goes out the moment the port accepts.
        let began = Instant::now();
        let first = loop {
            if let Ok(mut stream) = TcpStream::connect(address) {
                stream.set_read_timeout(Some(PROMPT)).unwrap();
                stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                    .unwrap();
                let mut bytes = Vec::new();
                let read = stream.read_to_end(&mut bytes);
                break read.map(|_| parse_response(&bytes).status);
            }
            assert!(began.elapsed() < DEADLINE, "the port never accepted");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(first.ok(), Some(200), "start {start}: first request");
        // Then 200 at once.
        let burst: Vec<_> = (0..200)
            .map(|_| std::thread::spawn(move || index_status(address)))
            .collect();
        let failed: Vec<_> = burst
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|r| *r != Ok(200))
            .collect();
        let _ = child.kill();
        let _ = child.wait();
        assert!(failed.is_empty(), "start {start}: {failed:?}");
    }
}
