//! HTTP/1.x request heads, read strictly and within limits, for the front
//! (`front`) that stands between clients and tiny_http.
//!
//! `Scan` watches bytes as they arrive and says when a head is complete or
//! has outgrown a limit, in time proportional to the bytes seen; `parse`
//! then validates the complete head. Anything unusual is refused with a
//! status code rather than interpreted: tiny_http only ever sees the
//! request line of a head that passed here, re-written by the front. This
//! module does no I/O.

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
/// arrive.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    /// Bytes of the buffer already looked at.
    scanned: usize,
    /// Where the current line starts.
    line_start: usize,
    /// Lines completed so far (the request line is the first).
    lines: usize,
}

impl Scan {
    /// Looks at `buffer[self.scanned..]`: `Ok(Some(n))` when the head is the
    /// first `n` bytes, `Ok(None)` when more bytes are needed.
    pub fn advance(&mut self, buffer: &[u8]) -> Result<Option<usize>, Reject> {
        while self.scanned < buffer.len() {
            let at = self.scanned;
            self.scanned += 1;
            if buffer[at] != b'\n' {
                continue;
            }
            let line = &buffer[self.line_start..at];
            let Some(line) = line.strip_suffix(b"\r") else {
                return Err(reject(400, "line not ended by CRLF"));
            };
            if line.len() > MAX_LINE {
                return Err(self.too_long());
            }
            self.line_start = at + 1;
            if line.is_empty() {
                if self.lines == 0 {
                    // Blank lines before a request line: RFC 9112 says to
                    // ignore them; we do not wait for them forever either.
                    return Err(reject(400, "empty request line"));
                }
                if at + 1 > MAX_HEAD {
                    return Err(reject(431, "request head too large"));
                }
                return Ok(Some(at + 1));
            }
            self.lines += 1;
            if self.lines > MAX_HEADERS + 1 {
                return Err(reject(431, "too many header fields"));
            }
        }
        if buffer.len() - self.line_start > MAX_LINE {
            return Err(self.too_long());
        }
        if buffer.len() > MAX_HEAD {
            return Err(reject(431, "request head too large"));
        }
        Ok(None)
    }

    fn too_long(&self) -> Reject {
        if self.lines == 0 {
            reject(414, "request line too long")
        } else {
            reject(431, "header field too long")
        }
    }
}

/// A request head that passed every check.
#[derive(Debug, PartialEq)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
    pub keep_alive: bool,
    pub content_length: usize,
}

/// Validates a complete head (the bytes `Scan` delimited).
pub fn parse(head: &[u8]) -> Result<Head, Reject> {
    let text = std::str::from_utf8(head).map_err(|_| reject(400, "head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(reject(400, "malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(reject(400, "malformed method"));
    }
    if !target.starts_with('/') || !target.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(reject(400, "malformed request target"));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => return Err(reject(505, "HTTP version not supported")),
        _ => return Err(reject(400, "malformed HTTP version")),
    };

    let mut hosts = 0;
    let mut content_length: Option<usize> = None;
    let mut close = false;
    let mut keep_alive_token = false;
    for line in lines.filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            return Err(reject(400, "obsolete line folding"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(reject(400, "header field without a colon"));
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(reject(400, "malformed header field name"));
        }
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(reject(400, "control character in a header field"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
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
            for token in value.split(',').map(|t| t.trim_matches([' ', '\t'])) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
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
    Ok(Head {
        method: method.to_string(),
        target: target.to_string(),
        http11,
        keep_alive: if http11 {
            !close
        } else {
            keep_alive_token && !close
        },
        content_length,
    })
}

fn parse_length(value: &str) -> Result<usize, Reject> {
    // Digits only: no sign, no spaces inside, no list.
    if value.is_empty() || value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(reject(400, "malformed Content-Length"));
    }
    Ok(value.parse().expect("digits only"))
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
                method: "GET".into(),
                target: "/healthz?x=1".into(),
                http11: true,
                keep_alive: true,
                content_length: 0,
            })
        );
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
            (b"GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            (b"PRI * HTTP/2.0\r\n\r\n", 400),
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
            let got = full(bytes).map(|_| ()).unwrap_err_or(bytes);
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

    trait UnwrapErrOr {
        fn unwrap_err_or(self, bytes: &[u8]) -> Reject;
    }

    impl UnwrapErrOr for Result<(), Reject> {
        fn unwrap_err_or(self, bytes: &[u8]) -> Reject {
            match self {
                Err(e) => e,
                Ok(()) => panic!("accepted: {:?}", String::from_utf8_lossy(bytes)),
            }
        }
    }
}
