//! Built-in checks, for images with no shell: a `--cmd` written as a URL
//! runs inside the process instead of `sh -c`.
//!
//! - `tcp://HOST:PORT`: a TCP connection opens;
//! - `http://HOST[:PORT]/PATH`: GET answers 200-399 (the kubelet's httpGet);
//! - `file:///PATH`: the path exists;
//! - `dns://[SERVER[:PORT]]/NAME`: an A or AAAA query for NAME gets an
//!   answer (no SERVER: the first nameserver of /etc/resolv.conf).
//!
//! Names resolve at every run, so a changed address is followed. Each check
//! finishes within the probe's timeout. Parsing happens once at start-up
//! (`parse`); `run` is called by the probe loop and returns a result like a
//! command's. Nothing here spawns processes.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::outcome::Outcome;

#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Tcp {
        host: String,
        port: u16,
    },
    Http {
        host: String,
        port: u16,
        path: String,
    },
    File {
        path: PathBuf,
    },
    Dns {
        server: Option<(String, u16)>,
        name: String,
    },
}

/// Schemes of the built-in checks; a `--cmd` that begins with one of these
/// (or `https://`) is a check, or an error, never a shell command.
const SCHEMES: [&str; 5] = ["tcp", "http", "https", "file", "dns"];

/// `Ok(None)` when `cmd` is not a URL (it is a command); an error for a
/// URL we cannot run.
pub fn parse(cmd: &str) -> Result<Option<Check>, String> {
    let Some((scheme, rest)) = cmd.split_once("://") else {
        return Ok(None);
    };
    let is_scheme = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return Ok(None);
    }
    let builtin = SCHEMES.contains(&scheme.to_ascii_lowercase().as_str());
    if cmd.contains(|c: char| c.is_whitespace() || c.is_control()) {
        if builtin {
            return Err(format!(
                "{}: a built-in check is one URL, with no spaces or control characters \
                 (percent-encode them, or write a command that does not begin with {scheme}://)",
                crate::json::string(cmd)
            ));
        }
        return Ok(None);
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let check = match scheme.to_ascii_lowercase().as_str() {
        "tcp" => {
            let (host, port) = host_port(authority, None)?;
            Check::Tcp { host, port }
        }
        "http" => {
            let (host, port) = host_port(authority, Some(80))?;
            let path = if path.is_empty() { "/" } else { path };
            Check::Http {
                host,
                port,
                path: path.to_string(),
            }
        }
        "https" => {
            return Err(format!(
                "{cmd}: TLS is not built in; use http://, or a command such as curl"
            ));
        }
        "file" => {
            if !authority.is_empty() || path.is_empty() {
                return Err(format!("{cmd}: write files as file:///PATH"));
            }
            Check::File {
                path: PathBuf::from(path),
            }
        }
        "dns" => {
            let name = path.trim_start_matches('/');
            let mut labels = name.strip_suffix('.').unwrap_or(name).split('.');
            if name.is_empty() || labels.any(|l| l.is_empty() || l.len() > 63) || name.len() > 253 {
                return Err(format!(
                    "{cmd}: write dns://[SERVER[:PORT]]/NAME with a valid NAME"
                ));
            }
            let server = if authority.is_empty() {
                None
            } else {
                Some(host_port(authority, Some(53))?)
            };
            Check::Dns {
                server,
                name: name.trim_end_matches('.').to_string(),
            }
        }
        other => {
            return Err(format!(
                "{cmd}: unknown scheme {other}:// (built-in checks: tcp, http, file, dns)"
            ));
        }
    };
    Ok(Some(check))
}

impl Check {
    /// Which check, for messages: `http check of http://a:80/healthz`.
    pub fn name(&self) -> String {
        let host = |host: &str| {
            if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_string()
            }
        };
        match self {
            Check::Tcp { host: h, port } => format!("tcp check of {}:{port}", host(h)),
            Check::Http {
                host: h,
                port,
                path,
            } => format!("http check of http://{}:{port}{path}", host(h)),
            Check::File { path } => format!("file check of {}", path.display()),
            Check::Dns { name, .. } => format!("dns check of {name}"),
        }
    }
}

/// `HOST:PORT`, `[V6]:PORT`; `default` when the port may be left out.
fn host_port(authority: &str, default: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{authority}: unclosed ["))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{authority}: missing host"));
    }
    let port = match (port, default) {
        (Some(port), _) => port
            .parse()
            .map_err(|_| format!("{authority}: bad port {port}"))?,
        (None, Some(default)) => default,
        (None, None) => return Err(format!("{authority}: missing :PORT")),
    };
    Ok((host.to_string(), port))
}

/// Runs a check within `timeout`: its outcome and what it has to say.
pub fn run(check: &Check, timeout: Duration) -> (Outcome, Vec<u8>) {
    let deadline = Instant::now() + timeout;
    let result = match check {
        Check::Tcp { host, port } => {
            connect(host, *port, deadline).map(|(_, addr)| format!("connected to {addr}"))
        }
        Check::Http { host, port, path } => http_get(host, *port, path, deadline),
        Check::File { path } => std::fs::symlink_metadata(path)
            .map(|_| format!("{} exists", path.display()))
            .map_err(|e| Failure::Error(format!("{}: {e}", path.display()))),
        Check::Dns { server, name } => dns(server.as_ref(), name, deadline),
    };
    match result {
        Ok(said) => (Outcome::Exited(0), said.into_bytes()),
        Err(Failure::TimedOut) => (
            Outcome::CheckTimedOut {
                check: check.name(),
                after: timeout,
            },
            Vec::new(),
        ),
        Err(Failure::Error(why)) => (Outcome::CheckFailed(why), Vec::new()),
        Err(Failure::Answered { said, why }) => (Outcome::CheckFailed(why), said.into_bytes()),
    }
}

enum Failure {
    TimedOut,
    Error(String),
    /// The peer answered, and the answer is a failure.
    Answered {
        said: String,
        why: String,
    },
}

fn io_failure(what: &str, e: io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Failure::TimedOut,
        _ => Failure::Error(format!("{what}: {e}")),
    }
}

fn left(deadline: Instant) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Failure::TimedOut)
    } else {
        Ok(left)
    }
}

fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
    match (host, port).to_socket_addrs() {
        Ok(addrs) => Ok(addrs.collect()),
        Err(e) => Err(Failure::Error(format!("resolve {host}: {e}"))),
    }
}

/// Connects to the first address of `host` that answers.
fn connect(host: &str, port: u16, deadline: Instant) -> Result<(TcpStream, SocketAddr), Failure> {
    let mut last = Failure::Error(format!("{host}: no addresses"));
    for addr in resolve(host, port)? {
        match TcpStream::connect_timeout(&addr, left(deadline)?) {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => last = io_failure(&format!("connect {addr}"), e),
        }
    }
    Err(last)
}

/// Redirects followed at most, as Go's HTTP client (the kubelet's) does.
const MAX_REDIRECTS: usize = 10;
/// Body bytes read at most, then dropped: the kubelet's limit.
const MAX_BODY: usize = 10 * 1024;
/// A response head larger than this is a failure.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
const USER_AGENT: &str = concat!("exechealthz/", env!("CARGO_PKG_VERSION"));

/// A GET as the kubelet's httpGet probe does it: 1xx skipped, redirects
/// to the same host followed (a redirect to another host is not followed
/// and counts as a success, with a warning), 200 to 399 passes, the body
/// read to its end up to 10 KiB and dropped.
fn http_get(host: &str, port: u16, path: &str, deadline: Instant) -> Result<String, Failure> {
    let mut at = Target {
        host: host.to_string(),
        port,
        path: path.to_string(),
    };
    for _ in 0..=MAX_REDIRECTS {
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
        "stopped after {MAX_REDIRECTS} redirects (last to {})",
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
struct Response {
    status: u16,
    status_line: String,
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

/// Where a response is read from: a socket whose reads give up at the
/// deadline (in the fuzz target, scripted bytes).
pub trait Source: Read {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()>;
}

impl Source for TcpStream {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        TcpStream::set_read_timeout(self, Some(timeout))
    }
}

/// The final response to the request sent, its body read (up to
/// `MAX_BODY`) and dropped.
fn read_response<S: Source>(reader: &mut Reader<S>) -> Result<Response, Failure> {
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
struct Reader<S> {
    stream: S,
    addr: SocketAddr,
    deadline: Instant,
    buffer: Vec<u8>,
    eof: bool,
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

fn dns(server: Option<&(String, u16)>, name: &str, deadline: Instant) -> Result<String, Failure> {
    let server = match server {
        Some((host, port)) => *resolve(host, *port)?
            .first()
            .ok_or_else(|| Failure::Error(format!("{host}: no addresses")))?,
        None => SocketAddr::new(resolv_conf_nameserver()?, 53),
    };
    let mut said = Vec::new();
    for (qtype, label) in [(1u16, "A"), (28, "AAAA")] {
        match query(server, name, qtype, deadline)? {
            Answer::Records(n) => {
                return Ok(format!("{name}: {n} {label} record(s) from {server}"));
            }
            Answer::NxDomain => {
                return Err(Failure::Answered {
                    said: format!("{name}: NXDOMAIN from {server}"),
                    why: "NXDOMAIN".into(),
                });
            }
            Answer::Rcode(rcode) => said.push(format!("{label}: rcode {rcode}")),
            Answer::Empty => said.push(format!("{label}: no records")),
        }
    }
    Err(Failure::Answered {
        said: format!("{name}: {} from {server}", said.join(", ")),
        why: "no A or AAAA answer".into(),
    })
}

fn resolv_conf_nameserver() -> Result<IpAddr, Failure> {
    let conf = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| Failure::Error(format!("/etc/resolv.conf: {e}")))?;
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|rest| rest.trim().parse().ok())
        .ok_or_else(|| Failure::Error("no nameserver in /etc/resolv.conf".into()))
}

enum Answer {
    Records(usize),
    Empty,
    NxDomain,
    Rcode(u16),
}

/// One UDP query for `name` of type `qtype`; the number of records of that
/// type in the answer section.
fn query(server: SocketAddr, name: &str, qtype: u16, deadline: Instant) -> Result<Answer, Failure> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind).map_err(|e| io_failure("udp socket", e))?;
    socket
        .connect(server)
        .map_err(|e| io_failure(&format!("udp {server}"), e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let id = (std::process::id() as u16) ^ (nanos as u16) ^ qtype;
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&qtype.to_be_bytes());
    packet.extend_from_slice(&[0, 1]); // class IN
    socket
        .send(&packet)
        .map_err(|e| io_failure(&format!("send to {server}"), e))?;
    let mut reply = [0u8; 1500];
    loop {
        socket
            .set_read_timeout(Some(left(deadline)?))
            .map_err(|e| io_failure("set timeout", e))?;
        let n = socket
            .recv(&mut reply)
            .map_err(|e| io_failure(&format!("receive from {server}"), e))?;
        let reply = &reply[..n];
        // Not ours (or not an answer): keep waiting.
        if n < 12 || reply[..2] != id.to_be_bytes() || reply[2] & 0x80 == 0 {
            continue;
        }
        return parse_reply(reply, qtype)
            .ok_or_else(|| Failure::Error(format!("malformed answer from {server}")));
    }
}

fn parse_reply(reply: &[u8], qtype: u16) -> Option<Answer> {
    let u16_at = |i: usize| Some(u16::from_be_bytes([*reply.get(i)?, *reply.get(i + 1)?]));
    let rcode = u16_at(2)? & 0x000f;
    match rcode {
        0 => {}
        3 => return Some(Answer::NxDomain),
        other => return Some(Answer::Rcode(other)),
    }
    let questions = u16_at(4)?;
    let answers = u16_at(6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(reply, at)? + 4;
    }
    let mut found = 0;
    for _ in 0..answers {
        at = skip_name(reply, at)?;
        let rtype = u16_at(at)?;
        let length = u16_at(at + 8)? as usize;
        at += 10 + length;
        if at > reply.len() {
            return None;
        }
        found += usize::from(rtype == qtype);
    }
    Some(if found > 0 {
        Answer::Records(found)
    } else {
        Answer::Empty
    })
}

/// For the fuzz targets (`crate::fuzz`): what the http:// check makes of a
/// response read from `source` (its status line, or why it fails), and
/// the count the dns:// check finds in a reply.
pub mod fuzzing {
    use super::*;

    pub fn http_response(source: impl Source) -> Result<String, String> {
        let mut reader = Reader {
            stream: source,
            addr: SocketAddr::from(([127, 0, 0, 1], 80)),
            deadline: Instant::now() + Duration::from_secs(60),
            buffer: Vec::new(),
            eof: false,
        };
        match read_response(&mut reader) {
            Ok(response) => Ok(response.status_line),
            Err(Failure::TimedOut) => Err("timed out".into()),
            Err(Failure::Error(why) | Failure::Answered { why, .. }) => Err(why),
        }
    }

    pub fn dns_reply(reply: &[u8], qtype: u16) -> Option<usize> {
        match parse_reply(reply, qtype)? {
            Answer::Records(n) => Some(n),
            _ => Some(0),
        }
    }
}

/// The offset just past a (possibly compressed) name at `at`.
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *packet.get(at)? as usize;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += l + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_check_urls() {
        assert_eq!(parse("ls /tmp").unwrap(), None);
        assert_eq!(parse("echo http://x").unwrap(), None);
        assert_eq!(
            parse("tcp://[::1]:53").unwrap(),
            Some(Check::Tcp {
                host: "::1".into(),
                port: 53
            })
        );
        assert_eq!(
            parse("http://localhost/healthz?x=1").unwrap(),
            Some(Check::Http {
                host: "localhost".into(),
                port: 80,
                path: "/healthz?x=1".into()
            })
        );
        assert_eq!(
            parse("http://10.0.0.1:8080").unwrap(),
            Some(Check::Http {
                host: "10.0.0.1".into(),
                port: 8080,
                path: "/".into()
            })
        );
        assert_eq!(
            parse("file:///tmp/x").unwrap(),
            Some(Check::File {
                path: "/tmp/x".into()
            })
        );
        assert_eq!(
            parse("dns:///kubernetes.default.svc.cluster.local.").unwrap(),
            Some(Check::Dns {
                server: None,
                name: "kubernetes.default.svc.cluster.local".into()
            })
        );
        assert_eq!(
            parse("dns://127.0.0.1:10053/a.b").unwrap(),
            Some(Check::Dns {
                server: Some(("127.0.0.1".into(), 10053)),
                name: "a.b".into()
            })
        );
        for bad in [
            "tcp://host",
            "tcp://:80",
            "tcp://h:x",
            "file://host/x",
            "dns://",
            "ftp://x/y",
            "tcp://[::1:5",
            "tcp://a\u{1}b:80",
            "http://h/\u{7f}",
            "dns:///a..b",
            "dns:///.",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(
            parse("ftp://x/y")
                .unwrap_err()
                .contains("unknown scheme ftp://")
        );
    }

    #[test]
    fn reads_dns_answers() {
        // Question a.b A IN, answer with a pointer to it: one A record.
        let mut reply = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        reply.extend_from_slice(&[1, b'a', 1, b'b', 0, 0, 1, 0, 1]);
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
        assert!(matches!(parse_reply(&reply, 1), Some(Answer::Records(1))));
        assert!(matches!(parse_reply(&reply, 28), Some(Answer::Empty)));
        reply[3] = 0x83;
        assert!(matches!(parse_reply(&reply, 1), Some(Answer::NxDomain)));
        assert!(parse_reply(&reply[..14], 1).is_some()); // NXDOMAIN needs no more
        reply[3] = 0x80;
        assert!(parse_reply(&reply[..30], 1).is_none(), "truncated record");
    }
}
