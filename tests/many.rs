//! Hundreds of probes at once: every one runs, none goes stale, and
//! their commands are reaped as they exit. A test binary of its own, so
//! that no other test shares the machine with its 300 probe threads.

mod common;

use common::*;
use std::time::Duration;

/// The tests here run one at a time: each has hundreds of threads.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs so far of each probe, from `/metrics`, by URL.
fn runs_by_probe(server: &Server) -> Vec<(String, f64)> {
    server
        .get("/metrics")
        .text()
        .lines()
        .filter(|l| l.starts_with("exechealthz_probe_runs_total{"))
        .map(|l| {
            let url = l
                .split("probe=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (
                url.to_string(),
                l.rsplit(' ').next().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn hundreds_of_probes_all_run_and_are_reaped() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    for period in ["10ms", "100ms"] {
        let mut args = vec![format!("--period={period}"), "--latency=5s".to_string()];
        for i in 0..300 {
            args.push("--cmd=true".into());
            args.push(format!("--url=/p{i}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start(&args);
        // Every probe runs soon after start (measured: within 0.9 s at
        // 10 ms, 0.4 s at 100 ms, on an idle 2-core machine)...
        let first = eventually_within(Duration::from_secs(5), "every probe to run", || {
            let runs = runs_by_probe(&server);
            (runs.len() == 300 && runs.iter().all(|(_, n)| *n >= 1.0)).then_some(runs)
        });
        // ...and keeps running: never too old, zombies reaped at once.
        // A zombie waits if it is still there 20 ms later: on this shared
        // VM a stall of the whole machine (steal time) can leave a dozen
        // commands exited for a moment, old code and new alike; what was
        // broken was hundreds that nobody reaped.
        let zombies = || -> Vec<u32> {
            children_of(server.pid())
                .into_iter()
                .filter(|(_, state)| *state == 'Z')
                .map(|(pid, _)| pid)
                .collect()
        };
        let (mut most_waiting, mut most_seen) = (0, 0);
        for _ in 0..20 {
            let first = zombies();
            std::thread::sleep(Duration::from_millis(20));
            let waiting = zombies().iter().filter(|z| first.contains(z)).count();
            most_waiting = most_waiting.max(waiting);
            most_seen = most_seen.max(first.len());
            let status = server.get("/status").text();
            assert!(!status.contains("too old"), "{period}: {status}");
            std::thread::sleep(Duration::from_millis(80));
        }
        eprintln!(
            "{period}: at most {most_waiting} zombies waiting 20 ms, {most_seen} at a sample"
        );
        assert!(
            most_waiting <= 10,
            "{period}: {most_waiting} zombies waited 20 ms"
        );
        let later = runs_by_probe(&server);
        for ((url, before), (_, after)) in first.iter().zip(&later) {
            assert!(after > before, "{period}: {url} stopped running");
        }
    }
}

#[test]
fn an_exit_under_churn_kills_every_command() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    // 100 probes spawning `true` every 10 ms keep spawns under way at any
    // moment; 50 more each have a `sleep` running. SIGTERM: exit status 0,
    // and no command left behind, whether it was running, or being spawned
    // (killed by the exit itself, or by its spawn once it sees the exit).
    let token = unique_sleep();
    let mut args = vec!["--period=10ms".to_string(), "--quiet".to_string()];
    for i in 0..150 {
        let cmd = if i % 3 == 0 {
            format!("sleep {token}")
        } else {
            "true".into()
        };
        args.push(format!("--cmd={cmd}"));
        args.push(format!("--url=/p{i}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start(&args);
    eventually("every sleep running", || {
        (processes_with(&token).len() >= 50).then_some(())
    });
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(0));
    eventually("no command left", || {
        processes_with(&token).is_empty().then_some(())
    });
}
