//! HTTP/2 (RFC 9113) over cleartext with prior knowledge, for one request
//! on stream 1: the client's half of a connection, as small as a correct
//! peer can be.
//!
//! `Client` is the connection's state machine and does no I/O: bytes from
//! the server go in (`receive`), bytes for the server come out (`out`),
//! and the response appears when its stream ends. `exchange` drives it
//! over a socket within a deadline. It sends the preface, its SETTINGS and
//! the request's HEADERS at once; the request's DATA waits for the
//! server's SETTINGS, so it is sent within the server's window and frame
//! size. It acknowledges SETTINGS, answers PING, follows WINDOW_UPDATE,
//! and takes CONTINUATION, padding and priority as they come.
//!
//! What a server sends is bounded: frames by the 16 KiB frame size we
//! keep, header blocks by `MAX_HEADER_BLOCK`, the body by the caller's
//! bound. It must not open a second stream, accept a push, or say more
//! than the call needs (no priorities, no table indexing of its own).

use std::io::{self, Write};
use std::time::Instant;

use super::hpack::{self, Field};
use super::{Failure, Source, io_failure, left};

/// The connection preface (RFC 9113 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The largest frame payload we accept: SETTINGS_MAX_FRAME_SIZE's
/// default, which we keep.
const MAX_FRAME: usize = 16_384;
/// A header block (with its CONTINUATIONs), and its decoded list, larger
/// than this fails the call.
pub const MAX_HEADER_BLOCK: usize = 16 * 1024;

/// The flow-control window of a new stream and of the connection, until
/// SETTINGS or WINDOW_UPDATE changes it (RFC 9113 6.9.2).
const DEFAULT_WINDOW: i64 = 65_535;
const MAX_WINDOW: i64 = (1 << 31) - 1;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// Our one stream.
const STREAM: u32 = 1;

/// The response to the request: its header fields, its trailers (none for
/// a trailers-only response, whose fields are all in `headers`, and none
/// when DATA ended the stream), its body. Pseudo-header fields are checked
/// here (RFC 9113 8.3: `:status` once, first, in the headers only).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Response {
    pub headers: Vec<Field>,
    pub trailers: Option<Vec<Field>>,
    pub body: Vec<u8>,
    /// The headers' block ended the stream: a trailers-only response.
    pub ended_by_headers: bool,
}

/// A header block being read: HEADERS, then CONTINUATION until one has
/// END_HEADERS.
struct Block {
    bytes: Vec<u8>,
    end_stream: bool,
}

/// The client's side of the connection: what it has sent and may send,
/// what it has received.
pub struct Client {
    /// Bytes for the server, in order.
    pub out: Vec<u8>,
    /// What has arrived and is not a whole frame yet.
    pending: Vec<u8>,
    decoder: hpack::Decoder,
    /// The server's first SETTINGS has arrived.
    settings_seen: bool,
    /// The request's body, and how much of it is sent.
    body: Vec<u8>,
    sent: usize,
    /// What the server lets us send (RFC 9113 6.9): on the connection, on
    /// our stream; and its largest frame.
    connection_window: i64,
    stream_window: i64,
    initial_window: i64,
    peer_max_frame: usize,
    /// The body's last frame (END_STREAM) is sent.
    body_sent: bool,
    block: Option<Block>,
    response: Response,
    /// The final (non-1xx) header block has arrived.
    answered: bool,
    /// The response has ended (END_STREAM).
    pub done: bool,
    /// The body's bound.
    max_body: usize,
    /// Past the bound, the body is cut there and the response taken as it
    /// is (h2c://, as the kubelet reads 10 KiB), rather than failing.
    pub truncate_body: bool,
    /// A GOAWAY that let our stream go on: its error code, for the reason
    /// if the connection then closes early.
    goaway: Option<u32>,
}

impl Client {
    /// A connection that will send `headers` (an HPACK block) and `body`
    /// on stream 1, and accept a response body of at most `max_body`.
    pub fn new(headers: &[u8], body: Vec<u8>, max_body: usize) -> Client {
        let mut client = Client {
            out: PREFACE.to_vec(),
            pending: Vec::new(),
            decoder: hpack::Decoder::new(),
            settings_seen: false,
            body,
            sent: 0,
            connection_window: DEFAULT_WINDOW,
            stream_window: DEFAULT_WINDOW,
            initial_window: DEFAULT_WINDOW,
            peer_max_frame: MAX_FRAME,
            body_sent: false,
            block: None,
            response: Response::default(),
            answered: false,
            done: false,
            max_body,
            truncate_body: false,
            goaway: None,
        };
        // SETTINGS: no push (2), and the header list we take (6).
        let mut settings = Vec::with_capacity(12);
        for (id, value) in [(2u16, 0u32), (6, MAX_HEADER_BLOCK as u32)] {
            settings.extend_from_slice(&id.to_be_bytes());
            settings.extend_from_slice(&value.to_be_bytes());
        }
        client.frame(SETTINGS, 0, 0, &settings);
        // The request's header block is small; split it at the smallest
        // frame size all the same.
        // No body (a GET): the request ends with its HEADERS frame.
        client.body_sent = client.body.is_empty();
        let mut chunks = headers.chunks(MAX_FRAME).peekable();
        let mut kind = HEADERS;
        while let Some(chunk) = chunks.next() {
            let mut flags = if chunks.peek().is_none() {
                END_HEADERS
            } else {
                0
            };
            if kind == HEADERS && client.body_sent {
                flags |= END_STREAM;
            }
            client.frame(kind, flags, STREAM, chunk);
            kind = CONTINUATION;
        }
        client
    }

    /// Takes bytes from the server: the response once its stream has
    /// ended, or `None` while more is to come, or why the call fails.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Option<Response>, String> {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        let result = loop {
            let rest = &self.pending[at..];
            if rest.len() < 9 {
                break Ok(None);
            }
            let length = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let (kind, flags) = (rest[3], rest[4]);
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & !(1 << 31);
            if !self.settings_seen && (kind != SETTINGS || flags & ACK != 0) {
                break Err(not_http2(rest));
            }
            if length > MAX_FRAME {
                break Err(format!(
                    "a frame of {length} bytes, over the {MAX_FRAME} we allow (FRAME_SIZE_ERROR)"
                ));
            }
            if rest.len() < 9 + length {
                break Ok(None);
            }
            let payload = rest[9..9 + length].to_vec();
            at += 9 + length;
            if let Err(why) = self.frame_in(kind, flags, stream, &payload) {
                break Err(why);
            }
            if self.done {
                break Ok(Some(std::mem::take(&mut self.response)));
            }
        };
        self.pending.drain(..at);
        if result.is_ok() {
            self.send_body();
        }
        result
    }

    /// Bytes received and not yet a whole frame.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Why the connection's end, now, fails the call.
    pub fn closed(&self) -> String {
        if !self.settings_seen {
            if self.pending.is_empty() {
                return "connection closed before the server's HTTP/2 preface".into();
            }
            return not_http2(&self.pending);
        }
        let when = if self.answered {
            "in the middle of the answer"
        } else {
            "before the answer"
        };
        match self.goaway {
            Some(code) => format!(
                "the server sent GOAWAY ({}), then closed the connection {when}",
                error_name(code)
            ),
            None => format!("connection closed {when}"),
        }
    }

    /// A GOAWAY frame that ends the connection with `code` (0: politely).
    pub fn goaway(&mut self, code: u32) {
        let mut payload = [0u8; 8];
        payload[4..].copy_from_slice(&code.to_be_bytes());
        self.frame(GOAWAY, 0, 0, &payload);
    }

    /// Appends one frame to `out`.
    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.out
            .extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        self.out.extend_from_slice(&[kind, flags]);
        self.out.extend_from_slice(&stream.to_be_bytes());
        self.out.extend_from_slice(payload);
    }

    /// Sends as much of the body as the server's windows and frame size
    /// let us, once its SETTINGS have told us what they are.
    fn send_body(&mut self) {
        if !self.settings_seen || self.done {
            return;
        }
        while !self.body_sent {
            let window = self.connection_window.min(self.stream_window).max(0) as usize;
            let left = self.body.len() - self.sent;
            let n = left.min(window).min(self.peer_max_frame);
            if n == 0 && left > 0 {
                return; // until a WINDOW_UPDATE
            }
            self.body_sent = n == left;
            let flags = if self.body_sent { END_STREAM } else { 0 };
            let chunk = self.body[self.sent..self.sent + n].to_vec();
            self.frame(DATA, flags, STREAM, &chunk);
            self.sent += n;
            self.connection_window -= n as i64;
            self.stream_window -= n as i64;
        }
    }

    /// One whole frame from the server.
    fn frame_in(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Result<(), String> {
        if self.block.is_some() && kind != CONTINUATION {
            return Err(protocol("a header block interrupted by another frame"));
        }
        let on_connection = matches!(kind, SETTINGS | PING | GOAWAY);
        if on_connection && stream != 0 {
            return Err(protocol("SETTINGS, PING or GOAWAY on a stream"));
        }
        if !on_connection && kind != WINDOW_UPDATE && kind <= CONTINUATION && stream == 0 {
            return Err(protocol("a stream's frame on stream 0"));
        }
        if matches!(kind, DATA | HEADERS | CONTINUATION | PUSH_PROMISE) && stream != STREAM {
            return Err(protocol(&format!(
                "a frame on stream {stream}, which we did not open"
            )));
        }
        match kind {
            DATA => {
                let data = unpad(flags, payload)?;
                if !self.answered {
                    return Err(protocol("DATA before the response's HEADERS"));
                }
                let room = self.max_body - self.response.body.len();
                if data.len() > room && !self.truncate_body {
                    return Err(format!("a response body over {} bytes", self.max_body));
                }
                self.response
                    .body
                    .extend_from_slice(&data[..data.len().min(room)]);
                if flags & END_STREAM != 0 || (self.truncate_body && data.len() >= room) {
                    self.done = true;
                }
            }
            HEADERS => {
                let mut block = unpad(flags, payload)?;
                if flags & PRIORITY_FLAG != 0 {
                    block = block
                        .get(5..)
                        .ok_or("HTTP/2 protocol error: short PRIORITY fields")?;
                }
                self.block = Some(Block {
                    bytes: Vec::new(),
                    end_stream: flags & END_STREAM != 0,
                });
                self.block_part(flags, block)?;
            }
            CONTINUATION => {
                if self.block.is_none() {
                    return Err(protocol("CONTINUATION without HEADERS"));
                }
                self.block_part(flags, payload)?;
            }
            PRIORITY if payload.len() != 5 => return Err(protocol("PRIORITY of the wrong size")),
            RST_STREAM => {
                let code =
                    word(payload).ok_or("HTTP/2 protocol error: RST_STREAM of the wrong size")?;
                if stream == STREAM {
                    return Err(format!(
                        "the server reset the stream (RST_STREAM {})",
                        error_name(code)
                    ));
                }
            }
            SETTINGS => {
                if flags & ACK != 0 {
                    return Ok(());
                }
                if !payload.len().is_multiple_of(6) {
                    return Err(protocol("SETTINGS of the wrong size"));
                }
                for setting in payload.chunks(6) {
                    let id = u16::from_be_bytes([setting[0], setting[1]]);
                    let value =
                        u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
                    match id {
                        4 if value as i64 > MAX_WINDOW => {
                            return Err(protocol("SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1"));
                        }
                        // The change applies to our open stream (6.9.2).
                        4 => {
                            self.stream_window += value as i64 - self.initial_window;
                            self.initial_window = value as i64;
                        }
                        5 if !(16_384..=16_777_215).contains(&value) => {
                            return Err(protocol(&format!(
                                "SETTINGS_MAX_FRAME_SIZE {value}, outside 16384 to 2^24-1"
                            )));
                        }
                        5 => self.peer_max_frame = value as usize,
                        _ => {}
                    }
                }
                self.settings_seen = true;
                self.frame(SETTINGS, ACK, 0, &[]);
            }
            PUSH_PROMISE => return Err(protocol("PUSH_PROMISE, with push disabled")),
            PING => {
                if payload.len() != 8 {
                    return Err(protocol("PING of the wrong size"));
                }
                if flags & ACK == 0 {
                    self.frame(PING, ACK, 0, payload);
                }
            }
            GOAWAY => {
                let last = word(payload).ok_or("HTTP/2 protocol error: short GOAWAY")? & !(1 << 31);
                let code = payload
                    .get(4..8)
                    .and_then(word)
                    .ok_or("HTTP/2 protocol error: short GOAWAY")?;
                if last < STREAM {
                    let debug = String::from_utf8_lossy(&payload[8..payload.len().min(8 + 200)]);
                    let debug = if debug.is_empty() {
                        String::new()
                    } else {
                        format!(": {debug:?}")
                    };
                    return Err(format!(
                        "the server closed the connection before the answer (GOAWAY {}{debug})",
                        error_name(code)
                    ));
                }
                // Our stream will still be answered.
                self.goaway = Some(code);
            }
            WINDOW_UPDATE => {
                let increment = word(payload)
                    .ok_or("HTTP/2 protocol error: WINDOW_UPDATE of the wrong size")?
                    & !(1 << 31);
                if increment == 0 {
                    return Err(protocol("WINDOW_UPDATE of 0"));
                }
                let window = match stream {
                    0 => &mut self.connection_window,
                    STREAM => &mut self.stream_window,
                    _ => return Ok(()),
                };
                *window += increment as i64;
                if *window > MAX_WINDOW {
                    return Err("HTTP/2 flow-control error: window over 2^31-1".into());
                }
            }
            _ => {} // unknown frame types are ignored (RFC 9113 5.5)
        }
        Ok(())
    }

    /// A piece of a header block; at END_HEADERS, the block is decoded.
    fn block_part(&mut self, flags: u8, part: &[u8]) -> Result<(), String> {
        let block = self.block.as_mut().expect("a block is open");
        if block.bytes.len() + part.len() > MAX_HEADER_BLOCK {
            return Err(format!(
                "a header block over {} KiB",
                MAX_HEADER_BLOCK / 1024
            ));
        }
        block.bytes.extend_from_slice(part);
        if flags & END_HEADERS == 0 {
            return Ok(());
        }
        let Block { bytes, end_stream } = self.block.take().expect("a block is open");
        // Decoded even when it is not wanted: the table must stay in step.
        let fields = self
            .decoder
            .decode(&bytes, MAX_HEADER_BLOCK)
            .map_err(|why| format!("HTTP/2 compression error: {why}"))?;
        check_pseudo_fields(&fields, self.answered)?;
        if self.answered {
            if !end_stream {
                return Err("HTTP/2 protocol error: trailers without END_STREAM".into());
            }
            self.response.trailers = Some(fields);
        } else {
            let informational = fields
                .iter()
                .find(|(name, _)| name == b":status")
                .is_some_and(|(_, value)| value.first() == Some(&b'1'));
            if informational && !end_stream {
                return Ok(()); // a 1xx answer; the final one follows
            }
            self.answered = true;
            self.response.headers = fields;
            self.response.ended_by_headers = end_stream;
        }
        self.done = end_stream;
        Ok(())
    }
}

/// A response's pseudo-header fields as RFC 9113 8.3 wants them (and Go's
/// framer checks them, for grpc-go): in a response's headers `:status`
/// exactly once, before every other field, and no other pseudo-header; in
/// trailers none at all. A block that breaks this is malformed.
fn check_pseudo_fields(fields: &[Field], trailers: bool) -> Result<(), String> {
    let malformed = |why: String| Err(format!("HTTP/2 protocol error: malformed response: {why}"));
    let mut statuses = 0;
    let mut regular = false;
    for (name, _) in fields {
        if name.first() != Some(&b':') {
            regular = true;
            continue;
        }
        let shown = String::from_utf8_lossy(name);
        if trailers {
            return malformed(format!("pseudo-header {shown} in trailers"));
        }
        if name != b":status" {
            return malformed(format!("pseudo-header {shown} in a response"));
        }
        if regular {
            return malformed(format!("{shown} after a regular field"));
        }
        statuses += 1;
        if statuses > 1 {
            return malformed(":status twice".into());
        }
    }
    if !trailers && statuses == 0 {
        return malformed("no :status".into());
    }
    Ok(())
}

/// Why a frame breaks HTTP/2's rules.
fn protocol(why: &str) -> String {
    format!("HTTP/2 protocol error: {why}")
}

/// A padded frame's content (RFC 9113 6.1): without the pad length and
/// the padding.
fn unpad(flags: u8, payload: &[u8]) -> Result<&[u8], String> {
    if flags & PADDED == 0 {
        return Ok(payload);
    }
    let pad = *payload
        .first()
        .ok_or("HTTP/2 protocol error: no pad length")? as usize;
    if pad >= payload.len() {
        return Err("HTTP/2 protocol error: padding longer than the frame".into());
    }
    Ok(&payload[1..payload.len() - pad])
}

/// The 32-bit word a payload begins with.
fn word(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.get(..4)?.try_into().ok()?))
}

/// Why bytes that do not begin with SETTINGS mean this is no HTTP/2 peer.
fn not_http2(bytes: &[u8]) -> String {
    if bytes.starts_with(b"HTTP/1.") {
        let line = bytes
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or(b"");
        let line = String::from_utf8_lossy(&line[..line.len().min(80)]);
        return format!(
            "not an HTTP/2 server: it answered in HTTP/1 ({line}); this check speaks \
             HTTP/2 without TLS (h2c, prior knowledge)"
        );
    }
    "not an HTTP/2 server: its first bytes are not a SETTINGS frame".into()
}

/// RFC 9113 7: an error code's name.
pub fn error_name(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    match NAMES.get(code as usize) {
        Some(name) => (*name).to_string(),
        None => format!("error code {code}"),
    }
}

/// One request over `stream`, within `deadline`: the response, or why
/// not. The connection then ends with GOAWAY: after an answer with
/// NO_ERROR, so the server has nothing to complain of; after a protocol
/// failure with PROTOCOL_ERROR.
/// One request on a connection just opened to `addr` (grpc://, h2c://):
/// the exchange, then the clean close, with a failure named after `addr`.
pub fn call(
    stream: &mut super::Stream,
    addr: &str,
    client: Client,
    deadline: Instant,
) -> Result<Response, Failure> {
    let response = exchange(stream, client, deadline);
    if !matches!(response, Err(Failure::TimedOut)) {
        stream.close_cleanly(deadline);
    }
    response.map_err(|f| match f {
        Failure::Error(why) => Failure::Error(format!("{addr}: {why}")),
        other => other,
    })
}

pub fn exchange<S: Source + Write>(
    stream: &mut S,
    mut client: Client,
    deadline: Instant,
) -> Result<Response, Failure> {
    let mut buffer = [0u8; 4096];
    loop {
        if !client.out.is_empty() {
            stream
                .set_write_timeout(left(deadline)?)
                .and_then(|_| stream.write_all(&client.out))
                .map_err(|e| io_failure("send", e))?;
            client.out.clear();
        }
        stream
            .set_read_timeout(left(deadline)?)
            .map_err(|e| io_failure("set timeout", e))?;
        let n = match stream.read(&mut buffer) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // No SETTINGS yet: the connection is not ready (gRPC's words:
            // it failed to connect).
            Err(e) => {
                return Err(match io_failure("read", e) {
                    Failure::TimedOut if !client.settings_seen => Failure::TimedOutIn("connect"),
                    other => other,
                });
            }
        };
        if n == 0 {
            return Err(Failure::Error(client.closed()));
        }
        let (code, result) = match client.receive(&buffer[..n]) {
            Ok(None) => continue,
            Ok(Some(response)) => (0, Ok(response)),
            Err(why) => (1, Err(Failure::Error(why))),
        };
        // Best effort: the call's result is known already.
        client.goaway(code);
        let _ = stream.write_all(&client.out);
        return result;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (id, value) in pairs {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        frame(SETTINGS, 0, 0, &payload)
    }

    /// The frames in `bytes`, as (kind, flags, stream, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut found = Vec::new();
        while !bytes.is_empty() {
            let length = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            let stream = u32::from_be_bytes(bytes[5..9].try_into().unwrap());
            found.push((bytes[3], bytes[4], stream, bytes[9..9 + length].to_vec()));
            bytes = &bytes[9 + length..];
        }
        found
    }

    fn client(body: &[u8]) -> Client {
        let mut client = Client::new(b"\x83", body.to_vec(), 100);
        client.out.clear();
        client
    }

    fn block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        for (name, value) in fields {
            hpack::literal(&mut block, 0, name, value);
        }
        block
    }

    #[test]
    fn opens_with_preface_settings_and_headers_and_sends_data_after_settings() {
        let mut c = Client::new(b"\x83\x86", b"hello".to_vec(), 100);
        assert!(c.out.starts_with(PREFACE));
        let opening = frames(&c.out[PREFACE.len()..]);
        assert_eq!(opening.len(), 2, "{opening:?}");
        assert_eq!((opening[0].0, opening[0].2), (SETTINGS, 0));
        assert_eq!(opening[0].3, [0, 2, 0, 0, 0, 0, 0, 6, 0, 0, 0x40, 0]);
        assert_eq!(opening[1], (HEADERS, END_HEADERS, 1, b"\x83\x86".to_vec()));
        c.out.clear();
        // No DATA until the server's SETTINGS: then an ACK and the body.
        assert_eq!(c.receive(&settings(&[])), Ok(None));
        assert_eq!(
            frames(&c.out),
            [
                (SETTINGS, ACK, 0, vec![]),
                (DATA, END_STREAM, 1, b"hello".to_vec())
            ]
        );
    }

    #[test]
    fn answers_pings_and_sends_within_the_window() {
        let mut c = client(b"hello");
        c.receive(&settings(&[(4, 0)])).unwrap();
        assert_eq!(
            frames(&c.out),
            [(SETTINGS, ACK, 0, vec![])],
            "a shut window"
        );
        c.out.clear();
        c.receive(&frame(PING, 0, 0, b"12345678")).unwrap();
        assert_eq!(frames(&c.out), [(PING, ACK, 0, b"12345678".to_vec())]);
        c.out.clear();
        c.receive(&frame(PING, ACK, 0, b"12345678")).unwrap();
        assert!(c.out.is_empty(), "an ACK is not answered");
        c.receive(&frame(WINDOW_UPDATE, 0, 1, &2u32.to_be_bytes()))
            .unwrap();
        assert_eq!(frames(&c.out), [(DATA, 0, 1, b"he".to_vec())]);
        c.out.clear();
        // A new initial window moves the stream's by the difference (RFC
        // 9113 6.9.2): 0 to 4, so 2 + 4 - 2 sent leaves 4 for the last 3.
        c.receive(&settings(&[(4, 4)])).unwrap();
        assert_eq!(
            frames(&c.out),
            [
                (SETTINGS, ACK, 0, vec![]),
                (DATA, END_STREAM, 1, b"llo".to_vec())
            ]
        );
        // The connection's window holds too.
        let mut c = client(&[7; 20]);
        c.connection_window = 5;
        c.receive(&settings(&[])).unwrap();
        assert_eq!(frames(&c.out)[1], (DATA, 0, 1, vec![7; 5]));
    }

    #[test]
    fn splits_data_at_the_servers_frame_size() {
        let mut c = client(&[1; 40_000]);
        c.receive(&settings(&[(5, 16_384), (4, 1 << 20)])).unwrap();
        c.receive(&frame(WINDOW_UPDATE, 0, 0, &(1u32 << 20).to_be_bytes()))
            .unwrap();
        let sizes: Vec<_> = frames(&c.out)[1..]
            .iter()
            .map(|f| (f.1, f.3.len()))
            .collect();
        assert_eq!(sizes, [(0, 16_384), (0, 16_384), (END_STREAM, 7_232)]);
    }

    /// SETTINGS, then a padded HEADERS with priority split over a
    /// CONTINUATION, padded DATA, and trailers.
    fn a_whole_answer() -> Vec<u8> {
        let headers = block(&[(":status", "200"), ("content-type", "application/grpc")]);
        let mut padded = vec![3, 0, 0, 0, 0, 16];
        padded.extend_from_slice(&headers[..10]);
        padded.extend_from_slice(&[0; 3]);
        let mut data = vec![2];
        data.extend_from_slice(b"body");
        data.extend_from_slice(&[0; 2]);
        [
            settings(&[]),
            frame(HEADERS, PADDED | PRIORITY_FLAG, 1, &padded),
            frame(CONTINUATION, END_HEADERS, 1, &headers[10..]),
            frame(DATA, PADDED, 1, &data),
            frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &block(&[("grpc-status", "0")]),
            ),
        ]
        .concat()
    }

    #[test]
    fn assembles_an_answer_whole_or_a_byte_at_a_time() {
        let expected = Response {
            headers: vec![
                (b":status".to_vec(), b"200".to_vec()),
                (b"content-type".to_vec(), b"application/grpc".to_vec()),
            ],
            trailers: Some(vec![(b"grpc-status".to_vec(), b"0".to_vec())]),
            body: b"body".to_vec(),
            ended_by_headers: false,
        };
        let bytes = a_whole_answer();
        assert_eq!(client(b"x").receive(&bytes), Ok(Some(expected.clone())));
        let mut c = client(b"x");
        let mut got = None;
        for byte in &bytes {
            if let Some(response) = c.receive(&[*byte]).unwrap() {
                got = Some(response);
            }
        }
        assert_eq!(got, Some(expected));
        // Trailers-only, after an informational answer.
        let mut c = client(b"x");
        c.receive(&settings(&[])).unwrap();
        let got = c.receive(
            &[
                frame(HEADERS, END_HEADERS, 1, &block(&[(":status", "103")])),
                frame(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    1,
                    &block(&[(":status", "200"), ("grpc-status", "12")]),
                ),
            ]
            .concat(),
        );
        let response = got.unwrap().unwrap();
        assert_eq!(response.headers.len(), 2);
        assert_eq!(response.trailers, None);
        assert!(response.ended_by_headers);
    }

    #[test]
    fn refuses_what_breaks_the_rules() {
        let headers = frame(HEADERS, END_HEADERS, 1, &block(&[(":status", "200")]));
        for (frames_in, says) in [
            (
                vec![frame(PING, 0, 0, &[0; 8])],
                "first bytes are not a SETTINGS",
            ),
            (
                vec![b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()],
                "answered in HTTP/1 (HTTP/1.1 400 Bad Request)",
            ),
            (
                vec![frame(DATA, 0, 1, b"x")],
                "DATA before the response's HEADERS",
            ),
            (
                vec![frame(CONTINUATION, 0, 1, b"")],
                "CONTINUATION without HEADERS",
            ),
            (
                vec![frame(HEADERS, 0, 1, b""), frame(PING, 0, 0, &[0; 8])],
                "interrupted by another frame",
            ),
            (
                vec![frame(DATA, 0, 3, b"x")],
                "stream 3, which we did not open",
            ),
            (
                vec![frame(DATA, 0, 0, b"x")],
                "a stream's frame on stream 0",
            ),
            (vec![frame(PING, 0, 1, &[0; 8])], "on a stream"),
            (vec![frame(PING, 0, 0, &[0; 7])], "PING of the wrong size"),
            (
                vec![frame(SETTINGS, 0, 0, &[0; 5])],
                "SETTINGS of the wrong size",
            ),
            (vec![settings(&[(5, 100)])], "SETTINGS_MAX_FRAME_SIZE 100"),
            (vec![settings(&[(4, 1 << 31)])], "INITIAL_WINDOW_SIZE over"),
            (
                vec![frame(PUSH_PROMISE, END_HEADERS, 1, &[0; 4])],
                "push disabled",
            ),
            (
                vec![frame(RST_STREAM, 0, 1, &8u32.to_be_bytes())],
                "reset the stream (RST_STREAM CANCEL)",
            ),
            (
                vec![frame(GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 11, b'h', b'i'])],
                "before the answer (GOAWAY ENHANCE_YOUR_CALM: \"hi\")",
            ),
            (
                vec![frame(WINDOW_UPDATE, 0, 1, &0u32.to_be_bytes())],
                "WINDOW_UPDATE of 0",
            ),
            (
                vec![frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes())],
                "window over 2^31-1",
            ),
            (
                vec![(16_385u32.to_be_bytes()[1..]).to_vec(), vec![0; 6]],
                "a frame of 16385 bytes",
            ),
            (
                vec![frame(HEADERS, PADDED | END_HEADERS, 1, &[9, 0])],
                "padding longer than the frame",
            ),
            (
                vec![frame(HEADERS, END_HEADERS, 1, &[0x80])],
                "compression error: index 0",
            ),
            (
                vec![headers.clone(), frame(HEADERS, END_HEADERS, 1, &[])],
                "trailers without END_STREAM",
            ),
            (
                vec![headers.clone(), frame(DATA, 0, 1, &[0; 101])],
                "a response body over 100 bytes",
            ),
            (
                vec![frame(
                    HEADERS,
                    END_HEADERS,
                    1,
                    &block(&[(":status", "200"), (":status", "200")]),
                )],
                "malformed response: :status twice",
            ),
            (
                vec![frame(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    1,
                    &block(&[(":status", "103"), (":status", "200")]),
                )],
                "malformed response: :status twice",
            ),
            (
                vec![frame(
                    HEADERS,
                    END_HEADERS,
                    1,
                    &block(&[("content-type", "x"), (":status", "200")]),
                )],
                "malformed response: :status after a regular field",
            ),
            (
                vec![frame(
                    HEADERS,
                    END_HEADERS,
                    1,
                    &block(&[(":status", "200"), (":path", "/")]),
                )],
                "malformed response: pseudo-header :path in a response",
            ),
            (
                vec![frame(HEADERS, END_HEADERS, 1, &block(&[("a", "b")]))],
                "malformed response: no :status",
            ),
            (
                vec![
                    headers.clone(),
                    frame(
                        HEADERS,
                        END_HEADERS | END_STREAM,
                        1,
                        &block(&[("grpc-status", "0"), (":status", "200")]),
                    ),
                ],
                "malformed response: pseudo-header :status in trailers",
            ),
        ] {
            let mut c = client(b"x");
            let mut bytes = frames_in.concat();
            if !says.contains("SETTINGS") && !says.contains("HTTP/1") {
                bytes = [settings(&[]), bytes].concat();
            }
            let got = c.receive(&bytes);
            assert!(
                matches!(&got, Err(why) if why.contains(says)),
                "{says}: {got:?}"
            );
        }
        // Header blocks are bounded as they arrive.
        let mut c = client(b"x");
        c.receive(&settings(&[])).unwrap();
        c.receive(&frame(HEADERS, 0, 1, &[0; 16_000])).unwrap();
        let got = c.receive(&frame(CONTINUATION, 0, 1, &[0; 1_000]));
        assert_eq!(got, Err("a header block over 16 KiB".into()));
    }

    #[test]
    fn a_close_says_how_far_the_answer_got() {
        let mut c = client(b"x");
        assert!(c.closed().contains("before the server's HTTP/2 preface"));
        c.receive(&settings(&[])).unwrap();
        assert_eq!(c.closed(), "connection closed before the answer");
        c.receive(&frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]))
            .unwrap();
        assert_eq!(
            c.closed(),
            "the server sent GOAWAY (NO_ERROR), then closed the connection before the answer"
        );
        c.receive(&frame(
            HEADERS,
            END_HEADERS,
            1,
            &block(&[(":status", "200")]),
        ))
        .unwrap();
        assert!(c.closed().ends_with("in the middle of the answer"));
        c.goaway(0);
        assert_eq!(frames(&c.out).last().unwrap(), &(GOAWAY, 0, 0, vec![0; 8]));
    }
}
