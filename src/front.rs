//! The front door: one thread with an epoll loop that owns every client
//! connection, so that whatever reaches the port stays bounded. It reads
//! each request head within limits (`head`) and deadlines, answers bad ones
//! itself (400, 408, 413, 414, 431, 505) and closes them, and passes good
//! ones to tiny_http, re-written as a bare request line, over a few
//! persistent Unix-socket connections ("upstreams"). tiny_http's answer is
//! read whole and written back to the client with a write deadline.
//!
//! Why: tiny_http 0.12 has no limit on head size, no timeouts, a thread per
//! connection and an accept loop that dies on the first error (see
//! docs/http-front.md). Here a connection costs a few hundred bytes until it
//! sends something, tiny_http sees eight connections whatever the load, and
//! running out of descriptors only pauses accepting.
//!
//! It must not block: every socket is non-blocking, and no request waits
//! on anything but tiny_http's answer.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::head::{self, Head, Reject, Scan};
use crate::http::RequestCounts;
use crate::{error, info};

/// Client deadlines (`--head-timeout`, `--idle-timeout`, `--write-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A new connection must send a complete head within this; so must a
    /// kept-alive one once it starts a request.
    pub head: Duration,
    /// A kept-alive connection may wait this long for its next request.
    pub idle: Duration,
    /// A client must take our answer within this.
    pub write: Duration,
}
/// After refusing a request we read and discard for this long, or this
/// much, before closing, so the client gets our answer rather than a reset
/// (a client still sending after that gets the reset).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;
/// tiny_http answers from memory; past this something is wrong.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How often deadlines are checked (and their granularity).
const TICK: Duration = Duration::from_millis(100);
/// After an accept error (out of descriptors), wait this long to retry.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Responses from tiny_http fully written to their clients (or dropped with
/// their client): lets `/quit` wait for its own answer to leave.
pub static DELIVERED: AtomicU64 = AtomicU64::new(0);

const LISTENER: u64 = u64::MAX;
const UPSTREAM_BASE: u64 = 1 << 40;

pub struct Front {
    epoll: OwnedFd,
    listener: TcpListener,
    accept_paused_until: Option<Instant>,
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    upstreams: Vec<Upstream>,
    /// Clients whose request waits for an idle upstream.
    waiting: VecDeque<(usize, u64)>,
    upstream_addr: UnixAddr,
    counts: Arc<RequestCounts>,
    timeouts: Timeouts,
    next_serial: u64,
}

struct Client {
    stream: TcpStream,
    /// Tells a reused slot from the client an upstream answer was for.
    serial: u64,
    buffer: Vec<u8>,
    scan: Scan,
    state: State,
    deadline: Instant,
    /// The re-written request, until an upstream takes it.
    request: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    keep_alive: bool,
    /// Input arrived (an edge) while we were not reading: read it later.
    unread: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Waiting for (the rest of) a head. `started`: bytes have arrived.
    Head {
        started: bool,
    },
    /// Reading and discarding a body of `remaining` bytes, head of `head_len`.
    Body {
        head_len: usize,
        remaining: usize,
    },
    /// Waiting for tiny_http's answer.
    Upstream,
    Writing,
    /// Refused: our answer is out, input is read and dropped until close;
    /// `discarded` bytes so far.
    Lingering {
        discarded: usize,
    },
}

struct Upstream {
    stream: Option<UnixStream>,
    buffer: Vec<u8>,
    /// The client this upstream answers for, and whether it asked HEAD.
    client: Option<(usize, u64, bool)>,
}

impl Front {
    pub fn new(
        listener: TcpListener,
        upstream_addr: UnixAddr,
        upstreams: usize,
        counts: Arc<RequestCounts>,
        timeouts: Timeouts,
    ) -> io::Result<Front> {
        // SAFETY: plain syscall; the descriptor is owned right away.
        let epoll = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: a fresh descriptor nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        listener.set_nonblocking(true)?;
        let mut front = Front {
            epoll,
            listener,
            accept_paused_until: None,
            clients: Vec::new(),
            free: Vec::new(),
            upstreams: Vec::new(),
            waiting: VecDeque::new(),
            upstream_addr,
            counts,
            timeouts,
            next_serial: 0,
        };
        front.control(
            libc::EPOLL_CTL_ADD,
            front.listener.as_raw_fd(),
            LISTENER,
            libc::EPOLLIN,
        )?;
        for i in 0..upstreams {
            front.upstreams.push(Upstream {
                stream: None,
                buffer: Vec::new(),
                client: None,
            });
            front.connect_upstream(i)?;
        }
        Ok(front)
    }

    /// The front thread's body.
    pub fn run(mut self) -> ! {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            // SAFETY: events is a valid buffer of its length.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as libc::c_int,
                    wait.as_millis().min(1000) as libc::c_int + 1,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    error!("front: epoll_wait: {e}");
                    std::thread::sleep(TICK);
                }
                continue;
            }
            for event in &events[..n as usize] {
                let (token, flags) = (event.u64, event.events);
                match token {
                    LISTENER => self.accept_all(),
                    t if t >= UPSTREAM_BASE => self.upstream_ready((t - UPSTREAM_BASE) as usize),
                    t => self.client_ready(t as usize, flags),
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick(now);
                next_tick = now + TICK;
            }
        }
    }

    fn control(
        &self,
        op: libc::c_int,
        fd: RawFd,
        token: u64,
        events: libc::c_int,
    ) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: token,
        };
        // SAFETY: valid epoll and descriptor; event outlives the call.
        check(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) })?;
        Ok(())
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.add_client(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS: stop listening for a moment;
                    // descriptors come back as connections close.
                    if self.accept_paused_until.is_none() {
                        error!("front: accept failed ({e}); pausing new connections");
                    }
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    let _ =
                        self.control(libc::EPOLL_CTL_MOD, self.listener.as_raw_fd(), LISTENER, 0);
                    return;
                }
            }
        }
    }

    fn add_client(&mut self, stream: TcpStream) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let index = self.free.pop().unwrap_or_else(|| {
            self.clients.push(None);
            self.clients.len() - 1
        });
        if self
            .control(
                libc::EPOLL_CTL_ADD,
                stream.as_raw_fd(),
                index as u64,
                // Edge-triggered, both ways, once: no epoll_ctl per request.
                // Every handler reads or writes until it would block.
                libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET,
            )
            .is_err()
        {
            self.free.push(index);
            return;
        }
        self.next_serial += 1;
        self.clients[index] = Some(Client {
            stream,
            serial: self.next_serial,
            buffer: Vec::new(),
            scan: Scan::default(),
            state: State::Head { started: false },
            deadline: Instant::now() + self.timeouts.head,
            request: Vec::new(),
            out: Vec::new(),
            written: 0,
            keep_alive: true,
            unread: false,
        });
    }

    fn close(&mut self, index: usize) {
        if let Some(client) = self.clients[index].take() {
            // Removed explicitly: closing the descriptor is not enough while
            // a probe command being spawned holds a copy of it (until its
            // exec closes it), and the socket's events would then arrive
            // under this index for the next client.
            self.forget(client.stream.as_raw_fd());
            drop(client);
            self.free.push(index);
        }
    }

    fn forget(&self, fd: RawFd) {
        let _ = self.control(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    fn client_ready(&mut self, index: usize, flags: u32) {
        let Some(client) = self.clients.get_mut(index).and_then(|c| c.as_mut()) else {
            return;
        };
        if flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0 {
            client.unread = true;
        }
        match client.state {
            State::Writing => self.write_out(index),
            State::Head { .. } | State::Body { .. } => self.read_request(index),
            State::Lingering { .. } => self.linger(index),
            State::Upstream => {
                // Input waits in the socket until the answer is out; a reset
                // ends the client now.
                if flags & libc::EPOLLERR as u32 != 0 {
                    self.close(index);
                }
            }
        }
    }

    /// Reads what the client sent, until it would block or a request is
    /// complete (or refused), moving the request forward.
    fn read_request(&mut self, index: usize) {
        let mut scratch = [0u8; 16 * 1024];
        loop {
            let Some(client) = self.clients[index].as_mut() else {
                return;
            };
            if !matches!(client.state, State::Head { .. } | State::Body { .. }) {
                return;
            }
            let drained = match client.stream.read(&mut scratch) {
                Ok(0) => return self.close(index),
                Ok(n) => {
                    client.buffer.extend_from_slice(&scratch[..n]);
                    if let State::Head { started: false } = client.state {
                        client.state = State::Head { started: true };
                        client.deadline = client.deadline.min(Instant::now() + self.timeouts.head);
                    }
                    // A short read emptied the socket: the next byte brings
                    // a new edge, so no second read just to see EAGAIN.
                    n < scratch.len()
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(index),
            };
            if drained {
                client.unread = false;
            }
            // Scan refuses a head past MAX_HEAD and a body is at most
            // MAX_BODY, so the buffer stays bounded.
            self.advance(index);
            if drained {
                return;
            }
        }
    }

    /// Reads and drops input after a refusal, until end of file, the
    /// linger limit, or it would block.
    fn linger(&mut self, index: usize) {
        let mut scratch = [0u8; 16 * 1024];
        loop {
            let Some(client) = self.clients[index].as_mut() else {
                return;
            };
            match client.stream.read(&mut scratch) {
                Ok(0) => return self.close(index),
                Ok(n) => {
                    let State::Lingering { discarded } = &mut client.state else {
                        return;
                    };
                    *discarded += n;
                    if *discarded > LINGER_BYTES {
                        return self.close(index);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(index),
            }
        }
    }

    /// Parses as far as the buffer allows; hands a complete request on.
    fn advance(&mut self, index: usize) {
        let client = self.clients[index].as_mut().expect("client");
        if let State::Head { .. } = client.state {
            match client.scan.advance(&client.buffer) {
                Ok(None) => return,
                Err(reject) => return self.refuse(index, reject),
                Ok(Some(head_len)) => match head::parse(&client.buffer[..head_len]) {
                    Err(reject) => return self.refuse(index, reject),
                    Ok(head) => {
                        client.keep_alive = head.keep_alive;
                        client.request = upstream_request(&head);
                        client.state = State::Body {
                            head_len,
                            remaining: head.content_length,
                        };
                    }
                },
            }
        }
        if let State::Body {
            head_len,
            remaining,
        } = client.state
        {
            if client.buffer.len() < head_len + remaining {
                return;
            }
            // Body read and thrown away; what follows is the next request.
            client.buffer.drain(..head_len + remaining);
            client.scan = Scan::default();
            client.state = State::Upstream;
            client.deadline = Instant::now() + UPSTREAM_TIMEOUT;
            let serial = client.serial;
            self.waiting.push_back((index, serial));
            self.dispatch();
        }
    }

    /// Answers a bad request ourselves and closes after it.
    fn refuse(&mut self, index: usize, reject: Reject) {
        self.counts.count(reject.status);
        let client = self.clients[index].as_mut().expect("client");
        client.out = error_response(reject);
        client.written = 0;
        client.keep_alive = false;
        client.state = State::Writing;
        client.deadline = Instant::now() + self.timeouts.write;
        self.write_out(index);
    }

    /// Gives waiting requests to idle upstreams.
    fn dispatch(&mut self) {
        while let Some(slot) = self
            .upstreams
            .iter()
            .position(|u| u.client.is_none() && u.stream.is_some())
        {
            let Some((index, serial)) = self.waiting.pop_front() else {
                return;
            };
            let Some(client) = self.clients[index].as_mut().filter(|c| c.serial == serial) else {
                continue; // gone while waiting
            };
            let head = client.request.starts_with(b"HEAD ");
            let upstream = &mut self.upstreams[slot];
            let stream = upstream.stream.as_mut().expect("connected");
            match stream.write_all(&client.request) {
                Ok(()) => {
                    client.request = Vec::new();
                    upstream.client = Some((index, serial, head));
                }
                Err(e) => {
                    error!("front: writing to tiny_http failed: {e}; reconnecting");
                    self.waiting.push_front((index, serial));
                    self.drop_upstream(slot);
                    let _ = self.connect_upstream(slot);
                }
            }
        }
    }

    fn drop_upstream(&mut self, slot: usize) {
        if let Some(stream) = self.upstreams[slot].stream.take() {
            self.forget(stream.as_raw_fd());
        }
        self.upstreams[slot].buffer.clear();
    }

    fn connect_upstream(&mut self, slot: usize) -> io::Result<()> {
        let stream = UnixStream::connect_addr(&self.upstream_addr)?;
        stream.set_nonblocking(true)?;
        self.control(
            libc::EPOLL_CTL_ADD,
            stream.as_raw_fd(),
            UPSTREAM_BASE + slot as u64,
            libc::EPOLLIN,
        )?;
        self.upstreams[slot].stream = Some(stream);
        Ok(())
    }

    fn upstream_ready(&mut self, slot: usize) {
        let upstream = &mut self.upstreams[slot];
        let Some(stream) = upstream.stream.as_mut() else {
            return;
        };
        let mut scratch = [0u8; 16 * 1024];
        let mut broken = false;
        loop {
            match stream.read(&mut scratch) {
                Ok(0) => {
                    broken = true;
                    break;
                }
                Ok(n) => {
                    upstream.buffer.extend_from_slice(&scratch[..n]);
                    if n < scratch.len() {
                        break; // drained; level-triggered anyway
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        let head_request = upstream.client.is_some_and(|(_, _, head)| head);
        if let Some(length) = response_length(&upstream.buffer, head_request) {
            let response: Vec<u8> = upstream.buffer.drain(..length).collect();
            if let Some((index, serial, _)) = upstream.client.take() {
                self.deliver(index, serial, response);
            }
        }
        if broken {
            error!("front: tiny_http closed an internal connection; reconnecting");
            self.drop_upstream(slot);
            if let Some((index, serial, _)) = self.upstreams[slot].client.take() {
                self.fail(index, serial);
            }
            if let Err(e) = self.connect_upstream(slot) {
                error!("front: reconnecting to tiny_http failed: {e}");
            }
        }
        self.dispatch();
    }

    fn fail(&mut self, index: usize, serial: u64) {
        if self.clients[index]
            .as_ref()
            .is_some_and(|c| c.serial == serial)
        {
            self.refuse(
                index,
                Reject {
                    status: 503,
                    why: "no answer from the internal server",
                },
            );
        }
    }

    /// Sends tiny_http's answer to the client it was for, if still there.
    fn deliver(&mut self, index: usize, serial: u64, mut response: Vec<u8>) {
        let Some(client) = self.clients[index].as_mut().filter(|c| c.serial == serial) else {
            return;
        };
        if !client.keep_alive {
            add_connection_close(&mut response);
        }
        client.out = response;
        client.written = 0;
        client.state = State::Writing;
        client.deadline = Instant::now() + self.timeouts.write;
        self.write_out(index);
    }

    /// Writes pending output; moves on to the next request, lingering or
    /// closing when it is all out.
    fn write_out(&mut self, index: usize) {
        let client = self.clients[index].as_mut().expect("client");
        while client.written < client.out.len() {
            match client.stream.write(&client.out[client.written..]) {
                Ok(0) => return self.close(index),
                Ok(n) => client.written += n,
                // The next EPOLLOUT edge resumes the write.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(index),
            }
        }
        client.out = Vec::new();
        client.written = 0;
        DELIVERED.fetch_add(1, Ordering::Relaxed);
        if client.keep_alive {
            client.state = State::Head { started: false };
            client.deadline = Instant::now() + self.timeouts.idle;
            // A pipelined request may already be in the buffer, or have
            // arrived in the socket meanwhile (its edge is long gone).
            if !client.buffer.is_empty() {
                client.state = State::Head { started: true };
                client.deadline = Instant::now() + self.timeouts.head;
                self.advance(index);
            }
            if self.clients[index].as_ref().is_some_and(|c| c.unread) {
                self.read_request(index);
            }
        } else {
            let _ = client.stream.shutdown(Shutdown::Write);
            client.state = State::Lingering { discarded: 0 };
            client.deadline = Instant::now() + LINGER;
            client.buffer = Vec::new();
            self.linger(index);
        }
    }

    /// Enforces deadlines; resumes accepting after a pause.
    fn tick(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_paused_until = None;
            let _ = self.control(
                libc::EPOLL_CTL_MOD,
                self.listener.as_raw_fd(),
                LISTENER,
                libc::EPOLLIN,
            );
            info!("front: accepting connections again");
        }
        for index in 0..self.clients.len() {
            let Some(client) = &self.clients[index] else {
                continue;
            };
            if now < client.deadline {
                continue;
            }
            match client.state {
                State::Head { started: true } | State::Body { .. } => {
                    self.refuse(
                        index,
                        Reject {
                            status: 408,
                            why: "request head not received in time",
                        },
                    );
                }
                State::Upstream => {
                    let serial = client.serial;
                    self.fail(index, serial);
                }
                State::Head { started: false } | State::Writing | State::Lingering { .. } => {
                    self.close(index)
                }
            }
        }
        for slot in 0..self.upstreams.len() {
            if self.upstreams[slot].stream.is_none() && self.connect_upstream(slot).is_ok() {
                info!("front: reconnected to tiny_http");
            }
        }
        self.dispatch();
    }
}

/// The request tiny_http gets: the request line and nothing a client wrote
/// in its headers.
fn upstream_request(head: &Head) -> Vec<u8> {
    format!(
        "{} {} HTTP/1.1\r\nHost: exechealthz\r\nContent-Length: 0\r\n\r\n",
        head.method, head.target
    )
    .into_bytes()
}

/// Length of the first complete response in `buffer`, if it is all there.
/// tiny_http always sends Content-Length here (see `http::answer`).
fn response_length(buffer: &[u8], head_request: bool) -> Option<usize> {
    let head_end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buffer[..head_end]).ok()?;
    let length = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let total = head_end + if head_request { 0 } else { length };
    (buffer.len() >= total).then_some(total)
}

fn add_connection_close(response: &mut Vec<u8>) {
    if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
        response.splice(end + 2..end + 2, b"Connection: close\r\n".iter().copied());
    }
}

fn error_response(reject: Reject) -> Vec<u8> {
    let reason = match reject.status {
        400 => "Bad Request",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Service Unavailable",
    };
    let body = format!("{} {}: {}\n", reject.status, reason, reject.why);
    format!(
        "HTTP/1.1 {} {reason}\r\nServer: exechealthz\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reject.status,
        body.len()
    )
    .into_bytes()
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_response_boundaries() {
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1";
        assert_eq!(response_length(response, false), Some(response.len() - 8));
        assert_eq!(response_length(&response[..20], false), None);
        assert_eq!(response_length(&response[..38], false), None);
        assert_eq!(response_length(response, true), Some(response.len() - 10));
    }

    #[test]
    fn adds_connection_close() {
        let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
        add_connection_close(&mut response);
        assert_eq!(
            response,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        );
    }
}
