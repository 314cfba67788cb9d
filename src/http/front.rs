//! An event loop: one thread with its own edge-triggered epoll set that
//! accepts from the shared listener (registered with `EPOLLEXCLUSIVE`, so a
//! new connection wakes one idle loop, not all), owns the connections it
//! accepted, drives each one's state machine (`conn`) and answers from
//! memory (`routes`) on the spot. Deadlines are checked every `TICK`.
//!
//! It must not block: every socket is non-blocking, answers are computed
//! from the results in microseconds, and no lock is held across I/O.
//! Running out of descriptors refuses new connections at once (through a
//! descriptor kept in reserve) and serves the open ones; nothing dies.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::conn::{Conn, Ctx, Next, Timeouts};
use super::{Shared, routes};
use crate::{error, info};

/// How often deadlines are checked (and their granularity).
const TICK: Duration = Duration::from_millis(100);
/// After an accept error (out of descriptors), wait this long to retry.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Connections accepted per wake-up, so one loop does not take a whole
/// burst while another sits idle; the listener stays ready for the rest.
const ACCEPT_BATCH: usize = 16;
/// Input is read in pieces of this size.
const READ_SIZE: usize = 16 * 1024;

const LISTENER: u64 = u64::MAX;

/// A spell of refusing connections for want of descriptors: its start and
/// its end are logged once each, not per connection, loop or retry. It ends
/// once no connection was refused for `SPELL_END`.
struct Spell {
    refused: u64,
    last_failure: Instant,
}
static SPELL: Mutex<Option<Spell>> = Mutex::new(None);
/// Whether a spell is on: checked on every accept without the lock.
static REFUSING: AtomicBool = AtomicBool::new(false);
const SPELL_END: Duration = Duration::from_secs(1);

fn spell() -> std::sync::MutexGuard<'static, Option<Spell>> {
    SPELL.lock().unwrap_or_else(|e| e.into_inner())
}

/// An accept failed (`e`); `refused`: one connection was refused for it.
fn accept_failed(e: &io::Error, refused: bool, now: Instant) {
    let mut spell = spell();
    let spell = spell.get_or_insert_with(|| {
        error!(
            "http: cannot accept connections ({e}); refusing new ones until descriptors are free"
        );
        REFUSING.store(true, Ordering::Relaxed);
        Spell {
            refused: 0,
            last_failure: now,
        }
    });
    spell.refused += u64::from(refused);
    spell.last_failure = now;
}

/// Ends the spell, if one is on and has been quiet for `SPELL_END`.
fn end_spell(now: Instant) {
    if !REFUSING.load(Ordering::Relaxed) {
        return;
    }
    let mut spell = spell();
    if let Some(over) = spell.take_if(|s| now.duration_since(s.last_failure) >= SPELL_END) {
        REFUSING.store(false, Ordering::Relaxed);
        info!(
            "http: accepting connections again; {} refused while out of descriptors",
            over.refused
        );
    }
}

pub struct Front {
    epoll: OwnedFd,
    listener: Arc<TcpListener>,
    accept_paused_until: Option<Instant>,
    conns: Vec<Option<Conn<TcpStream>>>,
    free: Vec<usize>,
    shared: Arc<Shared>,
    timeouts: Timeouts,
    scratch: Vec<u8>,
    /// This loop's serialized answers, for reuse (`routes::Cache`).
    cache: routes::Cache,
    /// A descriptor held in reserve: out of descriptors, it is closed so
    /// that one pending connection can be accepted and closed at once,
    /// rather than left waiting in the backlog (or accepted in a busy loop).
    spare: Option<OwnedFd>,
}

impl Front {
    /// A loop sharing `listener` (already non-blocking) with the others.
    pub fn new(
        listener: Arc<TcpListener>,
        shared: Arc<Shared>,
        timeouts: Timeouts,
    ) -> io::Result<Front> {
        // SAFETY: plain syscall; the descriptor is owned right away.
        let epoll = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: a fresh descriptor nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        let mut front = Front {
            epoll,
            listener,
            accept_paused_until: None,
            conns: Vec::new(),
            free: Vec::new(),
            shared,
            timeouts,
            scratch: vec![0; READ_SIZE],
            cache: routes::Cache::default(),
            spare: None,
        };
        front.spare = front.reserve();
        front.listen()?;
        Ok(front)
    }

    fn listen(&self) -> io::Result<()> {
        self.control(
            libc::EPOLL_CTL_ADD,
            self.listener.as_raw_fd(),
            LISTENER,
            libc::EPOLLIN | libc::EPOLLEXCLUSIVE,
        )
    }

    /// The loop thread's body.
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
                    error!("http: epoll_wait: {e}");
                    std::thread::sleep(TICK);
                }
                continue;
            }
            let now = Instant::now();
            for event in &events[..n as usize] {
                let (token, flags) = (event.u64, event.events);
                if token == LISTENER {
                    self.accept_some(now);
                } else {
                    self.ready(token as usize, flags, now);
                }
            }
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

    fn accept_some(&mut self, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    end_spell(now);
                    self.add(stream, peer, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) => {
                    let refused = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                        && self.refuse_one();
                    accept_failed(&e, refused, now);
                    if refused {
                        continue;
                    }
                    // No spare, or not a shortage of descriptors (ENOBUFS,
                    // ENOMEM): stop listening for a moment. An exclusive
                    // registration cannot be modified, only removed and
                    // added again.
                    self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    self.forget(self.listener.as_raw_fd());
                    return;
                }
            }
        }
    }

    /// Out of descriptors: frees the spare, accepts one connection and
    /// closes it at once, takes the spare back. False if that failed.
    fn refuse_one(&mut self) -> bool {
        let Some(spare) = self.spare.take() else {
            return false;
        };
        drop(spare);
        let refused = self.listener.accept();
        self.spare = self.reserve();
        // Closed at once: the client sees the connection end.
        refused.is_ok()
    }

    /// A descriptor to hold in reserve (a copy of the epoll descriptor).
    fn reserve(&self) -> Option<OwnedFd> {
        self.epoll.try_clone().ok()
    }

    fn add(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let index = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        // Edge-triggered, both ways, once: no epoll_ctl per request. The
        // state machine reads or writes until it would block (or knows the
        // socket is empty).
        let registered = self.control(
            libc::EPOLL_CTL_ADD,
            stream.as_raw_fd(),
            index as u64,
            libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET,
        );
        if registered.is_err() {
            self.free.push(index);
            return;
        }
        // Clients from IPv4 reach the dual-stack socket as mapped
        // addresses: logged as the IPv4 address they are.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        self.conns[index] = Some(Conn::new(stream, peer, now, self.timeouts));
    }

    fn ready(&mut self, index: usize, flags: u32, now: Instant) {
        let readable = flags
            & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
            != 0;
        let hangup = flags & (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0;
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let shared = &*self.shared;
        let peer = conn.peer();
        let cache = &mut self.cache;
        let mut respond = |ask: super::conn::Ask| routes::answer(shared, cache, ask, peer);
        let mut ctx = Ctx {
            now,
            timeouts: self.timeouts,
            scratch: &mut self.scratch,
            respond: &mut respond,
        };
        let next = conn.on_event(readable, hangup, &mut ctx);
        self.after(index, next);
    }

    fn after(&mut self, index: usize, next: Next) {
        match next {
            Next::Keep => {}
            Next::Close => self.close(index),
            Next::Quit => self.shared.children.kill_all_and_exit(0),
        }
    }

    fn close(&mut self, index: usize) {
        if let Some(conn) = self.conns[index].take() {
            // Removed explicitly: closing the descriptor is not enough while
            // a probe command being spawned holds a copy of it (until its
            // exec closes it), and the socket's events would then arrive
            // under this index for the next connection.
            self.forget(conn.stream().as_raw_fd());
            drop(conn);
            self.free.push(index);
        }
    }

    fn forget(&self, fd: RawFd) {
        let _ = self.control(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Enforces deadlines; resumes accepting after a pause.
    fn tick(&mut self, now: Instant) {
        end_spell(now);
        if self.spare.is_none() {
            self.spare = self.reserve();
        }
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_paused_until = None;
            if let Err(e) = self.listen() {
                error!("http: cannot watch the listener again: {e}");
                self.accept_paused_until = Some(now + ACCEPT_PAUSE);
            }
        }
        let shared = Arc::clone(&self.shared);
        for index in 0..self.conns.len() {
            let Some(conn) = self.conns[index].as_mut() else {
                continue;
            };
            if now < conn.deadline() {
                continue;
            }
            let peer = conn.peer();
            let cache = &mut self.cache;
            let mut respond = |ask: super::conn::Ask| routes::answer(&shared, cache, ask, peer);
            let mut ctx = Ctx {
                now,
                timeouts: self.timeouts,
                scratch: &mut self.scratch,
                respond: &mut respond,
            };
            let next = conn.on_tick(&mut ctx);
            self.after(index, next);
        }
    }
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
