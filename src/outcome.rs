//! How one run of a probe ended (`Outcome`), and its words in Go's style
//! (`exit status 2`, `signal: killed`). Plain data: it knows nothing of
//! probes, results or how runs are made.

use std::time::Duration;

use crate::duration;

/// How one run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Exited(i32),
    Signaled {
        signal: i32,
        core_dumped: bool,
    },
    /// Killed, with its whole process group, after running this long.
    TimedOut(Duration),
    /// The command could not be started at all (e.g. `EAGAIN` under a pids limit).
    SpawnFailed(String),
    /// A built-in check (`check`) failed, and why.
    CheckFailed(String),
    /// A built-in check did not finish within its timeout.
    CheckTimedOut {
        check: String,
        after: Duration,
    },
    /// A grpc:// check's connection was not ready (connected, and the
    /// server's HTTP/2 preface in) within its timeout: the kubelet's words
    /// for that phase, naming `service` (HOST:PORT).
    CheckConnectTimedOut {
        check: String,
        service: String,
        after: Duration,
    },
}

impl Outcome {
    pub fn passed(&self) -> bool {
        *self == Outcome::Exited(0)
    }

    /// Whether the run ran out of time (a command or a check).
    pub fn timed_out(&self) -> bool {
        matches!(
            self,
            Outcome::TimedOut(_)
                | Outcome::CheckTimedOut { .. }
                | Outcome::CheckConnectTimedOut { .. }
        )
    }

    /// The error in Go's words (`exit status 2`, `signal: killed`), or `None`.
    pub fn error(&self) -> Option<String> {
        match self {
            Outcome::Exited(0) => None,
            Outcome::Exited(code) => Some(format!("exit status {code}")),
            Outcome::Signaled {
                signal,
                core_dumped,
            } => Some(format!(
                "signal: {}{}",
                signal_name(*signal),
                if *core_dumped { " (core dumped)" } else { "" }
            )),
            Outcome::TimedOut(after) => Some(format!(
                "timed out after {} (process group killed)",
                duration::format(*after)
            )),
            Outcome::SpawnFailed(why) => Some(format!("failed to start: {why}")),
            Outcome::CheckFailed(why) => Some(why.clone()),
            Outcome::CheckTimedOut { check, after } => Some(format!(
                "{check} timed out after {}",
                duration::format(*after)
            )),
            Outcome::CheckConnectTimedOut {
                check,
                service,
                after,
            } => Some(format!(
                "{check}: timeout: failed to connect service {service:?} within {}",
                duration::format(*after)
            )),
        }
    }
}

/// Go's names for Linux signals (`syscall.Signal.String`).
fn signal_name(signal: i32) -> String {
    const NAMES: [&str; 31] = [
        "hangup",
        "interrupt",
        "quit",
        "illegal instruction",
        "trace/breakpoint trap",
        "aborted",
        "bus error",
        "floating point exception",
        "killed",
        "user defined signal 1",
        "segmentation fault",
        "user defined signal 2",
        "broken pipe",
        "alarm clock",
        "terminated",
        "stack fault",
        "child exited",
        "continued",
        "stopped (signal)",
        "stopped",
        "stopped (tty input)",
        "stopped (tty output)",
        "urgent I/O condition",
        "CPU time limit exceeded",
        "file size limit exceeded",
        "virtual timer expired",
        "profiling timer expired",
        "window changed",
        "I/O possible",
        "power failure",
        "bad system call",
    ];
    usize::try_from(signal - 1)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("signal {signal}"), |name| name.to_string())
}

impl Outcome {
    /// The exit code for reports: the code, `128 + N` for signal N (as
    /// shells say it), 1 for a failed built-in check, `-1` when the command
    /// did not finish by itself.
    pub fn exit_code(&self) -> i64 {
        match self {
            Outcome::Exited(code) => i64::from(*code),
            Outcome::Signaled { signal, .. } => 128 + i64::from(*signal),
            Outcome::CheckFailed(_) => 1,
            Outcome::TimedOut(_)
            | Outcome::CheckTimedOut { .. }
            | Outcome::CheckConnectTimedOut { .. }
            | Outcome::SpawnFailed(_) => -1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_error_words() {
        assert_eq!(Outcome::Exited(2).error().unwrap(), "exit status 2");
        let killed = Outcome::Signaled {
            signal: 9,
            core_dumped: false,
        };
        assert_eq!(killed.error().unwrap(), "signal: killed");
        let segv = Outcome::Signaled {
            signal: 11,
            core_dumped: true,
        };
        assert_eq!(
            segv.error().unwrap(),
            "signal: segmentation fault (core dumped)"
        );
        assert_eq!(signal_name(64), "signal 64");
        assert_eq!(Outcome::Exited(0).error(), None);
    }
}
