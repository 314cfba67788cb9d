//! HTTP/1.x request heads: found within limits as bytes arrive (`Scan`),
//! then parsed by `httparse` and checked for what this server needs
//! (`parse`). Targets are reduced to a percent-decoded path and a query.
//!
//! Anything unusual is refused with a status code rather than interpreted.
//! This module does no I/O and knows nothing of routes.

/// Limits on a request head, as Apache's defaults for the first three.
pub const MAX_LINE: usize = 8190;
pub const MAX_HEADERS: usize = 100;
/// The whole head, request line included.
pub const MAX_HEAD: usize = 16 * 1024;
/// Request bodies are read and thrown away, up to this size.
pub const MAX_BODY: usize = 4096;

/// A refusal: the status to answer with (the connection is then closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub why: &'static str,
}

const fn reject(status: u16, why: &'static str) -> Reject {
    Reject { status, why }
}

/// Incremental search for the end of a head, with limits checked as bytes
/// arrive, in time proportional to the bytes seen (httparse starts over on
/// every call, so it runs once per line of the request line and once on
/// the complete head, never per read). Bytes that cannot begin an HTTP/1.x
/// request line are refused as soon as they are seen, without waiting for
/// a head that will never come (TLS, SSH, HTTP/0.9).
#[derive(Debug, Default, Clone)]
pub struct Scan {
    /// Bytes of the buffer already looked at.
    scanned: usize,
    /// Where the current line starts.
    line_start: usize,
    /// Lines completed so far (the request line is the first).
    lines: usize,
    /// Where the request line ends, until it is checked: a head that is
    /// complete in one call is checked whole by `parse` (one httparse
    /// pass, not two: a tenth of a request's instructions); one still
    /// coming has its request line checked at once, so that garbage is
    /// refused without waiting for a head that never ends.
    unchecked_line: Option<usize>,
}

impl Scan {
    /// Looks at `buffer[self.scanned..]`: `Ok(Some(n))` when the head is the
    /// first `n` bytes, `Ok(None)` when more bytes are needed.
    pub fn advance(&mut self, buffer: &[u8]) -> Result<Option<usize>, Reject> {
        if self.scanned == 0 && !buffer.is_empty() && !is_token_byte(buffer[0]) {
            // TLS handshakes, binary protocols, a blank line first.
            return Err(reject(400, "not an HTTP/1.x request"));
        }
        while self.scanned < buffer.len() {
            let at = self.scanned;
            self.scanned += 1;
            if buffer[at] == b'\r' {
                match buffer.get(at + 1) {
                    // A CR is looked at again once the next byte is here.
                    None => {
                        self.scanned = at;
                        break;
                    }
                    Some(b'\n') => {}
                    // RFC 9112 2.2: a bare CR is invalid; refused at once
                    // rather than waiting for a line end that never comes.
                    Some(_) => {
                        let bare = reject(400, "bare CR in the request head");
                        return Err(self.first_the_request_line(buffer, bare));
                    }
                }
                continue;
            }
            if buffer[at] != b'\n' {
                continue;
            }
            let line = &buffer[self.line_start..at];
            let Some(line) = line.strip_suffix(b"\r") else {
                let bare = reject(400, "line not ended by CRLF");
                return Err(self.first_the_request_line(buffer, bare));
            };
            if line.len() > MAX_LINE {
                let long = self.too_long();
                return Err(self.first_the_request_line(buffer, long));
            }
            if self.lines == 0 {
                self.unchecked_line = Some(at + 1);
            }
            self.line_start = at + 1;
            if line.is_empty() {
                if at + 1 > MAX_HEAD {
                    return Err(
                        self.first_the_request_line(buffer, reject(431, "request head too large"))
                    );
                }
                // `parse` checks the request line with the rest.
                self.unchecked_line = None;
                return Ok(Some(at + 1));
            }
            self.lines += 1;
            if self.lines > MAX_HEADERS + 1 {
                return Err(
                    self.first_the_request_line(buffer, reject(431, "too many header fields"))
                );
            }
        }
        if buffer.len() - self.line_start > MAX_LINE {
            return Err(self.first_the_request_line(buffer, self.too_long()));
        }
        if buffer.len() > MAX_HEAD {
            return Err(self.first_the_request_line(buffer, reject(431, "request head too large")));
        }
        // More to come: a request line that cannot be is refused now.
        if let Some(end) = self.unchecked_line.take() {
            request_line(&buffer[..end])?;
        }
        Ok(None)
    }

    /// `later`, unless the request line not yet checked is wrong: its
    /// refusal comes first, as it would have had it been checked when it
    /// ended.
    fn first_the_request_line(&mut self, buffer: &[u8], later: Reject) -> Reject {
        match self.unchecked_line.take() {
            Some(end) => request_line(&buffer[..end]).err().unwrap_or(later),
            None => later,
        }
    }

    fn too_long(&self) -> Reject {
        if self.lines == 0 {
            reject(414, "request line too long")
        } else {
            reject(431, "header field too long")
        }
    }
}

/// Checks a complete request line (with its CRLF) as httparse reads it.
fn request_line(line: &[u8]) -> Result<(), Reject> {
    let mut no_headers = [];
    match httparse::Request::new(&mut no_headers).parse(line) {
        Ok(_) => Ok(()),
        Err(e) => Err(refusal(e, line)),
    }
}

/// The request method, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Options,
    /// Any other token: answered 405 where a path exists.
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `*`, with OPTIONS only: the server as a whole.
    Server,
    /// A percent-decoded path (bytes: a decoded path need not be UTF-8)
    /// and the raw query after `?`, if any.
    Path { path: Vec<u8>, query: String },
}

/// A request head that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub method: Method,
    pub target: Target,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
    pub keep_alive: bool,
    pub content_length: usize,
    /// `Expect: 100-continue` on HTTP/1.1: the client may wait for a 100
    /// before it sends the body.
    pub expect_continue: bool,
}

/// Parses a complete head (the bytes `Scan` delimited) with httparse and
/// checks what a server must: one Host on HTTP/1.1, one numeric
/// Content-Length within `MAX_BODY`, no Transfer-Encoding, a target it can
/// route.
pub fn parse(bytes: &[u8]) -> Result<Head, Reject> {
    // Left uninitialized (httparse writes what it returns): zeroing 100
    // headers (3 KiB) a request was the hottest loop of our own code (perf).
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(bytes, &mut headers) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(reject(400, "incomplete request head")),
        Err(e) => return Err(refusal(e, bytes)),
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(reject(400, "malformed request line"));
    };
    let http11 = version == 1;
    let method = Method::from_token(method);

    let mut hosts = 0;
    let mut content_length: Option<usize> = None;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for header in request.headers.iter() {
        let name = header.name;
        let value = trim(header.value);
        if value
            .iter()
            .any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
        {
            return Err(reject(400, "control character in a header field"));
        }
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if !is_authority(value) {
                return Err(reject(400, "invalid Host"));
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = parse_length(value)?;
            if content_length.is_some_and(|seen| seen != length) {
                return Err(reject(400, "conflicting Content-Length"));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // No request here needs a body; a chunked one is where request
            // smuggling lives. Refused whatever its value.
            return Err(reject(
                400,
                "Transfer-Encoding in a request is not accepted",
            ));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|b| *b == b',').map(trim) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    if hosts > 1 || (http11 && hosts == 0) {
        return Err(reject(400, "HTTP/1.1 needs exactly one Host"));
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Err(reject(413, "request body too large"));
    }
    let target = parse_target(target)?;
    if target == Target::Server && method != Method::Options {
        return Err(reject(400, "* is a target for OPTIONS only"));
    }
    Ok(Head {
        method,
        target,
        http11,
        keep_alive: if http11 {
            !close
        } else {
            keep_alive_token && !close
        },
        content_length,
        expect_continue: http11 && expect_continue,
    })
}

/// A Host value as RFC 9112 3.2 allows: empty, or `uri-host [ ":" port ]`
/// where the host is a reg-name (unreserved, sub-delims, %XX), an IPv4
/// address (a reg-name's characters), or an IP literal in brackets.
fn is_authority(value: &[u8]) -> bool {
    let (host, port) = match value.strip_prefix(b"[") {
        Some(rest) => {
            let Some(close) = rest.iter().position(|b| *b == b']') else {
                return false;
            };
            let literal = &rest[..close];
            let ip_literal = !literal.is_empty()
                && literal
                    .iter()
                    // Hex and colons, a version's letters (IPvFuture), a
                    // zone (RFC 6874: %25 then unreserved characters).
                    .all(|b| {
                        b.is_ascii_alphanumeric() || b":.%-_~".contains(b) || is_sub_delim(*b)
                    })
                && (literal.contains(&b':') || literal[0].eq_ignore_ascii_case(&b'v'));
            if !ip_literal {
                return false;
            }
            (&[][..], &rest[close + 1..])
        }
        None => match value.iter().rposition(|b| *b == b':') {
            Some(at) => (&value[..at], &value[at..]),
            None => (value, &[][..]),
        },
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    let mut host = host.iter();
    let mut host_ok = true;
    while let Some(&b) = host.next() {
        host_ok &= match b {
            b'%' => {
                let high = host.next().is_some_and(u8::is_ascii_hexdigit);
                let low = host.next().is_some_and(u8::is_ascii_hexdigit);
                high && low
            }
            b => b.is_ascii_alphanumeric() || b"-._~".contains(&b) || is_sub_delim(b),
        };
    }
    port_ok && host_ok
}

/// RFC 3986 `sub-delims`.
fn is_sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}

/// Origin form (`/path?query`), absolute form (`http://host/path?query`,
/// which RFC 9112 says a server must accept; routed by its path alone) or
/// `*`. The path is percent-decoded; a bad escape is refused.
fn parse_target(target: &str) -> Result<Target, Reject> {
    if target == "*" {
        return Ok(Target::Server);
    }
    if !target.is_ascii() {
        return Err(reject(400, "request target is not ASCII"));
    }
    let origin = if target.starts_with('/') {
        target
    } else if let Some(rest) = strip_scheme(target) {
        // The authority runs to the first '/', '?' or the end.
        let path_at = rest.find(['/', '?']).unwrap_or(rest.len());
        if path_at == 0 {
            return Err(reject(400, "absolute target without a host"));
        }
        &rest[path_at..]
    } else {
        return Err(reject(400, "malformed request target"));
    };
    let (path, query) = origin.split_once('?').unwrap_or((origin, ""));
    let path = if path.is_empty() { "/" } else { path };
    Ok(Target::Path {
        path: percent_decode(path.as_bytes())?,
        query: query.to_string(),
    })
}

fn strip_scheme(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")).then_some(rest)
}

/// `%XX` to the byte it names; `%` not followed by two hex digits is an error.
fn percent_decode(text: &[u8]) -> Result<Vec<u8>, Reject> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let high = bytes.next().and_then(|h| (*h as char).to_digit(16));
        let low = bytes.next().and_then(|l| (*l as char).to_digit(16));
        match (high, low) {
            (Some(high), Some(low)) => out.push((high * 16 + low) as u8),
            _ => return Err(reject(400, "malformed percent-escape in the path")),
        }
    }
    Ok(out)
}

/// The status for what httparse refused.
fn refusal(error: httparse::Error, bytes: &[u8]) -> Reject {
    match error {
        httparse::Error::TooManyHeaders => reject(431, "too many header fields"),
        httparse::Error::Version if names_an_http_version(bytes) => {
            reject(505, "HTTP version not supported")
        }
        httparse::Error::Version => reject(400, "malformed HTTP version"),
        httparse::Error::Token => reject(400, "malformed method or request line"),
        httparse::Error::HeaderName => reject(400, "malformed header field name"),
        httparse::Error::HeaderValue => reject(400, "malformed header field value"),
        httparse::Error::NewLine => reject(400, "malformed line end"),
        _ => reject(400, "malformed request"),
    }
}

/// The request line ends in `HTTP/<digit>.<digit>`: a version we do not
/// speak (505) rather than garbage (400).
fn names_an_http_version(bytes: &[u8]) -> bool {
    let line_end = bytes
        .iter()
        .position(|b| *b == b'\r')
        .unwrap_or(bytes.len());
    let line = &bytes[..line_end];
    let version = line.rsplit(|b| *b == b' ').next().unwrap_or(b"");
    matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = value.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(start), Some(end)) => &value[start..=end],
        _ => &[],
    }
}

fn parse_length(value: &[u8]) -> Result<usize, Reject> {
    // Digits only: no sign, no spaces inside, no list.
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err(reject(400, "malformed Content-Length"));
    }
    Ok(value
        .iter()
        .fold(0, |n, digit| n * 10 + usize::from(digit - b'0')))
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(bytes: &[u8]) -> Result<Option<usize>, Reject> {
        Scan::default().advance(bytes)
    }

    fn full(bytes: &[u8]) -> Result<Head, Reject> {
        let end = scan_all(bytes)?.expect("complete head");
        parse(&bytes[..end])
    }

    fn path(p: &str, q: &str) -> Target {
        Target::Path {
            path: p.as_bytes().to_vec(),
            query: q.to_string(),
        }
    }

    #[test]
    fn finds_the_end_incrementally() {
        let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nextra";
        let mut scan = Scan::default();
        for end in 1..request.len() - 5 {
            assert_eq!(scan.advance(&request[..end]), Ok(None), "{end}");
        }
        assert_eq!(scan.advance(request), Ok(Some(request.len() - 5)));
    }

    #[test]
    fn a_plain_request() {
        let head =
            full(b"GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: kube-probe/1.30\r\n\r\n");
        assert_eq!(
            head,
            Ok(Head {
                method: Method::Get,
                target: path("/healthz", "x=1"),
                http11: true,
                keep_alive: true,
                content_length: 0,
                expect_continue: false,
            })
        );
    }

    #[test]
    fn host_must_be_an_authority() {
        let host = |value: &str| {
            let raw = format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n");
            full(raw.as_bytes()).map(|_| ()).map_err(|r| r.status)
        };
        for good in [
            "",
            "a",
            "example.com:8080",
            "10.0.0.1",
            "10.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[fe80::1%25eth0]",
            "my-svc.ns.svc.cluster.local",
            "a%41b",
            "xn--d1acufc.xn--p1ai",
            // RFC 3986: the port may be empty.
            "[::1]:",
            "a:",
        ] {
            assert_eq!(host(good), Ok(()), "{good:?}");
        }
        for bad in [
            "a b/c", "a/b", "a b", "a@b", "[::1", "[::1]x", "[]", "a:8x", "a%4", "a?b", "a#b",
            "a\"b", "a:b:c",
        ] {
            assert_eq!(host(bad), Err(400), "{bad:?}");
        }
    }

    #[test]
    fn expect_continue_is_seen_on_http11_only() {
        let head = full(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
        )
        .unwrap();
        assert!(head.expect_continue);
        let old = full(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(!old.unwrap().expect_continue);
    }

    #[test]
    fn a_bare_cr_is_refused_as_soon_as_seen() {
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\rHost: a\r\r").unwrap_err().status,
            400
        );
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\r\nHost: a\rX")
                .unwrap_err()
                .status,
            400
        );
        // A CR at the end of what arrived waits for the next byte.
        let mut scan = Scan::default();
        assert_eq!(scan.advance(b"GET / HTTP/1.1\r"), Ok(None));
        assert_eq!(scan.advance(b"GET / HTTP/1.1\r\nHost: a\r"), Ok(None));
        assert_eq!(
            scan.advance(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Some(27))
        );
    }

    #[test]
    fn targets_in_every_form() {
        let target = |t: &str| {
            let raw = format!("OPTIONS {t} HTTP/1.1\r\nHost: a\r\n\r\n");
            full(raw.as_bytes()).map(|h| h.target)
        };
        assert_eq!(target("http://a:8080/healthz?x"), Ok(path("/healthz", "x")));
        assert_eq!(target("HTTP://a"), Ok(path("/", "")));
        assert_eq!(target("https://a?q=1"), Ok(path("/", "q=1")));
        assert_eq!(target("*"), Ok(Target::Server));
        assert_eq!(target("/%68ealthz"), Ok(path("/healthz", "")));
        assert_eq!(target("/%C3%A9"), Ok(path("/é", "")));
        assert_eq!(target("/a%2fb"), Ok(path("/a/b", "")));
        for bad in ["/%zz", "/%4", "/a%", "ftp://a/b", "http:///x", "a:80", "x"] {
            assert_eq!(target(bad).map_err(|r| r.status), Err(400), "{bad}");
        }
        let star = full(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(star.map_err(|r| r.status), Err(400));
    }

    #[test]
    fn obs_text_in_values_is_accepted() {
        let head = full(b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xe9 \xff\r\n\r\n");
        assert!(head.is_ok(), "{head:?}");
    }

    #[test]
    fn non_http_bytes_are_refused_at_once() {
        for early in [
            &b"\x16\x03\x01\x02\x00"[..],
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"GET /\r\n",
            b"\r\n",
            b"GET / FOO\r\n",
        ] {
            assert_eq!(
                scan_all(early).map_err(|r| r.status),
                Err(400),
                "{:?}",
                String::from_utf8_lossy(early)
            );
        }
        // A good request line waits for the rest of the head.
        assert_eq!(scan_all(b"GET / HTTP/1.1\r\n"), Ok(None));
        assert_eq!(scan_all(b"GET / HTTP/2.0\r\n").unwrap_err().status, 505);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(
            !full(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(!full(b"GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            full(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn limits() {
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_LINE));
        assert_eq!(scan_all(long_line.as_bytes()).unwrap_err().status, 414);
        let unterminated = vec![b'a'; MAX_LINE + 2];
        assert_eq!(scan_all(&unterminated).unwrap_err().status, 414);
        let long_header = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_LINE));
        assert_eq!(scan_all(long_header.as_bytes()).unwrap_err().status, 431);
        let many = format!("GET / HTTP/1.1\r\n{}", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(scan_all(many.as_bytes()).unwrap_err().status, 431);
        let big = format!(
            "GET / HTTP/1.1\r\n{}",
            format!("X: {}\r\n", "a".repeat(8000)).repeat(3)
        );
        assert_eq!(scan_all(big.as_bytes()).unwrap_err().status, 431);
        let ok = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS - 1)
        );
        assert!(full(ok.as_bytes()).is_ok());
    }

    #[test]
    fn malformed_heads_are_refused() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\nHost: a\n\n", 400),
            (b"\r\n", 400),
            (b"GET /\r\n\r\n", 400),
            (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", 400),
            (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            (b"GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", 413),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 3\r\n\r\n", 400),
            (b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ];
        for (bytes, status) in cases {
            let got = match full(bytes) {
                Err(e) => e,
                Ok(head) => panic!("accepted {:?}: {head:?}", String::from_utf8_lossy(bytes)),
            };
            assert_eq!(
                got.status,
                *status,
                "{:?}: {}",
                String::from_utf8_lossy(bytes),
                got.why
            );
        }
        // Equal repeated lengths are fine.
        let same = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(full(same).unwrap().content_length, 2);
    }

    /// A head is refused (or not) the same, with the same status, whether
    /// it comes whole (one httparse pass, in `parse`) or byte by byte (its
    /// request line checked as soon as it ends, so garbage is refused
    /// without waiting); and a bad request line is what is refused first,
    /// whatever comes after it.
    #[test]
    fn a_head_whole_or_in_pieces_gets_the_same_verdict() {
        let heads: [&[u8]; 9] = [
            b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /healthz HTTP/3.0\r\nHost: a\r\n\r\n",
            b"GET /healthz HTTP/1.x\r\nHost: a\r\n\r\n",
            b"GET  /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nBad Name: a\r\n\r\n",
            b"GET /healthz HTTP/9.9\r\nHost: a\rb\r\n\r\n",
            b"GET /healthz HTTP/9.9\r\nHost: a\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        let verdict = |result: Result<Head, Reject>| result.map(|_| ()).map_err(|r| r.status);
        for head in heads {
            let whole = Scan::default()
                .advance(head)
                .and_then(|end| parse(&head[..end.expect("complete")]));
            let mut scan = Scan::default();
            let mut pieces = Err(Reject { status: 0, why: "" });
            for end in 1..=head.len() {
                match scan.advance(&head[..end]) {
                    Ok(None) => continue,
                    Ok(Some(n)) => pieces = parse(&head[..n]),
                    Err(reject) => pieces = Err(reject),
                }
                break;
            }
            let shown = String::from_utf8_lossy(head);
            assert_eq!(verdict(whole), verdict(pieces), "{shown:?}");
        }
        // The request line's refusal comes first: 505, not the bare CR.
        let bad = b"GET /healthz HTTP/9.9\r\nHost: a\rb\r\n\r\n";
        assert_eq!(scan_all(bad).map_err(|r| r.status), Err(505));
    }
}
