//! One loop per command: run it every period, time it, bound it, record it.
//!
//! A built-in check (`check`) runs in the probe thread itself. A command
//! runs as `sh -c CMD` (or as `--shell` says) in its own process group, stdout and stderr sharing
//! one pipe. The probe thread `poll`s that pipe together with the command's
//! pidfd (readable when it exits), so a single thread keeps the output
//! bounded (the rest is read and thrown away: the command never blocks on a
//! full pipe), notices the exit, and enforces the timeout by killing the
//! whole group. Runs of one probe never overlap. This module never calls
//! `wait` itself (`process` reaps, under its table lock) and never touches
//! HTTP.

use std::io::{self, PipeReader, Read};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::log::{self, Level, Value};
use crate::outcome::Outcome;
use crate::process::{Child, Children, WaitStatus};
use crate::results::{Policy, Probe, Run, Verdict};
use crate::spec::{Action, ProbeSpec};
use crate::{check, error};

/// How long to keep reading after the command exited, for output still in
/// flight from the group members that were just killed.
const EXIT_GRACE: Duration = Duration::from_millis(100);
/// How long a killed group gets to die before we stop waiting for it.
const KILL_GRACE: Duration = Duration::from_secs(1);
/// Without pidfds, how often a run looks whether its command has exited.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// What every probe loop shares.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub period: Duration,
    pub timeout: Duration,
    pub max_output: usize,
}

/// The probe thread's body: runs the command every period, forever, the
/// first time after `offset` (a small one: see `first_run_offset`).
pub fn run_forever(
    probe: &Probe,
    children: &Children,
    schedule: Schedule,
    policy: Policy,
    offset: Duration,
) -> ! {
    let mut runner = Runner {
        spec: &probe.spec,
        schedule,
        children,
        notice: None,
    };
    // The first run starts now (give or take the offset), not one period
    // from now.
    let mut next_start = Instant::now() + offset;
    for run in 0u64.. {
        let now = Instant::now();
        if next_start > now {
            std::thread::sleep(next_start - now);
        }
        test_panic(probe, run);
        // The Go original's line before every run.
        log::event(
            Level::Info,
            format_args!(
                "Worker running {} to serve {}",
                probe.spec.cmd, probe.spec.url
            ),
            &[
                ("url", Value::Str(&probe.spec.url)),
                ("cmd", Value::Str(&probe.spec.cmd)),
            ],
        );
        let started = Instant::now();
        probe.run_started(started);
        let run = runner.run_once(started);
        if children.exiting() {
            // Killed by the exit, not failed (see `process::wait_for_exit`).
            crate::process::wait_for_exit();
        }
        log_failure(probe, &run);
        let recorded = probe.record(run, &policy);
        log_change(probe, recorded.from, recorded.to);
        // A run longer than the period delays the next one, which then
        // starts at once: runs never overlap.
        next_start = started + schedule.period;
    }
    unreachable!("runs never run out")
}

/// Debug builds only, for the tests of the panic path (hook, groups
/// killed, abort): `EXECHEALTHZ_TEST_PANIC_URL=URL` makes that probe's
/// loop panic when its second run is due.
#[cfg(debug_assertions)]
fn test_panic(probe: &Probe, run: u64) {
    if run == 1
        && std::env::var_os("EXECHEALTHZ_TEST_PANIC_URL")
            .is_some_and(|url| url.as_encoded_bytes() == probe.spec.url.as_bytes())
    {
        panic!("test panic in the loop of {}", probe.spec.url);
    }
}

#[cfg(not(debug_assertions))]
fn test_panic(_: &Probe, _: u64) {}

/// At most how far apart the first runs of all probes are spread.
const FIRST_RUN_SPREAD: Duration = Duration::from_millis(100);

/// When probe `index` of `count` runs first: spread evenly over the period
/// (at most `FIRST_RUN_SPREAD`), so that hundreds of probes do not start
/// their commands in lockstep every period (bursts of spawns, and of exits
/// waiting to be reaped), while every probe still runs at start-up.
pub fn first_run_offset(index: usize, count: usize, period: Duration) -> Duration {
    let spread = period.min(FIRST_RUN_SPREAD);
    // In nanoseconds, without floats (float code costs the binary more).
    let nanos = spread.as_nanos() * index as u128 / count.max(1) as u128;
    Duration::from_nanos(nanos as u64)
}

fn log_failure(probe: &Probe, run: &Run) {
    let url = &probe.spec.url;
    if let Some(error) = run.outcome.error() {
        log::event(
            Level::Error,
            format_args!(
                "Healthz probe on {url} error: {} (took {})",
                run.describe(),
                crate::duration::format(run.duration)
            ),
            &[
                ("url", Value::Str(url)),
                ("cmd", Value::Str(&probe.spec.cmd)),
                ("error", Value::Str(&error)),
                ("exit_code", Value::Num(run.outcome.exit_code().to_string())),
                (
                    "duration_seconds",
                    Value::Num(crate::duration::seconds(run.duration)),
                ),
                ("output", Value::Str(&String::from_utf8_lossy(&run.output))),
            ],
        );
    }
}

fn log_change(probe: &Probe, from: Verdict, to: Verdict) {
    let url = &probe.spec.url;
    if from != to {
        let (level, state) = match to {
            Verdict::Failing => (Level::Error, "failing"),
            Verdict::Passing => (Level::Info, "passing"),
            Verdict::Pending => return,
        };
        log::event(
            level,
            format_args!("probe {url} is now {state}"),
            &[("url", Value::Str(url)), ("state", Value::Str(state))],
        );
    }
}

struct Runner<'a> {
    spec: &'a ProbeSpec,
    schedule: Schedule,
    children: &'a Children,
    /// The check's notice at its last run (a redirect to another host).
    notice: Option<String>,
}

/// Output kept from a run, and how much more was thrown away.
#[derive(Default)]
struct Capture {
    kept: Vec<u8>,
    discarded: u64,
}

impl Runner<'_> {
    /// A check's notice is logged when it starts (or changes) and when it
    /// stops, at the level of a verdict's change to passing: once, not at
    /// every run.
    fn notice(&mut self, notice: Option<String>) {
        if notice == self.notice {
            return;
        }
        let url = &self.spec.url;
        match &notice {
            Some(text) => log::event(
                Level::Info,
                format_args!("probe {url}: {text}"),
                &[("url", Value::Str(url)), ("notice", Value::Str(text))],
            ),
            None => log::event(
                Level::Info,
                format_args!("probe {url}: no longer redirected to another host"),
                &[("url", Value::Str(url))],
            ),
        }
        self.notice = notice;
    }

    fn run_once(&mut self, started: Instant) -> Run {
        let mut capture = Capture::default();
        self.children.sweep(false);
        let outcome = match &self.spec.action {
            Action::Exec { program, args } => match self.start(program, args) {
                Ok((pid, output)) => self.supervise(pid, output, started, &mut capture),
                Err(e) => Outcome::SpawnFailed(e.to_string()),
            },
            Action::Check(check) => {
                let ran = check::run(check, self.schedule.timeout);
                self.notice(ran.notice);
                capture.kept = ran.said;
                capture.kept.truncate(self.schedule.max_output);
                ran.outcome
            }
        };
        let finished_at = Instant::now();
        Run {
            finished: SystemTime::now(),
            finished_at,
            duration: finished_at - started,
            output: capture.kept.into(),
            discarded: capture.discarded,
            outcome,
        }
    }

    /// Spawns the command (by default `/bin/sh -c CMD`); returns its pid
    /// and the read end of its output.
    fn start(&mut self, program: &str, args: &[String]) -> io::Result<(Child, PipeReader)> {
        let (reader, writer) = io::pipe()?;
        let mut command = Command::new(program);
        command
            .args(args)
            // Ours: an empty pipe (`process::empty_stdin`).
            .stdin(Stdio::inherit())
            .stdout(writer.try_clone()?)
            .stderr(writer);
        let child = self
            .children
            .spawn(&mut command)
            .map_err(|e| io::Error::new(e.kind(), format!("{program}: {e}")))?;
        // `command` holds our copies of the write end: drop them, or the
        // pipe would never report end of file.
        drop(command);
        Ok((child, reader))
    }

    /// Reads output and waits for the exit, killing the group on timeout.
    fn supervise(
        &mut self,
        child: Child,
        output: PipeReader,
        started: Instant,
        capture: &mut Capture,
    ) -> Outcome {
        let deadline = started + self.schedule.timeout;
        let mut output = Some(output);
        let mut status: Option<WaitStatus> = None;
        let mut stop_reading_at = None; // set once the command has exited
        let mut killed_at = None;
        loop {
            let now = Instant::now();
            if let Some(status) = status {
                if output.is_none() || stop_reading_at.is_some_and(|t| now >= t) {
                    return match killed_at {
                        Some(_) => Outcome::TimedOut(self.schedule.timeout),
                        None => decode(status),
                    };
                }
            } else if let Some(killed) = killed_at {
                if now >= killed + KILL_GRACE {
                    // Unkillable (stuck in the kernel): reaped later.
                    error!(
                        "command {} (pid {}) did not die after SIGKILL",
                        crate::json::string(&self.spec.cmd),
                        child.id.pid
                    );
                    self.children.abandon(child);
                    return Outcome::TimedOut(self.schedule.timeout);
                }
            } else if now >= deadline {
                // Look once more before calling it a timeout: after a
                // freeze (SIGSTOP, a paused cgroup, a VM stall) the deadline
                // has passed for a command that may have finished long ago
                // without our having looked.
                if let Some(exit) = self.children.try_reap(&child, false) {
                    status = Some(exit);
                    stop_reading_at = Some(now + EXIT_GRACE);
                    continue;
                }
                self.children.kill_group(&child);
                killed_at = Some(now);
                continue;
            }
            let wait_until = match (status, killed_at) {
                (Some(_), _) => stop_reading_at.expect("set with status"),
                (None, Some(killed)) => killed + KILL_GRACE,
                (None, None) => deadline,
            };
            let exit_fd = if status.is_none() {
                child.exit_fd()
            } else {
                None
            };
            let mut timeout = wait_until - now;
            if status.is_none() && exit_fd.is_none() {
                // No pidfd (kernel before 5.3): look for the exit this often.
                timeout = timeout.min(EXIT_POLL);
            }
            let (output_ready, exit_ready) = poll_two(output.as_ref(), exit_fd, timeout);
            if output_ready && !exit_ready {
                // Awake anyway: reap what other commands left exited.
                self.children.sweep(status.is_none());
            }
            let look = status.is_none() && (exit_ready || exit_fd.is_none());
            if let Some(exit) = look
                .then(|| self.children.try_reap(&child, exit_ready))
                .flatten()
            {
                status = Some(exit);
                stop_reading_at = Some(Instant::now() + EXIT_GRACE);
            }
            if output_ready {
                let reader = output.as_mut().expect("polled only while open");
                if !read_some(reader, capture, self.schedule.max_output) {
                    output = None;
                }
            }
        }
    }
}

/// Reads what is available into `capture`; false at end of file or error.
fn read_some(reader: &mut PipeReader, capture: &mut Capture, max: usize) -> bool {
    let mut buffer = [0u8; 8192];
    match reader.read(&mut buffer) {
        Ok(0) => false,
        Ok(n) => {
            let keep = n.min(max.saturating_sub(capture.kept.len()));
            capture.kept.extend_from_slice(&buffer[..keep]);
            capture.discarded += (n - keep) as u64;
            true
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
        Err(_) => false,
    }
}

/// Waits up to `timeout` for `output` or `exit` (each if any) to be
/// readable: (output ready, exit ready).
fn poll_two(
    output: Option<&PipeReader>,
    exit: Option<libc::c_int>,
    timeout: Duration,
) -> (bool, bool) {
    let mut fds = [
        libc::pollfd {
            fd: exit.unwrap_or(-1), // -1: ignored by poll
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: output.map_or(-1, |o| o.as_raw_fd()), // -1: ignored by poll
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // Round up, so we never wake just short of a deadline and spin.
    let millis = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
    // SAFETY: fds is a valid array of two pollfd.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, millis) };
    if rc <= 0 {
        // Timeout, or EINTR: the caller re-checks its deadlines.
        return (false, false);
    }
    let ready =
        |fd: &libc::pollfd| fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
    (ready(&fds[1]), ready(&fds[0]))
}

fn decode(status: WaitStatus) -> Outcome {
    if libc::WIFEXITED(status) {
        Outcome::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Outcome::Signaled {
            signal: libc::WTERMSIG(status),
            core_dumped: libc::WCOREDUMP(status),
        }
    } else {
        Outcome::SpawnFailed(format!("unexpected wait status {status:#x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_runs_are_spread_over_at_most_a_period_and_100ms() {
        let ms = Duration::from_millis;
        assert_eq!(first_run_offset(0, 1, ms(10)), Duration::ZERO);
        assert_eq!(first_run_offset(150, 300, ms(10)), ms(5));
        assert!(first_run_offset(299, 300, ms(10)) < ms(10));
        assert_eq!(first_run_offset(1, 2, Duration::from_secs(10)), ms(50));
        assert!(first_run_offset(2, 3, Duration::from_secs(3600)) < ms(100));
    }
}
