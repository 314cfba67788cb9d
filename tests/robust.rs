//! Probes that survive real commands: timeouts, process groups, bounded
//! output, failures as results, thresholds, signals, no leaks.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn gone(token: &str) {
    eventually(&format!("processes with {token} to be gone"), || {
        processes_with(token).is_empty().then_some(())
    });
}

#[test]
fn hung_command_and_its_background_children_are_killed_on_timeout() {
    let dir = TempDir::new("timeout");
    let once = dir.file("once");
    let token = unique_sleep();
    // The first run hangs with a background child as well; later runs pass.
    let cmd = format!("if [ ! -e {once} ]; then touch {once}; sleep {token} & sleep {token}; fi");
    // A 2s period leaves the failed result on show for a while.
    let server = Server::start(&["--cmd", &cmd, "--timeout=300ms", "--period=2s"]);
    let failed = server.wait_for("/healthz", |r| r.text().contains("timed out"));
    assert_eq!(failed.status, 503);
    assert!(
        failed
            .text()
            .contains("error timed out after 300ms (process group killed)"),
        "{}",
        failed.text()
    );
    gone(&token);
    // Retried next period, and the probe recovers.
    server.wait_status("/healthz", 200);
}

#[test]
fn what_a_command_leaves_in_its_group_is_killed_when_it_exits() {
    let token = unique_sleep();
    let cmd = format!("sleep {token} & echo started");
    let server = Server::start(&["--cmd", &cmd, "--period=1h", "--output"]);
    let response = server.wait_status("/healthz", 200);
    // The background sleep held the output pipe too: the run still ended.
    assert_eq!(response.text(), "started\n");
    gone(&token);
}

#[test]
fn huge_output_is_bounded_and_memory_stays_flat() {
    // 300 MB of output: the Go original grew to 1.16 GB on this.
    let cmd = "yes | head -c 300000000; exit 1";
    let server = Server::start(&["--cmd", cmd, "--period=1h", "--timeout=1m"]);
    let failed = server.wait_for("/healthz", |r| r.text().contains("Result of last exec"));
    let body = failed.text();
    assert!(body.contains("error exit status 1"), "{body}");
    let kept = 32 * 1024;
    assert!(
        body.contains(&format!(
            "[... {} more bytes of output discarded]",
            300_000_000 - kept
        )),
        "{}",
        &body[body.len().saturating_sub(300)..]
    );
    assert!(
        body.len() < kept + 1024,
        "answer holds only the kept output"
    );
    let peak_kb = proc_status(server.pid(), "VmHWM");
    assert!(
        peak_kb < 20 * 1024,
        "peak RSS {peak_kb} kB: output was not bounded"
    );
}

#[test]
fn max_output_flag_sets_the_bound() {
    let server = Server::start(&[
        "--cmd=echo 0123456789; exit 1",
        "--max-output=4",
        "--period=1h",
    ]);
    let failed = server.wait_for("/healthz", |r| r.text().contains("Result of last exec"));
    assert!(
        failed
            .text()
            .contains("Result of last exec: 0123[... 7 more bytes of output discarded], at"),
        "{}",
        failed.text()
    );
}

#[test]
fn missing_binary_is_a_failed_result() {
    let server = Server::start(&["--cmd=no-such-command-here", "--period=20ms"]);
    let failed = server.wait_for("/healthz", |r| r.text().contains("Result of last exec"));
    assert!(failed.text().contains("not found"), "{}", failed.text());
    assert!(
        failed.text().ends_with("error exit status 127\n"),
        "{}",
        failed.text()
    );
    server.wait_log(|l| l.contains("error exit status 127"));
}

#[test]
fn command_killed_by_a_signal_is_reported_in_gos_words() {
    let server = Server::start(&["--cmd=kill -9 $$", "--period=20ms"]);
    let failed = server.wait_for("/healthz", |r| r.text().contains("Result of last exec"));
    assert!(
        failed.text().ends_with("error signal: killed\n"),
        "{}",
        failed.text()
    );
}

fn can_unshare(args: &[&str]) -> bool {
    let ok = Command::new("unshare")
        .args(args)
        .arg("true")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: this machine cannot run `unshare {}` (needs root)",
            args.join(" ")
        );
    }
    ok
}

#[test]
fn spawn_failure_is_a_result_and_retried() {
    // /bin/sh missing, as in a bare scratch image: hide /usr/bin (Debian's
    // /bin points there) in a private mount namespace.
    if !can_unshare(&["--mount"]) {
        return;
    }
    let mut command = Command::new("unshare");
    command.args(["--mount", "/bin/sh", "-c"]).arg(format!(
        "mount -t tmpfs none /usr/bin && exec {BIN} --period=20ms --port=0"
    ));
    let server = Server::start_command(command);
    let failed = server.wait_for("/healthz", |r| r.text().contains("failed to start"));
    assert_eq!(failed.status, 503);
    assert!(
        failed
            .text()
            .contains("error failed to start: /bin/sh: No such file or directory"),
        "{}",
        failed.text()
    );
    // Retried every period: more than one failure is logged.
    eventually("a second failed start", || {
        (server
            .logs()
            .iter()
            .filter(|l| l.contains("failed to start"))
            .count()
            >= 2)
            .then_some(())
    });
}

/// A command that exits with the next code from `codes`, one per run, then 0.
fn scripted(dir: &TempDir, codes: &[i32]) -> String {
    let (seq, count) = (dir.file("seq"), dir.file("count"));
    let lines: String = codes.iter().map(|c| format!("{c}\n")).collect();
    std::fs::write(&seq, lines).unwrap();
    std::fs::write(&count, "0").unwrap();
    format!(
        "n=$(( $(cat {count}) + 1 )); echo $n > {count}; c=$(sed -n ${{n}}p {seq}); exit ${{c:-0}}"
    )
}

#[test]
fn thresholds_count_consecutive_results() {
    let dir = TempDir::new("thresholds");
    // pass, fail fail, pass, fail fail fail (now failing), pass, fail, pass pass (now passing)
    let cmd = scripted(&dir, &[0, 1, 1, 0, 1, 1, 1, 0, 1, 0, 0]);
    let server = Server::start(&[
        "--cmd",
        &cmd,
        "--period=10ms",
        "--failure-threshold=3",
        "--success-threshold=2",
    ]);
    // Runs 10 and 11 pass: wait for the first "now passing".
    eventually("the probe to pass", || {
        let logs = server.logs();
        logs.iter()
            .any(|l| l.contains("is now passing"))
            .then_some(())
    });
    let logs = server.logs();
    let events: Vec<&str> = logs
        .iter()
        .filter_map(|l| {
            if l.contains("error exit status 1") {
                Some("fail")
            } else if l.contains("is now failing") {
                Some("FAILING")
            } else if l.contains("is now passing") {
                Some("PASSING")
            } else {
                None
            }
        })
        .collect();
    // Run 1 passes alone (1 of 2 needed); runs 2-3 fail (2 of 3 needed);
    // runs 5-7 make 3 in a row; run 9 fails alone; runs 10-11 make 2 in a row.
    assert_eq!(
        events,
        [
            "fail", "fail", "fail", "fail", "fail", "FAILING", "fail", "PASSING"
        ],
        "{logs:#?}"
    );
}

#[test]
fn sigterm_during_a_run_kills_the_group_and_exits_zero() {
    for signal in [SIGTERM, SIGINT] {
        let token = unique_sleep();
        let cmd = format!("sleep {token} & sleep {token}");
        let mut server = Server::start(&["--cmd", &cmd]);
        eventually("the probe command to run", || {
            (processes_with(&token).len() >= 2).then_some(())
        });
        server.signal(signal);
        let status = server.wait_exit();
        assert_eq!(status.code(), Some(0), "signal {signal}");
        gone(&token);
    }
}

/// The binary as PID 1 of a new PID namespace: `server.child` is `unshare`,
/// `inner` the binary's pid as seen from here.
struct Pid1 {
    server: Server,
    inner: u32,
}

impl Drop for Pid1 {
    fn drop(&mut self) {
        // Killing unshare would orphan the namespace; killing its PID 1
        // ends everything in it.
        let _ = Command::new("kill")
            .args(["-KILL", &self.inner.to_string()])
            .status();
    }
}

fn start_as_pid1(args: &[&str]) -> Option<Pid1> {
    if !can_unshare(&["--pid", "--fork", "--mount-proc"]) {
        return None;
    }
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child", BIN])
        .args(args)
        .arg("--port=0");
    let server = Server::start_command(command);
    let inner = eventually("the namespaced process", || {
        children_of(server.pid()).first().map(|(pid, _)| *pid)
    });
    Some(Pid1 { server, inner })
}

#[test]
fn as_pid1_orphans_are_reaped_and_exit_statuses_kept() {
    let dir = TempDir::new("pid1");
    let runs = dir.file("runs");
    // The first 30 runs each leave an orphan that escapes the group kill
    // (setsid) and exits soon after: re-parented to PID 1, it must be reaped.
    let cmd = format!(
        "n=$(cat {runs} 2>/dev/null | wc -l); \
         if [ $n -lt 30 ]; then setsid sleep 0.01 & fi; echo x >> {runs}; exit 3"
    );
    let Some(Pid1 { ref server, inner }) = start_as_pid1(&["--cmd", &cmd, "--period=10ms"]) else {
        return;
    };
    eventually("40 runs", || {
        let n = std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count();
        (n >= 40).then_some(())
    });
    eventually("no zombie children", || {
        let zombies = children_of(inner)
            .into_iter()
            .filter(|(_, s)| *s == 'Z')
            .count();
        (zombies == 0).then_some(())
    });
    // The reaper never stole a probe's own status.
    let failure_lines: Vec<String> = server
        .logs()
        .into_iter()
        .filter(|l| l.contains("Healthz probe on"))
        .collect();
    assert!(failure_lines.len() >= 30);
    for line in failure_lines {
        assert!(line.contains("error exit status 3"), "{line}");
    }
    // Reaping needs no thread of its own: as many threads as not PID 1.
    let threads = std::fs::read_dir(format!("/proc/{inner}/task"))
        .unwrap()
        .count();
    assert!(threads <= 7, "{threads} threads as PID 1 with one probe");
}

#[test]
fn as_pid1_sigterm_during_a_run_exits_zero() {
    let token = unique_sleep();
    let cmd = format!("sleep {token}");
    let Some(mut pid1) = start_as_pid1(&["--cmd", &cmd]) else {
        return;
    };
    let inner = pid1.inner;
    eventually("the probe command to run", || {
        (!processes_with(&token).is_empty()).then_some(())
    });
    let rc = Command::new("kill")
        .args(["-TERM", &inner.to_string()])
        .status()
        .unwrap();
    assert!(rc.success());
    assert_eq!(pid1.server.wait_exit().code(), Some(0));
    gone(&token);
}

/// Open fds, threads and RSS (kB) of `pid`.
fn footprint(pid: u32) -> (usize, u64, u64) {
    (
        open_fds(pid),
        proc_status(pid, "Threads"),
        proc_status(pid, "VmRSS"),
    )
}

#[test]
fn no_leaks_over_thousands_of_runs() {
    let dir = TempDir::new("leaks");
    let (runs, gate1, gate2) = (dir.file("runs"), dir.file("gate1"), dir.file("gate2"));
    std::fs::write(&runs, "").unwrap();
    // Runs 301 and 2301 wait at a gate, so both measurements are taken in
    // the same state: one run under way.
    let cmd = format!(
        "n=$(wc -l < {runs}); echo x >> {runs}; \
         if [ $n -eq 300 ]; then while [ ! -e {gate1} ]; do sleep 0.01; done; \
         elif [ $n -eq 2300 ]; then while [ ! -e {gate2} ]; do sleep 0.01; done; fi"
    );
    let server = Server::start(&["--cmd", &cmd, "--period=1ms", "--quiet"]);
    let count = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    eventually("300 runs", || (count() > 300).then_some(()));
    let before = footprint(server.pid());
    std::fs::write(&gate1, "").unwrap();
    eventually_within(Duration::from_secs(120), "2000 more runs", || {
        (count() > 2300).then_some(())
    });
    let after = footprint(server.pid());
    std::fs::write(&gate2, "").unwrap();
    assert_eq!(before.0, after.0, "open descriptors changed");
    // tiny_http's pool may retire idle threads meanwhile; it must not grow.
    assert!(
        after.1 <= before.1,
        "threads grew from {} to {}",
        before.1,
        after.1
    );
    assert!(
        after.2 <= before.2 + 512,
        "RSS grew from {} kB to {} kB",
        before.2,
        after.2
    );
}

/// A probe's counter in `/metrics`.
fn probe_counter(server: &Server, name: &str) -> u64 {
    let text = server.get("/metrics").text();
    let prefix = format!("{name}{{probe=\"/healthz\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

#[test]
fn a_freeze_does_not_turn_a_finished_command_into_a_timeout() {
    // Runs freeze the whole server (as a paused cgroup or a
    // VM stall would), then sleep 50 ms and exit; the test thaws the
    // server only after the 1 s timeout has passed (a long one: on a
    // loaded machine, a shell took 300 ms to reach its `kill`). The command
    // finished long before: it is found finished, not killed as timed out.
    let dir = TempDir::new("freeze");
    let (go, thawed) = (dir.file("go"), dir.file("thawed"));
    // Freezing starts once the server has said where it listens.
    let cmd = format!("if [ -e {go} ] && [ ! -e {thawed} ]; then kill -STOP $PPID; fi; sleep 0.05");
    let server = Server::start(&["--cmd", &cmd, "--timeout=1s", "--period=10ms"]);
    std::fs::write(&go, "").unwrap();
    let stopped = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap();
        stat.rsplit_once(") ").unwrap().1.starts_with('T')
    };
    for i in 0..12 {
        eventually("the server frozen by its command", || {
            stopped().then_some(())
        });
        // The freeze itself: not a wait for a condition.
        std::thread::sleep(Duration::from_millis(1300));
        if i == 11 {
            std::fs::write(&thawed, "").unwrap();
        }
        server.signal(libc::SIGCONT);
    }
    eventually("the runs after the freezes", || {
        (probe_counter(&server, "exechealthz_probe_runs_total") >= 14).then_some(())
    });
    assert_eq!(
        probe_counter(&server, "exechealthz_probe_timeouts_total"),
        0,
        "{:#?}",
        server
            .logs()
            .iter()
            .filter(|l| l.contains("timed out"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        probe_counter(&server, "exechealthz_probe_failures_total"),
        0
    );
}

#[test]
fn the_readmes_daemon_recipe_leaves_a_daemon() {
    // The recipe in docs/probes.md, as written there, with `sleep` as the daemon
    // and `true` as the check: detached in the foreground, the daemon has
    // left the group before the command exits and the group is killed.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/probes.md")).unwrap();
    let recipe = readme
        .lines()
        .find_map(|l| l.trim().strip_prefix("--cmd '")?.strip_suffix('\''))
        .filter(|cmd| cmd.contains("my-daemon"))
        .expect("the daemon recipe in docs/probes.md: --cmd '...my-daemon...'");
    let token = unique_sleep();
    let cmd = recipe
        .replace("check-my-daemon", "true")
        .replace("my-daemon", &format!("sleep {token}"));
    let server = Server::start(&["--cmd", &cmd, "--period=1h"]);
    server.wait_status("/healthz", 200);
    // The run is over and its group killed: the daemon lives on.
    assert!(
        !processes_with(&token).is_empty(),
        "no daemon left by {cmd}"
    );
    for pid in processes_with(&token) {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
    gone(&token);
}

/// A root without /dev/null (a bare scratch image whose runtime gave no
/// /dev: a tmpfs over /dev here) and standard descriptors closed: Rust's
/// runtime alone would abort before main (SIGABRT, 134). `check` answers
/// with its exit status, and the server serves, with its closed stdout
/// (and stdin) held on `/`, so no socket or pipe takes their numbers.
#[test]
fn closed_standard_descriptors_without_dev_null_do_not_abort() {
    if !can_unshare(&["--mount"]) {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let without_dev = |tail: &str| {
        let mut command = Command::new("unshare");
        command.args(["--mount", "/bin/sh", "-c"]).arg(format!(
            "mount -t tmpfs none /dev && test ! -e /dev/null && exec {BIN} {tail}"
        ));
        command
    };
    for (target, code) in [
        (format!("tcp://127.0.0.1:{open}"), 0),
        ("tcp://127.0.0.1:1".to_string(), 1),
    ] {
        for closing in ["<&- >&- 2>&-", ">&-", "2>&-"] {
            let status = without_dev(&format!("check {target} {closing}"))
                .status()
                .unwrap();
            assert_eq!(status.code(), Some(code), "check {target} {closing}");
        }
    }
    let server = Server::start_command(without_dev(&format!(
        "--cmd=tcp://127.0.0.1:{open} --period=20ms --port=0 <&- >&-"
    )));
    server.wait_status("/healthz", 200);
    let stdout = std::fs::read_link(format!("/proc/{}/fd/1", server.pid())).unwrap();
    assert_eq!(stdout, std::path::Path::new("/"));
}
