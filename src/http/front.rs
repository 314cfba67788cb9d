//! The event loop, in two parts. The dispatcher (the main thread) waits on
//! one edge-triggered epoll set for the listener, the signal pipe and every
//! connection; it accepts, and queues each ready connection for a worker.
//! A few workers take connections off the queue, drive each one's state
//! machine (`conn`) and answer from memory (`routes`) on the spot.
//! Deadlines are checked every `TICK`. Only one thread works on a
//! connection at a time: its slot says who has it (`Slot`), and events
//! that come while a worker has it are kept for that worker.
//!
//! Why not one loop that does it all: it was as fast, but on two cores a
//! client's thread sharing a core with the busy loop waited for it up to a
//! scheduler tick (p99 3.5 to 4.5 ms under wrk; the loop handing work to
//! three workers: 1.1 to 1.9 ms, see docs/http-front.md).
//!
//! It must not block: every socket is non-blocking, answers are computed
//! from the results in microseconds, and no lock is held across I/O.
//! Running out of descriptors refuses new connections at once (through a
//! descriptor kept in reserve) and serves the open ones; nothing dies.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::conn::{Conn, Ctx, Next, Timeouts, Want};
use super::{Shared, routes};
use crate::process::check;
use crate::{error, info};

/// One turn of a yielded connection for this many new jobs (see `State`).
const LATER_EVERY: usize = 4;
/// How often deadlines are checked (and their granularity).
const TICK: Duration = Duration::from_millis(100);
/// After an accept error (out of descriptors), wait this long to retry.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// At the connection cap with every client in the middle of a request,
/// new connections wait this long (answers free room: a client answered
/// is idle, and can be closed for a newcomer); then they are refused.
const FULL_WAIT: Duration = Duration::from_millis(100);
/// Connections accepted per wake-up, so that a burst of them does not
/// hold up the events of the open ones; the listener stays ready for the
/// rest.
const ACCEPT_BATCH: usize = 16;
/// Input is read in pieces of this size.
const READ_SIZE: usize = 16 * 1024;

const LISTENER: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;

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

/// A connection could not be taken (`why`); `refused`: one connection was
/// refused (accepted and closed at once) for it.
fn accept_failed(why: &dyn std::fmt::Display, refused: bool, now: Instant) {
    let mut spell = spell();
    let spell = spell.get_or_insert_with(|| {
        error!(
            "http: cannot accept connections ({why}); refusing new ones until descriptors are free"
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

/// A connection being served. Boxed: it moves between its slot, the job
/// queue and a worker several times per request, and a pointer moves for
/// less than the few hundred bytes of a connection's state (callgrind:
/// about 800 instructions a request went to those copies).
type Live = Box<Conn<TcpStream>>;

/// What the dispatcher and the workers share: each connection's slot, the
/// free slots, and the jobs waiting for a worker, under one lock that is
/// never held across I/O.
struct Table {
    state: Mutex<State<Live>>,
    /// Signalled when a job is queued.
    work: Condvar,
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, State<Live>> {
        // A worker that panicked aborts the process (see `main`): the state
        // is never seen half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where a connection is. Only one thread works on a connection at a time:
/// whoever took it out of its slot.
#[derive(Debug)]
enum Slot<C> {
    Empty,
    /// Waiting for an event or its deadline.
    Idle(C),
    /// A worker has it; `pending`: the events that came meanwhile, for the
    /// worker to handle before it puts the connection back (edge-triggered
    /// events come once: none may be lost).
    Busy {
        pending: u32,
    },
}

/// What a worker does with a connection it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// Readiness flags from epoll.
    Event(u32),
    /// Its deadline passed.
    Tick,
}

/// The slots and the queue, as plain data, so that the hand-over between
/// the dispatcher and the workers is tested with scripted events.
#[derive(Debug)]
struct State<C> {
    slots: Vec<Slot<C>>,
    free: Vec<usize>,
    jobs: VecDeque<(usize, C, Work)>,
    /// Connections that yielded with requests left (`requeue`): served
    /// after the jobs above, one for every `LATER_EVERY` taken, so that a
    /// new request waits for a few turns at most, however many clients
    /// pipeline, and pipelining clients still move.
    later: VecDeque<(usize, C, Work)>,
    /// Jobs taken from `jobs` since one was taken from `later`.
    since_later: usize,
    /// Workers waiting for a job: as many are woken as jobs were queued,
    /// no more (a wake-up is a syscall, and one for a busy worker is lost).
    idle: usize,
}

impl<C> State<C> {
    fn new() -> State<C> {
        State {
            slots: Vec::new(),
            free: Vec::new(),
            jobs: VecDeque::new(),
            later: VecDeque::new(),
            since_later: 0,
            idle: 0,
        }
    }

    /// Connections open.
    fn open(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Takes out the connection that `since` says has been idle longest,
    /// if one has been since before `now` (`None`: not idle), to be
    /// closed; its slot's index and it.
    fn evict(&mut self, now: Instant, since: impl Fn(&C) -> Option<Instant>) -> Option<(usize, C)> {
        let (index, _) = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| match slot {
                Slot::Idle(conn) => since(conn).filter(|t| *t <= now).map(|t| (index, t)),
                _ => None,
            })
            .min_by_key(|(_, t)| *t)?;
        self.remove(index).map(|conn| (index, conn))
    }

    /// A new connection: its slot's index.
    fn add(&mut self, conn: C) -> usize {
        match self.free.pop() {
            Some(index) => {
                self.slots[index] = Slot::Idle(conn);
                index
            }
            None => {
                self.slots.push(Slot::Idle(conn));
                self.slots.len() - 1
            }
        }
    }

    /// Empties a slot; the connection in it, if one was.
    fn remove(&mut self, index: usize) -> Option<C> {
        let slot = std::mem::replace(&mut self.slots[index], Slot::Empty);
        self.free.push(index);
        match slot {
            Slot::Idle(conn) => Some(conn),
            _ => None,
        }
    }

    /// An event for the connection in `index`: queued for a worker if it is
    /// idle, kept for its worker if one has it. True if a job was queued.
    fn event(&mut self, index: usize, flags: u32) -> bool {
        let Some(slot) = self.slots.get_mut(index) else {
            return false;
        };
        match slot {
            Slot::Empty => false,
            Slot::Busy { pending } => {
                *pending |= flags;
                false
            }
            Slot::Idle(_) => {
                let Slot::Idle(conn) = std::mem::replace(slot, Slot::Busy { pending: 0 }) else {
                    unreachable!("matched Idle");
                };
                self.jobs.push_back((index, conn, Work::Event(flags)));
                true
            }
        }
    }

    /// Takes the connection in `index` if it is idle and `inline` says so,
    /// for the caller to handle itself (see `Front::run`).
    fn take_if(&mut self, index: usize, inline: impl Fn(&C) -> bool) -> Option<C> {
        let slot = self.slots.get_mut(index)?;
        if !matches!(slot, Slot::Idle(conn) if inline(conn)) {
            return None;
        }
        match std::mem::replace(slot, Slot::Busy { pending: 0 }) {
            Slot::Idle(conn) => Some(conn),
            _ => unreachable!("matched Idle"),
        }
    }

    /// Queues every idle connection that `due` says is past its deadline;
    /// how many.
    fn expire(&mut self, due: impl Fn(&C) -> bool) -> usize {
        let mut queued = 0;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if matches!(slot, Slot::Idle(conn) if due(conn)) {
                let Slot::Idle(conn) = std::mem::replace(slot, Slot::Busy { pending: 0 }) else {
                    unreachable!("matched Idle");
                };
                self.jobs.push_back((index, conn, Work::Tick));
                queued += 1;
            }
        }
        queued
    }

    /// A worker yields `conn` with more to do: to the back of the queue,
    /// with whatever events came meanwhile.
    fn requeue(&mut self, index: usize, conn: C) {
        let flags = match &mut self.slots[index] {
            Slot::Busy { pending } => std::mem::take(pending),
            _ => 0,
        };
        self.later.push_back((index, conn, Work::Event(flags)));
    }

    /// The next job for a worker: a new event or deadline first, a turn
    /// for a yielded connection every `LATER_EVERY`.
    fn next_job(&mut self) -> Option<(usize, C, Work)> {
        if (self.since_later >= LATER_EVERY || self.jobs.is_empty())
            && let Some(job) = self.later.pop_front()
        {
            self.since_later = 0;
            return Some(job);
        }
        let job = self.jobs.pop_front()?;
        self.since_later += 1;
        Some(job)
    }

    /// Whether any job waits.
    fn has_jobs(&self) -> bool {
        !self.jobs.is_empty() || !self.later.is_empty()
    }

    /// A worker is done with `conn` and keeps it open: the events that came
    /// meanwhile, to handle now (the connection stays the worker's), or
    /// None once it is back in its slot.
    fn done(&mut self, index: usize, conn: C) -> Option<(C, u32)> {
        match &mut self.slots[index] {
            Slot::Busy { pending } if *pending != 0 => {
                let flags = std::mem::take(pending);
                Some((conn, flags))
            }
            slot => {
                *slot = Slot::Idle(conn);
                None
            }
        }
    }
}

/// The dispatcher: waits for readiness on every connection and the
/// listener, accepts, and queues each ready connection for a worker.
pub struct Front {
    epoll: Arc<OwnedFd>,
    listener: TcpListener,
    accept_paused_until: Option<Instant>,
    /// Since when the cap has been reached with no client idle.
    full_since: Option<Instant>,
    table: Arc<Table>,
    timeouts: Timeouts,
    /// Client connections open at most: what the descriptor limit leaves
    /// once every probe has what its runs need.
    cap: usize,
    /// The dispatcher's own worker, for closing connections only.
    own: Worker,
    /// Closing connections taken in this round, for `own`.
    closing: Vec<(usize, Live, u32)>,
    /// A descriptor held in reserve: out of descriptors, it is closed so
    /// that one pending connection can be accepted and closed at once,
    /// rather than left waiting in the backlog (or accepted in a busy loop).
    spare: Option<OwnedFd>,
}

/// One worker: runs connections' state machines and answers from memory.
struct Worker {
    epoll: Arc<OwnedFd>,
    table: Arc<Table>,
    shared: Arc<Shared>,
    timeouts: Timeouts,
    scratch: Vec<u8>,
    /// This worker's serialized answers, for reuse (`routes::Cache`).
    cache: routes::Cache,
}

impl Front {
    /// The dispatcher for `listener` (already non-blocking), with
    /// `workers` threads started to answer.
    pub fn new(
        listener: TcpListener,
        shared: Arc<Shared>,
        timeouts: Timeouts,
        workers: usize,
        cap: usize,
    ) -> io::Result<Front> {
        // SAFETY: plain syscall; the descriptor is owned right away.
        let epoll = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: a fresh descriptor nothing else owns.
        let epoll = Arc::new(unsafe { OwnedFd::from_raw_fd(epoll) });
        let table = Arc::new(Table {
            state: Mutex::new(State::new()),
            work: Condvar::new(),
        });
        let worker = || Worker {
            epoll: Arc::clone(&epoll),
            table: Arc::clone(&table),
            shared: Arc::clone(&shared),
            timeouts,
            scratch: vec![0; READ_SIZE],
            cache: routes::Cache::default(),
        };
        let own = worker();
        for i in 0..workers {
            let worker = worker();
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .stack_size(crate::THREAD_STACK)
                .spawn(move || worker.run())?;
        }
        let mut front = Front {
            epoll,
            listener,
            accept_paused_until: None,
            full_since: None,
            table,
            timeouts,
            cap: cap.max(1),
            own,
            closing: Vec::new(),
            spare: None,
        };
        front.spare = front.reserve();
        front.listen()?;
        Ok(front)
    }

    fn listen(&self) -> io::Result<()> {
        control(
            &self.epoll,
            libc::EPOLL_CTL_ADD,
            self.listener.as_raw_fd(),
            LISTENER,
            libc::EPOLLIN,
        )
    }

    /// Dispatches until the process exits. `signal_fds` are watched too:
    /// when one is readable, and every tick, `on_signal` is called.
    pub fn run(mut self, signal_fds: &[RawFd], mut on_signal: impl FnMut()) -> ! {
        for &fd in signal_fds {
            if let Err(e) = control(&self.epoll, libc::EPOLL_CTL_ADD, fd, SIGNALS, libc::EPOLLIN) {
                // Signals would go unheard: nothing could stop us cleanly.
                error!("http: cannot watch for signals: {e}");
                self.own.shared.children.kill_all_and_exit(1);
            }
        }
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut next_tick = Instant::now() + TICK;
        // The clock read once a wake-up, after epoll_wait: the next wait is
        // measured from it (the work in between is microseconds; a tick's
        // granularity is TICK).
        let mut now = Instant::now();
        loop {
            let wait = next_tick.saturating_duration_since(now);
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
                now = Instant::now();
                continue;
            }
            now = Instant::now();
            let events = &events[..n as usize];
            let mut queued = 0;
            let mut accept = false;
            let mut signalled = false;
            let idle = {
                let mut state = self.table.lock();
                for event in events {
                    match event.u64 {
                        LISTENER => accept = true,
                        SIGNALS => signalled = true,
                        index => {
                            let (index, flags) = (index as usize, event.events);
                            match state.take_if(index, |conn| conn.closing()) {
                                Some(conn) => self.closing.push((index, conn, flags)),
                                None => queued += usize::from(state.event(index, flags)),
                            }
                        }
                    }
                }
                state.idle
            };
            self.wake(queued.min(idle));
            // A closing connection (usually the client's FIN after our
            // answer and close) is a read and a close: done here rather
            // than through a worker's wake-up.
            for (index, conn, flags) in std::mem::take(&mut self.closing) {
                self.own.work_on(index, conn, Work::Event(flags), false);
            }
            if signalled {
                on_signal();
            }
            if accept {
                self.accept_some(now);
            }
            if now >= next_tick {
                self.tick(now);
                // Also each tick: a retry for whatever a wake-up left (an
                // exit that could not be reaped at its SIGCHLD).
                on_signal();
                next_tick = now + TICK;
            }
        }
    }

    /// Wakes `idle` waiting workers, one each.
    fn wake(&self, idle: usize) {
        for _ in 0..idle {
            self.table.work.notify_one();
        }
    }

    fn accept_some(&mut self, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            if !self.make_room(now) {
                let since = *self.full_since.get_or_insert(now);
                if now.saturating_duration_since(since) < FULL_WAIT {
                    // Answers under way may free room: look again soon.
                    self.pause_accepting(now);
                    return;
                }
                // Still full: one look, then closed, not left in the backlog.
                match accept(&self.listener) {
                    Ok((stream, peer)) => {
                        let answered = self.one_look(stream, peer, now);
                        let why = format!(
                            "{} client connections are open, each in the middle of a \
                             request; that many leave the probes the descriptors their \
                             runs need",
                            self.cap
                        );
                        accept_failed(&why, !answered, now);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => {
                        self.pause_accepting(now);
                        return;
                    }
                }
            }
            self.full_since = None;
            match accept(&self.listener) {
                Ok((stream, peer)) => {
                    end_spell(now);
                    self.add(stream, peer, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) => {
                    let short = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    let had_spare = short && self.spare.is_some();
                    let refused = had_spare && self.refuse_one(now);
                    accept_failed(&e, refused, now);
                    if had_spare {
                        continue;
                    }
                    // No spare, or not a shortage of descriptors (ENOBUFS,
                    // ENOMEM): stop listening for a moment.
                    self.pause_accepting(now);
                    return;
                }
            }
        }
    }

    /// Stops watching the listener until a tick `ACCEPT_PAUSE` from now.
    fn pause_accepting(&mut self, now: Instant) {
        if self.accept_paused_until.is_none() {
            forget(&self.epoll, self.listener.as_raw_fd());
        }
        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
    }

    /// Whether one more connection may be added: below the cap, or at it
    /// once the connection idle longest is closed for it.
    fn make_room(&mut self, now: Instant) -> bool {
        let evicted = {
            let mut state = self.table.lock();
            if state.open() < self.cap {
                return true;
            }
            state.evict(now, |conn| conn.idle_since())
        };
        match evicted {
            Some((_, conn)) => {
                forget(&self.epoll, conn.stream().as_raw_fd());
                true
            }
            None => false,
        }
    }

    /// Out of descriptors: frees the spare, accepts one connection, gives
    /// it one look (`one_look`) and closes it, takes the spare back. True
    /// if a connection was closed unanswered.
    fn refuse_one(&mut self, now: Instant) -> bool {
        let Some(spare) = self.spare.take() else {
            return false;
        };
        drop(spare);
        let taken = accept(&self.listener);
        let refused = match taken {
            Ok((stream, peer)) => !self.one_look(stream, peer, now),
            Err(_) => false,
        };
        self.spare = self.reserve();
        refused
    }

    /// A connection taken with no room for it: its one request answered if
    /// it is all there, then closed (see `Conn::one_look`). True if it was
    /// answered.
    fn one_look(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) -> bool {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let mut conn = Conn::new(stream, peer, now, self.timeouts);
        let own = &mut self.own;
        let (shared, cache) = (&*own.shared, &mut own.cache);
        let mut answered = false;
        let mut respond = |ask: super::conn::Ask| {
            answered = matches!(ask, super::conn::Ask::Request(_));
            routes::answer(shared, cache, ask, peer, now)
        };
        let mut ctx = Ctx {
            now,
            timeouts: self.timeouts,
            scratch: &mut own.scratch,
            respond: &mut respond,
        };
        if conn.one_look(&mut ctx) == Next::Quit {
            own.shared.children.kill_all_and_exit(0);
        }
        answered
    }

    /// A descriptor to hold in reserve (a copy of the epoll descriptor).
    fn reserve(&self) -> Option<OwnedFd> {
        self.epoll.try_clone().ok()
    }

    fn add(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        // Non-blocking from accept4, TCP_NODELAY from the listener.
        let fd = stream.as_raw_fd();
        // Clients from IPv4 reach the dual-stack socket as mapped
        // addresses: logged as the IPv4 address they are.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        // In its slot before it is watched, so that its first event finds it.
        let index = self
            .table
            .lock()
            .add(Box::new(Conn::new(stream, peer, now, self.timeouts)));
        // Edge-triggered, both ways, once: no epoll_ctl per request. The
        // state machine reads or writes until it would block (or knows the
        // socket is empty).
        let registered = control(
            &self.epoll,
            libc::EPOLL_CTL_ADD,
            fd,
            index as u64,
            interest(Want::Read),
        );
        if registered.is_err() {
            // Not watched yet, so no worker has it: closed here.
            drop(self.table.lock().remove(index));
        }
    }

    /// Enforces deadlines (through the workers); resumes accepting after a
    /// pause.
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
        let idle = {
            let mut state = self.table.lock();
            let q = state.expire(|conn| now >= conn.deadline());
            if std::env::var_os("EXH_DEBUG").is_some() {
                eprintln!(
                    "DEBUG tick jobs {} later {} expired {} held {} open {}",
                    state.jobs.len(),
                    state.later.len(),
                    q,
                    super::conn::held(),
                    state.open()
                );
            }
            q.min(state.idle)
        };
        self.wake(idle);
    }
}

/// A job: a connection, its slot and what to do with it.
type Job = (usize, Live, Work);

impl Worker {
    fn run(mut self) -> ! {
        let mut next: Option<Job> = None;
        loop {
            let (index, conn, work) = match next.take() {
                Some(job) => job,
                None => {
                    let mut state = self.table.lock();
                    loop {
                        if let Some(job) = state.next_job() {
                            break job;
                        }
                        state.idle += 1;
                        state = self
                            .table
                            .work
                            .wait(state)
                            .unwrap_or_else(|e| e.into_inner());
                        state.idle -= 1;
                    }
                }
            };
            next = self.work_on(index, conn, work, true);
        }
    }

    /// Drives one connection until it waits for the client again, handling
    /// the events that came meanwhile; then puts it back, or closes it.
    /// With `take_next`, the next job queued is taken under the same lock
    /// and returned.
    fn work_on(
        &mut self,
        index: usize,
        mut conn: Live,
        mut work: Work,
        take_next: bool,
    ) -> Option<Job> {
        loop {
            let peer = conn.peer();
            let shared = &*self.shared;
            let cache = &mut self.cache;
            let now = Instant::now();
            let mut respond = |ask: super::conn::Ask| routes::answer(shared, cache, ask, peer, now);
            let mut ctx = Ctx {
                now,
                timeouts: self.timeouts,
                scratch: &mut self.scratch,
                respond: &mut respond,
            };
            let next = match work {
                Work::Event(flags) => {
                    let readable = flags
                        & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR)
                            as u32
                        != 0;
                    let hangup = flags & (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0;
                    conn.on_event(readable, hangup, &mut ctx)
                }
                Work::Tick => conn.on_tick(&mut ctx),
            };
            match next {
                Next::Keep => {
                    // Watched again while still ours: an event from now on
                    // is kept for us (`done`) if it comes before we let go.
                    let fd = conn.stream().as_raw_fd();
                    let rearmed = control(
                        &self.epoll,
                        libc::EPOLL_CTL_MOD,
                        fd,
                        index as u64,
                        interest(conn.wants()),
                    );
                    if let Err(e) = rearmed {
                        // It would never hear from its client again.
                        error!("http: cannot watch a connection again ({e}); closing it");
                        return self.close(index, conn, take_next);
                    }
                    let mut state = self.table.lock();
                    match state.done(index, conn) {
                        Some((again, flags)) => {
                            conn = again;
                            work = Work::Event(flags);
                        }
                        None => return take_next.then(|| state.next_job()).flatten(),
                    }
                }
                Next::Yield => {
                    // Behind every connection already waiting; whatever
                    // came for it meanwhile goes with it.
                    let mut state = self.table.lock();
                    state.requeue(index, conn);
                    let next = take_next.then(|| state.next_job()).flatten();
                    if state.has_jobs() && state.idle > 0 {
                        self.table.work.notify_one();
                    }
                    return next;
                }
                Next::Close => return self.close(index, conn, take_next),
                Next::Quit => self.shared.children.kill_all_and_exit(0),
            }
        }
    }

    /// Closes `conn`; frees its slot last. With `take_next`, returns the
    /// next job queued, as `work_on` does.
    fn close(&mut self, index: usize, conn: Live, take_next: bool) -> Option<Job> {
        // Removed explicitly: closing the descriptor is not enough while a
        // probe command being spawned holds a copy of it (until its exec
        // closes it), and the socket's events would then arrive under this
        // index for the next connection.
        forget(&self.epoll, conn.stream().as_raw_fd());
        drop(conn);
        let mut state = self.table.lock();
        state.remove(index);
        take_next.then(|| state.next_job()).flatten()
    }
}

/// One connection from `listener`, non-blocking from the start (std's
/// accept would need another syscall to make it so).
fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut length = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: address and length describe a buffer big enough for any
    // socket address; the descriptor is owned right below.
    let fd = check(unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            (&mut address as *mut libc::sockaddr_storage).cast(),
            &mut length,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: a fresh descriptor nothing else owns.
    let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok((stream, peer_address(&address)))
}

/// The address accept4 wrote (an IPv4 or IPv6 one: a TCP listener's).
fn peer_address(address: &libc::sockaddr_storage) -> SocketAddr {
    match libc::c_int::from(address.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says a sockaddr_in is stored there.
            let v4 =
                unsafe { &*(address as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            SocketAddr::new(ip.into(), u16::from_be(v4.sin_port))
        }
        _ => {
            // SAFETY: not IPv4, so a sockaddr_in6 (the listener is TCP).
            let v6 = unsafe {
                &*(address as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            SocketAddr::new(ip.into(), u16::from_be(v6.sin6_port))
        }
    }
}

fn control(
    epoll: &OwnedFd,
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
    check(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut event) })?;
    Ok(())
}

/// What a connection is watched for: one event, then nothing until a
/// worker has handled it and asks again (`EPOLLONESHOT`). Level-triggered,
/// so only what the connection waits for: input while it reads, room while
/// it writes (input it will not read yet would be reported on every
/// re-arm), nothing but errors while its request waits for an answer.
fn interest(want: Want) -> libc::c_int {
    libc::EPOLLONESHOT
        | match want {
            Want::Read => libc::EPOLLIN | libc::EPOLLRDHUP,
            Want::Write => libc::EPOLLOUT,
            Want::Nothing => 0,
        }
}

fn forget(epoll: &OwnedFd, fd: RawFd) {
    let _ = control(epoll, libc::EPOLL_CTL_DEL, fd, 0, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    const IN: u32 = libc::EPOLLIN as u32;
    const HUP: u32 = libc::EPOLLRDHUP as u32;

    /// Takes the next job, as a worker does.
    fn take(state: &mut State<&'static str>) -> (usize, &'static str, Work) {
        state.next_job().expect("a job")
    }

    #[test]
    fn an_event_queues_an_idle_connection_once_and_keeps_later_events_for_its_worker() {
        let mut state = State::new();
        let a = state.add("a");
        assert!(state.event(a, IN));
        assert_eq!(take(&mut state), (a, "a", Work::Event(IN)));
        // The worker has it: events are kept, not queued a second time.
        assert!(!state.event(a, IN));
        assert!(!state.event(a, HUP));
        assert!(state.jobs.is_empty());
        // Done: the kept events come back together, still the worker's.
        let (conn, flags) = state.done(a, "a").expect("pending events");
        assert_eq!((conn, flags), ("a", IN | HUP));
        assert!(matches!(state.slots[a], Slot::Busy { pending: 0 }));
        // Done with nothing new: back in its slot, and queued by the next event.
        assert!(state.done(a, "a").is_none());
        assert!(matches!(state.slots[a], Slot::Idle("a")));
        assert!(state.event(a, IN));
        assert_eq!(take(&mut state), (a, "a", Work::Event(IN)));
    }

    #[test]
    fn a_yielding_connection_goes_behind_those_waiting_with_its_kept_events() {
        let mut state = State::new();
        let hog = state.add("hog");
        let fresh = state.add("fresh");
        assert!(state.event(hog, IN));
        assert_eq!(take(&mut state), (hog, "hog", Work::Event(IN)));
        // While the hog is served, a fresh connection becomes ready and
        // the hog's client sends more.
        assert!(state.event(fresh, IN));
        assert!(!state.event(hog, IN));
        state.requeue(hog, "hog");
        assert_eq!(take(&mut state), (fresh, "fresh", Work::Event(IN)));
        assert_eq!(take(&mut state), (hog, "hog", Work::Event(IN)));
        // Its kept events went with it: nothing is left for `done`.
        assert!(state.done(hog, "hog").is_none());
    }

    #[test]
    fn new_jobs_go_before_yielded_turns_but_those_still_move() {
        let mut state: State<u32> = State::new();
        let hogs: Vec<usize> = (0..3).map(|i| state.add(i)).collect();
        for &hog in &hogs {
            assert!(state.event(hog, IN));
            let (index, id, _) = state.next_job().expect("a job");
            state.requeue(index, id);
        }
        // Three turns wait; new connections' events come first, with one
        // turn after every LATER_EVERY of them (three were taken already).
        let fresh: Vec<usize> = (10..20).map(|i| state.add(i)).collect();
        for &f in &fresh {
            assert!(state.event(f, IN));
        }
        let order: Vec<u32> = std::iter::from_fn(|| state.next_job().map(|job| job.1)).collect();
        assert_eq!(order, [10, 0, 11, 12, 13, 14, 1, 15, 16, 17, 18, 2, 19]);
    }

    #[test]
    fn events_for_empty_or_unknown_slots_are_dropped() {
        let mut state: State<&'static str> = State::new();
        assert!(!state.event(0, IN));
        assert!(!state.event(7, IN));
        let a = state.add("a");
        assert_eq!(state.remove(a), Some("a"));
        assert!(!state.event(a, IN));
        assert!(state.jobs.is_empty());
    }

    #[test]
    fn a_freed_slot_is_reused_and_a_busy_one_is_never_removed_with_its_connection() {
        let mut state = State::new();
        let a = state.add("a");
        let b = state.add("b");
        assert_ne!(a, b);
        assert!(state.event(a, IN));
        let _ = take(&mut state);
        // A worker closing its connection frees the slot; it has no conn.
        assert_eq!(state.remove(a), None);
        let c = state.add("c");
        assert_eq!(c, a);
        assert!(matches!(state.slots[c], Slot::Idle("c")));
    }

    #[test]
    fn deadlines_queue_only_idle_connections_that_are_due() {
        let mut state = State::new();
        let due = state.add("due");
        let busy = state.add("busy due");
        let fresh = state.add("fresh");
        assert!(state.event(busy, IN));
        let _ = take(&mut state);
        assert_eq!(state.expire(|conn| conn.contains("due")), 1);
        assert_eq!(take(&mut state), (due, "due", Work::Tick));
        assert!(state.jobs.is_empty());
        // Taken for its deadline: an event meanwhile waits for that worker.
        assert!(!state.event(due, IN));
        assert_eq!(state.done(due, "due"), Some(("due", IN)));
        assert!(matches!(state.slots[fresh], Slot::Idle("fresh")));
    }

    /// A scripted run of the dispatcher and three workers: events, ticks,
    /// closes and new connections in a fixed pseudo-random order. Each
    /// connection is always in exactly one place (its slot, the queue or one
    /// worker's hands), and no event is lost: each event carries a bit of
    /// its own, and a worker lets go of a connection only once every bit
    /// sent for it has reached a worker.
    #[test]
    fn every_connection_is_in_one_place_and_no_event_is_lost() {
        let mut state: State<u32> = State::new();
        let mut held: Vec<Option<(usize, u32, Work)>> = vec![None; 3];
        // Per connection: the bits of events sent and not yet delivered.
        let mut outstanding = std::collections::HashMap::<u32, u32>::new();
        let mut next_id = 0;
        let mut seed: u32 = 12345;
        let mut random = |n: u32| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) % n
        };
        let mut put_back = 0;
        for _ in 0..20_000 {
            match random(6) {
                0 => {
                    // At most 16 open: slots are reused, not only added.
                    if state.slots.len() - state.free.len() < 16 {
                        state.add(next_id);
                        next_id += 1;
                    }
                }
                1 | 2 if !state.slots.is_empty() => {
                    let index = random(state.slots.len() as u32) as usize;
                    let id = match &state.slots[index] {
                        Slot::Idle(id) => Some(*id),
                        Slot::Busy { .. } => state
                            .jobs
                            .iter()
                            .chain(&state.later)
                            .chain(held.iter().flatten())
                            .find(|job| job.0 == index)
                            .map(|job| job.1),
                        Slot::Empty => None,
                    };
                    let Some(id) = id else {
                        assert!(!state.event(index, 1));
                        continue;
                    };
                    let bits = outstanding.entry(id).or_default();
                    if *bits == u32::MAX {
                        continue;
                    }
                    let bit = 1 << (!*bits).trailing_zeros();
                    *bits |= bit;
                    state.event(index, bit);
                }
                3 => {
                    state.expire(|id| id % 7 == 0);
                }
                _ => {
                    let w = random(3) as usize;
                    match held[w].take() {
                        None => {
                            held[w] = state.next_job();
                            if let Some((_, id, Work::Event(bits))) = held[w] {
                                let sent = outstanding.entry(id).or_default();
                                assert_eq!(*sent & bits, bits, "delivered what was not sent");
                                *sent &= !bits;
                            }
                        }
                        Some((index, id, _)) => {
                            if random(10) == 0 {
                                // Closed by its worker.
                                assert_eq!(state.remove(index), None);
                                outstanding.remove(&id);
                            } else if random(8) == 0 {
                                // Yielded: its kept events travel with it.
                                state.requeue(index, id);
                            } else if let Some((id, bits)) = state.done(index, id) {
                                let sent = outstanding.entry(id).or_default();
                                assert_eq!(*sent & bits, bits, "delivered what was not sent");
                                *sent &= !bits;
                                held[w] = Some((index, id, Work::Event(bits)));
                            } else {
                                let lost = outstanding.get(&id).copied().unwrap_or(0);
                                assert_eq!(lost, 0, "events never delivered for {id}");
                                put_back += 1;
                            }
                        }
                    }
                }
            }
            // One place each, and every busy slot accounted for.
            let mut places: Vec<u32> = state
                .slots
                .iter()
                .filter_map(|s| {
                    if let Slot::Idle(id) = s {
                        Some(*id)
                    } else {
                        None
                    }
                })
                .chain(state.jobs.iter().chain(&state.later).map(|job| job.1))
                .chain(held.iter().flatten().map(|job| job.1))
                .collect();
            let all = places.len();
            places.sort_unstable();
            places.dedup();
            assert_eq!(places.len(), all, "a connection in two places");
            let busy = state
                .slots
                .iter()
                .filter(|s| matches!(s, Slot::Busy { .. }))
                .count();
            let queued = state.jobs.len() + state.later.len();
            assert_eq!(busy, queued + held.iter().flatten().count());
        }
        assert!(
            put_back > 1000,
            "the script exercised too little: {put_back}"
        );
    }
}
