//! Hundreds of probes at once: every one runs, none goes stale, and
//! their commands are reaped as they exit. A test binary of its own, so
//! that no other test shares the machine with its 300 probe threads.

mod common;

use common::*;
use std::time::Duration;

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
        let mut most_zombies = 0;
        for _ in 0..20 {
            let zombies = children_of(server.pid())
                .iter()
                .filter(|(_, state)| *state == 'Z')
                .count();
            most_zombies = most_zombies.max(zombies);
            let status = server.get("/status").text();
            assert!(!status.contains("too old"), "{period}: {status}");
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{period}: at most {most_zombies} zombies at a sample");
        assert!(
            most_zombies <= 10,
            "{period}: {most_zombies} zombies at once"
        );
        let later = runs_by_probe(&server);
        for ((url, before), (_, after)) in first.iter().zip(&later) {
            assert!(after > before, "{period}: {url} stopped running");
        }
    }
}
