//! The HTTP front against hostile and broken clients: bounded heads,
//! deadlines, descriptor exhaustion, malformed requests, slow readers.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.address).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Sends `raw` and reads until the server closes; the parsed answer, or
/// None when the connection ended without one.
fn exchange(server: &Server, raw: &[u8]) -> Option<Response> {
    let mut stream = connect(server);
    stream.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    (!bytes.is_empty()).then(|| parse_response(&bytes))
}

fn status_of(server: &Server, raw: &[u8]) -> Option<u16> {
    exchange(server, raw).map(|r| r.status)
}

#[test]
fn oversized_heads_get_431_or_414_and_a_close() {
    let server = Server::start(&[]);
    server.wait_status("/healthz", 200);
    let long_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(status_of(&server, long_header.as_bytes()), Some(431));
    let many = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X: y\r\n".repeat(101)
    );
    assert_eq!(status_of(&server, many.as_bytes()), Some(431));
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    assert_eq!(status_of(&server, long_target.as_bytes()), Some(414));
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\n{}\r\n",
        format!("X: {}\r\n", "a".repeat(4000)).repeat(5)
    );
    assert_eq!(status_of(&server, big.as_bytes()), Some(431));
    // Just inside every limit is fine.
    let fine = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{}\r\n",
        "X: y\r\n".repeat(90)
    );
    assert_eq!(status_of(&server, fine.as_bytes()), Some(200));
}

#[test]
fn an_endless_header_line_keeps_memory_flat() {
    let server = Server::start(&[]);
    let before = proc_status(server.pid(), "VmHWM");
    let mut stream = connect(&server);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX: ")
        .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    // Up to 200 MB, as the Go original was measured with; the server
    // answers 431 and stops reading long before.
    while sent < 200 * 1024 * 1024 {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    // It stops reading soon after: 431, a short linger, then a reset.
    assert!(sent < 100 * 1024 * 1024, "the server read {sent} bytes");
    let peak = proc_status(server.pid(), "VmHWM");
    assert!(
        peak < before + 2048,
        "peak RSS grew from {before} kB to {peak} kB"
    );
    assert_eq!(server.wait_status("/healthz", 200).text(), "ok");
}

#[test]
fn a_head_that_never_completes_gets_408() {
    let server = Server::start(&["--head-timeout=300ms"]);
    let start = Instant::now();
    let answer = exchange(&server, b"GET /healthz HTTP/1.1\r\nHost: a\r\n").expect("an answer");
    assert_eq!(answer.status, 408);
    assert!(start.elapsed() >= Duration::from_millis(300));
    // A connection that sends nothing is closed without an answer.
    assert!(exchange(&server, b"").is_none());
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let server = Server::start(&["--idle-timeout=300ms", "--period=10ms"]);
    server.wait_status("/healthz", 200);
    let mut stream = connect(&server);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1024];
    let n = stream.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    // Kept alive, then closed once idle: end of stream, no answer.
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn keep_alive_and_pipelining_work() {
    let server = Server::start(&["--period=10ms"]);
    server.wait_status("/healthz", 200);
    let mut stream = connect(&server);
    let one = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    stream.write_all(one).unwrap();
    let mut buffer = [0u8; 4096];
    let n = stream.read(&mut buffer).unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
    // Three pipelined requests, the last closing.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nHEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert_eq!(text.matches("HTTP/1.1 404").count(), 1, "{text}");
    assert!(text.ends_with("404 page not found\n"), "{text}");
    // HTTP/1.0 without keep-alive: answered, then closed.
    assert_eq!(
        status_of(&server, b"GET /healthz HTTP/1.0\r\n\r\n"),
        Some(200)
    );
}

#[test]
fn malformed_requests_get_4xx_or_a_close_and_never_a_crash() {
    let server = Server::start(&["--period=10ms"]);
    let cases: &[&[u8]] = &[
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /quit HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rInjected: 1\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"\r\n\r\n",
        b"CONNECT evil:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for raw in cases {
        let status = status_of(&server, raw);
        assert!(
            status.is_none_or(|s| (400..500).contains(&s) || s == 505),
            "{:?} got {status:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(server.wait_status("/healthz", 200).text(), "ok");
    assert!(server.logs().iter().all(|l| !l.contains("panic")));
}

#[test]
fn small_bodies_are_read_and_dropped() {
    let server = Server::start(&["--period=10ms", "--enable-quit"]);
    server.wait_status("/healthz", 200);
    let body = "x".repeat(4000);
    let raw = format!(
        "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 4000\r\nConnection: close\r\n\r\n{body}"
    );
    assert_eq!(status_of(&server, raw.as_bytes()), Some(405));
    let raw = format!("POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n{body}");
    assert_eq!(status_of(&server, raw.as_bytes()), Some(413));
}

#[test]
fn command_output_never_reaches_a_header() {
    let server = Server::start(&[
        "--cmd=printf 'ok\\r\\nX-Injected: yes\\r\\n\\r\\nbody'",
        "--output",
        "--period=10ms",
    ]);
    let response = server.wait_status("/healthz", 200);
    assert!(response.header("X-Injected").is_none(), "{response:?}");
    assert_eq!(response.text(), "ok\r\nX-Injected: yes\r\n\r\nbody");
}

#[test]
fn a_client_that_does_not_read_is_dropped() {
    // A 32 KiB answer, asked for over and over without reading.
    let server = Server::start(&[
        "--cmd=head -c 32768 /dev/zero | tr '\\0' a",
        "--output",
        "--period=1h",
        "--write-timeout=300ms",
    ]);
    server.wait_status("/healthz", 200);
    let mut stream = connect(&server);
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut asked = 0;
    for _ in 0..5000 {
        if stream.write_all(request).is_err() {
            break;
        }
        asked += 1;
    }
    // The server stalls on a full socket and must hang up at its write
    // deadline: watch our end of the connection leave ESTABLISHED.
    let port = stream.local_addr().unwrap().port();
    let server_port = server.address.port();
    eventually("the server to drop the connection", || {
        (tcp_state(port, server_port) != Some(1)).then_some(())
    });
    let mut total = 0usize;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    assert!(
        total < asked * 32768,
        "got {total} bytes for {asked} requests: never dropped"
    );
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn thousands_of_idle_connections_do_not_block_a_request() {
    raise_open_files_limit();
    let dir = TempDir::new("idle");
    let runs = dir.file("runs");
    let server = Server::start(&[&format!("--cmd=echo x >> {runs}"), "--period=10ms"]);
    server.wait_status("/healthz", 200);
    let idle: Vec<TcpStream> = (0..2000).map(|_| connect(&server)).collect();
    // The probe keeps running while they are held.
    let count = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = count();
    eventually("20 more probe runs", || {
        (count() >= before + 20).then_some(())
    });
    let start = Instant::now();
    let response = server.get("/healthz");
    let took = start.elapsed();
    assert_eq!(response.status, 200);
    // Generous against a loaded CI machine; the benchmark measures it.
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let rss = proc_status(server.pid(), "VmRSS");
    assert!(rss < 30 * 1024, "RSS {rss} kB with 2000 idle connections");
    drop(idle);
}

#[test]
fn past_the_connection_cap_idle_clients_make_room_and_busy_ones_refuse() {
    // 64 descriptors: what the probe's runs need is kept; the rest is the cap.
    let (server, cap) = Server::start_with_nofile(64);
    assert!((20..64).contains(&cap), "cap {cap}");

    // Clients that send no request are idle once they have had time to:
    // each newcomer past the cap then closes the one idle longest, and
    // fresh requests are served.
    let idle: Vec<TcpStream> = (0..2 * cap).map(|_| connect(&server)).collect();
    let fresh_get = || fresh_get_status(server.address, DEADLINE);
    eventually("a fresh GET served past the cap", || {
        (fresh_get() == Some(200)).then_some(())
    });
    for _ in 0..5 {
        assert_eq!(fresh_get(), Some(200));
    }
    drop(idle);

    // Clients in the middle of a request are not idle: once the cap is
    // full of them, a newcomer without a whole head is closed at once (not
    // left in the backlog, no 408), and that is logged.
    let mut busy: Vec<TcpStream> = Vec::new();
    let begin = |stream: &mut TcpStream| stream.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    eventually("a connection refused at the cap", || {
        while busy.len() < cap {
            let mut stream = connect(&server);
            begin(&mut stream);
            busy.push(stream);
        }
        let mut extra = connect(&server);
        begin(&mut extra);
        extra
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buffer = [0u8; 64];
        match extra.read(&mut buffer) {
            Ok(0) => return Some(()),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Some(()),
            _ => {}
        }
        // Taken in: it closed a client whose head had not been read yet
        // (still idle to the server). Forget the closed ones; try again.
        busy.retain(|stream| {
            stream.set_nonblocking(true).unwrap();
            let open =
                matches!(stream.peek(&mut buffer), Err(e) if e.kind() == ErrorKind::WouldBlock);
            stream.set_nonblocking(false).unwrap();
            open
        });
        busy.push(extra);
        None
    });
    server.wait_log(|l| l.contains("refusing new ones until descriptors are free"));
    drop(busy);
    // They close, and the server serves again (a connection made before
    // it has seen them close may still be refused).
    eventually("a fresh GET served once the busy clients left", || {
        (fresh_get() == Some(200)).then_some(())
    });
    server.wait_log(|l| l.contains("accepting connections again"));
    let logs = server.logs();
    assert_eq!(
        logs.iter()
            .filter(|l| l.contains("refusing new ones"))
            .count(),
        1,
        "one line a spell: {logs:#?}"
    );
}

#[test]
fn the_open_files_limit_is_raised_to_the_hard_limit() {
    let mut command = Command::new("prlimit");
    command.args(["--nofile=100:4096", BIN, "--port=0"]);
    let server = Server::start_command(command);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line
        .split_whitespace()
        .filter(|w| w.parse::<u64>().is_ok())
        .collect();
    assert_eq!(numbers, ["4096", "4096"], "{line}");
}

/// State of the IPv4 TCP connection from local `port` to `remote_port` on
/// 127.0.0.1, as /proc/net/tcp numbers it (1 = ESTABLISHED), or None once
/// it is gone. Both ports: an old connection of another test on the same
/// local port may linger in TIME_WAIT.
fn tcp_state(port: u16, remote_port: u16) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    let remote = format!("0100007F:{remote_port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields[1] == local && fields[2] == remote)
            .then(|| u8::from_str_radix(fields[3], 16).unwrap())
    })
}

/// 200 clients that reconnect as soon as they are dropped, sending
/// nothing, or one byte of a head a second, with 64 descriptors: every
/// slot is taken again at once, yet a prober's fresh GET (connect, send,
/// read) is answered, because a connection taken with no room is given
/// one look: its complete head is answered, and closed.
#[test]
fn a_reconnect_storm_does_not_shut_the_prober_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    raise_open_files_limit();
    for trickle in [false, true] {
        let (server, _cap) = Server::start_with_nofile(64);
        let stop = Arc::new(AtomicBool::new(false));
        let address = server.address;
        let storm: Vec<_> = (0..200)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        let mut byte = [0u8; 1];
                        while !stop.load(Ordering::Relaxed) {
                            let Ok(mut stream) = TcpStream::connect(address) else {
                                continue;
                            };
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                            // Held until the server drops it; then again.
                            while !stop.load(Ordering::Relaxed) {
                                if trickle && stream.write_all(b"G").is_err() {
                                    break;
                                }
                                match stream.read(&mut byte) {
                                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                                    _ => break,
                                }
                            }
                        }
                    })
                    .unwrap()
            })
            .collect();
        let answered = (0..50)
            .filter(|_| fresh_get_status(address, Duration::from_secs(5)) == Some(200))
            .count();
        stop.store(true, Ordering::Relaxed);
        for client in storm {
            client.join().unwrap();
        }
        assert_eq!(
            answered, 50,
            "trickling {trickle}: {answered} of 50 answered"
        );
    }
}
