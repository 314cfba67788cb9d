//! The http:// check: one GET as the kubelet's httpGet probe makes it, over
//! HTTP/1.1 with `Connection: close`. It must not follow redirects to
//! another host, nor read more than `MAX_BODY` of a body.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Instant;

use super::{Failure, Source, USER_AGENT, connect, host_port, io_failure, left};

/// Requests made at most, redirects included: the kubelet's redirect
/// checker stops "after 10 redirects" when `len(via) >= 10`, that is when
/// the 10th response is a redirect to follow, so a chain gets 10 requests.
const MAX_REQUESTS: usize = 10;
/// Body bytes read at most, then dropped: the kubelet's limit.
const MAX_BODY: usize = 10 * 1024;
/// A response head larger than this is a failure.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// A GET as the kubelet's httpGet probe does it: 1xx skipped, redirects
/// to the same host followed (a redirect to another host is not followed
/// and counts as a success, with a warning), 200 to 399 passes, the body
/// read to its end up to 10 KiB and dropped.
pub(super) fn get(host: &str, port: u16, path: &str, deadline: Instant) -> Result<String, Failure> {
    let mut at = Target {
        host: host.to_string(),
        port,
        path: path.to_string(),
    };
    for _ in 0..MAX_REQUESTS {
        let response = fetch(&at, deadline)?;
        let redirects = response.redirects();
        let Some(location) = response.location.filter(|_| redirects) else {
            return match response.status {
                200..=399 => Ok(response.status_line),
                code => Err(Failure::Answered {
                    why: format!("HTTP status {code} (want 200-399)"),
                    said: response.status_line,
                }),
            };
        };
        let next = at.follow(&location).map_err(|why| Failure::Answered {
            why,
            said: response.status_line.clone(),
        })?;
        let Some(next) = next.filter(|next| next.host.eq_ignore_ascii_case(host)) else {
            crate::error!(
                "warning: http check of {}: redirected to another host ({}); \
                 not followed, and a success, as the kubelet counts it",
                at.url(),
                location
            );
            return Ok(response.status_line);
        };
        at = next;
    }
    Err(Failure::Error(format!(
        "stopped after {MAX_REQUESTS} redirects (last to {})",
        at.url()
    )))
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("http://{host}:{}{}", self.port, self.path)
    }

    /// Where `location` leads from here: `None` for another scheme's host
    /// (https: not followed), an error for what cannot be read.
    fn follow(&self, location: &str) -> Result<Option<Target>, String> {
        let location = location.split('#').next().unwrap_or("");
        let lower = location.to_ascii_lowercase();
        let absolute = if lower.starts_with("http://") {
            Some((&location[7..], 80))
        } else if lower.starts_with("https://") {
            Some((&location[8..], 443))
        } else {
            location.strip_prefix("//").map(|rest| (rest, 80))
        };
        if let Some((rest, default_port)) = absolute {
            let (authority, path) = match rest.find(['/', '?']) {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let (host, port) = host_port(authority, Some(default_port))
                .map_err(|e| format!("bad redirect location {location:?}: {e}"))?;
            if lower.starts_with("https://") {
                if host.eq_ignore_ascii_case(&self.host) {
                    return Err(format!("redirected to {location}: TLS is not built in"));
                }
                // Another host: not followed anyway.
                return Ok(Some(Target {
                    host,
                    port,
                    path: String::new(),
                }));
            }
            let path = if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            };
            return Ok(Some(Target { host, port, path }));
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            // Relative to the current path's directory.
            let current = self.path.split('?').next().unwrap_or("/");
            let dir = &current[..current.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        if path.contains(char::is_whitespace) {
            return Err(format!("bad redirect location {location:?}"));
        }
        Ok(Some(Target {
            host: self.host.clone(),
            port: self.port,
            path,
        }))
    }
}

/// The final (non-1xx) response of one request.
pub(super) struct Response {
    status: u16,
    pub(super) status_line: String,
    location: Option<String>,
}

impl Response {
    /// The codes Go's client follows.
    fn redirects(&self) -> bool {
        matches!(self.status, 301 | 302 | 303 | 307 | 308)
    }
}

/// One request and its response, body read (up to `MAX_BODY`) and dropped.
fn fetch(target: &Target, deadline: Instant) -> Result<Response, Failure> {
    let (mut stream, addr) = connect(&target.host, target.port, deadline)?;
    let host_header = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        target.path
    );
    stream
        .set_write_timeout(Some(left(deadline)?))
        .and_then(|_| stream.write_all(request.as_bytes()))
        .map_err(|e| io_failure(&format!("send to {addr}"), e))?;
    read_response(&mut Reader {
        stream,
        addr,
        deadline,
        buffer: Vec::new(),
        eof: false,
    })
}

/// The final response to the request sent, its body read (up to
/// `MAX_BODY`) and dropped.
pub(super) fn read_response<S: Source>(reader: &mut Reader<S>) -> Result<Response, Failure> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut parsed = httparse::Response::new(&mut headers);
        let head_len = match parsed.parse(&reader.buffer) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if reader.buffer.len() > MAX_RESPONSE_HEAD {
                    return Err(reader.failure("response head over 16 KiB"));
                }
                if reader.fill()? == 0 {
                    let why = if reader.buffer.is_empty() {
                        "connection closed without a response"
                    } else {
                        "connection closed in the middle of the response head"
                    };
                    return Err(reader.failure(why));
                }
                continue;
            }
            Err(e) => return Err(reader.failure(&format!("malformed response ({e})"))),
        };
        let status = parsed.code.unwrap_or(0);
        let status_line = format!(
            "HTTP/1.{} {status} {}",
            parsed.version.unwrap_or(1),
            parsed.reason.unwrap_or("")
        )
        .trim_end()
        .to_string();
        let header = |name: &str| {
            parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        };
        let location = header("location");
        let length = header("content-length");
        let chunked = header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().ends_with("chunked"));
        reader.buffer.drain(..head_len);
        if (100..200).contains(&status) && status != 101 {
            continue; // informational (103 Early Hints): the answer follows
        }
        let response = Response {
            status,
            status_line,
            location,
        };
        if status == 204 || status == 304 {
            return Ok(response);
        }
        let body = if chunked {
            reader.chunked_body()
        } else if let Some(length) = length {
            let length = length
                .parse::<u64>()
                .map_err(|_| reader.failure(&format!("malformed Content-Length {length:?}")))?;
            reader.sized_body(length)
        } else {
            reader.body_to_close()
        };
        return match body {
            Ok(()) => Ok(response),
            Err(Failure::Error(why)) => Err(Failure::Answered {
                said: response.status_line,
                why,
            }),
            Err(other) => Err(other),
        };
    }
}

/// A response being read, with what has arrived and not been used yet.
pub(super) struct Reader<S> {
    pub(super) stream: S,
    pub(super) addr: SocketAddr,
    pub(super) deadline: Instant,
    pub(super) buffer: Vec<u8>,
    pub(super) eof: bool,
}

impl<S: Source> Reader<S> {
    /// Reads more into the buffer: how much (0 at end of stream).
    fn fill(&mut self) -> Result<usize, Failure> {
        if self.eof {
            return Ok(0);
        }
        let mut chunk = [0u8; 4096];
        loop {
            self.stream
                .set_read_timeout(left(self.deadline)?)
                .map_err(|e| io_failure("set timeout", e))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.buffer.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_failure(&format!("read from {}", self.addr), e)),
            }
        }
    }

    fn failure(&self, why: &str) -> Failure {
        Failure::Error(format!("{}: {why}", self.addr))
    }

    /// A body of `length` bytes: up to `MAX_BODY` of it must arrive.
    fn sized_body(&mut self, length: u64) -> Result<(), Failure> {
        let want = length.min(MAX_BODY as u64) as usize;
        while self.buffer.len() < want {
            if self.fill()? == 0 {
                return Err(self.failure(&format!(
                    "response body cut short after {} of {length} bytes",
                    self.buffer.len()
                )));
            }
        }
        Ok(())
    }

    /// A body that ends when the server closes: read up to `MAX_BODY`.
    fn body_to_close(&mut self) -> Result<(), Failure> {
        while self.buffer.len() < MAX_BODY && self.fill()? > 0 {}
        Ok(())
    }

    /// A chunked body: read to its last chunk, or `MAX_BODY` of data.
    fn chunked_body(&mut self) -> Result<(), Failure> {
        let mut data = 0usize;
        loop {
            let line_end = loop {
                if let Some(i) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if self.buffer.len() > 1024 {
                    return Err(self.failure("malformed chunked body (chunk size line)"));
                }
                if self.fill()? == 0 {
                    return Err(self.failure("response body cut short (chunked)"));
                }
            };
            let line = String::from_utf8_lossy(&self.buffer[..line_end]).into_owned();
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| self.failure(&format!("malformed chunk size {size_text:?}")))?;
            self.buffer.drain(..line_end + 2);
            if size == 0 {
                return Ok(()); // trailers, if any, are left unread
            }
            let take = size.min(MAX_BODY - data);
            while self.buffer.len() < take {
                if self.fill()? == 0 {
                    return Err(self.failure("response body cut short (chunked)"));
                }
            }
            data += take;
            if data >= MAX_BODY {
                return Ok(());
            }
            while self.buffer.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(self.failure("response body cut short (chunked)"));
                }
            }
            if &self.buffer[size..size + 2] != b"\r\n" {
                return Err(self.failure("malformed chunked body (no CRLF after a chunk)"));
            }
            self.buffer.drain(..size + 2);
        }
    }
}
