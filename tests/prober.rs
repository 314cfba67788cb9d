//! The prober is always answered: whatever other clients do (pipeline
//! thousands of requests, hold every descriptor, never read), a fresh
//! request gets its answer promptly, the probes keep their descriptors and
//! memory stays bounded. Also the strictness and headers that keep caches
//! and odd clients from getting a wrong or late verdict.
//!
//! The bounds asserted here are the kubelet's (an answer within its 1 s
//! timeout) and generous memory ceilings; `make bench` measures the real
//! figures.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The kubelet's default probe timeout.
const KUBELET_TIMEOUT: Duration = Duration::from_secs(1);

/// A fresh `GET /healthz` on a new connection, as the kubelet makes it:
/// the time it took and the status, or None past `KUBELET_TIMEOUT` twice
/// over.
fn fresh_get(server: &Server) -> (Duration, Option<u16>) {
    let start = Instant::now();
    let status = fresh_get_status(server.address, 2 * KUBELET_TIMEOUT);
    (start.elapsed(), status)
}

/// A client that pipelines `paths` as fast as it can write, reading the
/// answers as they come, until `stop`; then it hangs up. Returns the bytes
/// it read.
fn pipeline(
    server: &Server,
    paths: &[&str],
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    let stream = TcpStream::connect(server.address).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let mut batch = Vec::new();
    for path in paths.iter().cycle().take(64) {
        batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    }
    let writing = Arc::clone(&stop);
    let writer = std::thread::spawn(move || {
        let mut stream = stream;
        while !writing.load(Ordering::Relaxed) {
            if stream.write_all(&batch).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        reader.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut total = 0;
        while !stop.load(Ordering::Relaxed) {
            match reader.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        // Hung up with requests unanswered: the writer's next write fails.
        let _ = reader.shutdown(Shutdown::Both);
        writer.join().unwrap();
        total
    })
}

/// Arguments for a server whose `/status` and `/metrics` are sizable.
fn probes(count: usize) -> Vec<String> {
    let mut args = vec!["--period=100ms".to_string()];
    for i in 0..count {
        args.push(format!("--url=/p{i}"));
        args.push("--cmd=true".to_string());
    }
    args.push("--url=/healthz".to_string());
    args.push("--cmd=true".to_string());
    args
}

#[test]
fn pipelining_clients_do_not_keep_a_fresh_request_waiting() {
    let args = probes(20);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    server.wait_status("/healthz", 200);
    let stop = Arc::new(AtomicBool::new(false));
    // More hogs than workers.
    let hogs: Vec<_> = (0..4)
        .map(|_| {
            pipeline(
                &server,
                &["/status?format=json", "/metrics"],
                Arc::clone(&stop),
            )
        })
        .collect();
    // Let them get going, then ask as the kubelet would, again and again.
    std::thread::sleep(Duration::from_millis(300));
    let mut slowest = Duration::ZERO;
    let start = Instant::now();
    let mut asked = 0;
    while start.elapsed() < Duration::from_secs(3) {
        let (took, status) = fresh_get(&server);
        assert_eq!(
            status,
            Some(200),
            "after {took:?}, with 4 clients pipelining"
        );
        slowest = slowest.max(took);
        asked += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let read: Vec<usize> = hogs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        slowest < KUBELET_TIMEOUT,
        "a fresh GET took {slowest:?} while clients pipelined"
    );
    assert!(asked >= 5, "only {asked} fresh requests in 3 s");
    // The pipelining clients were served too, not starved.
    for bytes in read {
        assert!(
            bytes > 100_000,
            "a pipelining client got only {bytes} bytes"
        );
    }
}

#[test]
fn many_clients_at_a_low_descriptor_limit_leave_the_probes_theirs() {
    let (server, cap) = Server::start_with_nofile(64);

    // A checker asks throughout, as the kubelet would.
    let done = Arc::new(AtomicBool::new(false));
    let checker = {
        let done = Arc::clone(&done);
        let address = server.address;
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            while !done.load(Ordering::Relaxed) {
                statuses.push(http(address, "GET", "/healthz").status);
                std::thread::sleep(Duration::from_millis(20));
            }
            statuses
        })
    };

    // 200 clients at once, each asking once on a kept-alive connection.
    let mut clients = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(server.address).unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        clients.push((stream, Instant::now()));
    }
    // Each gets its answer, or its connection closed (past the cap, or
    // idle when another client needed the room), never a long wait.
    let mut answered = 0;
    for (mut stream, sent) in clients {
        let left = (sent + 2 * KUBELET_TIMEOUT).saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut buffer = [0u8; 4096];
        match stream.read(&mut buffer) {
            Ok(0) => {}
            Ok(n) => {
                assert!(buffer[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
                answered += 1;
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a client waited {:?}: {e}", sent.elapsed()),
        }
    }
    assert!(answered > 0, "nobody was served");
    // Let the probe run a while longer with the connections held.
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let statuses = checker.join().unwrap();
    assert!(statuses.len() > 5, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // No run failed for want of a descriptor.
    let metrics = server.get("/metrics").text();
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("exechealthz_probe_failures_total{"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(failures.ends_with(" 0"), "{failures}\n{:#?}", server.logs());
    assert!(
        !server.logs().iter().any(|l| l.contains("failed to start")),
        "cap {cap}\n{:#?}",
        server.logs()
    );
}

#[test]
fn slow_readers_of_a_large_answer_share_it() {
    // A 1 MiB answer: the same bytes every run.
    let server = Server::start(&[
        "--period=50ms",
        "--output",
        "--max-output=1MiB",
        "--cmd=head -c 1048576 /dev/zero",
    ]);
    server.wait_status("/healthz", 200);
    let before = proc_status(server.pid(), "VmRSS");
    let mut readers = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(server.address).unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        readers.push(stream);
    }
    // Every reader's answer is under way (it read the head).
    for stream in &mut readers {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut head = [0u8; 17];
        stream.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200 OK\r\n");
    }
    let rss = proc_status(server.pid(), "VmRSS");
    // Copied per reader it was 200 MiB more.
    assert!(
        rss < before + 32 * 1024,
        "RSS {before} kB before, {rss} kB with 200 slow readers of 1 MiB"
    );
    // And each gets all of it when it reads.
    let mut stream = readers.pop().unwrap();
    let mut rest = Vec::new();
    let mut buffer = vec![0u8; 1 << 20];
    while rest.len() < 1 << 20 {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&buffer[..n]);
    }
    let body_at = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    while rest.len() < body_at + (1 << 20) {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&buffer[..n]);
    }
    assert_eq!(rest.len(), body_at + (1 << 20));
    assert!(rest[body_at..].iter().all(|b| *b == 0));
}

#[test]
fn expect_continue_is_answered_at_once() {
    // A head timeout far beyond the read timeout: waiting for it fails.
    let server = Server::start(&["--head-timeout=60s"]);
    server.wait_status("/healthz", 200);
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(
            b"POST /healthz HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
        )
        .unwrap();
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .expect("an answer, not a wait for the body");
    let text = String::from_utf8_lossy(&bytes);
    // POST on a probe URL is 405; what matters is that it came at once,
    // and that the connection closed (the body may still come).
    assert!(text.starts_with("HTTP/1.1 405 "), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    // With its body sent at once, a request is answered as usual.
    let response = send_raw(
        server.address,
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert_eq!(response.status, 200);
}

#[test]
fn an_invalid_host_and_a_bare_cr_are_refused_at_once() {
    let server = Server::start(&["--head-timeout=60s"]);
    server.wait_status("/healthz", 200);
    for raw in [
        &b"GET /healthz HTTP/1.1\r\nHost: a b/c\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: [::1\r\n\r\n",
        b"GET /healthz HTTP/1.1\rHost: a\r\r",
        b"GET /healthz HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(server.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(raw).unwrap();
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        assert!(
            bytes.starts_with(b"HTTP/1.1 400 "),
            "{:?}: {:?}",
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(&bytes)
        );
    }
    // Valid authorities pass.
    for host in ["a", "a:8080", "10.0.0.1:80", "[::1]:8080", ""] {
        let raw = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        assert_eq!(
            send_raw(server.address, raw.as_bytes()).status,
            200,
            "{host:?}"
        );
    }
}

#[test]
fn every_dynamic_answer_says_no_store() {
    let server = Server::start(&["--url=/healthz", "--cmd=true", "--url=/down", "--cmd=false"]);
    server.wait_status("/healthz", 200);
    server.wait_status("/down", 503);
    for path in [
        "/healthz",
        "/healthz?verbose",
        "/down",
        "/",
        "/status",
        "/status?format=json",
        "/metrics",
        "/nothing-here",
    ] {
        let response = server.get(path);
        assert_eq!(
            response.header("Cache-Control"),
            Some("no-store"),
            "{path}: {response:?}"
        );
    }
    let head = server.request("HEAD", "/healthz");
    assert_eq!(head.header("Cache-Control"), Some("no-store"));
}

/// The listen backlog of the socket on `port`, as `ss` shows it (Send-Q of
/// a listening socket).
fn backlog(port: u16) -> Option<u32> {
    let output = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn the_listen_backlog_is_the_same_with_an_address() {
    if Command::new("ss").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("EXECHEALTHZ_REQUIRE_TOOLS").is_none(),
            "ss (iproute2) is needed"
        );
        eprintln!("skipped: no ss");
        return;
    }
    let any = Server::start(&[]);
    let explicit = Server::start(&["--address=127.0.0.1"]);
    let v6 = Server::start(&["--address=::1"]);
    assert_eq!(backlog(any.address.port()), Some(1024));
    assert_eq!(backlog(explicit.address.port()), Some(1024));
    // Through ::1 only.
    let v6_port = v6.address.port();
    assert_eq!(backlog(v6_port), Some(1024));
    let response = http(
        format!("[::1]:{v6_port}").parse().unwrap(),
        "GET",
        "/healthz",
    );
    assert!(matches!(response.status, 200 | 503));
}
