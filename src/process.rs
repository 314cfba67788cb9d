//! The children we start, and the duties of a process that may be PID 1:
//! reaping, killing process groups, signals, exiting.
//!
//! Probe commands are reaped without a reaper thread in between: a run
//! polls a pidfd (or, on kernels before 5.3, a short timer) for its
//! command's exit and reaps it itself; and every run, before it starts its
//! command, sweeps whatever other commands have exited, recording their
//! status for their runs. So with hundreds of probes, zombies are reaped as
//! soon as any probe thread runs, and no single thread is a bottleneck.
//!
//! Reaping happens under the table lock, after a `waitid(WNOWAIT)` that
//! shows the pid has exited: first whatever the command left in its process
//! group is killed, while the zombie still pins the group ID (so the kill
//! cannot hit a group that reused it), then the pid is reaped and the status
//! recorded on the entry of the child that holds that pid now. Children are
//! known by pid and serial (`ChildId`), so after a pid is reused a run can
//! only ever receive the status of its own child.
//!
//! A command can exit before its spawn has registered it (a fast command on
//! a loaded machine). An exited pid nobody knows while spawns are under way
//! is reaped and its status kept for them; the spawn that gets that pid
//! claims it, and kills what it left in its group (a group with live members
//! keeps its ID, so that kill cannot reach another group). What no spawn
//! under way claims was an orphan. Spawning never holds the table lock.
//!
//! As PID 1 (a `FROM scratch` container) orphans are re-parented to us and
//! must be reaped too; a blind `waitpid(-1)` would steal a probe's status.
//! So only then SIGCHLD is blocked in every thread and read through a
//! signalfd that the HTTP dispatcher watches (`Signals`); on each, every
//! exit is handled as a sweep does, at once, with `waitid(WNOWAIT)` first.
//!
//! A run that gives up on a child that will not die (stuck in the kernel)
//! abandons it: whoever reaps it later forgets it.
//!
//! This module knows nothing about probes' results or HTTP.

use std::io::{self, Read};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::error;

pub type Pid = libc::pid_t;

/// A raw wait status, as `waitpid` reports it.
pub type WaitStatus = libc::c_int;

/// One child we started: its pid, and which of our spawns made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildId {
    pub pid: Pid,
    serial: u64,
}

/// A running probe command.
pub struct Child {
    pub id: ChildId,
    /// Readable once the child has exited (a pidfd); `None` where the
    /// kernel has no pidfds, and the run polls with a timer instead.
    exit: Option<OwnedFd>,
}

impl Child {
    /// What to poll for the exit, if anything.
    pub fn exit_fd(&self) -> Option<libc::c_int> {
        self.exit.as_ref().map(AsRawFd::as_raw_fd)
    }
}

/// Exits one sweep reaps at most.
const SWEEP_MAX: usize = 64;

/// How long an exit waits for queued log lines to be written.
pub const EXIT_FLUSH: Duration = Duration::from_millis(250);

/// How long an exit waits for spawns under way to register their children,
/// so that it can kill them too.
const SPAWN_DRAIN: Duration = Duration::from_secs(1);

/// Spawns under way at once, per CPU. More gain nothing (a spawn is CPU
/// work: the child's exec) and cost an exit its speed: it waits for every
/// spawn under way, and with 300 probes at 10 ms on 2 CPUs 150-240 were,
/// which took 40-80 ms to finish (the threads and children competing for
/// the CPUs). The rest wait their turn, asleep.
const SPAWNS_PER_CPU: usize = 4;

#[derive(Default)]
pub struct Children {
    table: Mutex<Table>,
    /// Signalled when a spawn registers or gives up, for whoever waits on
    /// it (`Table::waiting`).
    changed: Condvar,
    /// Signalled (one waiter) when a spawn ends, for a spawn waiting for
    /// its turn (`Table::queued`); all of them at shutdown.
    room: Condvar,
    /// Spawns under way at once at most (`SPAWNS_PER_CPU`).
    spawns_at_once: usize,
    /// `Table::shutting_down`, read without the lock after every run.
    exiting: AtomicBool,
    /// `Table::unreaped` as of the last unlock (`Locked`), for sweeps to
    /// read without the lock: a stale value costs a syscall or skips a
    /// courtesy, never a status.
    unreaped: AtomicUsize,
}

/// The table, locked; on unlock it publishes `Table::unreaped`.
struct Locked<'a> {
    table: MutexGuard<'a, Table>,
    unreaped: &'a AtomicUsize,
}

impl Deref for Locked<'_> {
    type Target = Table;
    fn deref(&self) -> &Table {
        &self.table
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Table {
        &mut self.table
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.unreaped.store(self.table.unreaped, Ordering::Relaxed);
    }
}

/// The bookkeeping, apart from the syscalls: unit-tested on its own.
#[derive(Default)]
struct Table {
    /// Children started and not reaped yet.
    entries: Vec<Entry>,
    /// Spawns under way (child not registered yet): each one's serial and
    /// the thread making it, whose children the exit looks at.
    spawning: Vec<(u64, Pid)>,
    next_serial: u64,
    /// Exits reaped before their spawn registered the child (a fast command
    /// on a loaded machine): (pid, status, the newest spawn that may own it).
    early: Vec<(Pid, WaitStatus, u64)>,
    shutting_down: bool,
    /// Threads waiting on `Children::changed`: spawns notify only then.
    waiting: usize,
    /// Spawns waiting for their turn on `Children::room`.
    queued: usize,
    /// Children that may be waiting to be reaped: registered and not
    /// reaped yet, plus spawns under way. A sweep with nothing to reap
    /// makes no syscall (with one probe, no sweep has any).
    unreaped: usize,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: ChildId,
    /// Set once it is reaped (by its run or a sweep), until its run takes it.
    status: Option<WaitStatus>,
    /// Its run gave up on it: whoever reaps it forgets it.
    abandoned: bool,
}

/// Whose an exited pid is.
#[derive(Debug, PartialEq)]
enum Exited {
    /// A running probe command's: reap it, record the status for its run.
    Running,
    /// An abandoned child: reap it and forget it.
    Abandoned(ChildId),
    /// Not known: an orphan, unless a spawn that began earlier registers it
    /// (`wait_for_spawns`: one may).
    Unknown { wait_for_spawns: bool },
}

impl Table {
    fn begin_spawn(&mut self, thread: Pid) -> io::Result<u64> {
        if self.shutting_down {
            return Err(io::Error::other("shutting down"));
        }
        self.next_serial += 1;
        self.spawning.push((self.next_serial, thread));
        self.unreaped += 1;
        Ok(self.next_serial)
    }

    fn end_spawn(&mut self, serial: u64, pid: Option<Pid>) -> Option<ChildId> {
        self.spawning.retain(|(s, _)| *s != serial);
        self.unreaped -= 1;
        let id = pid.map(|pid| ChildId { pid, serial });
        if let Some(id) = id {
            let early = self.early.iter().position(|(p, _, _)| *p == id.pid);
            let status = early.map(|i| self.early.swap_remove(i).1);
            self.unreaped += usize::from(status.is_none());
            self.entries.push(Entry {
                id,
                status,
                abandoned: false,
            });
        }
        // Early exits no spawn under way can own were orphans (as PID 1).
        let spawning = &self.spawning;
        self.early
            .retain(|(_, _, horizon)| spawning.iter().any(|(s, _)| s <= horizon));
        id
    }

    /// Whether `pid` was reaped before its spawn registered it.
    fn reaped_early(&self, pid: Pid) -> bool {
        self.early.iter().any(|(p, _, _)| *p == pid)
    }

    /// Classifies `pid`, peeked at when spawns up to `horizon` had begun.
    fn exited(&self, pid: Pid, horizon: u64) -> Exited {
        let holder = self
            .entries
            .iter()
            .find(|e| e.id.pid == pid && e.status.is_none());
        match holder {
            Some(entry) if entry.abandoned => Exited::Abandoned(entry.id),
            Some(_) => Exited::Running,
            None => Exited::Unknown {
                wait_for_spawns: self.spawning.iter().any(|(s, _)| *s <= horizon),
            },
        }
    }

    /// Records the status of the reaped `pid` on the child that held it;
    /// an abandoned child is forgotten.
    fn record(&mut self, pid: Pid, status: WaitStatus) {
        let Some(index) = self
            .entries
            .iter()
            .position(|e| e.id.pid == pid && e.status.is_none())
        else {
            return;
        };
        self.unreaped -= 1;
        if self.entries[index].abandoned {
            self.entries.swap_remove(index);
        } else {
            self.entries[index].status = Some(status);
        }
    }

    /// The recorded status of `id`, which is then forgotten.
    fn take(&mut self, id: ChildId) -> Option<WaitStatus> {
        let index = self.entries.iter().position(|e| e.id == id)?;
        let status = self.entries[index].status?;
        self.entries.swap_remove(index);
        Some(status)
    }

    fn abandon(&mut self, id: ChildId) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.id == id) {
            entry.abandoned = true;
        }
    }

    /// Children that may be waiting to be reaped: registered and not
    /// reaped yet, or not registered yet. The O(n) count that `unreaped`
    /// keeps up to date.
    #[cfg(test)]
    fn count_unreaped(&self) -> usize {
        let running = self.entries.iter().filter(|e| e.status.is_none()).count();
        running + self.spawning.len()
    }
}

impl Children {
    pub fn new() -> Arc<Children> {
        let cpus = cpus();
        Arc::new(Children {
            spawns_at_once: SPAWNS_PER_CPU * cpus,
            ..Children::default()
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The table, locked for a change that may move `unreaped`.
    fn locked(&self) -> Locked<'_> {
        Locked {
            table: self.table(),
            unreaped: &self.unreaped,
        }
    }

    /// Starts `command` as the leader of a new process group and registers
    /// it.
    pub fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        use std::os::unix::process::CommandExt;
        // `process_group` keeps std on its posix_spawn path (no pre_exec).
        command.process_group(0);
        let mut table = self.table();
        // Spawns waiting for their turn when the exit begins wait on: the
        // exit does not wake them (see `wait_for_exit`).
        while table.spawning.len() >= self.spawns_at_once && !table.shutting_down {
            table.queued += 1;
            table = self.room.wait(table).unwrap_or_else(|e| e.into_inner());
            table.queued -= 1;
        }
        let mut table = Locked {
            table,
            unreaped: &self.unreaped,
        };
        // SAFETY: plain syscall, no arguments.
        let serial = table.begin_spawn(unsafe { libc::gettid() })?;
        drop(table);
        let spawned = command.spawn();
        let mut table = self.locked();
        let pid = spawned.as_ref().ok().map(|c| c.id() as Pid);
        let early = pid.is_some_and(|pid| table.reaped_early(pid));
        let id = table.end_spawn(serial, pid);
        if let Some(id) = id.filter(|_| table.shutting_down || early) {
            // An exit is waiting for this spawn, or the command is already
            // gone: what it left in its group goes too.
            kill_group(id.pid);
        }
        let waiting = table.waiting > 0;
        let queued = table.queued > 0;
        drop(table);
        if waiting {
            self.changed.notify_all();
        }
        if queued {
            self.room.notify_one();
        }
        spawned?;
        let id = id.expect("registered");
        // Nobody else reaps a registered child, so the pid is still ours.
        Ok(Child {
            id,
            exit: pidfd_open(id.pid),
        })
    }

    /// The status of `child` if it has exited (reaping it if nobody has
    /// yet); it is then forgotten. `exited`: its pidfd said it has, so
    /// there is no need to look. Never blocks.
    pub fn try_reap(&self, child: &Child, exited: bool) -> Option<WaitStatus> {
        let mut table = self.locked();
        let mut status = table.take(child.id);
        if status.is_none() {
            // Not taken, so not reaped (reaping records under this lock):
            // the pid is still this child's.
            if exited {
                reap(&mut table, child.id.pid, Exited::Running, 0);
            } else {
                reap_exited(&mut table, child.id.pid);
            }
            status = table.take(child.id);
        }
        drop(table);
        if status.is_some() {
            // Awake anyway: reap what else has exited meanwhile.
            self.sweep(false);
        }
        status
    }

    /// Reaps every probe command that has exited (recording its status
    /// for its run, or keeping it for a spawn under way) and, as PID 1,
    /// orphans: each run does this before it starts its command, after it
    /// reaps its own, and when it wakes for output. Never waits for the
    /// table: a sweep is a courtesy, and another
    /// thread holding the lock is reaping or registering already (waiting
    /// here made hundreds of threads queue on the lock, and starve).
    /// `own_running`: the caller's own command is running, and not what it
    /// sweeps for. With nothing else unreaped, a sweep makes no syscall.
    pub fn sweep(&self, own_running: bool) {
        for _ in 0..SWEEP_MAX {
            if self.unreaped.load(Ordering::Relaxed) <= usize::from(own_running) {
                return;
            }
            // Peeked without the lock: with hundreds of children, waitid
            // walks them all.
            let Some(pid) = peek_exited_child(false).ok().flatten() else {
                return;
            };
            let table = match self.table.try_lock() {
                Ok(table) => table,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            let mut table = Locked {
                table,
                unreaped: &self.unreaped,
            };
            reap_exited(&mut table, pid);
        }
    }

    /// Kills the process group of `child`, which has not been reaped (so
    /// its group ID cannot have been reused).
    pub fn kill_group(&self, child: &Child) {
        kill_group(child.id.pid);
    }

    /// Gives up on `child` (it did not die after SIGKILL, e.g. stuck in the
    /// kernel): a later sweep (or, as PID 1, the next SIGCHLD) reaps and forgets it.
    pub fn abandon(&self, child: Child) {
        self.table().abandon(child.id);
    }

    /// Whether the process is exiting (`kill_all` has begun): a run that
    /// ends now was cut short by it, and is neither recorded nor logged.
    pub fn exiting(&self) -> bool {
        self.exiting.load(Ordering::Relaxed)
    }

    /// Kills every running probe's process group and exits, spawns under
    /// way included (each kills its own child once it sees the exit).
    pub fn kill_all_and_exit(&self, code: i32) -> ! {
        self.kill_all(self.table());
        crate::log::flush(EXIT_FLUSH);
        std::process::exit(code);
    }

    /// Kills every running probe's process group, from a panic hook: the
    /// panicking thread may hold the table lock, so this only tries it.
    pub fn kill_all_now(&self) {
        for _ in 0..100 {
            match self.table.try_lock() {
                Ok(table) => return self.kill_all(table),
                Err(std::sync::TryLockError::Poisoned(table)) => {
                    return self.kill_all(table.into_inner());
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// Stops spawning, kills every running probe's group, and waits (a
    /// while) for spawns under way, which kill their own once they see it:
    /// the other probe threads go on until the process ends, and a command
    /// they start now must not outlive us.
    fn kill_all(&self, mut table: MutexGuard<'_, Table>) {
        table.shutting_down = true;
        self.exiting.store(true, Ordering::Relaxed);
        for entry in &table.entries {
            kill_group(entry.id.pid);
        }
        // A spawn under way returns once its child has exec'd, which takes
        // a while on a busy machine (with 300 probes at 10 ms on 2 CPUs,
        // 6-16 ms for 8). Killed now, each such child dies at once, its
        // spawn returns and kills its group on seeing the exit, and the
        // wait below is short. Safe under the table lock: nobody reaps
        // meanwhile, so every pid listed is still our child's.
        for (_, tid) in &table.spawning {
            for pid in children_of_thread(*tid) {
                if !table.entries.iter().any(|entry| entry.id.pid == pid) {
                    // SAFETY: plain syscall; the pid is our unreaped child.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        table.waiting += 1;
        let (mut table, _) = self
            .changed
            .wait_timeout_while(table, SPAWN_DRAIN, |t| !t.spawning.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        table.waiting -= 1;
    }

    /// As PID 1, after a SIGCHLD: handles every exit as a sweep does, at
    /// once, orphans included (see the module comment). Never blocks.
    pub fn reap_exited_now(&self) {
        let mut last = None;
        loop {
            match peek_exited_child(false) {
                // The same pid twice: it could not be reaped now (a spawn
                // holds its claim); the next SIGCHLD or sweep retries.
                Ok(Some(pid)) if last != Some(pid) => {
                    reap_exited(&mut self.locked(), pid);
                    last = Some(pid);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // Nothing exited, no children (ECHILD), or an error that the
                // next SIGCHLD retries.
                _ => return,
            }
        }
    }
}

/// Under the table lock: if `pid` has exited, kills what it left in its
/// process group (the zombie pins the group ID), reaps it and records its
/// status for the child that held it. Only a lock holder reaps, so the
/// check and the reap see the same process.
fn reap_exited(table: &mut Table, pid: Pid) {
    if !has_exited(pid) {
        return;
    }
    let horizon = table.next_serial;
    let whose = table.exited(pid, horizon);
    reap(table, pid, whose, horizon);
}

/// Under the table lock: kills what the exited `pid` left in its group if
/// it was a probe command's, reaps it and records or keeps its status.
fn reap(table: &mut Table, pid: Pid, whose: Exited, horizon: u64) {
    if matches!(whose, Exited::Running | Exited::Abandoned(_)) {
        // Leftovers die with the command (see the module comment).
        kill_group(pid);
    }
    let mut status: WaitStatus = 0;
    // SAFETY: plain syscall with a valid out-pointer.
    if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } != pid {
        return;
    }
    match whose {
        Exited::Running | Exited::Abandoned(_) => table.record(pid, status),
        Exited::Unknown {
            wait_for_spawns: true,
        } => {
            // Kept for a spawn under way that may own it. Its group is
            // killed when that spawn claims it: a group with live members
            // keeps its ID, so the kill cannot reach another group unless
            // the pid went round all pids in between.
            table.early.push((pid, status, horizon));
        }
        Exited::Unknown {
            wait_for_spawns: false,
        } => {} // an orphan
    }
}

/// Whether `pid` (our child) has exited, without reaping it.
fn has_exited(pid: Pid) -> bool {
    // SAFETY: siginfo_t is plain data; waitid fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid succeeded; si_pid is 0 when nothing has exited.
    rc == 0 && unsafe { info.si_pid() } == pid
}

/// A pidfd for `pid`, or None on kernels without them (before 5.3).
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: plain syscall; the descriptor is owned right below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor nothing else owns (pidfds are close-on-exec).
    Some(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// The pid of some child that has exited, left a zombie (`WNOWAIT`) so the
/// caller decides who reaps it; `block`: wait for one, else None if none.
fn peek_exited_child(block: bool) -> io::Result<Option<Pid>> {
    // SAFETY: siginfo_t is plain data; waitid fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOWAIT | if block { 0 } else { libc::WNOHANG };
    // SAFETY: valid out-pointer; P_ALL ignores the id.
    let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, flags) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid succeeded; si_pid is 0 when nothing has exited.
    let pid = unsafe { info.si_pid() };
    Ok((pid != 0).then_some(pid))
}

/// CPUs this process may run on (its affinity mask; at least 1). Not
/// `std::thread::available_parallelism`, which also reads cgroup files:
/// 15 KiB of binary for a bound on spawns at once.
fn cpus() -> usize {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it in.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer of the size given; 0 is this thread.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return 1;
    }
    // SAFETY: `set` was filled in above.
    (unsafe { libc::CPU_COUNT(&set) } as usize).max(1)
}

/// For a probe thread once the process is exiting: its run never ends,
/// and says nothing. A failed run and a probe "now failing" in the log,
/// for every probe, were noise at each exit, and with hundreds of probes
/// that work slowed the exit itself.
pub fn wait_for_exit() -> ! {
    loop {
        std::thread::park();
    }
}

/// The children of one of our threads (`/proc/self/task/TID/children`;
/// none where the kernel has no such file: then spawns under way are only
/// waited for).
fn children_of_thread(tid: Pid) -> Vec<Pid> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/children"))
        .map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn kill_group(pgid: Pid) {
    // SAFETY: plain syscall. ESRCH (group already empty) is the common case.
    let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if rc == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            error!("kill process group {pgid}: {e}");
        }
    }
}

/// A thread or process that could not be started, with the limit that
/// most likely stopped it.
pub fn spawn_error(e: &io::Error) -> String {
    if e.raw_os_error() != Some(libc::EAGAIN) {
        return e.to_string();
    }
    // SAFETY: plain syscall with a valid out-pointer.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    let nproc = if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut limit) } == 0
        && limit.rlim_cur != libc::RLIM_INFINITY
    {
        format!("RLIMIT_NPROC is {}", limit.rlim_cur)
    } else {
        "RLIMIT_NPROC is unlimited".to_string()
    };
    format!(
        "{e}: the limit on processes and threads was reached ({nproc}; \
         a container's pids limit counts too)"
    )
}

/// Undoes signal state a parent may have passed down: an ignored SIGCHLD
/// would make the kernel reap our children before we see their status, and
/// a blocked SIGTERM would never arrive. Call before starting any thread.
pub fn reset_signal_state() -> io::Result<()> {
    // SAFETY: plain syscalls on valid arguments.
    unsafe {
        if libc::signal(libc::SIGCHLD, libc::SIG_DFL) == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        if std::process::id() == 1 {
            // Read through a signalfd by the HTTP dispatcher (`Signals`):
            // blocked here, before any thread starts, so in every thread.
            // Children get an empty mask from std's spawn.
            libc::sigaddset(&mut mask, libc::SIGCHLD);
        }
        let rc = libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// Run before Rust's runtime starts (from `.init_array`, see `main.rs`):
/// a standard descriptor that is closed is opened on /dev/null, or, in a
/// root with no /dev (a bare scratch image whose runtime gave none), on
/// `/` read-only. Rust's runtime would otherwise abort before `main` (it
/// reopens closed standard descriptors on /dev/null, and aborts when it
/// cannot). `/` opened read-only is something that exists and takes no
/// writes: a write to it fails with EBADF, which Rust's standard streams
/// take as a closed descriptor's (the bytes are dropped), so a descriptor
/// closed at start stays closed in effect, and no socket or pipe opened
/// later can take its number and receive our log lines.
pub extern "C" fn fill_closed_standard_descriptors() {
    for fd in 0..3 {
        // SAFETY: plain syscalls on descriptor numbers, before any other
        // code runs; nothing owns a closed descriptor, and each one opened
        // here is left open for the process's life, as a standard one.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) != -1 {
                continue;
            }
            let mut opened = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if opened == -1 {
                opened = libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            }
            if opened != -1 && opened != fd {
                // Only when a lower closed one could not be filled.
                libc::dup2(opened, fd);
                libc::close(opened);
            }
        }
    }
}

/// Makes our stdin an empty pipe (its write end closed), which every
/// command then inherits: a command that reads stdin sees end of file at
/// once, never our own stdin (a terminal, or a pipe nobody writes to).
/// Not /dev/null: a bare root (chroot, some scratch setups) has none. Done
/// once here rather than per run, which saves three syscalls a run.
pub fn empty_stdin() -> io::Result<()> {
    let (reader, writer) = io::pipe()?;
    drop(writer);
    // SAFETY: plain syscall on a descriptor we own; dup2 onto 0 closes
    // whatever 0 was (nothing here reads it) and leaves 0 inheritable.
    if unsafe { libc::dup2(reader.as_raw_fd(), 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Descriptors one probe run holds at most: its output pipe (2), a copy of
/// the write end for stderr, a pidfd, and musl's posix_spawn pipe (2).
const DESCRIPTORS_PER_PROBE: usize = 6;

/// Descriptors the HTTP side needs besides its listener: its epoll set, its
/// spare and one connection.
const DESCRIPTORS_TO_SERVE: usize = 3;

/// Checks that the descriptors `probes` probes and the HTTP side need can
/// be opened (by opening them and closing them again), so that a limit
/// too low to run the probes and serve is an error at start, naming the
/// limit, rather than probes that fail and connections refused for as long
/// as the process lives. Call before the HTTP side starts accepting.
pub fn check_descriptors(probes: usize) -> Result<(), String> {
    let needed = DESCRIPTORS_PER_PROBE * probes + DESCRIPTORS_TO_SERVE;
    let mut held = Vec::with_capacity(needed);
    for _ in 0..needed {
        // SAFETY: plain syscall on descriptor 0, always open
        // (`empty_stdin`); the copy is owned right below.
        let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 0) };
        if fd == -1 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EMFILE) {
                return Err(format!("cannot check the descriptor limit: {e}"));
            }
            // SAFETY: plain syscall with a valid out-pointer.
            let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
            return Err(format!(
                "RLIMIT_NOFILE is {}: {} more descriptors can be opened, and running \
                 {probes} {} and serving needs {needed} ({DESCRIPTORS_PER_PROBE} a probe, \
                 {DESCRIPTORS_TO_SERVE} to serve)",
                limit.rlim_cur,
                held.len(),
                if probes == 1 { "probe" } else { "probes" }
            ));
        }
        // SAFETY: a fresh descriptor nothing else owns.
        held.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Ok(())
}

/// How many client connections may be open at once: the descriptor limit
/// less those open now, those `probes` probes' runs need at once, the
/// HTTP side's own (its epoll set and spare) and one to accept a connection
/// past the cap and close it.
pub fn connection_cap(probes: usize) -> usize {
    // SAFETY: plain syscall with a valid out-pointer.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        error!("getrlimit(NOFILE): {}", io::Error::last_os_error());
        return 1;
    }
    let limit = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
    // Without /proc (a bare chroot), a generous guess.
    let open = std::fs::read_dir("/proc/self/fd").map_or(64, |entries| entries.count());
    let reserved = open + DESCRIPTORS_PER_PROBE * probes + DESCRIPTORS_TO_SERVE;
    limit.saturating_sub(reserved).max(1)
}

/// Raises the soft limit on open descriptors to the hard limit, as Go's
/// runtime does: every client connection costs one. Failure is logged and
/// left: the front survives running out anyway.
pub fn raise_open_files_limit() {
    // SAFETY: plain syscalls with valid pointers.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            error!("getrlimit(NOFILE): {}", io::Error::last_os_error());
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                error!("setrlimit(NOFILE): {}", io::Error::last_os_error());
            }
        }
    }
}

/// Signals that stop us gracefully: the probes' groups are killed, exit 0.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT];
/// Signals whose default action would kill us (and orphan the running
/// commands) but that mean nothing to a health sidecar: logged, then
/// ignored. SIGPIPE included: a write to a closed pipe then fails with
/// EPIPE, which every writer here handles.
const IGNORED_SIGNALS: [libc::c_int; 5] = [
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGPIPE,
];

/// The signals above, as they arrive: a byte on the wake-up pipe says that
/// some did; `handle` acts on them. Watched by the HTTP dispatcher, so that
/// no thread is kept only to wait for signals.
pub struct Signals {
    /// Each signal above with the flag its handler sets.
    arrived: Vec<(libc::c_int, Arc<AtomicBool>)>,
    /// Readable when a signal arrived (signal-hook's pipe handler writes
    /// to its other end).
    wake: std::os::unix::net::UnixStream,
    _wake_write: std::os::unix::net::UnixStream,
    /// As PID 1: SIGCHLD (blocked in every thread), read here, so that
    /// orphans are reaped as they exit without a thread of their own.
    children: Option<OwnedFd>,
    /// When each ignored signal was last logged.
    last_logged: Vec<(libc::c_int, std::time::Instant)>,
}

/// Installs the handlers for every signal above. Call before starting any
/// probe, so that a signal at any moment after start-up is honoured (it
/// waits, flagged, until the dispatcher runs).
pub fn exit_signals() -> io::Result<Signals> {
    let (wake, wake_write) = std::os::unix::net::UnixStream::pair()?;
    wake.set_nonblocking(true)?;
    let mut arrived = Vec::new();
    for &signal in STOP_SIGNALS.iter().chain(&IGNORED_SIGNALS) {
        // The flag first: the handlers run in this order, so a wake-up
        // always finds its flag set.
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
        signal_hook::low_level::pipe::register_raw(signal, wake_write.as_raw_fd())?;
        arrived.push((signal, flag));
    }
    let children = if std::process::id() == 1 {
        // SAFETY: sigset_t is plain data, filled in by sigemptyset.
        let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid sigset pointers; the descriptor is owned right away.
        let fd = check(unsafe {
            libc::sigemptyset(&mut mask);
            libc::sigaddset(&mut mask, libc::SIGCHLD);
            libc::signalfd(-1, &mask, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)
        })?;
        // SAFETY: a fresh descriptor nothing else owns.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    } else {
        None
    };
    Ok(Signals {
        arrived,
        wake,
        _wake_write: wake_write,
        children,
        last_logged: Vec::new(),
    })
}

impl Signals {
    /// Readable when a signal has arrived: the wake-up pipe and, as PID 1,
    /// the SIGCHLD signalfd.
    pub fn fds(&self) -> Vec<RawFd> {
        let children = self.children.as_ref().map(|fd| fd.as_raw_fd());
        std::iter::once(self.wake.as_raw_fd())
            .chain(children)
            .collect()
    }

    /// Acts on the signals that arrived: a stop signal kills every probe
    /// group and exits 0. Ignored signals are logged, each at most once a
    /// second: a SIGPIPE from a vanished log reader must not turn into a
    /// loop of log lines. As PID 1, exited children are reaped (orphans
    /// included). Harmless when nothing arrived.
    pub fn handle(&mut self, children: &Children) {
        let mut drain = [0u8; 128];
        // Drained before the flags are read: a signal after this leaves a
        // byte for the next wake-up.
        while matches!((&self.wake).read(&mut drain), Ok(n) if n > 0) {}
        if let Some(fd) = &self.children {
            // Drained before reaping: an exit after the last look raises
            // SIGCHLD again, so none is missed.
            // SAFETY: drain is a valid buffer of its length.
            while unsafe { libc::read(fd.as_raw_fd(), drain.as_mut_ptr().cast(), drain.len()) } > 0
            {
            }
            children.reap_exited_now();
        }
        for (signal, flag) in &self.arrived {
            if !flag.swap(false, Ordering::Relaxed) {
                continue;
            }
            let signal = *signal;
            if STOP_SIGNALS.contains(&signal) {
                crate::info!(
                    "received {}; stopping probes and exiting",
                    signal_name(signal)
                );
                children.kill_all_and_exit(0);
            }
            let now = std::time::Instant::now();
            let recent = self
                .last_logged
                .iter()
                .any(|(s, at)| *s == signal && now.duration_since(*at).as_secs() < 1);
            if !recent {
                self.last_logged.retain(|(s, _)| *s != signal);
                self.last_logged.push((signal, now));
                crate::info!("received {}; ignored", signal_name(signal));
            }
        }
    }
}

fn signal_name(signal: libc::c_int) -> String {
    let name = match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGALRM => "SIGALRM",
        libc::SIGPIPE => "SIGPIPE",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// A libc return code as a result: -1 is the error in `errno`.
pub fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn_sh(children: &Children, script: &str) -> io::Result<Child> {
        children.spawn(Command::new("/bin/sh").args(["-c", script]))
    }

    /// The status of `child`, polled for until it has exited.
    fn reap_soon(children: &Children, child: &Child) -> WaitStatus {
        loop {
            if let Some(status) = children.try_reap(child, false) {
                return status;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn register(table: &mut Table, pid: Pid) -> ChildId {
        let serial = table.begin_spawn(0).unwrap();
        table.end_spawn(serial, Some(pid)).unwrap()
    }

    #[test]
    fn a_reused_pid_gets_each_run_its_own_status() {
        let mut table = Table::default();
        let first = register(&mut table, 100);
        assert_eq!(table.exited(100, table.next_serial), Exited::Running);
        table.record(100, 1);
        // Reaped: pid 100 is free, and a new run gets it before the first
        // run took its status.
        let second = register(&mut table, 100);
        assert_ne!(first, second);
        assert_eq!(table.exited(100, table.next_serial), Exited::Running);
        table.record(100, 2);
        assert_eq!(table.take(second), Some(2));
        assert_eq!(table.take(first), Some(1));
        assert_eq!(table.take(first), None, "taken once");
        assert!(table.entries.is_empty());
    }

    #[test]
    fn a_status_is_not_taken_before_it_arrives() {
        let mut table = Table::default();
        let id = register(&mut table, 7);
        assert_eq!(table.take(id), None);
        table.record(7, 0);
        assert_eq!(
            table.exited(7, table.next_serial),
            Exited::Unknown {
                wait_for_spawns: false
            }
        );
        assert_eq!(table.take(id), Some(0));
    }

    #[test]
    fn an_abandoned_child_leaves_the_table_when_reaped() {
        let mut table = Table::default();
        let id = register(&mut table, 42);
        table.abandon(id);
        assert_eq!(table.exited(42, table.next_serial), Exited::Abandoned(id));
        table.record(42, 9);
        assert!(table.entries.is_empty(), "nobody takes it: forgotten");
        // A new child on the same pid is a running one, not abandoned.
        let next = register(&mut table, 42);
        assert_eq!(table.exited(42, table.next_serial), Exited::Running);
        table.record(42, 0);
        assert_eq!(table.take(next), Some(0));
    }

    #[test]
    fn unknown_pids_wait_only_for_earlier_spawns() {
        let mut table = Table::default();
        let serial = table.begin_spawn(0).unwrap();
        let horizon = table.next_serial;
        assert_eq!(
            table.exited(5, horizon),
            Exited::Unknown {
                wait_for_spawns: true
            }
        );
        // A spawn that began after the peek does not hold it up.
        let later = table.begin_spawn(0).unwrap();
        table.end_spawn(serial, None);
        assert_eq!(
            table.exited(5, horizon),
            Exited::Unknown {
                wait_for_spawns: false
            }
        );
        table.end_spawn(later, Some(5));
        assert_eq!(table.exited(5, horizon), Exited::Running);
    }

    #[test]
    fn an_exit_reaped_before_its_spawn_registered_is_claimed() {
        let mut table = Table::default();
        let mine = table.begin_spawn(0).unwrap();
        let other = table.begin_spawn(0).unwrap();
        // A sweep reaps pid 9 while both spawns are under way.
        assert_eq!(
            table.exited(9, table.next_serial),
            Exited::Unknown {
                wait_for_spawns: true
            }
        );
        table.early.push((9, 3, table.next_serial));
        assert!(table.reaped_early(9));
        let id = table.end_spawn(mine, Some(9)).unwrap();
        assert_eq!(table.take(id), Some(3));
        assert!(table.early.is_empty());
        // An early exit no spawn claims was an orphan: dropped once the
        // spawns that may have owned it are done.
        table.early.push((11, 0, table.next_serial));
        let late = table.begin_spawn(0).unwrap();
        table.end_spawn(other, Some(12));
        assert!(
            table.early.is_empty(),
            "only {late} is under way, begun after"
        );
    }

    #[test]
    fn the_unreaped_count_follows_the_table() {
        let mut table = Table::default();
        let agree = |t: &Table| assert_eq!(t.unreaped, t.count_unreaped());
        let a = register(&mut table, 1);
        let b = register(&mut table, 2);
        agree(&table);
        assert_eq!(table.unreaped, 2);
        table.record(1, 0);
        agree(&table);
        assert_eq!(table.take(a), Some(0));
        table.abandon(b);
        agree(&table);
        table.record(2, 9);
        agree(&table);
        assert_eq!(table.unreaped, 0);
        // An exit reaped early, then claimed: nothing left to reap.
        let serial = table.begin_spawn(0).unwrap();
        let failed = table.begin_spawn(0).unwrap();
        agree(&table);
        table.early.push((3, 0, table.next_serial));
        let c = table.end_spawn(serial, Some(3)).unwrap();
        table.end_spawn(failed, None);
        agree(&table);
        assert_eq!(table.unreaped, 0);
        assert_eq!(table.take(c), Some(0));
        agree(&table);
    }

    #[test]
    fn no_spawn_begins_while_shutting_down() {
        let mut table = Table {
            shutting_down: true,
            ..Table::default()
        };
        assert!(table.begin_spawn(0).is_err());
    }

    #[test]
    fn after_the_panic_hook_kills_all_nothing_more_is_started() {
        let children = Children::new();
        let child = spawn_sh(&children, "sleep 30").unwrap();
        children.kill_all_now();
        let status = reap_soon(&children, &child);
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
        // Other probe threads go on until the process ends: their next
        // spawn must fail, not start a command that outlives us.
        assert!(spawn_sh(&children, "true").is_err());
    }

    #[test]
    fn a_run_reaps_its_own_child_and_its_leftovers() {
        let children = Children::new();
        let child = spawn_sh(&children, "sleep 30 & exit 3").unwrap();
        assert!(child.exit_fd().is_some(), "pidfds on this kernel");
        let status = reap_soon(&children, &child);
        assert_eq!(libc::WEXITSTATUS(status), 3);
        assert!(children.table().entries.is_empty());
        // The group's `sleep` was killed: soon no process is left in it
        // (its new parent reaps the zombie).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // SAFETY: signal 0 only checks for existence.
        while unsafe { libc::kill(-child.id.pid, 0) } == 0 {
            assert!(std::time::Instant::now() < deadline, "the group lives on");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
