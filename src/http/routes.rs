//! What each request is answered with: a probe URL, the index page,
//! `/status`, `/metrics`, `/quit`, OPTIONS, 404 and 405, and the refusals
//! the connection state machine asks for. Heads are serialized by tiny_http
//! (`Response::raw_print`: status line, Date, Content-Length) into bytes
//! for the connection to write; a large body is not copied into them but
//! passed along, shared (a probe's answer is the same `Arc` for every
//! client that asks for it between two runs).
//!
//! Reports made per request (`/status`, `/metrics`, the index page, a
//! probe's `?verbose`) wait while more than `HELD_MAX` bytes of answers
//! are being written: clients that do not read cannot make us hold an
//! unbounded amount. A probe URL's answer never waits.
//!
//! It reads results and counts answers; it never blocks, runs commands or
//! touches a socket. Nothing from a command's output is placed in a header.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tiny_http::{HTTPVersion, Header, Response, StatusCode};

use super::Shared;
use super::conn::{self, Answer, Ask};
use super::head::{Head, Method, Reject, Target};
use crate::log::{self, Level, Value};
use crate::{info, metrics, status};

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// Reports made per request wait while more bytes than this are being
/// written to clients (`conn::held`): 128 answers of 32 KiB.
const HELD_MAX: usize = 4 * 1024 * 1024;
/// Bodies up to this size are written in one buffer with their head;
/// larger ones are passed along as they are.
const INLINE_BODY_MAX: usize = 4096;

/// A path the server knows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Resource {
    Probe(usize),
    Index,
    Metrics,
    Status,
    Quit,
}

impl Resource {
    fn allow(self) -> &'static str {
        match self {
            Resource::Quit => "GET, POST, OPTIONS",
            _ => "GET, HEAD, OPTIONS",
        }
    }

    fn allows(self, method: Method) -> bool {
        match self {
            Resource::Quit => matches!(method, Method::Get | Method::Post),
            _ => matches!(method, Method::Get | Method::Head),
        }
    }
}

fn find(shared: &Shared, path: &[u8]) -> Option<Resource> {
    if let Some(i) = shared
        .probes
        .iter()
        .position(|p| p.spec.url.as_bytes() == path)
    {
        return Some(Resource::Probe(i));
    }
    match path {
        b"/" => Some(Resource::Index),
        b"/metrics" => Some(Resource::Metrics),
        b"/status" => Some(Resource::Status),
        b"/quit" if shared.enable_quit => Some(Resource::Quit),
        _ => None,
    }
}

/// The answer to what the connection from `peer` asks; `None` for a
/// report that must wait (see `HELD_MAX`).
/// The answer to `ask`, at `now` (the caller's clock: one reading per
/// request, not one per use).
pub fn answer(
    shared: &Shared,
    cache: &mut Cache,
    ask: Ask,
    peer: SocketAddr,
    now: Instant,
) -> Option<Answer> {
    match ask {
        Ask::Request(head) => request(shared, cache, head, peer, now),
        Ask::Refuse(reject) => Some(refusal(shared, reject)),
    }
}

/// A reply before it is serialized.
#[derive(Clone, PartialEq)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Arc<[u8]>,
    allow: Option<&'static str>,
}

fn reply(status: u16, content_type: &'static str, body: impl Into<Arc<[u8]>>) -> Reply {
    Reply {
        status,
        content_type,
        body: body.into(),
        allow: None,
    }
}

fn request(
    shared: &Shared,
    cache: &mut Cache,
    head: &Head,
    peer: SocketAddr,
    now: Instant,
) -> Option<Answer> {
    let (path, query) = match &head.target {
        Target::Server => {
            // OPTIONS *: what the server as a whole supports.
            let allow = if shared.enable_quit {
                "GET, HEAD, POST, OPTIONS"
            } else {
                "GET, HEAD, OPTIONS"
            };
            return Some(finish(shared, cache, head, options(allow), false));
        }
        Target::Path { path, query } => (path, query),
    };
    let Some(resource) = find(shared, path) else {
        return Some(finish(
            shared,
            cache,
            head,
            reply(404, TEXT, &b"404 page not found\n"[..]),
            false,
        ));
    };
    if head.method == Method::Options {
        return Some(finish(
            shared,
            cache,
            head,
            options(resource.allow()),
            false,
        ));
    }
    if !resource.allows(head.method) {
        let mut refused = reply(405, TEXT, &b"405 method not allowed\n"[..]);
        refused.allow = Some(resource.allow());
        return Some(finish(shared, cache, head, refused, false));
    }
    let made_per_request = match resource {
        Resource::Probe(_) => verbose(query),
        Resource::Index | Resource::Metrics | Resource::Status => true,
        Resource::Quit => false,
    };
    if made_per_request && conn::held() > HELD_MAX {
        return None;
    }
    if let (Resource::Probe(i), true) = (resource, log::enabled(Level::Info)) {
        // The Go original's line for every request to a probe URL.
        let spec = &shared.probes[i].spec;
        let client = peer.to_string();
        log::event(
            Level::Info,
            format_args!(
                "Client ip {client} requesting {} probe servicing cmd {}",
                spec.url, spec.cmd
            ),
            &[
                ("client", Value::Str(&client)),
                ("url", Value::Str(&spec.url)),
                ("cmd", Value::Str(&spec.cmd)),
            ],
        );
    }
    let reply = match resource {
        Resource::Probe(i) if verbose(query) => {
            let rendered = status::render_probe(&shared.probes[i], &shared.policy);
            reply(rendered.status, TEXT, rendered.body.into_bytes())
        }
        Resource::Probe(i) => {
            let answer = shared.probes[i].answer(now, &shared.policy);
            reply(answer.status, TEXT, answer.body)
        }
        Resource::Metrics => {
            // Counted before rendering, so a scrape sees itself.
            shared.requests.count(200);
            let text = metrics::render(&shared.probes, &shared.policy, &shared.requests.snapshot());
            let reply = reply(200, metrics::CONTENT_TYPE, text.into_bytes());
            let (bytes, body) = serialize(&reply, head.http11, head.keep_alive, is_head(head));
            return Some(Answer {
                bytes,
                body,
                quit: false,
            });
        }
        Resource::Status => {
            let rendered = status::render(&shared.probes, &shared.policy, query);
            let content_type = if rendered.json {
                "application/json"
            } else {
                TEXT
            };
            reply(rendered.status, content_type, rendered.body.into_bytes())
        }
        Resource::Index => reply(200, HTML, index_page(shared).into_bytes()),
        Resource::Quit => {
            info!("Shutdown requested via /quit by {peer}; stopping probes and exiting");
            let bye = reply(200, TEXT, &b"bye\n"[..]);
            return Some(finish(shared, cache, head, bye, true));
        }
    };
    Some(finish(shared, cache, head, reply, false))
}

/// `?verbose` (any value), as the apiserver's health endpoints take it.
fn verbose(query: &str) -> bool {
    !query.is_empty()
        && status::query_pairs(query)
            .iter()
            .any(|(k, _)| k == "verbose")
}

fn options(allow: &'static str) -> Reply {
    let mut reply = reply(204, TEXT, &[][..]);
    reply.allow = Some(allow);
    reply
}

fn is_head(head: &Head) -> bool {
    head.method == Method::Head
}

fn finish(shared: &Shared, cache: &mut Cache, head: &Head, reply: Reply, quit: bool) -> Answer {
    shared.requests.count(reply.status);
    let (bytes, body) =
        cache.serialize(&reply, head.http11, head.keep_alive && !quit, is_head(head));
    Answer { bytes, body, quit }
}

/// A refused request: our answer, then the connection closes.
fn refusal(shared: &Shared, reject: Reject) -> Answer {
    shared.requests.count(reject.status);
    let reason = StatusCode(reject.status).default_reason_phrase();
    let body = format!("{} {reason}: {}\n", reject.status, reject.why);
    let (bytes, body) = serialize(
        &reply(reject.status, TEXT, body.into_bytes()),
        true,
        false,
        false,
    );
    Answer {
        bytes,
        body,
        quit: false,
    }
}

/// Serialized answers kept for reuse. `serialize` is a pure function of the
/// reply, the framing and the current second (tiny_http's `Date`), and a
/// probe URL is asked the same thing over and over: a kubelet every period,
/// a load test 100,000 times a second. Building and serializing a tiny_http
/// `Response` was most of the user CPU of an answer (perf); a hit is one
/// copy. One cache per event loop, so no lock; small bodies only, so a
/// lookup compares a few bytes and `/status` output is never kept.
#[derive(Default)]
pub struct Cache {
    entries: Vec<Cached>,
    /// The entry the next insert replaces once all are taken.
    next: usize,
}

struct Cached {
    /// The Unix second the bytes were made in (their `Date`).
    second: u64,
    reply: Reply,
    framing: (bool, bool, bool),
    /// The whole answer (its body is small: inline).
    bytes: Vec<u8>,
}

const CACHE_ENTRIES: usize = 8;
const CACHE_BODY_MAX: usize = 512;

impl Cache {
    /// The response's bytes, as tiny_http writes them, reused when the
    /// same reply was serialized with the same framing this second.
    fn serialize(
        &mut self,
        reply: &Reply,
        http11: bool,
        keep_alive: bool,
        head_request: bool,
    ) -> (Vec<u8>, Option<Arc<[u8]>>) {
        if reply.body.len() > CACHE_BODY_MAX {
            return serialize(reply, http11, keep_alive, head_request);
        }
        let framing = (http11, keep_alive, head_request);
        let second = unix_second();
        if let Some(hit) = self
            .entries
            .iter()
            .find(|e| e.second == second && e.framing == framing && e.reply == *reply)
        {
            return (hit.bytes.clone(), None);
        }
        let (bytes, body) = serialize(reply, http11, keep_alive, head_request);
        debug_assert!(body.is_none(), "small bodies are inline");
        // Kept only if tiny_http's Date is surely of `second`: made
        // within it.
        if unix_second() == second {
            let cached = Cached {
                second,
                reply: reply.clone(),
                framing,
                bytes: bytes.clone(),
            };
            if self.entries.len() < CACHE_ENTRIES {
                self.entries.push(cached);
            } else {
                self.entries[self.next] = cached;
                self.next = (self.next + 1) % CACHE_ENTRIES;
            }
        }
        (bytes, None)
    }
}

fn unix_second() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The response as tiny_http writes it: its head, with the body after it
/// when small, or beside it (shared, not copied) when large.
fn serialize(
    reply: &Reply,
    http11: bool,
    keep_alive: bool,
    head_request: bool,
) -> (Vec<u8>, Option<Arc<[u8]>>) {
    let length = reply.body.len();
    let mut response = Response::new(
        StatusCode(reply.status),
        Vec::new(),
        std::io::empty(),
        Some(length),
        None,
    )
    // Never chunked: every answer is in memory with a known length.
    .with_chunked_threshold(usize::MAX)
    .with_header(header("Server", "exechealthz"))
    // Every answer says how things are now: no cache may keep it.
    .with_header(header("Cache-Control", "no-store"));
    if reply.status != 204 {
        response.add_header(header("Content-Type", reply.content_type));
    }
    if let Some(allow) = reply.allow {
        response.add_header(header("Allow", allow));
    }
    let version = HTTPVersion(1, u8::from(http11));
    let inline = length <= INLINE_BODY_MAX;
    let mut bytes = Vec::with_capacity(if inline { length } else { 0 } + 224);
    // The head only (the body is added below); writing to a Vec cannot fail.
    let _ = response.raw_print(&mut bytes, version, &[], true, None);
    if reply.status == 204 {
        // tiny_http 0.12 writes `Content-Length: 0` on a 204, which RFC
        // 9110 (8.6) forbids.
        remove_line(&mut bytes, b"Content-Length: 0\r\n");
    }
    // tiny_http leaves Connection to its own server and drops it from
    // `add_header`; without that server, it is ours to write.
    if !keep_alive {
        insert_line(&mut bytes, b"Connection: close\r\n");
    } else if !http11 {
        insert_line(&mut bytes, b"Connection: keep-alive\r\n");
    }
    if head_request || reply.status == 204 || length == 0 {
        (bytes, None)
    } else if inline {
        bytes.extend_from_slice(&reply.body);
        (bytes, None)
    } else {
        (bytes, Some(Arc::clone(&reply.body)))
    }
}

fn head_end(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |at| at + 2)
}

fn remove_line(bytes: &mut Vec<u8>, line: &[u8]) {
    let end = head_end(bytes);
    if let Some(at) = bytes[..end].windows(line.len()).position(|w| w == line) {
        bytes.drain(at..at + line.len());
    }
}

/// Adds a header line at the end of the head.
fn insert_line(bytes: &mut Vec<u8>, line: &[u8]) {
    let end = head_end(bytes);
    bytes.splice(end..end, line.iter().copied());
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

fn index_page(shared: &Shared) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html><head><title>exechealthz</title></head><body>\n\
         <h1>exechealthz</h1>\n<h2>Probes</h2>\n<ul>\n",
    );
    // Probes by URL only: command text may carry secrets.
    for probe in shared.probes.iter() {
        let url = escape_html(&probe.spec.url);
        page.push_str(&format!("<li><a href=\"{url}\">{url}</a></li>\n"));
    }
    page.push_str(
        "</ul>\n<h2>Server</h2>\n<ul>\n<li><a href=\"/\">/</a>: this page</li>\n\
         <li><a href=\"/status\">/status</a>: every probe at once \
         (<a href=\"/status?format=json\">JSON</a>; ?exclude=URL)</li>\n\
         <li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\n",
    );
    if shared.enable_quit {
        page.push_str("<li>/quit: stops the process (GET or POST)</li>\n");
    }
    page.push_str("</ul>\n</body></html>\n");
    page
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole answer: its bytes, then its body beside them.
    fn text(answer: &(Vec<u8>, Option<Arc<[u8]>>)) -> String {
        let mut all = answer.0.clone();
        all.extend_from_slice(answer.1.as_deref().unwrap_or(&[]));
        String::from_utf8_lossy(&all).into_owned()
    }

    #[test]
    fn serializes_through_tiny_http() {
        let ok = serialize(&reply(200, TEXT, &b"ok"[..]), true, true, false);
        let ok = text(&ok);
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("\r\nDate: "), "{ok}");
        assert!(ok.contains("\r\nContent-Length: 2\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nok"), "{ok}");
        assert!(!ok.contains("Connection"), "{ok}");

        let head = text(&serialize(
            &reply(503, TEXT, &b"down"[..]),
            false,
            false,
            true,
        ));
        assert!(head.starts_with("HTTP/1.0 503 "), "{head}");
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Length: 4\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");

        let kept = text(&serialize(
            &reply(200, TEXT, &b"ok"[..]),
            false,
            true,
            false,
        ));
        assert!(kept.contains("\r\nConnection: keep-alive\r\n"), "{kept}");
    }

    #[test]
    fn a_cached_answer_is_what_tiny_http_would_write() {
        let mut cache = Cache::default();
        let ok = reply(200, TEXT, &b"ok"[..]);
        // Within one second (tried again if the second turned meanwhile),
        // the cache gives the bytes a fresh serialization gives.
        let (fresh, first, again) = loop {
            let second = unix_second();
            let fresh = serialize(&ok, true, true, false);
            let first = cache.serialize(&ok, true, true, false);
            let again = cache.serialize(&ok, true, true, false);
            if unix_second() == second {
                break (fresh, first, again);
            }
        };
        assert_eq!(first, fresh);
        assert_eq!(again, fresh);
        let kept = cache.entries.len();
        assert!(kept >= 1, "kept");

        // Another framing, status, header or body is another answer.
        let head = text(&cache.serialize(&ok, true, true, true));
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        let close = text(&cache.serialize(&ok, true, false, false));
        assert!(close.contains("Connection: close"), "{close}");
        let down = text(&cache.serialize(&reply(503, TEXT, &b"down\n"[..]), true, true, false));
        assert!(
            down.starts_with("HTTP/1.1 503 ") && down.ends_with("down\n"),
            "{down}"
        );
        let mut with_allow = reply(405, TEXT, &b"405 method not allowed\n"[..]);
        with_allow.allow = Some("GET, HEAD, OPTIONS");
        assert!(text(&cache.serialize(&with_allow, true, true, false)).contains("Allow: "));
        let other = text(&cache.serialize(&reply(200, TEXT, &b"ko"[..]), true, true, false));
        assert!(other.ends_with("\r\n\r\nko"), "{other}");

        // An entry of another second is not used: its Date is stale.
        for entry in &mut cache.entries {
            entry.second -= 1;
            entry.bytes = b"stale".to_vec();
        }
        assert_ne!(cache.serialize(&ok, true, true, false).0, b"stale");

        // Bounded, and large bodies never kept.
        for i in 0..3 * CACHE_ENTRIES {
            cache.serialize(
                &reply(200, TEXT, format!("{i}").into_bytes()),
                true,
                true,
                false,
            );
        }
        assert_eq!(cache.entries.len(), CACHE_ENTRIES);
        let large = reply(200, TEXT, vec![b'x'; CACHE_BODY_MAX + 1]);
        let bytes = cache.serialize(&large, true, true, false);
        assert!(text(&bytes).ends_with(&"x".repeat(CACHE_BODY_MAX + 1)));
        assert!(
            cache
                .entries
                .iter()
                .all(|e| e.reply.body.len() <= CACHE_BODY_MAX)
        );
    }

    #[test]
    fn no_content_has_no_length() {
        let options = text(&serialize(
            &options("GET, HEAD, OPTIONS"),
            true,
            true,
            false,
        ));
        assert!(options.starts_with("HTTP/1.1 204 "), "{options}");
        assert!(options.contains("\r\nAllow: GET, HEAD, OPTIONS\r\n"));
        assert!(!options.contains("Content-Length"), "{options}");
        assert!(!options.contains("Content-Type"), "{options}");
    }
}
