//! The http:// check: one GET as the kubelet's httpGet probe makes it, over
//! HTTP/1.1 with `Connection: close`, or over HTTP/2 cleartext for h2c://
//! (`h2c`, which reads its answer into the same `Response`). The redirect
//! rule, the pass rule and the request's headers live here, for both. It
//! must not follow redirects to another host, nor read more than
//! `MAX_BODY` of a body.

use std::io::{self, Write};
use std::time::Instant;

use super::options::Options;
use super::{ALPN_HTTP1, Failure, Source, USER_AGENT, host_port, io_failure, left, open};

/// Requests made at most, redirects included: the kubelet's redirect
/// checker stops "after 10 redirects" when `len(via) >= 10`, that is when
/// the 10th response is a redirect to follow, so a chain gets 10 requests.
const MAX_REQUESTS: usize = 10;
/// Body bytes read at most, then dropped: the kubelet's limit.
pub(super) const MAX_BODY: usize = 10 * 1024;
/// A response head larger than this is a failure.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// How the GET is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Via {
    Http1,
    /// HTTP/1.1 over TLS (https://, the TLS build).
    Https,
    /// HTTP/2 with prior knowledge (the kubelet's `protocol: HTTP2`).
    H2c,
}

/// A GET as the kubelet's httpGet probe does it: 1xx skipped, redirects
/// to the same host followed (a redirect to another host is not followed,
/// and its answer is the one judged: a success by default, as the kubelet
/// counts it, with a warning), 200 to 399 passes (or the `status` option's
/// list, whose 3xx pass as they are, unfollowed), the body read to its end
/// up to 10 KiB (and searched for the `body` option's text).
/// A redirect to another host is a state worth telling, once: it is put
/// in `notice` (the probe loop logs when it starts and stops).
pub(super) fn get(
    via: Via,
    host: &str,
    port: u16,
    path: &str,
    options: &Options,
    deadline: Instant,
    notice: &mut Option<String>,
) -> Result<String, Failure> {
    let mut at = Target {
        host: host.to_string(),
        port,
        path: path.to_string(),
        keep_host: true,
        tls: via == Via::Https,
    };
    for _ in 0..MAX_REQUESTS {
        let response = match via {
            Via::Http1 | Via::Https => fetch(&at, options, deadline)?,
            Via::H2c => super::h2c::fetch(&at, options, deadline)?,
        };
        let listed = options.status.is_some() && options.passes(response.status);
        let Some(location) = response
            .location
            .clone()
            .filter(|_| response.redirects() && !listed)
        else {
            return judge(response, options);
        };
        let next = at.follow(&location).map_err(|why| Failure::Answered {
            why,
            said: response.status_line.clone(),
        })?;
        let Some(next) = next.filter(|next| next.host.eq_ignore_ascii_case(host)) else {
            *notice = Some(format!(
                "{} is redirected to another host ({location}); not followed, and its \
                 answer judged, as the kubelet does",
                at.url()
            ));
            return judge(response, options);
        };
        at = next;
    }
    Err(Failure::Error(format!(
        "stopped after {MAX_REQUESTS} redirects (last to {})",
        at.url()
    )))
}

/// The final answer against the pass rule and the `body` option.
// Not inlined, like `fetch`, `read_response` and `follow`: each is one
// copy then, whichever scheme calls it (2 KiB less of binary).
#[inline(never)]
fn judge(response: Response, options: &Options) -> Result<String, Failure> {
    if !options.passes(response.status) {
        return Err(Failure::Answered {
            why: format!(
                "HTTP status {} (want {})",
                response.status,
                options.wanted()
            ),
            said: response.status_line,
        });
    }
    if let Some(text) = &options.body {
        let found = response
            .body
            .windows(text.len())
            .any(|w| w == text.as_bytes());
        if !found {
            return Err(Failure::Answered {
                why: format!(
                    "the body does not contain \"{text}\" (in the {} bytes read of it)",
                    response.body.len()
                ),
                said: response.status_line,
            });
        }
    }
    Ok(response.status_line)
}

/// The request's header fields as the kubelet makes them from its probe's
/// `httpHeaders` (`pkg/probe/http/request.go`, and Go's client): `Host`
/// (its first value) replaces the authority, and is kept across a redirect
/// only to a relative location; `User-Agent` (its first value) and
/// `Accept` replace ours, an empty one removing it; every other field is
/// added, in order. Fields that belong to the connection (`Connection`,
/// `Content-Length`, `Transfer-Encoding`, ...) are left out: the request
/// has no body, and its framing is ours. The authority first, then the
/// fields, names as the user wrote them.
pub(super) fn request_fields(
    target: &Target,
    options: &Options,
) -> (String, Vec<(String, String)>) {
    let first = |name| first_header(options, name);
    let authority = match first("Host").filter(|host| target.keep_host && !host.is_empty()) {
        Some(host) => host.to_string(),
        None => target.authority(),
    };
    let mut fields = Vec::with_capacity(options.headers.len() + 2);
    match first("User-Agent") {
        None => fields.push(("User-Agent".into(), USER_AGENT.into())),
        Some("") => {}
        Some(agent) => fields.push(("User-Agent".into(), agent.into())),
    }
    if first("Accept").is_none() {
        fields.push(("Accept".into(), "*/*".into()));
    }
    const OURS: [&str; 10] = [
        "host",
        "user-agent",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "te",
        "trailer",
    ];
    let accept_removed = first("Accept") == Some("");
    for (name, value) in &options.headers {
        let lower = name.to_ascii_lowercase();
        if OURS.contains(&lower.as_str()) || (lower == "accept" && accept_removed) {
            continue;
        }
        fields.push((name.clone(), value.clone()));
    }
    (authority, fields)
}

/// The first value of the `header` option `name` (any case).
#[inline(never)]
fn first_header<'a>(options: &'a Options, name: &str) -> Option<&'a str> {
    options
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) path: String,
    /// A `Host` option still applies: the first request, or one that a
    /// relative location led to.
    keep_host: bool,
    /// Over TLS (https://).
    pub(super) tls: bool,
}

impl Target {
    /// `host:port`, `[v6]:port`: the request's authority.
    pub(super) fn authority(&self) -> String {
        super::authority(&self.host, self.port)
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }

    /// Where `location` leads from here, an error for what cannot be read
    /// (or, in the build without TLS, for https:// on the same host). A
    /// scheme-relative `//host` keeps ours; an absolute one sets it, as Go's
    /// client follows a redirect between http and https (the kubelet too).
    #[inline(never)]
    fn follow(&self, location: &str) -> Result<Option<Target>, String> {
        let location = location.split('#').next().unwrap_or("");
        let lower = location.to_ascii_lowercase();
        let absolute = if lower.starts_with("http://") {
            Some((&location[7..], false))
        } else if lower.starts_with("https://") {
            Some((&location[8..], true))
        } else {
            location.strip_prefix("//").map(|rest| (rest, self.tls))
        };
        if let Some((rest, tls)) = absolute {
            let default_port = if tls { 443 } else { 80 };
            let (authority, path) = match rest.find(['/', '?']) {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let (host, port) = host_port(authority, Some(default_port))
                .map_err(|e| format!("bad redirect location {location:?}: {e}"))?;
            if tls && !cfg!(feature = "tls") && host.eq_ignore_ascii_case(&self.host) {
                return Err(format!(
                    "redirected to {location}: TLS is not in this build (exechealthz-tls has it)"
                ));
            }
            let path = if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            };
            return Ok(Some(Target {
                host,
                port,
                path,
                keep_host: false,
                tls,
            }));
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
            keep_host: self.keep_host,
            tls: self.tls,
        }))
    }
}

/// The final (non-1xx) response of one request, and the first
/// `MAX_BODY` bytes of its body.
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) status_line: String,
    pub(super) location: Option<String>,
    pub(super) body: Vec<u8>,
}

impl Response {
    /// The codes Go's client follows.
    fn redirects(&self) -> bool {
        matches!(self.status, 301 | 302 | 303 | 307 | 308)
    }
}

/// One request and its response, body read (up to `MAX_BODY`).
#[inline(never)]
fn fetch(target: &Target, options: &Options, deadline: Instant) -> Result<Response, Failure> {
    let tls = target.tls.then_some(ALPN_HTTP1);
    let (mut stream, addr) = open(&target.host, target.port, options, tls, deadline)?;
    let (authority, fields) = request_fields(target, options);
    let mut request = format!("GET {} HTTP/1.1\r\nHost: {authority}\r\n", target.path);
    for (name, value) in &fields {
        for part in [name, ": ", value, "\r\n"] {
            request.push_str(part);
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    stream
        .set_write_timeout(left(deadline)?)
        .and_then(|_| stream.write_all(request.as_bytes()))
        .map_err(|e| io_failure(&format!("send to {addr}"), e))?;
    read_response(&mut Reader {
        stream,
        addr,
        deadline,
        buffer: Vec::new(),
        eof: false,
        body: Vec::new(),
    })
}

/// The final response to the request sent, its body read (up to
/// `MAX_BODY`) and dropped.
#[inline(never)]
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
        let mut response = Response {
            status,
            status_line,
            location,
            body: Vec::new(),
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
            Ok(()) => {
                response.body = std::mem::take(&mut reader.body);
                Ok(response)
            }
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
    pub(super) addr: String,
    pub(super) deadline: Instant,
    pub(super) buffer: Vec<u8>,
    pub(super) eof: bool,
    /// The body read so far, up to `MAX_BODY`.
    pub(super) body: Vec<u8>,
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
        self.body = self.buffer[..want].to_vec();
        Ok(())
    }

    /// A body that ends when the server closes: read up to `MAX_BODY`.
    fn body_to_close(&mut self) -> Result<(), Failure> {
        while self.buffer.len() < MAX_BODY && self.fill()? > 0 {}
        self.body = self.buffer[..self.buffer.len().min(MAX_BODY)].to_vec();
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
            self.body.extend_from_slice(&self.buffer[..take]);
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
