//! The children we start, and the duties of a process that may be PID 1:
//! reaping, killing process groups, signals, exiting.
//!
//! Each probe run reaps its own command: it polls a pidfd (or, on kernels
//! before 5.3, a short timer) for the exit, kills what the command left in
//! its process group while the zombie still pins the group ID (so the kill
//! cannot hit a group that reused it), then reaps it by pid. No thread
//! stands between a run and its exit status, so hundreds of probes reap in
//! parallel, and a run can only ever receive the status of its own child.
//!
//! As PID 1 (a `FROM scratch` container) orphans are re-parented to us and
//! must be reaped too; a blind `waitpid(-1)` would steal a probe's status.
//! So only then a reaper thread *peeks* with `waitid(WNOWAIT)`: a pid that
//! is a running probe's child is left to its run (the reaper waits until the
//! run has reaped it); a pid it does not know while spawns are under way may
//! be one of theirs, so it waits for the spawns that began before it looked;
//! anything else is an orphan and reaped. Spawning never holds the table lock.
//!
//! A run that gives up on a child that will not die (stuck in the kernel)
//! abandons it: the PID-1 reaper, or any probe's next run, reaps it later,
//! and its entry then leaves the table.
//!
//! This module knows nothing about probes' results or HTTP.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
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

/// How long an exit waits for queued log lines to be written.
pub const EXIT_FLUSH: Duration = Duration::from_millis(250);

/// How long an exit waits for spawns under way to register their children,
/// so that it can kill them too.
const SPAWN_DRAIN: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Children {
    table: Mutex<Table>,
    /// Signalled when a spawn registers or gives up, and when a run reaps.
    changed: Condvar,
}

/// The bookkeeping, apart from the syscalls: unit-tested on its own.
#[derive(Default)]
struct Table {
    /// Children started and not reaped yet.
    entries: Vec<Entry>,
    /// Serials of spawns under way (child not registered yet).
    spawning: Vec<u64>,
    next_serial: u64,
    /// Children registered so far, for the PID-1 reaper's idle wait.
    registered: u64,
    shutting_down: bool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: ChildId,
    /// Its run gave up on it: whoever reaps it forgets it.
    abandoned: bool,
}

/// What the PID-1 reaper does with an exited pid.
#[derive(Debug, PartialEq)]
enum Exited {
    /// A run's own child: the run reaps it.
    Running,
    /// An abandoned child: reap it and forget it.
    Abandoned(ChildId),
    /// Not known: an orphan, unless a spawn that began earlier registers it.
    Unknown { wait_for_spawns: bool },
}

impl Table {
    fn begin_spawn(&mut self) -> io::Result<u64> {
        if self.shutting_down {
            return Err(io::Error::other("shutting down"));
        }
        self.next_serial += 1;
        self.spawning.push(self.next_serial);
        Ok(self.next_serial)
    }

    fn end_spawn(&mut self, serial: u64, pid: Option<Pid>) -> Option<ChildId> {
        self.spawning.retain(|s| *s != serial);
        let id = ChildId { pid: pid?, serial };
        self.entries.push(Entry {
            id,
            abandoned: false,
        });
        self.registered += 1;
        Some(id)
    }

    /// Classifies `pid`, peeked at when spawns up to `horizon` had begun.
    fn exited(&self, pid: Pid, horizon: u64) -> Exited {
        match self.entries.iter().find(|e| e.id.pid == pid) {
            Some(entry) if entry.abandoned => Exited::Abandoned(entry.id),
            Some(_) => Exited::Running,
            None => Exited::Unknown {
                wait_for_spawns: self.spawning.iter().any(|s| *s <= horizon),
            },
        }
    }

    fn forget(&mut self, id: ChildId) {
        self.entries.retain(|e| e.id != id);
    }

    fn abandon(&mut self, id: ChildId) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.id == id) {
            entry.abandoned = true;
        }
    }

    fn abandoned(&self) -> impl Iterator<Item = ChildId> + '_ {
        self.entries.iter().filter(|e| e.abandoned).map(|e| e.id)
    }
}

impl Children {
    pub fn new() -> Arc<Children> {
        Arc::new(Children::default())
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `command` as the leader of a new process group and registers
    /// it.
    pub fn spawn(&self, command: &mut Command) -> io::Result<Child> {
        use std::os::unix::process::CommandExt;
        // `process_group` keeps std on its posix_spawn path (no pre_exec).
        command.process_group(0);
        let serial = self.table().begin_spawn()?;
        let spawned = command.spawn();
        let mut table = self.table();
        let id = table.end_spawn(serial, spawned.as_ref().ok().map(|c| c.id() as Pid));
        if let Some(id) = id.filter(|_| table.shutting_down) {
            // An exit is waiting for this spawn: the child goes too.
            kill_group(id.pid);
        }
        drop(table);
        self.changed.notify_all();
        spawned?;
        let id = id.expect("registered");
        // Nobody else reaps a registered child, so the pid is still ours.
        Ok(Child {
            id,
            exit: pidfd_open(id.pid),
        })
    }

    /// If `child` has exited: kills what it left in its process group,
    /// reaps it, forgets it and returns its status. Never blocks.
    pub fn try_reap(&self, child: &Child) -> Option<WaitStatus> {
        let pid = child.id.pid;
        if !has_exited(pid) {
            return None;
        }
        // Leftovers die with the command (see the module comment).
        kill_group(pid);
        let mut table = self.table();
        let mut status: WaitStatus = 0;
        // SAFETY: plain syscall with a valid out-pointer.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        table.forget(child.id);
        drop(table);
        self.changed.notify_all();
        if reaped == pid {
            Some(status)
        } else {
            // Cannot happen: only this run reaps this child.
            error!("waitpid({pid}): {}", io::Error::last_os_error());
            Some(0x7f00) // "exit status 127"
        }
    }

    /// Kills the process group of `child`, which has not been reaped (so
    /// its group ID cannot have been reused).
    pub fn kill_group(&self, child: &Child) {
        kill_group(child.id.pid);
    }

    /// Gives up on `child` (it did not die after SIGKILL, e.g. stuck in the
    /// kernel): reaped and forgotten later by whoever finds it exited.
    pub fn abandon(&self, child: Child) {
        self.table().abandon(child.id);
    }

    /// Reaps abandoned children that have exited since. Each run calls it:
    /// without a PID-1 reaper, nobody else would.
    pub fn reap_abandoned(&self) {
        let mut table = self.table();
        let exited: Vec<ChildId> = table.abandoned().filter(|id| has_exited(id.pid)).collect();
        for id in exited {
            let mut status: WaitStatus = 0;
            // SAFETY: plain syscall with a valid out-pointer.
            unsafe { libc::waitpid(id.pid, &mut status, libc::WNOHANG) };
            table.forget(id);
        }
    }

    /// Kills every running probe's process group and exits, spawns under
    /// way included (each kills its own child once it sees the exit).
    pub fn kill_all_and_exit(&self, code: i32) -> ! {
        let mut table = self.table();
        table.shutting_down = true;
        for entry in &table.entries {
            kill_group(entry.id.pid);
        }
        let (_table, _) = self
            .changed
            .wait_timeout_while(table, SPAWN_DRAIN, |t| !t.spawning.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        crate::log::flush(EXIT_FLUSH);
        std::process::exit(code);
    }

    /// Kills every running probe's process group, from a panic hook: the
    /// panicking thread may hold the table lock, so this only tries it.
    pub fn kill_all_now(&self) {
        for _ in 0..100 {
            match self.table.try_lock() {
                Ok(table) => {
                    for entry in &table.entries {
                        kill_group(entry.id.pid);
                    }
                    return;
                }
                Err(std::sync::TryLockError::Poisoned(table)) => {
                    for entry in &table.into_inner().entries {
                        kill_group(entry.id.pid);
                    }
                    return;
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// The PID-1 reaper thread's body: reaps orphans and abandoned
    /// children, never a running probe's (see the module comment).
    pub fn reap_orphans_forever(&self) -> ! {
        loop {
            let registered_before = self.table().registered;
            match peek_exited_child() {
                Ok(pid) => self.reap_orphan(pid),
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    // No children at all: only our own spawn can change that
                    // (orphans are re-parented to us only from our children).
                    let table = self.table();
                    let _table = self
                        .changed
                        .wait_while(table, |t| t.registered == registered_before)
                        .unwrap_or_else(|e| e.into_inner());
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    error!("reaper: waitid failed: {e}; retrying in 1s");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    fn reap_orphan(&self, pid: Pid) {
        let mut table = self.table();
        let horizon = table.next_serial;
        loop {
            match table.exited(pid, horizon) {
                Exited::Running => {
                    // Its run reaps it; then waitid shows us the next one.
                    let _table = self
                        .changed
                        .wait_while(table, |t| t.exited(pid, horizon) == Exited::Running)
                        .unwrap_or_else(|e| e.into_inner());
                    return;
                }
                Exited::Unknown {
                    wait_for_spawns: true,
                } => {
                    table = self.changed.wait(table).unwrap_or_else(|e| e.into_inner());
                }
                Exited::Abandoned(id) => {
                    table.forget(id);
                    break;
                }
                Exited::Unknown {
                    wait_for_spawns: false,
                } => break,
            }
        }
        let mut status: WaitStatus = 0;
        // SAFETY: plain syscall with a valid out-pointer. Under the table
        // lock, so no run can register a reused pid meanwhile.
        unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
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

/// Blocks until some child has exited and returns its pid, leaving it a
/// zombie (`WNOWAIT`) so the caller decides who reaps it.
fn peek_exited_child() -> io::Result<Pid> {
    // SAFETY: siginfo_t is plain data; waitid fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer; P_ALL ignores the id.
    let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid succeeded with WEXITED, so si_pid is set.
    Ok(unsafe { info.si_pid() })
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
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let rc = libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
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

/// Installs the handlers for every signal above. Call before starting any
/// probe, so that a signal at any moment after start-up is honoured.
pub fn exit_signals() -> io::Result<signal_hook::iterator::Signals> {
    signal_hook::iterator::Signals::new(STOP_SIGNALS.iter().chain(&IGNORED_SIGNALS))
}

/// Waits for a stop signal, then kills every probe group and exits 0.
/// Ignored signals are logged, each at most once a second: a SIGPIPE from
/// a vanished log reader must not turn into a loop of log lines.
pub fn exit_on_signal(mut signals: signal_hook::iterator::Signals, children: &Children) -> ! {
    let mut last_logged: Vec<(libc::c_int, std::time::Instant)> = Vec::new();
    for signal in signals.forever() {
        if STOP_SIGNALS.contains(&signal) {
            crate::info!(
                "received {}; stopping probes and exiting",
                signal_name(signal)
            );
            children.kill_all_and_exit(0);
        }
        let now = std::time::Instant::now();
        let recent = last_logged
            .iter()
            .any(|(s, at)| *s == signal && now.duration_since(*at).as_secs() < 1);
        if !recent {
            last_logged.retain(|(s, _)| *s != signal);
            last_logged.push((signal, now));
            crate::info!("received {}; ignored", signal_name(signal));
        }
    }
    unreachable!("Signals::forever never ends")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn register(table: &mut Table, pid: Pid) -> ChildId {
        let serial = table.begin_spawn().unwrap();
        table.end_spawn(serial, Some(pid)).unwrap()
    }

    #[test]
    fn a_reused_pid_is_a_new_child() {
        let mut table = Table::default();
        let first = register(&mut table, 100);
        assert_eq!(table.exited(100, table.next_serial), Exited::Running);
        // Its run reaped it; the pid comes back for another spawn.
        table.forget(first);
        let second = register(&mut table, 100);
        assert_ne!(first, second);
        table.forget(first);
        assert_eq!(
            table.exited(100, table.next_serial),
            Exited::Running,
            "{second:?} stays"
        );
        table.forget(second);
        assert!(table.entries.is_empty());
    }

    #[test]
    fn an_abandoned_child_leaves_the_table_when_reaped() {
        let mut table = Table::default();
        let id = register(&mut table, 42);
        table.abandon(id);
        assert_eq!(table.abandoned().collect::<Vec<_>>(), [id]);
        assert_eq!(table.exited(42, table.next_serial), Exited::Abandoned(id));
        table.forget(id);
        assert!(table.entries.is_empty());
        // A new child on the same pid is a running one, not abandoned.
        let next = register(&mut table, 42);
        assert_eq!(table.exited(42, table.next_serial), Exited::Running);
        assert_eq!(table.abandoned().count(), 0);
        table.forget(next);
    }

    #[test]
    fn unknown_pids_wait_only_for_earlier_spawns() {
        let mut table = Table::default();
        let serial = table.begin_spawn().unwrap();
        let horizon = table.next_serial;
        assert_eq!(
            table.exited(5, horizon),
            Exited::Unknown {
                wait_for_spawns: true
            }
        );
        // A spawn that began after the peek does not hold it up.
        let later = table.begin_spawn().unwrap();
        table.end_spawn(serial, None);
        assert_eq!(
            table.exited(5, horizon),
            Exited::Unknown {
                wait_for_spawns: false
            }
        );
        table.end_spawn(later, Some(5));
        assert_eq!(table.exited(5, horizon), Exited::Running);
        assert_eq!(table.registered, 1);
    }

    #[test]
    fn no_spawn_begins_while_shutting_down() {
        let mut table = Table {
            shutting_down: true,
            ..Table::default()
        };
        assert!(table.begin_spawn().is_err());
    }

    #[test]
    fn a_run_reaps_its_own_child_and_its_leftovers() {
        let children = Children::default();
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "sleep 30 & exit 3"]);
        let child = children.spawn(&mut command).unwrap();
        assert!(child.exit_fd().is_some(), "pidfds on this kernel");
        let status = loop {
            if let Some(status) = children.try_reap(&child) {
                break status;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
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
