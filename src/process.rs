//! The children we start, and the duties of a process that may be PID 1:
//! reaping, killing process groups, signals, exiting.
//!
//! One reaper thread owns every `waitpid` in the program. As PID 1 (a
//! `FROM scratch` container) orphans are re-parented to us and must be
//! reaped, but a blind `waitpid(-1)` would steal the exit status of a probe's
//! own child. So the reaper first *peeks* with `waitid(WNOWAIT)`, then, under
//! the table lock that is also held across every spawn, either hands a probe
//! child's status to its probe or reaps an orphan. Probe threads never wait on
//! a pid themselves; they are woken through a pipe they can `poll`.
//!
//! When a probe's command exits, whatever it left running in its process
//! group is killed before the leader is reaped: the leader's zombie still
//! pins the group ID then, so the kill cannot hit a group that reused it.
//!
//! This module knows nothing about probes' results or HTTP.

use std::io::{self, PipeWriter, Write};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error;

pub type Pid = libc::pid_t;

/// A raw wait status, as `waitpid` reports it.
pub type WaitStatus = libc::c_int;

#[derive(Default)]
pub struct Children {
    table: Mutex<Table>,
    spawned: Condvar,
}

#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    /// Counts spawns, so the reaper can sleep while we have no children.
    spawns: u64,
    shutting_down: bool,
}

struct Entry {
    pid: Pid,
    status: Option<WaitStatus>,
    /// Written to when the status arrives; `None` once the probe gave up.
    wake: Option<Arc<PipeWriter>>,
}

impl Children {
    pub fn new() -> Arc<Children> {
        Arc::new(Children::default())
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `command` as the leader of a new process group and registers
    /// it; `wake` gets a byte when its exit status is available.
    pub fn spawn(&self, command: &mut Command, wake: &Arc<PipeWriter>) -> io::Result<Pid> {
        use std::os::unix::process::CommandExt;
        // `process_group` keeps std on its posix_spawn path (no pre_exec).
        command.process_group(0);
        let mut table = self.table();
        if table.shutting_down {
            return Err(io::Error::other("shutting down"));
        }
        // Spawning under the lock: the reaper cannot look at this child
        // before it is in the table.
        let child = command.spawn()?;
        let pid = child.id() as Pid;
        table.entries.push(Entry {
            pid,
            status: None,
            wake: Some(Arc::clone(wake)),
        });
        table.spawns += 1;
        drop(table);
        self.spawned.notify_all();
        Ok(pid)
    }

    /// The exit status of `pid` once the reaper has it; forgets the child.
    pub fn take_status(&self, pid: Pid) -> Option<WaitStatus> {
        let mut table = self.table();
        let index = table.entries.iter().position(|e| e.pid == pid)?;
        let status = table.entries[index].status?;
        table.entries.swap_remove(index);
        Some(status)
    }

    /// Kills the process group of `pid`, if `pid` has not been reaped (so
    /// its group ID cannot have been reused).
    pub fn kill_group(&self, pid: Pid) {
        let table = self.table();
        if table
            .entries
            .iter()
            .any(|e| e.pid == pid && e.status.is_none())
        {
            kill_group(pid);
        }
    }

    /// Stops waiting for `pid` (it did not die after SIGKILL, e.g. stuck in
    /// the kernel): the reaper will reap it silently. Returns its status if
    /// it arrived after all.
    pub fn abandon(&self, pid: Pid) -> Option<WaitStatus> {
        let mut table = self.table();
        let index = table.entries.iter().position(|e| e.pid == pid)?;
        if let Some(status) = table.entries[index].status {
            table.entries.swap_remove(index);
            return Some(status);
        }
        table.entries[index].wake = None;
        None
    }

    /// Kills every running probe's process group and exits. Holding the
    /// table lock to the end means no probe can start a command meanwhile.
    pub fn kill_all_and_exit(&self, code: i32) -> ! {
        let mut table = self.table();
        table.shutting_down = true;
        for entry in table.entries.iter().filter(|e| e.status.is_none()) {
            kill_group(entry.pid);
        }
        std::process::exit(code);
    }

    /// The reaper thread's body.
    pub fn reap_forever(&self) -> ! {
        loop {
            let spawns_before = self.table().spawns;
            match peek_exited_child() {
                Ok(pid) => self.reap(pid),
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    // No children at all: only our own spawn can change that
                    // (orphans are re-parented to us only from our children).
                    let table = self.table();
                    let _table = self
                        .spawned
                        .wait_while(table, |t| t.spawns == spawns_before)
                        .unwrap_or_else(|e| e.into_inner());
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    error!("reaper: waitid failed: {e}; retrying in 1s");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }
    }

    fn reap(&self, pid: Pid) {
        let mut table = self.table();
        let entry = table
            .entries
            .iter_mut()
            .find(|e| e.pid == pid && e.status.is_none());
        if entry.is_some() {
            // Leftovers of a probe command die with it (see module comment).
            kill_group(pid);
        }
        let mut status: WaitStatus = 0;
        // SAFETY: plain syscall with a valid out-pointer.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if reaped != pid {
            // Someone else (std, after a failed exec) reaped it first.
            return;
        }
        if let Some(entry) = entry {
            entry.status = Some(status);
            if let Some(wake) = &entry.wake {
                // Non-blocking, and at most one byte per run: it cannot fill.
                let _ = (&**wake).write(&[1]);
            }
        }
    }
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

/// Makes a pipe's write end non-blocking.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags == -1 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
