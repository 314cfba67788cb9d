//! One client connection as a state machine: read a head within limits and
//! deadlines, read and drop its small body, ask for the answer, write it,
//! then wait for the next request, or close, or linger after a refusal.
//!
//! It is driven by the event loop (`front`) with edge-triggered readiness
//! and the current time, and works on any non-blocking `Read + Write`, so
//! tests drive it with scripted reads and writes. It never blocks, never
//! sleeps and never looks at the clock itself; what a request is answered
//! with is the caller's (`Ask` in, `Answer` out).
//!
//! Memory per connection is bounded: input is read only while a head (at
//! most `MAX_HEAD`) or its body (at most `MAX_BODY`) is incomplete, and one
//! answer is written at a time. The bytes of answers waiting to be written
//! are counted across all connections (`held`), so that the caller can
//! make a request wait (`Ask` answered with `None`) while they are many.
//!
//! Fair: a connection is given at most `TURN` answers per call; with more
//! requests waiting it says `Next::Yield`, to go to the back of the queue.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::head::{self, Head, Reject, Scan};

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
/// `/quit` waits at most this long for its answer to leave.
const QUIT_GRACE: Duration = Duration::from_secs(1);
/// Answers one call gives a connection before it yields to the others:
/// a client pipelining thousands of requests gets one, then waits its
/// turn (see `front`). Measured with `make bench`, 3000 connections each
/// pipelining 40 reports: a fresh GET's p99 1.7 s with turns of 4, 1.9 ms
/// with turns of 1; clients that do not pipeline never yield.
const TURN: usize = 1;
/// A new connection is not counted idle (to be closed for room) before
/// this: a client that connects sends its request at once, but it may be
/// read only after others accepted in the same burst.
const FRESH: Duration = Duration::from_millis(250);
/// A request told to wait (`Ask` answered `None`) is asked again after this.
const RETRY: Duration = Duration::from_millis(50);

/// Bytes of answers being written, across all connections: what each holds
/// of its own (a head, a body made for it), not bodies shared with others.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// Bytes of answers waiting to be written now, across all connections.
pub fn held() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// What the connection asks its caller for.
#[derive(Debug)]
pub enum Ask<'a> {
    /// The answer to a complete request.
    Request(&'a Head),
    /// The answer to a refused one (the connection closes after it).
    Refuse(Reject),
}

/// A serialized response: `bytes` (its head, and its body when small),
/// then `body` if it has one of its own, which may be shared with other
/// connections (written as is, never copied); and whether the process is
/// to exit once it is out (`/quit`).
#[derive(Debug)]
pub struct Answer {
    pub bytes: Vec<u8>,
    pub body: Option<Arc<[u8]>>,
    pub quit: bool,
}

/// What the event loop does with the connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for the next event or deadline (`wants` says which events).
    Keep,
    /// More requests are waiting, but this connection had its turn: queue
    /// it behind the others, to be called again with no new event.
    Yield,
    Close,
    /// The `/quit` answer is out (or its client gone): exit the process.
    Quit,
}

/// What the socket is to be watched for until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Input (or the client's half-close).
    Read,
    /// Room to write: an answer is half written. Input is not watched
    /// meanwhile (it would be reported again and again, unread).
    Write,
    /// Nothing but errors: a request waits for its answer (`RETRY`).
    Nothing,
}

/// An answer being written, and how far; its own bytes are counted in
/// `HELD` while it lives.
struct Out {
    bytes: Vec<u8>,
    body: Option<Arc<[u8]>>,
    written: usize,
    counted: usize,
}

impl Out {
    fn new(answer: Answer) -> Out {
        // A body no one else holds is this connection's own.
        let own_body = answer
            .body
            .as_ref()
            .filter(|body| Arc::strong_count(body) == 1)
            .map_or(0, |body| body.len());
        let counted = answer.bytes.len() + own_body;
        HELD.fetch_add(counted, Ordering::Relaxed);
        Out {
            bytes: answer.bytes,
            body: answer.body,
            written: 0,
            counted,
        }
    }

    /// What is left to write: of the bytes, of the body.
    fn left(&self) -> (&[u8], &[u8]) {
        let bytes = &self.bytes[self.written.min(self.bytes.len())..];
        let body = self.body.as_deref().unwrap_or(&[]);
        let body = &body[self
            .written
            .saturating_sub(self.bytes.len())
            .min(body.len())..];
        (bytes, body)
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        HELD.fetch_sub(self.counted, Ordering::Relaxed);
    }
}

/// A socket that can be half-closed.
pub trait Stream: Read + Write {
    fn shutdown_write(&self);
}

impl Stream for TcpStream {
    fn shutdown_write(&self) {
        // Fails only if the peer is gone, which the next read tells.
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// What one call may use besides the connection.
pub struct Ctx<'a> {
    pub now: Instant,
    pub timeouts: Timeouts,
    /// Where reads land before they are appended to the input (a loop's
    /// buffer, so no connection keeps one).
    pub scratch: &'a mut [u8],
    /// The answer, or `None` for a request that must wait (too many bytes
    /// of answers are being written); a refusal is always answered.
    pub respond: &'a mut dyn FnMut(Ask) -> Option<Answer>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting for a head; `started`: some of it has arrived.
    Head { started: bool },
    /// The head (its first `head_len` bytes of input) is parsed; waiting
    /// for its body of `length` bytes, which is dropped.
    Body { head_len: usize, length: usize },
    /// Writing an answer.
    Writing,
    /// Refused or closing: our answer is out, input is read and dropped
    /// until end of file or the linger limit; `discarded` bytes so far.
    Lingering { discarded: usize },
}

pub struct Conn<S> {
    stream: S,
    /// The client's address, for the request log.
    peer: SocketAddr,
    input: Vec<u8>,
    scan: Scan,
    phase: Phase,
    /// The parsed head while its body arrives.
    head: Option<Head>,
    /// The answer being written.
    out: Option<Out>,
    /// Since when the complete request waits for its answer (`Ask`
    /// answered with `None`), if it does.
    waiting: Option<Instant>,
    /// When it last began to wait for a request: answered, or accepted
    /// and then `FRESH` later (its first request is surely on its way).
    idle_since: Instant,
    deadline: Instant,
    /// The socket may hold input not read yet: an edge came and no read
    /// since came back short or would have blocked.
    unread: bool,
    /// The client said it is done sending (RDHUP/HUP): read to end of file
    /// rather than stopping at a short read.
    hangup: bool,
    /// End of input was read.
    eof: bool,
    /// Close once the answer being written is out.
    close_after: bool,
    /// Exit the process once the answer being written is out.
    quit_after: bool,
    /// Taken past the connection cap for one look (`one_look`): its one
    /// request is answered with `Connection: close`.
    last_look: bool,
}

enum Flushed {
    Done,
    Blocked,
    Failed,
}

impl<S: Stream> Conn<S> {
    pub fn new(stream: S, peer: SocketAddr, now: Instant, timeouts: Timeouts) -> Conn<S> {
        Conn {
            stream,
            peer,
            input: Vec::new(),
            scan: Scan::default(),
            phase: Phase::Head { started: false },
            head: None,
            out: None,
            waiting: None,
            idle_since: now + FRESH,
            deadline: now + timeouts.head,
            unread: false,
            hangup: false,
            eof: false,
            close_after: false,
            quit_after: false,
            last_look: false,
        }
    }

    /// One look at a connection that has no room (past the cap, or taken
    /// with the descriptor held in reserve): one read; a complete request
    /// head there (a prober's request is in the socket the moment it is
    /// accepted) is answered with `Connection: close`, as far as one write
    /// takes it; anything else is closed at once, with no 408 and no wait.
    /// So clients that connect and send nothing, however many and however
    /// fast they come back, cannot shut a prober out. `Close` (or `Quit`
    /// for a `/quit` answered) once it is done.
    pub fn one_look(&mut self, ctx: &mut Ctx) -> Next {
        self.last_look = true;
        self.unread = true;
        let Ok(n) = self.read(ctx.scratch) else {
            return Next::Close;
        };
        self.input.extend_from_slice(&ctx.scratch[..n]);
        if !self.advance(ctx) {
            return Next::Close;
        }
        // Best effort: a small answer fits a new socket's send buffer.
        let _ = self.flush();
        if self.quit_after {
            Next::Quit
        } else {
            Next::Close
        }
    }

    /// For the fuzz harness, which plays the client through the socket.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    pub fn stream(&self) -> &S {
        &self.stream
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Our last answer is out and the connection is closing: input is only
    /// read and dropped. Nothing more is asked of the caller.
    pub fn closing(&self) -> bool {
        matches!(self.phase, Phase::Lingering { .. })
    }

    /// What the socket is to be watched for until the next call.
    pub fn wants(&self) -> Want {
        if self.phase == Phase::Writing {
            Want::Write
        } else if self.waiting.is_some() {
            Want::Nothing
        } else {
            Want::Read
        }
    }

    /// Since when it has waited for a request with none begun, if it has:
    /// it may then be closed to make room for another client (RFC 9112
    /// 9.6 lets a server close an idle connection at any time).
    pub fn idle_since(&self) -> Option<Instant> {
        let idle = self.phase == (Phase::Head { started: false })
            && self.input.is_empty()
            && !self.unread
            && !self.hangup;
        idle.then_some(self.idle_since)
    }

    /// A readiness event: `readable` when input, a hang-up or an error was
    /// reported (a read tells which), `hangup` when the client half-closed.
    /// Writable-only events just resume a pending write.
    pub fn on_event(&mut self, readable: bool, hangup: bool, ctx: &mut Ctx) -> Next {
        self.unread |= readable;
        self.hangup |= hangup;
        self.drive(ctx)
    }

    /// Enforces the deadline of the current phase.
    pub fn on_tick(&mut self, ctx: &mut Ctx) -> Next {
        if ctx.now < self.deadline {
            return Next::Keep;
        }
        if self.waiting.is_some() {
            // Asked again: answered now, or waits on.
            return self.drive(ctx);
        }
        match self.phase {
            Phase::Head { started: true } | Phase::Body { .. } => {
                self.refuse(
                    Reject {
                        status: 408,
                        why: "request head not received in time",
                    },
                    ctx,
                );
                self.drive(ctx)
            }
            Phase::Head { started: false } | Phase::Lingering { .. } => Next::Close,
            Phase::Writing if self.quit_after => Next::Quit,
            Phase::Writing => Next::Close,
        }
    }

    fn drive(&mut self, ctx: &mut Ctx) -> Next {
        let mut answered = 0;
        loop {
            match self.phase {
                Phase::Writing => {
                    match self.flush() {
                        Flushed::Blocked => return Next::Keep,
                        Flushed::Failed if self.quit_after => return Next::Quit,
                        Flushed::Failed => return Next::Close,
                        Flushed::Done => {}
                    }
                    if self.quit_after {
                        return Next::Quit;
                    }
                    if self.close_after {
                        if self.eof {
                            return Next::Close;
                        }
                        self.stream.shutdown_write();
                        self.phase = Phase::Lingering { discarded: 0 };
                        self.deadline = ctx.now + LINGER;
                        self.input = Vec::new();
                    } else if self.input.is_empty() {
                        if self.input.capacity() > 4096 {
                            self.input = Vec::new();
                        }
                        self.phase = Phase::Head { started: false };
                        self.idle_since = ctx.now;
                        self.deadline = ctx.now + ctx.timeouts.idle;
                    } else {
                        // A pipelined request is already here.
                        self.phase = Phase::Head { started: true };
                        self.deadline = ctx.now + ctx.timeouts.head;
                    }
                }
                Phase::Lingering { discarded } => {
                    let n = match self.next_read(ctx.scratch) {
                        Ok(n) => n,
                        Err(next) => return next,
                    };
                    if discarded + n > LINGER_BYTES {
                        return Next::Close;
                    }
                    self.phase = Phase::Lingering {
                        discarded: discarded + n,
                    };
                }
                Phase::Head { .. } | Phase::Body { .. } => {
                    // More requests here, or maybe in the socket (not just
                    // the client's end of file): the others' turn first.
                    let more = !self.input.is_empty() || (self.unread && !self.hangup);
                    if answered >= TURN && more {
                        return Next::Yield;
                    }
                    if self.advance(ctx) {
                        answered += 1;
                        continue;
                    }
                    if self.waiting.is_some() {
                        // Not read meanwhile: one request at a time.
                        return Next::Keep;
                    }
                    // Half-closed with no complete request pending: Close.
                    let n = match self.next_read(ctx.scratch) {
                        Ok(n) => n,
                        Err(next) => return next,
                    };
                    self.input.extend_from_slice(&ctx.scratch[..n]);
                    if n > 0 && self.phase == (Phase::Head { started: false }) {
                        self.phase = Phase::Head { started: true };
                        self.deadline = self.deadline.min(ctx.now + ctx.timeouts.head);
                    }
                }
            }
        }
    }

    /// The next read: Err(Close) once input has ended, Err(Keep) when the
    /// socket holds nothing we know of, Err(Close) when it failed.
    fn next_read(&mut self, scratch: &mut [u8]) -> Result<usize, Next> {
        if self.eof {
            return Err(Next::Close);
        }
        if !self.unread {
            return Err(Next::Keep);
        }
        self.read(scratch).map_err(|()| Next::Close)
    }

    /// One read into `scratch`: Ok(bytes read), with `unread` and `eof`
    /// updated (Ok(0) also when it would block); Err when the connection
    /// failed.
    fn read(&mut self, scratch: &mut [u8]) -> Result<usize, ()> {
        loop {
            return match self.stream.read(scratch) {
                Ok(0) => {
                    self.eof = true;
                    self.unread = false;
                    Ok(0)
                }
                Ok(n) => {
                    // A short read emptied the socket: the next byte brings
                    // a new edge, so no second read just to see EAGAIN;
                    // unless the client hung up, whose end of file is due.
                    if n < scratch.len() && !self.hangup {
                        self.unread = false;
                    }
                    Ok(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.unread = false;
                    Ok(0)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => Err(()),
            };
        }
    }

    /// Moves the request in the input forward; true when an answer was
    /// started (the phase is then `Writing`).
    fn advance(&mut self, ctx: &mut Ctx) -> bool {
        if let Phase::Head { .. } = self.phase {
            let head_len = match self.scan.advance(&self.input) {
                Ok(None) => return false,
                Ok(Some(head_len)) => head_len,
                Err(reject) => {
                    self.refuse(reject, ctx);
                    return true;
                }
            };
            match head::parse(&self.input[..head_len]) {
                Ok(mut head) => {
                    head.keep_alive &= !self.last_look;
                    self.phase = Phase::Body {
                        head_len,
                        length: head.content_length,
                    };
                    self.head = Some(head);
                }
                Err(reject) => {
                    self.refuse(reject, ctx);
                    return true;
                }
            }
        }
        let Phase::Body { head_len, length } = self.phase else {
            return false;
        };
        let Some(head) = &self.head else {
            return false;
        };
        let complete = self.input.len() >= head_len + length;
        // `Expect: 100-continue` and the body not here: the final answer
        // at once, then a close (RFC 9110 10.1.1 allows either), rather
        // than a client waiting for a 100 that never comes.
        let early = !complete && head.expect_continue;
        if !complete && !early {
            return false;
        }
        if early {
            // Framed as closing: the body may still come.
            if let Some(head) = &mut self.head {
                head.keep_alive = false;
            }
        }
        let Some(head) = &self.head else {
            return false;
        };
        let Some(answer) = (ctx.respond)(Ask::Request(head)) else {
            let since = *self.waiting.get_or_insert(ctx.now);
            if ctx.now.saturating_duration_since(since) >= ctx.timeouts.write {
                self.waiting = None;
                self.refuse(
                    Reject {
                        status: 503,
                        why: "too many answers are waiting to be written; try again",
                    },
                    ctx,
                );
                return true;
            }
            self.deadline = ctx.now + RETRY;
            return false;
        };
        self.waiting = None;
        let keep_alive = head.keep_alive;
        if early {
            self.input = Vec::new();
        } else {
            // The body is read and thrown away; what follows is the next
            // request.
            self.input.drain(..head_len + length);
        }
        self.scan = Scan::default();
        self.head = None;
        self.close_after = !keep_alive || answer.quit;
        self.start_writing(answer, ctx);
        true
    }

    /// Answers a bad request, then closes.
    fn refuse(&mut self, reject: Reject, ctx: &mut Ctx) {
        let answer = (ctx.respond)(Ask::Refuse(reject)).unwrap_or(Answer {
            bytes: Vec::new(),
            body: None,
            quit: false,
        });
        self.close_after = true;
        self.head = None;
        self.input = Vec::new();
        self.start_writing(answer, ctx);
    }

    fn start_writing(&mut self, answer: Answer, ctx: &Ctx) {
        self.quit_after = answer.quit;
        self.out = Some(Out::new(answer));
        self.phase = Phase::Writing;
        let limit = if self.quit_after {
            ctx.timeouts.write.min(QUIT_GRACE)
        } else {
            ctx.timeouts.write
        };
        self.deadline = ctx.now + limit;
    }

    fn flush(&mut self) -> Flushed {
        while let Some(out) = &mut self.out {
            let written = match out.left() {
                (&[], &[]) => break,
                (bytes, &[]) => self.stream.write(bytes),
                (&[], body) => self.stream.write(body),
                // One syscall for a head and its shared body.
                (bytes, body) => self
                    .stream
                    .write_vectored(&[IoSlice::new(bytes), IoSlice::new(body)]),
            };
            match written {
                Ok(0) => return Flushed::Failed,
                Ok(n) => out.written += n,
                // The next writable event resumes the write.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flushed::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Flushed::Failed,
            }
        }
        self.out = None;
        Flushed::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::Target;
    use std::cell::Cell;
    use std::collections::VecDeque;

    /// A scripted socket: each read takes the next step (bytes, end of
    /// file, an error); with none left it would block. Writes take up to
    /// the next allowance; with none left they take everything.
    #[derive(Default)]
    struct Script {
        reads: VecDeque<Step>,
        writes: VecDeque<Option<usize>>,
        written: Vec<u8>,
        read_calls: usize,
        shut: Cell<bool>,
    }

    enum Step {
        Bytes(Vec<u8>),
        Eof,
        Reset,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.read_calls += 1;
            match self.reads.pop_front() {
                None => Err(io::ErrorKind::WouldBlock.into()),
                Some(Step::Eof) => Ok(0),
                Some(Step::Reset) => Err(io::ErrorKind::ConnectionReset.into()),
                Some(Step::Bytes(mut bytes)) => {
                    let n = bytes.len().min(buf.len());
                    buf[..n].copy_from_slice(&bytes[..n]);
                    if n < bytes.len() {
                        self.reads.push_front(Step::Bytes(bytes.split_off(n)));
                    }
                    Ok(n)
                }
            }
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match self.writes.pop_front() {
                None => {
                    self.written.extend_from_slice(buf);
                    Ok(buf.len())
                }
                Some(None) => Err(io::ErrorKind::WouldBlock.into()),
                Some(Some(n)) => {
                    let n = n.min(buf.len());
                    self.written.extend_from_slice(&buf[..n]);
                    Ok(n)
                }
            }
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream for Script {
        fn shutdown_write(&self) {
            self.shut.set(true);
        }
    }

    const TIMEOUTS: Timeouts = Timeouts {
        head: Duration::from_secs(5),
        idle: Duration::from_secs(30),
        write: Duration::from_secs(10),
    };

    /// Answers `A:<path>;` or `R:<status>;`; `/quit` quits; `/wait` waits
    /// while `WAIT` is set; `/big` has a shared body.
    fn respond(ask: Ask) -> Option<Answer> {
        match ask {
            Ask::Request(head) => {
                let Target::Path { path, .. } = &head.target else {
                    panic!("no path");
                };
                let path = String::from_utf8_lossy(path).into_owned();
                if path == "/wait" && WAIT.with(Cell::get) {
                    return None;
                }
                let body = (path == "/big").then(|| BIG.with(Arc::clone));
                Some(Answer {
                    bytes: format!("A:{path};").into_bytes(),
                    body,
                    quit: path == "/quit",
                })
            }
            Ask::Refuse(reject) => Some(Answer {
                bytes: format!("R:{};", reject.status).into_bytes(),
                body: None,
                quit: false,
            }),
        }
    }

    thread_local! {
        static WAIT: Cell<bool> = const { Cell::new(false) };
        static BIG: Arc<[u8]> = Arc::from(&b"0123456789"[..]);
    }

    struct Harness {
        conn: Conn<Script>,
        start: Instant,
        scratch: Vec<u8>,
    }

    impl Harness {
        fn new(reads: Vec<Step>) -> Harness {
            let start = Instant::now();
            let script = Script {
                reads: reads.into(),
                ..Script::default()
            };
            Harness {
                conn: Conn::new(script, "127.0.0.1:1".parse().unwrap(), start, TIMEOUTS),
                start,
                scratch: vec![0; 64],
            }
        }

        fn script(&mut self) -> &mut Script {
            &mut self.conn.stream
        }

        /// Calls `f` with the connection and a context at `secs` from start.
        fn at<R>(&mut self, secs: u64, f: impl FnOnce(&mut Conn<Script>, &mut Ctx) -> R) -> R {
            let mut respond = respond;
            let mut ctx = Ctx {
                now: self.start + Duration::from_secs(secs),
                timeouts: TIMEOUTS,
                scratch: &mut self.scratch,
                respond: &mut respond,
            };
            f(&mut self.conn, &mut ctx)
        }

        fn event_at(&mut self, secs: u64, readable: bool, hangup: bool) -> Next {
            self.at(secs, |conn, ctx| conn.on_event(readable, hangup, ctx))
        }

        /// A readable event, and the calls the queue would make after each
        /// yield, until the connection waits or ends.
        fn event(&mut self) -> Next {
            let mut next = self.event_at(0, true, false);
            while next == Next::Yield {
                next = self.event_at(0, false, false);
            }
            next
        }

        fn tick(&mut self, secs: u64) -> Next {
            self.at(secs, |conn, ctx| conn.on_tick(ctx))
        }

        fn written(&mut self) -> String {
            String::from_utf8_lossy(&std::mem::take(&mut self.script().written)).into_owned()
        }

        fn push(&mut self, step: Step) {
            self.script().reads.push_back(step);
        }
    }

    fn bytes(text: &str) -> Step {
        Step::Bytes(text.as_bytes().to_vec())
    }

    const GET_A: &str = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn a_head_in_pieces_is_answered_when_complete() {
        let mut h = Harness::new(vec![bytes("GET /a HT")]);
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.written(), "");
        h.push(bytes("TP/1.1\r\nHost: x\r\n"));
        assert_eq!(h.event(), Next::Keep);
        h.push(bytes("\r\n"));
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.written(), "A:/a;");
        // Kept alive: now idle, with the idle deadline.
        assert_eq!(h.conn.phase, Phase::Head { started: false });
        assert_eq!(h.conn.deadline(), h.start + TIMEOUTS.idle);
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let two = format!("{GET_A}GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut h = Harness::new(vec![bytes(&two)]);
        h.scratch = vec![0; 4096];
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.written(), "A:/a;A:/b;");
        // The second asked to close: half-closed, lingering.
        assert!(h.script().shut.get());
        h.push(Step::Eof);
        assert_eq!(h.event(), Next::Close);
    }

    #[test]
    fn a_blocked_write_stops_reading_until_it_drains() {
        let mut h = Harness::new(vec![bytes(GET_A)]);
        h.script().writes = [Some(2), None, None].into();
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.written(), "A:");
        // More input arrives while the answer waits: not read yet.
        h.push(bytes("GET /b HTTP/1.1\r\nHost: x\r\n\r\n"));
        let reads = h.script().read_calls;
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(
            h.script().read_calls,
            reads,
            "read while a write was blocked"
        );
        assert_eq!(h.written(), "");
        // The write drains: then the waiting request is read and answered.
        assert_eq!(h.event_at(0, false, false), Next::Keep);
        assert_eq!(h.script().read_calls, reads + 1);
        assert_eq!(h.written(), "/a;A:/b;");
    }

    #[test]
    fn writable_only_events_resume_the_write_without_reading() {
        let mut h = Harness::new(vec![bytes(GET_A)]);
        h.script().writes = [None].into();
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.written(), "");
        let reads = h.script().read_calls;
        assert_eq!(h.event_at(0, false, false), Next::Keep);
        assert_eq!(h.written(), "A:/a;");
        assert_eq!(h.script().read_calls, reads, "nothing said input came");
    }

    #[test]
    fn a_short_read_is_not_followed_by_a_read_that_would_block() {
        let mut h = Harness::new(vec![bytes(GET_A)]);
        h.scratch = vec![0; 4096];
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.script().read_calls, 1);
    }

    #[test]
    fn a_half_close_after_a_request_gets_the_answer_then_a_close() {
        // The request and the FIN in one event, read short.
        let mut h = Harness::new(vec![bytes(GET_A), Step::Eof]);
        h.scratch = vec![0; 4096];
        assert_eq!(h.event_at(0, true, true), Next::Close);
        assert_eq!(h.written(), "A:/a;");
    }

    #[test]
    fn a_half_close_with_nothing_pending_closes_at_once() {
        let mut h = Harness::new(vec![Step::Eof]);
        assert_eq!(h.event_at(0, true, true), Next::Close);
        let mut partial = Harness::new(vec![bytes("GET /a HTTP/1.1\r\n"), Step::Eof]);
        assert_eq!(partial.event_at(0, true, true), Next::Close);
        assert_eq!(partial.written(), "");
    }

    #[test]
    fn a_reset_closes() {
        let mut h = Harness::new(vec![bytes("GET /a"), Step::Reset]);
        h.scratch = vec![0; 6];
        assert_eq!(h.event(), Next::Close);
    }

    #[test]
    fn a_refusal_is_answered_then_lingers_until_end_of_file() {
        let mut h = Harness::new(vec![bytes("\x16\x03\x01")]);
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.written(), "R:400;");
        assert!(h.script().shut.get());
        h.push(bytes("more junk"));
        assert_eq!(h.event(), Next::Keep, "read and dropped");
        assert_eq!(h.written(), "");
        h.push(Step::Eof);
        assert_eq!(h.event(), Next::Close);
    }

    #[test]
    fn deadlines() {
        // Nothing sent: closed at the head deadline without an answer.
        let mut silent = Harness::new(vec![]);
        assert_eq!(silent.tick(4), Next::Keep);
        assert_eq!(silent.tick(5), Next::Close);
        assert_eq!(silent.written(), "");

        // Part of a head: 408 at the head deadline.
        let mut slow = Harness::new(vec![bytes("GET /a HTTP/1.1\r\n")]);
        assert_eq!(slow.event(), Next::Keep);
        assert_eq!(slow.tick(5), Next::Keep);
        assert_eq!(slow.written(), "R:408;");
        // Then lingering, for a second at most.
        assert_eq!(slow.tick(6), Next::Close);

        // Kept alive and idle: closed at the idle deadline.
        let mut idle = Harness::new(vec![bytes(GET_A)]);
        assert_eq!(idle.event(), Next::Keep);
        assert_eq!(idle.tick(29), Next::Keep);
        assert_eq!(idle.tick(30), Next::Close);

        // A kept-alive client that starts a request gets the head deadline.
        let mut resumed = Harness::new(vec![bytes(GET_A)]);
        assert_eq!(resumed.event(), Next::Keep);
        resumed.push(bytes("GET"));
        assert_eq!(resumed.event_at(2, true, false), Next::Keep);
        assert_eq!(
            resumed.conn.deadline(),
            resumed.start + Duration::from_secs(7)
        );

        // An answer the client does not take: dropped at the write deadline.
        let mut stuck = Harness::new(vec![bytes(GET_A)]);
        stuck.script().writes = [None].into();
        assert_eq!(stuck.event(), Next::Keep);
        assert_eq!(stuck.tick(9), Next::Keep);
        assert_eq!(stuck.tick(10), Next::Close);
    }

    #[test]
    fn quit_exits_once_its_answer_is_out() {
        let mut h = Harness::new(vec![bytes("GET /quit HTTP/1.1\r\nHost: x\r\n\r\n")]);
        h.scratch = vec![0; 4096];
        h.script().writes = [None].into();
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.event_at(0, false, false), Next::Quit);
        assert_eq!(h.written(), "A:/quit;");
        // A client that never takes it holds the exit for a second at most.
        let mut stuck = Harness::new(vec![bytes("GET /quit HTTP/1.1\r\nHost: x\r\n\r\n")]);
        stuck.scratch = vec![0; 4096];
        stuck.script().writes = [None].into();
        assert_eq!(stuck.event(), Next::Keep);
        assert_eq!(stuck.tick(1), Next::Quit);
    }

    #[test]
    fn bodies_are_read_and_dropped() {
        let post = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n12";
        let mut h = Harness::new(vec![bytes(post)]);
        h.scratch = vec![0; 4096];
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.written(), "");
        h.push(bytes(&format!("345{GET_A}")));
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.written(), "A:/a;A:/a;");
    }

    #[test]
    fn a_pipelining_client_yields_after_its_turn() {
        let many = GET_A.repeat(3 * TURN);
        let mut h = Harness::new(vec![bytes(&many)]);
        h.scratch = vec![0; 64 * 1024];
        assert_eq!(h.event_at(0, true, false), Next::Yield);
        assert_eq!(h.written(), "A:/a;".repeat(TURN));
        // Called again without an event (from the back of the queue).
        assert_eq!(h.event_at(0, false, false), Next::Yield);
        assert_eq!(h.written(), "A:/a;".repeat(TURN));
        // The last turn empties the input: nothing more, so no yield.
        assert_eq!(h.event_at(0, false, false), Next::Keep);
        assert_eq!(h.written(), "A:/a;".repeat(TURN));
        assert_eq!(h.conn.wants(), Want::Read);
        // Exactly a turn's worth is no reason to yield.
        let mut exact = Harness::new(vec![bytes(&GET_A.repeat(TURN))]);
        exact.scratch = vec![0; 64 * 1024];
        assert_eq!(exact.event_at(0, true, false), Next::Keep);
        // Nor is a client's end of file after its last request.
        let mut last = Harness::new(vec![bytes(&GET_A.repeat(TURN)), Step::Eof]);
        last.scratch = vec![0; 64 * 1024];
        assert_eq!(last.event_at(0, true, true), Next::Close);
    }

    #[test]
    fn input_not_yet_read_counts_as_more_to_do() {
        // A turn's worth fills the first read; more is in the socket.
        let turn = GET_A.repeat(TURN);
        let mut h = Harness::new(vec![bytes(&turn), bytes(GET_A)]);
        h.scratch = vec![0; turn.len()];
        assert_eq!(h.event_at(0, true, false), Next::Yield);
        // Each full read may leave more behind: asked until none is left.
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.written(), "A:/a;".repeat(TURN + 1));
    }

    #[test]
    fn a_request_told_to_wait_is_asked_again_until_answered_or_refused() {
        WAIT.with(|w| w.set(true));
        let wait = "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut h = Harness::new(vec![bytes(&format!("{wait}{GET_A}"))]);
        h.scratch = vec![0; 4096];
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.written(), "");
        // Nothing is read or watched meanwhile but errors; asked again soon.
        assert_eq!(h.conn.wants(), Want::Nothing);
        assert_eq!(h.conn.deadline(), h.start + RETRY);
        assert_eq!(h.tick(1), Next::Keep);
        assert_eq!(h.written(), "");
        WAIT.with(|w| w.set(false));
        assert_eq!(h.tick(2), Next::Yield, "answered, and another is here");
        assert_eq!(h.event_at(2, false, false), Next::Keep);
        assert_eq!(h.written(), "A:/wait;A:/a;", "in order");
        assert_eq!(h.conn.wants(), Want::Read);

        // Waiting longer than the write timeout: 503 and a close.
        WAIT.with(|w| w.set(true));
        let mut stuck = Harness::new(vec![bytes(wait)]);
        stuck.scratch = vec![0; 4096];
        assert_eq!(stuck.event(), Next::Keep);
        assert_eq!(stuck.tick(9), Next::Keep);
        assert_eq!(stuck.written(), "");
        assert_eq!(stuck.tick(10), Next::Keep);
        assert_eq!(stuck.written(), "R:503;");
        assert!(stuck.conn.closing());
        WAIT.with(|w| w.set(false));
    }

    #[test]
    fn expect_continue_without_its_body_is_answered_at_once_then_closed() {
        let post =
            "POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        let mut h = Harness::new(vec![bytes(post)]);
        h.scratch = vec![0; 4096];
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.written(), "A:/a;");
        assert!(h.conn.closing(), "the body may follow: not kept alive");
        assert!(h.script().shut.get());
        // Its body, if sent anyway, is read and dropped.
        h.push(bytes("12345"));
        assert_eq!(h.event(), Next::Keep);
        h.push(Step::Eof);
        assert_eq!(h.event(), Next::Close);
        // With the body already here, it is an ordinary request.
        let mut whole = Harness::new(vec![bytes(&format!("{post}12345{GET_A}"))]);
        whole.scratch = vec![0; 4096];
        assert_eq!(whole.event(), Next::Keep);
        assert_eq!(whole.written(), "A:/a;A:/a;");
        assert!(!whole.conn.closing());
    }

    #[test]
    fn a_shared_body_follows_the_head_and_only_own_bytes_are_held() {
        let get = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut h = Harness::new(vec![bytes(get)]);
        h.scratch = vec![0; 4096];
        // Blocked after part of the head, then after part of the body.
        h.script().writes = [Some(3), None, Some(9), None].into();
        assert_eq!(h.event(), Next::Keep);
        assert_eq!(h.conn.wants(), Want::Write);
        // Only the head is this connection's own (the body is shared).
        assert_eq!(h.conn.out.as_ref().unwrap().counted, "A:/big;".len());
        assert_eq!(h.event_at(0, false, false), Next::Keep);
        assert_eq!(h.event_at(0, false, false), Next::Keep);
        assert_eq!(h.written(), "A:/big;0123456789");
        assert!(h.conn.out.is_none());
        assert_eq!(h.conn.wants(), Want::Read);
    }

    /// A connection taken with no room gets one read: a whole head is
    /// answered as closing (whatever the client asked) and the connection
    /// ends; a partial head, nothing yet, or a reset end it at once, with
    /// no 408 and nothing else read.
    #[test]
    fn one_look_answers_a_whole_head_and_closes_everything_else() {
        let look = |reads: Vec<Step>| {
            let mut h = Harness::new(reads);
            let mut kept_alive = None;
            let mut respond = |ask: Ask| {
                if let Ask::Request(head) = &ask {
                    kept_alive = Some(head.keep_alive);
                }
                respond(ask)
            };
            let mut ctx = Ctx {
                now: h.start,
                timeouts: TIMEOUTS,
                scratch: &mut h.scratch,
                respond: &mut respond,
            };
            let next = h.conn.one_look(&mut ctx);
            let written = String::from_utf8_lossy(&h.conn.stream.written).into_owned();
            (next, written, kept_alive, h.conn.stream.read_calls)
        };
        let whole = Step::Bytes(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
        assert_eq!(
            look(vec![whole]),
            (Next::Close, "A:/a;".into(), Some(false), 1)
        );
        let partial = Step::Bytes(b"GET /a HTTP/1.1\r\n".to_vec());
        let rest = Step::Bytes(b"\r\n".to_vec());
        assert_eq!(look(vec![partial, rest]), (Next::Close, "".into(), None, 1));
        assert_eq!(look(vec![]), (Next::Close, "".into(), None, 1));
        assert_eq!(look(vec![Step::Reset]), (Next::Close, "".into(), None, 1));
        let bad = Step::Bytes(b"GET /a HTTP/9.9\r\n\r\n".to_vec());
        let (next, written, _, _) = look(vec![bad]);
        assert_eq!((next, written.starts_with("R:")), (Next::Close, true));
        let quit = Step::Bytes(b"GET /quit HTTP/1.0\r\n\r\n".to_vec());
        assert_eq!(look(vec![quit]).0, Next::Quit);
    }
}
