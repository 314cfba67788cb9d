//! Built-in checks, for images with no shell: a `--cmd` written as a URL
//! runs inside the process instead of `sh -c`.
//!
//! - `tcp://HOST:PORT`: a TCP connection opens;
//! - `http://HOST[:PORT]/PATH`: GET answers 200-399 (the kubelet's httpGet);
//! - `file:///PATH`: the path exists;
//! - `dns://[SERVER[:PORT]]/NAME`: an A or AAAA query for NAME gets an
//!   answer (no SERVER: the first nameserver of /etc/resolv.conf);
//! - `grpc://HOST:PORT[/SERVICE]`: `grpc.health.v1.Health/Check` over
//!   HTTP/2 cleartext answers SERVING (the kubelet's gRPC probe);
//! - `h2c://HOST[:PORT]/PATH`: the http:// check over HTTP/2 cleartext
//!   with prior knowledge (the kubelet's `protocol: HTTP2` probe);
//! - `https://` and `grpcs://`, in the TLS build only (the `tls` feature):
//!   the http:// and grpc:// checks over TLS (`tls`).
//!
//! A URL's fragment holds its options (`options`): headers, the statuses
//! that pass, a body text, gRPC metadata, a Unix socket, its own timing.
//!
//! Names resolve at every run, so a changed address is followed. Each check
//! finishes within the probe's timeout. Parsing happens once at start-up
//! (`parse`); `run` is called by the probe loop and returns a result like a
//! command's. Nothing here spawns processes.
//!
//! This file holds what the schemes share: URL parsing, the deadline, and
//! resolve-and-connect; each scheme has a file of its own, and nothing in
//! them knows of probes, results or HTTP serving.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::outcome::Outcome;

mod dns;
mod file;
mod grpc;
mod h2;
mod h2c;
mod hpack;
mod http;
pub mod options;
mod tcp;
#[cfg(feature = "tls")]
mod tls;

pub use options::{Options, Timing};

/// A built-in check: what it checks, and its options.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub kind: Kind,
    /// Shared, not copied, by each probe and `check` thread that runs it.
    pub options: Arc<Options>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Tcp {
        host: String,
        port: u16,
    },
    /// http://, and https:// when `tls`.
    Http {
        host: String,
        port: u16,
        path: String,
        tls: bool,
    },
    File {
        path: PathBuf,
    },
    Dns {
        server: Option<(String, u16)>,
        name: String,
    },
    /// grpc://, and grpcs:// when `tls`.
    Grpc {
        host: String,
        port: u16,
        service: String,
        tls: bool,
    },
    H2c {
        host: String,
        port: u16,
        path: String,
    },
}

/// The help's words on TLS, for `--help` and `check --help`.
#[cfg(feature = "tls")]
pub const TLS_USAGE: &str = "\
TLS (this is the TLS build):
  https://HOST[:PORT]/PATH     the http:// check over TLS 1.2 or 1.3 (ALPN http/1.1)
  grpcs://HOST:PORT[/SERVICE]  the grpc:// check over TLS (ALPN h2)
  The server's certificate is NOT verified unless ca= is given: the kubelet's
  HTTPS and gRPC TLS probes do not verify it either. Options (https, grpcs):
  ca=FILE                a PEM bundle: verify the chain, validity and name
  server-name=NAME       the name sent (SNI) and verified (default: the URL's host)
  cert=FILE&key=FILE     a client certificate and its key (PEM: PKCS#8, SEC1, PKCS#1)
  Files are read at every run: a rotated certificate is followed, and a file
  missing or bad fails the run, naming it. header, status, body and socket as
  for http:// (https) and socket and metadata as for grpc:// (grpcs).
";
/// The help's words on TLS, for `--help` and `check --help`.
#[cfg(not(feature = "tls"))]
pub const TLS_USAGE: &str = "\
https:// and grpcs:// are in the TLS build only (exechealthz-tls: make build TLS=1).
";

/// Which cargo features are built in, for `--version`.
pub const FEATURES: &str = if cfg!(feature = "tls") { "tls" } else { "none" };

/// Schemes of the built-in checks; a `--cmd` that begins with one of these
/// is a check, or an error, never a shell command (https:// and grpcs://
/// are an error in the build without TLS).
const SCHEMES: [&str; 8] = [
    "tcp", "http", "https", "file", "dns", "grpc", "grpcs", "h2c",
];

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
    // The fragment holds the options; it is never sent.
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let url = cmd.split_once('#').map_or(cmd, |(url, _)| url);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let scheme = scheme.to_ascii_lowercase();
    let kind = match scheme.as_str() {
        "tcp" => {
            let (host, port) = host_port(authority, None)?;
            Kind::Tcp { host, port }
        }
        "https" | "grpcs" if !cfg!(feature = "tls") => {
            return Err(format!(
                "{url}: TLS is not in this build; use the TLS build (exechealthz-tls, \
                 made by `make build TLS=1`), or {}://",
                &scheme[..scheme.len() - 1]
            ));
        }
        "http" | "h2c" | "https" => {
            let tls = scheme == "https";
            let (host, port) = host_port(authority, Some(if tls { 443 } else { 80 }))?;
            let path = if path.is_empty() { "/" } else { path }.to_string();
            if scheme == "h2c" {
                Kind::H2c { host, port, path }
            } else {
                Kind::Http {
                    host,
                    port,
                    path,
                    tls,
                }
            }
        }
        "file" => {
            if !authority.is_empty() || path.is_empty() {
                return Err(format!("{cmd}: write files as file:///PATH"));
            }
            Kind::File {
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
            // A trailing dot stays: it asks for the name as written.
            Kind::Dns {
                server,
                name: name.to_string(),
            }
        }
        "grpc" | "grpcs" => {
            if path.contains('?') {
                return Err(format!(
                    "{url}: write {scheme}://HOST:PORT[/SERVICE], with no query"
                ));
            }
            let (host, port) = host_port(authority, None)?;
            // A service name is percent-decoded: `a%20b` asks for `a b`.
            let service = options::percent_decode(path.strip_prefix('/').unwrap_or(""))
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| format!("{url}: a bad percent-escape in the service name"))?;
            Kind::Grpc {
                host,
                port,
                service,
                tls: scheme == "grpcs",
            }
        }
        other => {
            return Err(format!(
                "{cmd}: unknown scheme {other}:// (built-in checks: tcp, http, h2c, file, dns, \
                 grpc{})",
                if cfg!(feature = "tls") {
                    ", https, grpcs"
                } else {
                    ""
                }
            ));
        }
    };
    let options = options::parse(&scheme, fragment).map_err(|e| format!("{url}: {e}"))?;
    Ok(Some(Check {
        kind,
        options: Arc::new(options),
    }))
}

impl Check {
    /// Which check, for messages: `http check of http://a:80/healthz`.
    pub fn name(&self) -> String {
        let (scheme, host, port, path, slash) = match &self.kind {
            Kind::Tcp { host, port } => ("tcp", host, *port, "", ""),
            Kind::Http {
                host,
                port,
                path,
                tls,
            } => (
                if *tls { "https" } else { "http" },
                host,
                *port,
                &path[..],
                "",
            ),
            Kind::H2c { host, port, path } => ("h2c", host, *port, &path[..], ""),
            Kind::File { path } => return format!("file check of {}", path.display()),
            Kind::Dns { name, .. } => return format!("dns check of {name}"),
            Kind::Grpc {
                host,
                port,
                service,
                tls,
            } => (
                if *tls { "grpcs" } else { "grpc" },
                host,
                *port,
                &service[..],
                "/",
            ),
        };
        let authority = authority(host, port);
        if scheme == "tcp" {
            return format!("tcp check of {authority}");
        }
        format!("{scheme} check of {scheme}://{authority}{slash}{path}")
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

/// What one run of a check came to.
pub struct Ran {
    pub outcome: Outcome,
    /// What it has to say (its output).
    pub said: Vec<u8>,
    /// A state worth a log line when it starts and when it stops, but not
    /// a failure: a redirect to another host, not followed.
    pub notice: Option<String>,
}

/// Runs a check within `timeout`.
pub fn run(check: &Check, timeout: Duration) -> Ran {
    let deadline = Instant::now() + timeout;
    let options = &check.options;
    let mut notice = None;
    let result = match &check.kind {
        Kind::Tcp { host, port } => tcp::run(host, *port, deadline),
        Kind::Http {
            host,
            port,
            path,
            tls,
        } => {
            let via = if *tls {
                http::Via::Https
            } else {
                http::Via::Http1
            };
            http::get(via, host, *port, path, options, deadline, &mut notice)
        }
        Kind::H2c { host, port, path } => {
            let via = http::Via::H2c;
            http::get(via, host, *port, path, options, deadline, &mut notice)
        }
        Kind::File { path } => file::run(path),
        Kind::Dns { server, name } => dns::run(server.as_ref(), name, deadline),
        Kind::Grpc {
            host,
            port,
            service,
            tls,
        } => grpc::run(host, *port, service, *tls, options, deadline),
    };
    let (outcome, said) = match result {
        Ok(said) => (Outcome::Exited(0), shown(said).into_bytes()),
        Err(Failure::TimedOut) => (
            Outcome::CheckTimedOut {
                check: check.name(),
                after: timeout,
            },
            Vec::new(),
        ),
        Err(Failure::TimedOutIn(step)) => (
            Outcome::CheckTimedOut {
                check: format!("{}: {step}", check.name()),
                after: timeout,
            },
            Vec::new(),
        ),
        Err(Failure::ConnectTimedOut(service)) => (
            Outcome::CheckConnectTimedOut {
                check: check.name(),
                service,
                after: timeout,
            },
            Vec::new(),
        ),
        Err(Failure::Error(why)) => (Outcome::CheckFailed(shown(why)), Vec::new()),
        Err(Failure::Answered { said, why }) => {
            (Outcome::CheckFailed(shown(why)), shown(said).into_bytes())
        }
    };
    Ran {
        outcome,
        said,
        notice: notice.map(shown),
    }
}

/// A check's words as they may be shown anywhere (`check`'s output, the
/// 503 body, /status, the logs): they carry a peer's text (a grpc-message,
/// a status line, a header's value), whose control characters are written
/// as escapes here, once, so that no peer can drive a reader's terminal or
/// forge a line. Printable UTF-8 stays as it is.
fn shown(text: String) -> String {
    match crate::log::escape_controls(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

/// Where a response is read from: a socket whose reads give up at the
/// deadline (in the fuzz target, scripted bytes).
pub trait Source: Read {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()>;

    /// For the writes of a check that talks back (grpc://).
    fn set_write_timeout(&self, _timeout: Duration) -> io::Result<()> {
        Ok(())
    }
}

impl Source for TcpStream {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        TcpStream::set_read_timeout(self, Some(timeout))
    }

    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        TcpStream::set_write_timeout(self, Some(timeout))
    }
}

enum Failure {
    TimedOut,
    /// Timed out in this step of a check that has several (grpc://).
    TimedOutIn(&'static str),
    /// A grpc:// connection not ready in time (see `Outcome`), to HOST:PORT.
    ConnectTimedOut(String),
    Error(String),
    /// The peer answered, and the answer is a failure.
    Answered {
        said: String,
        why: String,
    },
}

impl Failure {
    /// A time-out as one in `step`.
    fn during(self, step: &'static str) -> Failure {
        match self {
            Failure::TimedOut => Failure::TimedOutIn(step),
            other => other,
        }
    }
}

/// `host:port`, or `[v6]:port`: a request's authority (http, h2c, grpc).
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// How the http:// and grpc:// checks introduce themselves.
const USER_AGENT: &str = concat!("exechealthz/", env!("CARGO_PKG_VERSION"));

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

/// A lookup's thread runs getaddrinfo and little else.
const LOOKUP_STACK: usize = 128 * 1024;

/// Name lookups under way, by name: a lookup still stuck in the resolver
/// when its run gave up is waited on again by the next run for that name,
/// never started twice, so a resolver that stops answering holds at most
/// one thread per name (and so per probe).
static LOOKUPS: Mutex<Vec<(String, Arc<Lookup>)>> = Mutex::new(Vec::new());

/// One getaddrinfo call, and its result once it has returned.
#[derive(Default)]
struct Lookup {
    result: Mutex<Option<Result<Vec<IpAddr>, String>>>,
    done: Condvar,
}

/// The addresses of `host` (with `port`), looked up within `deadline`:
/// getaddrinfo cannot be given a timeout, so it runs on a thread of its
/// own, and a lookup that has not returned by the deadline fails the run
/// as `name resolution timed out`. An IP address is taken as it is.
fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let lookup = {
        let mut lookups = LOOKUPS.lock().unwrap_or_else(|e| e.into_inner());
        match lookups.iter().find(|(name, _)| name == host) {
            Some((_, lookup)) => Arc::clone(lookup),
            None => {
                let lookup = Arc::new(Lookup::default());
                let (name, shared) = (host.to_string(), Arc::clone(&lookup));
                let started = thread::Builder::new()
                    .name("lookup".into())
                    .stack_size(LOOKUP_STACK)
                    .spawn(move || look_up(name, shared));
                if let Err(e) = started {
                    return Err(Failure::Error(format!("resolve {host}: {e}")));
                }
                lookups.push((host.to_string(), Arc::clone(&lookup)));
                lookup
            }
        }
    };
    let mut result = lookup.result.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(result) = result.as_ref() {
            return match result {
                Ok(ips) => Ok(ips.iter().map(|&ip| SocketAddr::new(ip, port)).collect()),
                Err(why) => Err(Failure::Error(format!("resolve {host}: {why}"))),
            };
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Err(Failure::TimedOutIn("name resolution"));
        }
        result = lookup
            .done
            .wait_timeout(result, wait)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// The lookup thread: getaddrinfo, then the result for whoever waits, and
/// the name off the list, so that the next run asks the resolver again.
fn look_up(name: String, lookup: Arc<Lookup>) {
    let result = (name.as_str(), 0)
        .to_socket_addrs()
        .map(|addrs| addrs.map(|a| a.ip()).collect())
        .map_err(|e| e.to_string());
    let mut lookups = LOOKUPS.lock().unwrap_or_else(|e| e.into_inner());
    lookups.retain(|(_, l)| !Arc::ptr_eq(l, &lookup));
    *lookup.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    lookup.done.notify_all();
}

/// A check's connection: TCP, or a Unix socket (`socket=PATH`).
pub(super) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    #[cfg(feature = "tls")]
    Tls(Box<tls::Tls>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.flush(),
            _ => Ok(()),
        }
    }
}

impl Source for Stream {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(timeout)),
            Stream::Unix(s) => s.set_read_timeout(Some(timeout)),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.set_read_timeout(timeout),
        }
    }

    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(Some(timeout)),
            Stream::Unix(s) => s.set_write_timeout(Some(timeout)),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.set_write_timeout(timeout),
        }
    }
}

impl Stream {
    /// After our GOAWAY (grpc://, h2c://): waits for the server to close
    /// its side, reading what it still sends, so that our close is a clean
    /// one (closing with unread bytes resets the connection, and servers
    /// log resets). At most 100 ms, and never past the deadline, however
    /// much the server sends.
    fn close_cleanly(&mut self, deadline: Instant) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => return s.close_cleanly(deadline),
        };
        let until = deadline.min(Instant::now() + Duration::from_millis(100));
        let mut sink = [0u8; 512];
        loop {
            let wait = until.saturating_duration_since(Instant::now());
            if wait.is_zero() || Source::set_read_timeout(self, wait).is_err() {
                return;
            }
            if !matches!(self.read(&mut sink), Ok(n) if n > 0) {
                return;
            }
        }
    }
}

/// The connection a check makes: to `socket` when the URL's options name
/// one (the host then only names the server, in `Host` or `:authority`),
/// else to the first address of `host` that answers. Also what to call
/// the peer in reasons. With `tls` (the ALPN protocol to offer), TLS over
/// it, its handshake done (a failure of it named after the peer).
fn open(
    host: &str,
    port: u16,
    options: &Options,
    tls: Option<&'static [u8]>,
    deadline: Instant,
) -> Result<(Stream, String), Failure> {
    let (stream, addr) = match options.socket.as_deref() {
        Some(path) => {
            let stream = connect_unix(path, deadline)?;
            (Stream::Unix(stream), path.display().to_string())
        }
        None => {
            let (stream, addr) = connect(host, port, deadline)?;
            let _ = stream.set_nodelay(true);
            (Stream::Tcp(stream), addr.to_string())
        }
    };
    let Some(alpn) = tls else {
        return Ok((stream, addr));
    };
    #[cfg(feature = "tls")]
    return match tls::connect(stream, host, &options.tls, alpn, deadline) {
        Ok(stream) => Ok((stream, addr)),
        Err(Failure::Error(why)) => Err(Failure::Error(format!("{addr}: {why}"))),
        Err(other) => Err(other),
    };
    // `parse` refuses TLS schemes in this build, and http:// does not
    // follow a redirect to https://.
    #[cfg(not(feature = "tls"))]
    {
        let _ = alpn;
        Err(Failure::Error(format!("{addr}: TLS is not in this build")))
    }
}

/// ALPN for https:// (HTTP/1.1, as the kubelet's client offers it without
/// HTTP/2) and for grpcs:// (gRPC is HTTP/2 only).
const ALPN_HTTP1: &[u8] = b"http/1.1";
const ALPN_H2: &[u8] = b"h2";

/// A connection to the Unix socket at `path` within `deadline`. std's
/// connect would block while the server's backlog is full (a stuck server,
/// what a check is for), so it is made non-blocking and tried again every
/// few milliseconds until the deadline, then made blocking for the
/// exchange, whose reads and writes keep the deadline themselves.
fn connect_unix(path: &Path, deadline: Instant) -> Result<UnixStream, Failure> {
    use std::os::unix::ffi::OsStrExt;
    let shown = path.display();
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= address.sun_path.len() {
        return Err(Failure::Error(format!(
            "{shown}: path too long for a socket"
        )));
    }
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (slot, &byte) in address.sun_path.iter_mut().zip(bytes) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: plain syscall; the descriptor is owned right below.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd == -1 {
        return Err(io_failure(
            &format!("connect {shown}"),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let stream = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    loop {
        // SAFETY: address is a valid sockaddr_un of the given length.
        let rc = unsafe {
            libc::connect(
                fd,
                (&address as *const libc::sockaddr_un).cast(),
                size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        let error = io::Error::last_os_error();
        match (rc, error.raw_os_error()) {
            (0, _) | (_, Some(libc::EISCONN)) => break,
            // The server's backlog is full: again, until the deadline.
            (_, Some(libc::EAGAIN | libc::EINPROGRESS | libc::EALREADY | libc::EINTR)) => {
                left(deadline)?;
                std::thread::sleep(Duration::from_millis(5).min(left(deadline)?));
            }
            _ => return Err(Failure::Error(format!("connect {shown}: {error}"))),
        }
    }
    stream
        .set_nonblocking(false)
        .map_err(|e| io_failure(&format!("connect {shown}"), e))?;
    Ok(stream)
}

/// Connects to the first address of `host` that answers.
fn connect(host: &str, port: u16, deadline: Instant) -> Result<(TcpStream, SocketAddr), Failure> {
    let mut last = Failure::Error(format!("{host}: no addresses"));
    for addr in resolve(host, port, deadline)? {
        match TcpStream::connect_timeout(&addr, left(deadline)?) {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => last = io_failure(&format!("connect {addr}"), e),
        }
    }
    Err(last)
}

/// For the fuzz targets (`crate::fuzz`): what the http:// check makes of a
/// response read from `source` (its status line, or why it fails), and
/// the count the dns:// check finds in a reply.
pub mod fuzzing {
    use super::*;

    pub fn http_response(source: impl Source) -> Result<String, String> {
        let mut reader = http::Reader {
            stream: source,
            addr: "127.0.0.1:80".into(),
            deadline: Instant::now() + Duration::from_secs(60),
            buffer: Vec::new(),
            eof: false,
            body: Vec::new(),
        };
        match http::read_response(&mut reader) {
            Ok(response) => Ok(response.status_line),
            Err(Failure::TimedOut | Failure::TimedOutIn(_) | Failure::ConnectTimedOut(_)) => {
                Err("timed out".into())
            }
            Err(Failure::Error(why) | Failure::Answered { why, .. }) => Err(why),
        }
    }

    /// A grpc:// call's client fed `pieces` as the server's bytes: the
    /// check's result (or why the call failed, or `None`: no end yet),
    /// and how many bytes the client sent. Its bounds are asserted here.
    pub fn grpc_exchange(pieces: &[&[u8]]) -> (Option<Result<String, String>>, usize) {
        let message = grpc::request_message("svc");
        let headers = grpc::request_headers("127.0.0.1", 50051, false, Duration::from_secs(1));
        let mut client = h2::Client::new(&headers, message.clone(), 4101);
        let mut sent = client.out.len();
        client.out.clear();
        let mut result = None;
        let mut taken = 0;
        for piece in pieces {
            taken += piece.len();
            let step = client.receive(piece);
            // What is kept while more is to come is less than one frame.
            if let Ok(None) = step {
                let kept = client.buffered();
                assert!(kept < 9 + 16_384, "{kept} bytes kept");
            }
            sent += client.out.len();
            client.out.clear();
            assert!(
                sent <= headers.len() + 200 + 2 * taken + 10 * message.len(),
                "{sent} bytes sent for {taken} taken"
            );
            match step {
                Ok(None) => continue,
                Ok(Some(response)) => {
                    assert!(response.body.len() <= 4101);
                    let decided = grpc::decide(&response);
                    if decided.is_ok() {
                        // A pass has its status from trailers (or a
                        // trailers-only answer), and said it once.
                        let block = match &response.trailers {
                            Some(trailers) => trailers,
                            None => {
                                assert!(response.ended_by_headers, "a pass without trailers");
                                &response.headers
                            }
                        };
                        let statuses = block.iter().filter(|(n, _)| n == b"grpc-status");
                        assert_eq!(statuses.count(), 1, "a pass with grpc-status repeated");
                    }
                    result = Some(decided.map_err(|f| match f {
                        Failure::Error(why) | Failure::Answered { why, .. } => why,
                        Failure::TimedOut
                        | Failure::TimedOutIn(_)
                        | Failure::ConnectTimedOut(_) => unreachable!(),
                    }));
                }
                Err(why) => result = Some(Err(why)),
            }
            break;
        }
        (result, sent)
    }

    /// Header blocks decoded one after another on one connection's table:
    /// each list within its bound, the table within the size we announce.
    pub fn hpack_blocks(blocks: &[&[u8]]) {
        let mut decoder = hpack::Decoder::new();
        for block in blocks {
            if let Ok(fields) = decoder.decode(block, 1024) {
                let size: usize = fields.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
                assert!(size <= 1024, "a list of {size}");
            }
            assert!(decoder.table_size() <= hpack::TABLE_SIZE);
        }
    }

    pub fn dns_reply(reply: &[u8], qtype: u16) -> Option<usize> {
        match dns::parse_reply(reply, qtype)? {
            dns::Answer::Records(n) => Some(n),
            _ => Some(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_itself_by_its_url() {
        for (url, name) in [
            ("tcp://[::1]:5", "tcp check of [::1]:5"),
            ("http://a:8/x?y", "http check of http://a:8/x?y"),
            ("http://[::1]/", "http check of http://[::1]:80/"),
            ("h2c://a:9/h#status=200", "h2c check of h2c://a:9/h"),
            ("grpc://a:1", "grpc check of grpc://a:1/"),
            ("grpc://a:1/my.Svc", "grpc check of grpc://a:1/my.Svc"),
            ("file:///tmp/x", "file check of /tmp/x"),
        ] {
            assert_eq!(parse(url).unwrap().unwrap().name(), name, "{url}");
        }
    }

    /// The kind of check `url` is, with no options.
    fn kind(url: &str) -> Option<Kind> {
        parse(url).unwrap().map(|check| {
            assert_eq!(*check.options, Options::default(), "{url}");
            check.kind
        })
    }

    #[test]
    fn parses_check_urls() {
        assert_eq!(parse("ls /tmp").unwrap(), None);
        assert_eq!(parse("echo http://x").unwrap(), None);
        assert_eq!(
            kind("tcp://[::1]:53"),
            Some(Kind::Tcp {
                host: "::1".into(),
                port: 53
            })
        );
        assert_eq!(
            kind("http://localhost/healthz?x=1"),
            Some(Kind::Http {
                host: "localhost".into(),
                port: 80,
                path: "/healthz?x=1".into(),
                tls: false
            })
        );
        assert_eq!(
            kind("http://10.0.0.1:8080"),
            Some(Kind::Http {
                host: "10.0.0.1".into(),
                port: 8080,
                path: "/".into(),
                tls: false
            })
        );
        assert_eq!(
            kind("file:///tmp/x"),
            Some(Kind::File {
                path: "/tmp/x".into()
            })
        );
        assert_eq!(
            kind("dns:///kubernetes.default.svc.cluster.local."),
            Some(Kind::Dns {
                server: None,
                name: "kubernetes.default.svc.cluster.local.".into()
            })
        );
        assert_eq!(
            kind("dns://127.0.0.1:10053/a.b"),
            Some(Kind::Dns {
                server: Some(("127.0.0.1".into(), 10053)),
                name: "a.b".into()
            })
        );
        assert_eq!(
            kind("grpc://127.0.0.1:9090/my.pkg/Svc"),
            Some(Kind::Grpc {
                host: "127.0.0.1".into(),
                port: 9090,
                service: "my.pkg/Svc".into(),
                tls: false
            })
        );
        assert_eq!(
            kind("grpc://[::1]:9090"),
            Some(Kind::Grpc {
                host: "::1".into(),
                port: 9090,
                service: String::new(),
                tls: false
            })
        );
        for bad in [
            "grpc://h",
            "grpc://h:x/s",
            "grpc://h:1/s?q",
            "grpc://h:1/s#f",
            "grpc://h:1/a%zz",
            "grpc://h:1/%FF",
            "http://h/#status=600",
            "http://h/#metadata=a:b",
            "tcp://h:1#bogus=1",
            "h2c://h:x/",
            #[cfg(not(feature = "tls"))]
            "grpcs://h:1",
            #[cfg(not(feature = "tls"))]
            "https://h/",
            "https://h/#ca=",
            "https://h/#cert=/c",
            "https://h/#key=/k",
            "https://h/#server-name=a..b",
            "http://h/#ca=/c",
            "grpc://h:1#server-name=a",
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
        // The fragment is the options, never part of the path or service;
        // a service is percent-decoded.
        let check = parse("http://h:8/a?b#header=X:1&status=204")
            .unwrap()
            .unwrap();
        assert_eq!(
            check.kind,
            Kind::Http {
                host: "h".into(),
                port: 8,
                path: "/a?b".into(),
                tls: false
            }
        );
        assert_eq!(check.options.status, Some(vec![(204, 204)]));
        assert_eq!(
            kind("h2c://h/x"),
            Some(Kind::H2c {
                host: "h".into(),
                port: 80,
                path: "/x".into()
            })
        );
        assert_eq!(
            kind("grpc://h:1/a%20b%3F%23"),
            Some(Kind::Grpc {
                host: "h".into(),
                port: 1,
                service: "a b?#".into(),
                tls: false
            })
        );
        assert_eq!(kind("http://h/#"), kind("http://h/"));
        #[cfg(feature = "tls")]
        {
            assert_eq!(
                kind("https://h/x"),
                Some(Kind::Http {
                    host: "h".into(),
                    port: 443,
                    path: "/x".into(),
                    tls: true,
                })
            );
            let check = parse("grpcs://h:1/s#server-name=app.test&ca=/c&cert=/a&key=/b")
                .unwrap()
                .unwrap();
            assert!(matches!(check.kind, Kind::Grpc { tls: true, .. }));
            let tls = &check.options.tls;
            assert_eq!(tls.server_name.as_deref(), Some("app.test"));
            assert_eq!(tls.ca.as_deref(), Some(Path::new("/c")));
            assert_eq!(tls.cert.as_deref(), Some(Path::new("/a")));
            assert_eq!(tls.key.as_deref(), Some(Path::new("/b")));
        }
        #[cfg(not(feature = "tls"))]
        {
            let e = parse("https://h/").unwrap_err();
            assert!(e.contains("exechealthz-tls") && e.contains("TLS=1"), "{e}");
        }
        let e = parse("http://h/#statu=200").unwrap_err();
        assert!(e.starts_with("http://h/: unknown option \"statu\""), "{e}");
    }
}
