//! `exechealthz check [--timeout D] TARGET...`: runs built-in checks once
//! and exits, for exec probes and `HEALTHCHECK`s in images with no shell
//! and no curl. Each TARGET is a check URL as `--cmd` takes it (parsed by
//! `check::parse`, run by `check::run`: the same semantics and reasons as
//! the server's). All run at once under one deadline; one line each on
//! stdout (`ok TARGET` or `failed TARGET: reason`); exit status 0 if every
//! one passed, else 1. A usage error is 1 too, never 2: Docker reserves 2
//! in health checks.
//!
//! It is cheap enough to run every second in every pod: no log thread, no
//! signal handling, no file read that a target does not need. It never
//! touches the server's parts (HTTP, probes, results).

use std::ffi::OsString;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::check::{self, Check};
use crate::duration;

/// The kubelet's default probe timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// A check's thread has only a connection and a few buffers to hold.
/// (What a TLS handshake needs: `crate::THREAD_STACK`.)
const THREAD_STACK: usize = if cfg!(feature = "tls") {
    crate::THREAD_STACK
} else {
    64 * 1024
};

pub const USAGE: &str = "\
Usage: exechealthz check [--timeout D] TARGET...

Runs each built-in check once, all at the same time under one deadline,
prints one line per target ('ok TARGET' or 'failed TARGET: reason') and
exits 0 if every one passed, 1 otherwise (a usage error is 1 too: Docker
reserves 2 in health checks). For exec probes and HEALTHCHECKs in images
with no shell:

  HEALTHCHECK CMD [\"/exechealthz\", \"check\", \"http://127.0.0.1:8080/healthz\"]

Targets, as --cmd takes them (the same checks, with the same reasons):
  tcp://HOST:PORT           a TCP connection opens
  http://HOST[:PORT]/PATH   GET answers 200-399 (the kubelet's httpGet)
  h2c://HOST[:PORT]/PATH    the same GET over HTTP/2 cleartext (protocol: HTTP2)
  file:///PATH              the path exists
  dns://[SERVER[:PORT]]/NAME  an A or AAAA query for NAME gets an answer
  grpc://HOST:PORT[/SERVICE]  grpc.health.v1.Health/Check answers SERVING (h2c)

Options after # as in --cmd (see exechealthz --help): header, status, body,
metadata, socket, and timeout (this target's own deadline), e.g.
  exechealthz check 'http://127.0.0.1:8080/ready#header=Host:app.test&body=ready'

  --timeout D   the deadline for all of them (default 1s, the kubelet's)
  -h, --help    this help
";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Ask {
    Help,
    Run {
        timeout: Duration,
        targets: Vec<(String, Check)>,
    },
}

/// Runs `exechealthz check ARGS` (the arguments after `check`); returns
/// the exit status.
pub fn main(args: &[OsString]) -> i32 {
    let mut stdout = std::io::stdout().lock();
    match parse(args) {
        // A help that cannot be written is still not a failed check.
        Ok(Ask::Help) => {
            let _ = stdout.write_all(USAGE.as_bytes());
            let _ = stdout.write_all(b"\n");
            let _ = stdout.write_all(crate::check::TLS_USAGE.as_bytes());
            0
        }
        Ok(Ask::Run { timeout, targets }) => {
            let mut all_pass = true;
            for (target, result) in targets.iter().map(|(t, _)| t).zip(run(&targets, timeout)) {
                // Nobody reading, or a full disk, changes nothing: the
                // exit status is the answer.
                let _ = match result {
                    Ok(()) => writeln!(stdout, "ok {target}"),
                    Err(why) => {
                        all_pass = false;
                        writeln!(stdout, "failed {target}: {}", one_line(&why))
                    }
                };
            }
            let _ = stdout.flush();
            i32::from(!all_pass)
        }
        Err(e) => {
            eprintln!("exechealthz check: {e}; see 'exechealthz check --help'");
            1
        }
    }
}

fn parse(args: &[OsString]) -> Result<Ask, String> {
    let mut timeout = DEFAULT_TIMEOUT;
    let mut targets = Vec::new();
    let mut args = args.iter();
    let mut flags_done = false;
    while let Some(arg) = args.next() {
        let arg = arg.to_str().ok_or_else(|| {
            let shown = crate::json::string(&arg.to_string_lossy());
            format!("argument {shown} is not valid UTF-8")
        })?;
        if !flags_done && arg.starts_with('-') && arg.len() > 1 {
            if arg == "--" {
                flags_done = true;
                continue;
            }
            let body = arg.trim_start_matches('-');
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            match name {
                "h" | "help" => return Ok(Ask::Help),
                "timeout" => {
                    let value = match inline {
                        Some(value) => value,
                        None => args
                            .next()
                            .and_then(|v| v.to_str())
                            .ok_or("flag needs an argument: --timeout")?,
                    };
                    let nanos = duration::parse(value)
                        .map_err(|e| format!("invalid value {value:?} for --timeout: {e}"))?;
                    if nanos <= 0 {
                        return Err(format!(
                            "invalid value {value:?} for --timeout: must be greater than zero"
                        ));
                    }
                    timeout = Duration::from_nanos(nanos as u64);
                }
                _ => return Err(format!("unknown flag {arg}")),
            }
            continue;
        }
        match check::parse(arg) {
            Ok(Some(check)) => {
                let timing = check.options.timing;
                if timing.period.is_some()
                    || timing.failure_threshold.is_some()
                    || timing.success_threshold.is_some()
                {
                    return Err(format!(
                        "{arg}: period, failure-threshold and success-threshold are the \
                         server's; check runs each target once (it takes timeout)"
                    ));
                }
                targets.push((arg.to_string(), check));
            }
            Ok(None) => {
                return Err(format!(
                    "{arg:?} is not a check URL (tcp://, http://, file://, dns://, grpc://): \
                     check runs no commands"
                ));
            }
            Err(e) => return Err(e),
        }
    }
    if targets.is_empty() {
        return Err("no target to check".into());
    }
    Ok(Ask::Run { timeout, targets })
}

/// A target's result: passed, or why not.
type Outcome = Result<(), String>;

/// Runs every check at once; each one's result, in order. A check still
/// going at its deadline (`--timeout`, or its URL's `timeout`) is a
/// failure: the deadline is kept here too, not only by each check (which
/// is why even a single check runs on a thread of its own). The process
/// exits right after, with any such thread still in it.
fn run(targets: &[(String, Check)], timeout: Duration) -> Vec<Outcome> {
    let timeout_of = |check: &Check| check.options.timing.timeout.unwrap_or(timeout);
    let longest = targets.iter().map(|(_, c)| timeout_of(c)).max();
    // A check that keeps the deadline itself reports right at it, with
    // more to say (which step of a grpc:// check ran out): a moment's
    // grace lets its words, not ours, be the ones printed (100 ms: on a
    // loaded machine 20 ms was not always enough for its thread to report).
    let deadline = Instant::now() + longest.unwrap_or(timeout) + Duration::from_millis(100);
    // Each check's result, filled in by its thread (a lock and a condvar
    // the server has anyway, not a channel: 10 KiB less of binary).
    let results: Arc<(Mutex<Vec<Option<Outcome>>>, Condvar)> =
        Arc::new((Mutex::new(vec![None; targets.len()]), Condvar::new()));
    for (i, (_, check)) in targets.iter().enumerate() {
        let check = check.clone();
        let timeout = timeout_of(&check);
        let shared = Arc::clone(&results);
        let report = move |result| {
            let (slots, filled) = &*shared;
            slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
            filled.notify_all();
        };
        let report_failure = report.clone();
        let started = std::thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let ran = check::run(&check, timeout);
                report(ran.outcome.error().map_or(Ok(()), Err));
            });
        if let Err(e) = started {
            report_failure(Err(format!("cannot start a thread for it: {e}")));
        }
    }
    let (slots, filled) = &*results;
    let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
    while slots.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        slots = filled
            .wait_timeout(slots, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    slots
        .iter()
        .zip(targets)
        .map(|(result, (_, check))| {
            result.clone().unwrap_or_else(|| {
                Err(format!(
                    "{} timed out after {}",
                    check.name(),
                    duration::format(timeout_of(check))
                ))
            })
        })
        .collect()
}

/// A reason on one line: it is one line of output per target.
fn one_line(text: &str) -> String {
    text.replace('\n', "\\n").replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn reads_its_arguments() {
        let Ok(Ask::Run { timeout, targets }) = parse(&args(&[
            "--timeout=250ms",
            "tcp://a:1",
            "-timeout",
            "2s",
            "file:///x",
        ])) else {
            panic!("not a run");
        };
        assert_eq!(timeout, Duration::from_secs(2));
        assert_eq!(targets.len(), 2);
        assert_eq!(parse(&args(&["tcp://a:1", "-h"])), Ok(Ask::Help));
        assert_eq!(parse(&args(&["--", "tcp://a:1"])).map(|_| ()), Ok(()));
        for (bad, says) in [
            (&[][..], "no target"),
            (&["--timeout"][..], "needs an argument"),
            (&["--timeout=0s", "tcp://a:1"][..], "greater than zero"),
            (&["--timeout=1", "tcp://a:1"][..], "--timeout"),
            (&["--bogus", "tcp://a:1"][..], "unknown flag --bogus"),
            (&["echo hi"][..], "not a check URL"),
            (&["tcp://nohost"][..], "missing :PORT"),
            (
                &["https://a/#ca="][..],
                if cfg!(feature = "tls") {
                    "write a file's path"
                } else {
                    "TLS is not in this build"
                },
            ),
            (&["tcp://a:1#period=1s"][..], "the server's"),
            (&["tcp://a:1#failure-threshold=2"][..], "the server's"),
            (&["tcp://a:1#timeout=0s"][..], "greater than zero"),
        ] {
            let e = parse(&args(bad)).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        use std::os::unix::ffi::OsStringExt;
        let not_utf8 = OsString::from_vec(b"tcp://a:1\xff".to_vec());
        assert_eq!(
            parse(&[not_utf8]),
            Err("argument \"tcp://a:1\u{fffd}\" is not valid UTF-8".into())
        );
    }
}
