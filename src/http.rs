//! The HTTP side: binds the listener, starts tiny_http on an internal Unix
//! socket with a fixed pool of workers, puts the `front` thread between the
//! two, and routes each request to a probe's answer, the index page,
//! `/status`, `/metrics` or `/quit`.
//!
//! Workers only read probe state (through `results`) and write responses:
//! they never run commands or wait on anything but the request queue. Nothing
//! from a command's output is ever placed in a header.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use tiny_http::{Header, Method, Request, Response, Server};

use crate::process::Children;
use crate::results::{Policy, Probe};
use crate::{error, info, metrics, status};

/// Paths the server answers itself; no `--url` may take one.
pub const RESERVED_PATHS: &[&str] = &["/", "/quit", "/metrics", "/status"];

/// Threads answering requests. Answers are computed from memory in
/// microseconds, so a few suffice; tiny_http queues requests meanwhile.
const WORKERS: usize = 4;

/// Connections from the front to tiny_http: requests in flight at once.
/// tiny_http holds one thread per connection, so this also bounds its
/// threads whatever clients do. Twice the workers keeps them busy.
const INTERNAL_CONNECTIONS: usize = 2 * WORKERS;

/// What the workers share.
pub struct Shared {
    pub probes: Arc<Vec<Probe>>,
    pub children: Arc<Children>,
    pub policy: Policy,
    pub enable_quit: bool,
    pub started: SystemTime,
    pub requests: Arc<RequestCounts>,
}

/// Every status code we answer with, for `/metrics`.
const CODES: [u16; 10] = [200, 400, 404, 405, 408, 413, 414, 431, 503, 505];

/// Answers counted by status code.
#[derive(Default)]
pub struct RequestCounts([AtomicU64; CODES.len()]);

impl RequestCounts {
    pub fn count(&self, code: u16) {
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (code, count) for the codes answered at least once.
    pub fn snapshot(&self) -> Vec<(u16, u64)> {
        CODES
            .iter()
            .zip(&self.0)
            .map(|(code, n)| (*code, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Binds `address:port`; with no address, `[::]` accepting IPv4 too, or
/// `0.0.0.0` where the host has no IPv6.
pub fn bind(address: Option<IpAddr>, port: u16) -> io::Result<TcpListener> {
    match address {
        Some(address) => TcpListener::bind((address, port)),
        None => match bind_dual_stack(port) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
                ) =>
            {
                info!("no IPv6 on this host ({e}); listening on IPv4 only");
                TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
            }
            other => other,
        },
    }
}

/// `[::]:port` with `IPV6_V6ONLY` off, whatever the host's default, so IPv4
/// clients (mapped addresses) reach us too.
fn bind_dual_stack(port: u16) -> io::Result<TcpListener> {
    fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
        if rc == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }
    fn set_option(
        fd: libc::c_int,
        level: libc::c_int,
        name: libc::c_int,
        on: bool,
    ) -> io::Result<()> {
        let value: libc::c_int = on.into();
        // SAFETY: valid descriptor and a c_int option value.
        check(unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }
    // SAFETY: plain syscall; the descriptor is owned right below.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_option(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, true)?;
    set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, false)?;
    // SAFETY: sockaddr_in6 is plain data; all-zero is the unspecified address.
    let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    addr.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    addr.sin6_port = port.to_be();
    // SAFETY: addr is a valid sockaddr_in6 of the given length.
    check(unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in6).cast(),
            size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    })?;
    // SAFETY: plain syscall on a bound socket.
    check(unsafe { libc::listen(fd, 1024) })?;
    Ok(TcpListener::from(owned))
}

/// Starts tiny_http on an internal Unix socket with its worker threads,
/// and the front thread that accepts on `listener` and feeds it.
pub fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    timeouts: crate::front::Timeouts,
) -> io::Result<SocketAddr> {
    let address = listener.local_addr()?;
    let (internal, unix_listener) = bind_internal()?;
    let server = Server::from_listener(unix_listener, None).map_err(io::Error::other)?;
    let server = Arc::new(server);
    for i in 0..WORKERS {
        let server = Arc::clone(&server);
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("http-{i}"))
            .stack_size(crate::THREAD_STACK)
            .spawn(move || work(&server, &shared))?;
    }
    let front = crate::front::Front::new(
        listener,
        internal,
        INTERNAL_CONNECTIONS,
        Arc::clone(&shared.requests),
        timeouts,
    )?;
    std::thread::Builder::new()
        .name("front".into())
        .stack_size(crate::THREAD_STACK)
        .spawn(move || front.run())?;
    Ok(address)
}

/// tiny_http's listener: an abstract Unix socket (no file to clean up,
/// nothing to open by path), named uniquely in the network namespace: pids
/// repeat across PID namespaces, so the clock is part of the name.
fn bind_internal() -> io::Result<(UnixAddr, UnixListener)> {
    let nanos = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut attempt = 0;
    loop {
        let name = format!("exechealthz-{}-{nanos}-{attempt}", std::process::id());
        let address = UnixAddr::from_abstract_name(name.as_bytes())?;
        match UnixListener::bind_addr(&address) {
            Ok(listener) => return Ok((address, listener)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

fn work(server: &Server, shared: &Shared) {
    loop {
        match server.recv() {
            Ok(request) => answer(request, shared),
            Err(e) => {
                error!("http: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

/// What a request gets.
enum Reply {
    Probe(usize),
    Index,
    Metrics,
    Status,
    Quit,
    NotFound,
    MethodNotAllowed(&'static str),
}

fn route(method: &Method, path: &str, shared: &Shared) -> Reply {
    let read_only = matches!(method, Method::Get | Method::Head);
    let (allowed, reply) = if let Some(i) = shared.probes.iter().position(|p| p.spec.url == path) {
        (read_only, Reply::Probe(i))
    } else if path == "/" {
        (read_only, Reply::Index)
    } else if path == "/metrics" {
        (read_only, Reply::Metrics)
    } else if path == "/status" {
        (read_only, Reply::Status)
    } else if path == "/quit" && shared.enable_quit {
        return match method {
            Method::Get | Method::Post => Reply::Quit,
            _ => Reply::MethodNotAllowed("GET, POST"),
        };
    } else {
        return Reply::NotFound;
    };
    if allowed {
        reply
    } else {
        Reply::MethodNotAllowed("GET, HEAD")
    }
}

fn answer(request: Request, shared: &Shared) {
    let (path, query) = request.url().split_once('?').unwrap_or((request.url(), ""));
    let reply = route(request.method(), path, shared);
    let (status, body, content_type) = match &reply {
        Reply::Probe(i) => {
            let answer = shared.probes[*i].answer(Instant::now(), &shared.policy);
            (answer.status, answer.body, "text/plain; charset=utf-8")
        }
        Reply::Metrics => {
            // Counted before rendering, so a scrape sees itself.
            shared.requests.count(200);
            let text = metrics::render(
                &shared.probes,
                &shared.policy,
                shared.started,
                &shared.requests.snapshot(),
            );
            (200, text.into_bytes(), metrics::CONTENT_TYPE)
        }
        Reply::Status => {
            let rendered = status::render(&shared.probes, &shared.policy, query);
            let content_type = if rendered.json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            (rendered.status, rendered.body.into_bytes(), content_type)
        }
        Reply::Index => (
            200,
            index_page(shared).into_bytes(),
            "text/html; charset=utf-8",
        ),
        Reply::Quit => (200, b"bye\n".to_vec(), "text/plain; charset=utf-8"),
        Reply::NotFound => (
            404,
            b"404 page not found\n".to_vec(),
            "text/plain; charset=utf-8",
        ),
        Reply::MethodNotAllowed(_) => (
            405,
            b"405 method not allowed\n".to_vec(),
            "text/plain; charset=utf-8",
        ),
    };
    // Never chunked: the front finds the end of a response by its length.
    let mut response = Response::from_data(body)
        .with_chunked_threshold(usize::MAX)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Server", "exechealthz"));
    if let Reply::MethodNotAllowed(allow) = reply {
        response.add_header(header("Allow", allow));
    }
    if !matches!(reply, Reply::Metrics) {
        shared.requests.count(status);
    }
    let delivered = crate::front::DELIVERED.load(std::sync::atomic::Ordering::Relaxed);
    // An error here means the client went away: nothing to do for it.
    let _ = request.respond(response);
    if let Reply::Quit = reply {
        info!("/quit requested; stopping probes and exiting");
        // Give the front up to a second to pass our answer on.
        let start = Instant::now();
        while crate::front::DELIVERED.load(std::sync::atomic::Ordering::Relaxed) == delivered
            && start.elapsed() < std::time::Duration::from_secs(1)
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        shared.children.kill_all_and_exit(0);
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

fn index_page(shared: &Shared) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html><head><title>exechealthz</title></head><body>\n\
         <h1>exechealthz</h1>\n<h2>Probes</h2>\n<ul>\n",
    );
    for probe in shared.probes.iter() {
        let url = escape_html(&probe.spec.url);
        page.push_str(&format!(
            "<li><a href=\"{url}\">{url}</a>: <code>{}</code></li>\n",
            escape_html(&probe.spec.cmd)
        ));
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
