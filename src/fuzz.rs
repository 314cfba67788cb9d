//! Harnesses for the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer): each
//! takes the bytes the fuzzer makes up, drives one of our parsers or the
//! connection state machine with them as someone else's bytes would, and
//! panics if what must hold whatever the bytes does not. Every byte these
//! parsers read can come from a client or from a server a check talks to,
//! and a panic aborts the sidecar.
//!
//! The same harnesses run under `cargo test` over the corpus kept in
//! `fuzz/corpus/` and the crashes kept in `fuzz/regressions/` (see the
//! test below), so a crash once found stays fixed.
//!
//! Nothing in the binary calls this module.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::conn::{Answer, Ask, Conn, Ctx, Next, Stream, Timeouts};
use crate::http::head::{self, Method, Scan};
use crate::http::{Shared, routes};
use crate::process::Children;
use crate::results::{Policy, Probe};
use crate::spec::{Action, ProbeSpec};

/// Split points and the like, drawn from the input's first bytes: the
/// same input always makes the same run.
struct Dice(u64);

impl Dice {
    fn new(data: &[u8]) -> (Dice, &[u8]) {
        let (seed, rest) = data.split_at(data.len().min(8));
        let mut bytes = [0u8; 8];
        bytes[..seed.len()].copy_from_slice(seed);
        (Dice(u64::from_le_bytes(bytes) | 1), rest)
    }

    /// A number below `n` (xorshift64).
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// A request head arriving in pieces: the scan ends where the whole head
/// ends, within the limits, and `parse` takes or refuses it without a
/// panic; what it takes is within the limits too.
pub fn request_head(data: &[u8]) {
    let (mut dice, data) = Dice::new(data);
    let mut scan = Scan::default();
    let mut arrived = 0;
    while arrived < data.len() {
        arrived += 1 + dice.below(data.len() - arrived);
        match scan.advance(&data[..arrived]) {
            Ok(None) => continue,
            Ok(Some(end)) => {
                assert!(end <= arrived && end <= head::MAX_HEAD, "head end {end}");
                assert!(data[..end].ends_with(b"\n"));
                // The same head scanned in one piece ends at the same place.
                assert_eq!(Scan::default().advance(&data[..arrived]), Ok(Some(end)));
                if let Ok(parsed) = head::parse(&data[..end]) {
                    assert!(parsed.content_length <= head::MAX_BODY);
                }
                return;
            }
            Err(reject) => {
                assert!(matches!(reject.status, 400 | 414 | 431 | 505), "{reject:?}");
                return;
            }
        }
    }
}

/// A socket whose reads give what has "arrived" so far, then would block
/// (or end, once the client has closed), and whose writes take what the
/// dice allow.
struct Scripted {
    arrived: VecDeque<u8>,
    closed: bool,
    written: Vec<u8>,
    /// Bytes the next write may take (0: it would block).
    room: usize,
    shut: Cell<bool>,
}

impl Read for Scripted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.arrived.is_empty() {
            return if self.closed {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.arrived.len());
        for (slot, byte) in buf.iter_mut().zip(self.arrived.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl Write for Scripted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.shut.get() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for Scripted {
    fn shutdown_write(&self) {
        self.shut.set(true);
    }
}

/// What a connection's answers are made from: two probes with no result
/// yet, as the server has them at start-up.
fn shared() -> Shared {
    crate::log::set_quiet(true);
    let probe = |url: &str| {
        Probe::new(ProbeSpec {
            url: url.into(),
            cmd: "true".into(),
            action: Action::Exec {
                program: "true".into(),
                args: Vec::new(),
            },
        })
    };
    Shared {
        probes: Arc::new(vec![probe("/healthz"), probe("/a%20b")]),
        children: Children::new(),
        policy: Policy {
            failure_threshold: 1,
            success_threshold: 1,
            latency: Duration::from_secs(30),
            output: false,
        },
        enable_quit: true,
        requests: Default::default(),
    }
}

/// One answer made, as the client must see it.
struct Made {
    bytes: Vec<u8>,
    /// It answers a HEAD: its Content-Length has no body after it.
    to_head: bool,
}

/// A connection fed the bytes in random pieces, pipelined, with writes
/// that sometimes block and clocks that jump past its deadlines: it never
/// panics or spins, and what it writes is exactly the answers it was given,
/// in order, whole (a prefix of them if it stopped early), each a
/// well-formed HTTP/1.x response.
pub fn connection(data: &[u8]) {
    let (mut dice, data) = Dice::new(data);
    let shared = shared();
    let mut cache = routes::Cache::default();
    let timeouts = Timeouts {
        head: Duration::from_secs(5),
        idle: Duration::from_secs(30),
        write: Duration::from_secs(10),
    };
    let start = Instant::now();
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    let stream = Scripted {
        arrived: VecDeque::new(),
        closed: false,
        written: Vec::new(),
        room: 0,
        shut: Cell::new(false),
    };
    let mut conn = Conn::new(stream, peer, start, timeouts);
    let mut made: Vec<Made> = Vec::new();
    let mut scratch = vec![0u8; 1 + dice.below(4096)];
    let mut now = start;
    let mut fed = 0;
    let mut calls = 0;
    loop {
        // The next thing that happens: bytes arrive, room to write, the
        // client closes, or time passes.
        let stream = conn_stream(&mut conn);
        match dice.below(8) {
            0..=3 if fed < data.len() => {
                let n = 1 + dice.below(data.len() - fed);
                stream.arrived.extend(&data[fed..fed + n]);
                fed += n;
            }
            4 | 5 => stream.room += dice.below(70_000),
            6 if fed == data.len() => stream.closed = true,
            _ => now += Duration::from_millis(dice.below(12_000) as u64),
        }
        let readable = !stream.arrived.is_empty() || stream.closed;
        let hangup = stream.closed;
        let next = {
            let mut respond = |ask: Ask| {
                let to_head = matches!(&ask, Ask::Request(h) if h.method == Method::Head);
                let answer = routes::answer(&shared, &mut cache, ask, peer, Instant::now())?;
                made.push(Made {
                    bytes: whole(&answer),
                    to_head,
                });
                Some(answer)
            };
            let mut ctx = Ctx {
                now,
                timeouts,
                scratch: &mut scratch,
                respond: &mut respond,
            };
            let mut next = if dice.below(4) == 0 {
                conn.on_tick(&mut ctx)
            } else {
                conn.on_event(readable, hangup, &mut ctx)
            };
            // A yielded connection is called again with no new event.
            let mut turns = 0;
            while next == Next::Yield {
                turns += 1;
                assert!(turns < 100_000, "a connection yields forever");
                next = conn.on_event(false, false, &mut ctx);
            }
            next
        };
        calls += 1;
        if matches!(next, Next::Close | Next::Quit) || calls > 10_000 {
            break;
        }
    }
    let written = conn_stream(&mut conn).written.clone();
    drop(conn);
    check_answers(&written, &made);
}

/// The connection's socket: the harness plays the client through it.
fn conn_stream(conn: &mut Conn<Scripted>) -> &mut Scripted {
    conn.stream_mut()
}

/// An answer's bytes as they go out: its head (and small body), then its
/// own or shared body.
fn whole(answer: &Answer) -> Vec<u8> {
    let mut bytes = answer.bytes.clone();
    if let Some(body) = &answer.body {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// `written` is the answers in `made`, in order, the last maybe cut short;
/// each one whole is a well-formed response whose Content-Length frames it.
fn check_answers(written: &[u8], made: &[Made]) {
    let mut at = 0;
    for answer in made {
        let bytes = &answer.bytes;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!(
                "a malformed answer ({other:?}): {:?}",
                String::from_utf8_lossy(bytes)
            ),
        };
        assert!(matches!(response.version, Some(0 | 1)));
        assert!(matches!(response.code, Some(100..=599)));
        let content_length = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"));
        // A 204 (OPTIONS) has no body and must not say Content-Length (RFC
        // 9110 8.6); every other answer says it.
        let length: usize = if response.code == Some(204) {
            assert!(content_length.is_none(), "a Content-Length on a 204");
            0
        } else {
            content_length
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                .expect("a Content-Length on every answer but a 204")
        };
        let body = if answer.to_head { 0 } else { length };
        assert_eq!(bytes.len(), head_len + body, "an answer framed wrong");
        let left = written.len().saturating_sub(at);
        if left < bytes.len() {
            assert_eq!(&written[at..], &bytes[..left], "a cut answer differs");
            return;
        }
        assert_eq!(
            &written[at..at + bytes.len()],
            &bytes[..],
            "an answer differs"
        );
        at += bytes.len();
    }
    assert_eq!(at, written.len(), "bytes written that no answer made");
}

/// Arguments as `exechealthz` gets them (NUL-separated in the input):
/// accepted or refused with a message, never a panic; a value accepted
/// once is accepted again the same.
pub fn flags(data: &[u8]) {
    let args: Vec<std::ffi::OsString> = data
        .split(|b| *b == 0)
        .map(|arg| {
            use std::os::unix::ffi::OsStrExt;
            std::ffi::OsStr::from_bytes(arg).to_os_string()
        })
        .collect();
    let _ = crate::config::wants_json_logs(&args);
    let first = crate::config::parse(args.clone());
    let again = crate::config::parse(args);
    assert_eq!(format!("{first:?}"), format!("{again:?}"));
}

/// A `--cmd` that may be a check URL: parsed or refused, never a panic;
/// what is accepted is safe to use as it is: no control character goes
/// into a request line, a query or a header (its fragment's options
/// included), and a DNS name makes a valid question.
pub fn check_url(data: &[u8]) {
    use crate::check::Kind;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let clean = |part: &str| !part.is_empty() && !part.chars().any(char::is_control);
    let Ok(Some(check)) = crate::check::parse(text) else {
        return;
    };
    match check.kind {
        Kind::Tcp { host, .. } => assert!(clean(&host), "{text:?}"),
        Kind::Http { host, path, .. } | Kind::H2c { host, path, .. } => {
            assert!(
                clean(&host) && clean(&path) && path.starts_with('/') && !path.contains('#'),
                "{text:?}"
            );
        }
        Kind::Dns { server, name } => {
            assert!(server.is_none_or(|(host, _)| clean(&host)), "{text:?}");
            assert!(
                name.strip_suffix('.')
                    .unwrap_or(&name)
                    .split('.')
                    .all(|label| (1..=63).contains(&label.len()) && clean(label)),
                "{text:?}: {name:?}"
            );
        }
        Kind::File { path } => assert!(path.is_absolute(), "{text:?}"),
        // The service goes into the request's message, not a header.
        Kind::Grpc { host, .. } => assert!(clean(&host), "{text:?}"),
    }
    let options = &check.options;
    for (name, value) in &options.headers {
        assert!(
            clean(name) && !value.contains(['\r', '\n', '\0']),
            "{text:?}"
        );
    }
    for (key, value) in &options.metadata {
        assert!(clean(key), "{text:?}");
        assert!(key.ends_with("-bin") || value.iter().all(|b| (0x20..0x7f).contains(b)));
    }
    if let Some(list) = &options.status {
        assert!(
            list.iter()
                .all(|&(low, high)| 100 <= low && low <= high && high <= 599)
        );
    }
}

/// Bytes from a server that an http:// check has asked: read in random
/// pieces, then the connection closes. Whatever they are, the check ends
/// with a status line or a reason, within its bounds.
pub fn http_response(data: &[u8]) {
    let (mut dice, data) = Dice::new(data);
    let pieces = split(&mut dice, data).into();
    let reads = Pieces { pieces, reads: 0 };
    let _ = crate::check::fuzzing::http_response(reads);
}

/// A socket's reads, piece by piece, then end of stream.
struct Pieces {
    pieces: VecDeque<Vec<u8>>,
    reads: usize,
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        assert!(self.reads < 1_000_000, "reads past the end of stream");
        let Some(mut piece) = self.pieces.pop_front() else {
            return Ok(0);
        };
        let n = buf.len().min(piece.len());
        buf[..n].copy_from_slice(&piece[..n]);
        if n < piece.len() {
            self.pieces.push_front(piece.split_off(n));
        }
        Ok(n)
    }
}

impl crate::check::Source for Pieces {
    fn set_read_timeout(&self, _: Duration) -> io::Result<()> {
        Ok(())
    }
}

/// A DNS reply to a dns:// check's query (the id already matched): a
/// count or malformed, never a panic, for either query type.
pub fn dns_reply(data: &[u8]) {
    for qtype in [1, 28] {
        if let Some(records) = crate::check::fuzzing::dns_reply(data, qtype) {
            assert!(
                records <= data.len() / 11,
                "{records} records in {} bytes",
                data.len()
            );
        }
    }
}

/// Bytes from a server that a grpc:// check called, in random pieces:
/// the HTTP/2 client and HPACK decoder take them within their bounds
/// (checked in `check::fuzzing`), and end with a result or a reason.
pub fn grpc_response(data: &[u8]) {
    let (mut dice, data) = Dice::new(data);
    let pieces = split(&mut dice, data);
    let pieces: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    let _ = crate::check::fuzzing::grpc_exchange(&pieces);
}

/// HPACK header blocks, one after another on one table.
pub fn hpack_blocks(data: &[u8]) {
    let (mut dice, data) = Dice::new(data);
    let blocks = split(&mut dice, data);
    let blocks: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
    crate::check::fuzzing::hpack_blocks(&blocks);
}

/// `data` cut at random points.
fn split(dice: &mut Dice, data: &[u8]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = 1 + dice.below(data.len() - at);
        pieces.push(data[at..at + n].to_vec());
        at += n;
    }
    pieces
}

/// A harness: takes the fuzzer's bytes, panics if something that must hold
/// does not.
pub type Harness = fn(&[u8]);

/// The fuzz targets by name, for the test below and `fuzz/`.
pub const TARGETS: [(&str, Harness); 8] = [
    ("request_head", request_head),
    ("connection", connection),
    ("flags", flags),
    ("check_url", check_url),
    ("http_response", http_response),
    ("dns_reply", dns_reply),
    ("grpc_response", grpc_response),
    ("hpack_blocks", hpack_blocks),
];

#[cfg(test)]
mod tests {
    /// Every input kept in `fuzz/corpus/TARGET` and `fuzz/regressions/TARGET`
    /// still passes its harness: the fuzzer's finds are regression tests.
    #[test]
    fn the_kept_inputs_still_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut ran = 0;
        for (name, harness) in super::TARGETS {
            for kept in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(kept).join(name)) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.unwrap().path();
                    let data = std::fs::read(&path).unwrap();
                    let outcome = std::panic::catch_unwind(|| harness(&data));
                    assert!(outcome.is_ok(), "{name}: {} fails", path.display());
                    ran += 1;
                }
            }
        }
        assert!(ran >= super::TARGETS.len(), "only {ran} kept inputs");
    }

    #[test]
    fn each_harness_takes_empty_and_small_inputs() {
        for (_, harness) in super::TARGETS {
            harness(b"");
            harness(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            harness(&[0xff; 40]);
        }
    }
}
