//! /metrics (checked with prometheus_client's parser), /status (text and
//! JSON) and --log-format json.

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs a helper script from tests/tools with `input` on stdin; None when it
/// says (exit 3) that its Python module is missing and CI did not ask for it.
fn python(script: &str, input: &str) -> Option<String> {
    let path = format!("{}/tests/tools/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    if output.status.code() == Some(3) {
        assert!(
            std::env::var_os("EXECHEALTHZ_REQUIRE_TOOLS").is_none(),
            "{script}: Python module missing (pip install prometheus-client)"
        );
        eprintln!("SKIPPED: {script} needs prometheus-client (pip install prometheus-client)");
        return None;
    }
    assert!(
        output.status.success(),
        "{script} failed: {}\ninput:\n{input}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).unwrap())
}

/// (name, labels as JSON, value) samples of a /metrics page.
fn samples(text: &str) -> Option<Vec<(String, String, f64)>> {
    let parsed = python("prom.py", text)?;
    Some(
        parsed
            .lines()
            .filter(|line| !line.starts_with("#\t"))
            .map(|line| {
                let mut parts = line.split('\t');
                let name = parts.next().unwrap().to_string();
                let labels = parts.next().unwrap().to_string();
                let value = parts.next().unwrap().parse().unwrap();
                (name, labels, value)
            })
            .collect(),
    )
}

fn value(samples: &[(String, String, f64)], name: &str, label_part: &str) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l.contains(label_part))
        .unwrap_or_else(|| panic!("no {name} with {label_part} in {samples:#?}"))
        .2
}

/// (name, type, help) of each family of a /metrics page, as parsed.
fn families(text: &str) -> Option<Vec<(String, String, String)>> {
    let parsed = python("prom.py", text)?;
    Some(
        parsed
            .lines()
            .filter_map(|line| line.strip_prefix("#\t"))
            .map(|line| {
                let mut parts = line.splitn(3, '\t');
                let mut next = || parts.next().unwrap_or("").to_string();
                (next(), next(), next())
            })
            .collect(),
    )
}

const QUOTES_CMD: &str = r#"echo "a\"b" 'c\d' >/dev/null"#;

fn three_probes() -> Server {
    let server = Server::start(&[
        "--cmd=true",
        "--url=/ok",
        "--cmd=echo broken; exit 3",
        "--url=/bad",
        &format!("--cmd={QUOTES_CMD}"),
        "--url=/quotes",
        "--period=10ms",
    ]);
    server.wait_status("/ok", 200);
    server.wait_status("/quotes", 200);
    server.wait_for("/bad", |r| r.text().contains("exit status 3"));
    server
}

#[test]
fn metrics_parse_and_match_probe_states() {
    let server = three_probes();
    let response = server.get("/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let Some(s) = samples(&response.text()) else {
        return;
    };
    let ok = "\"probe\":\"/ok\"";
    let bad = "\"probe\":\"/bad\"";
    assert_eq!(value(&s, "exechealthz_probe_up", ok), 1.0);
    assert_eq!(value(&s, "exechealthz_probe_up", bad), 0.0);
    assert_eq!(value(&s, "exechealthz_probe_last_exit_code", bad), 3.0);
    assert_eq!(value(&s, "exechealthz_probe_last_exit_code", ok), 0.0);
    assert!(value(&s, "exechealthz_probe_runs_total", ok) >= 1.0);
    assert_eq!(value(&s, "exechealthz_probe_failures_total", ok), 0.0);
    let bad_runs = value(&s, "exechealthz_probe_runs_total", bad);
    let bad_failures = value(&s, "exechealthz_probe_failures_total", bad);
    assert!(
        bad_runs >= 1.0 && bad_failures >= 1.0,
        "{bad_runs} {bad_failures}"
    );
    assert_eq!(value(&s, "exechealthz_probe_timeouts_total", bad), 0.0);
    let duration = value(&s, "exechealthz_probe_last_duration_seconds", ok);
    assert!(duration > 0.0 && duration < 10.0, "{duration}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last_run = value(&s, "exechealthz_probe_last_run_timestamp_seconds", ok);
    assert!((now - last_run).abs() < 60.0, "{last_run} vs {now}");
    // One process start time: the standard one.
    assert!(
        !s.iter()
            .any(|(n, _, _)| n == "exechealthz_process_start_time_seconds")
    );
    // A histogram of run durations per probe, as Prometheus wants one:
    // cumulative buckets from 1 ms to 30 s and +Inf, whose last is the
    // count, which is the probe's runs.
    let buckets: Vec<(String, f64)> = s
        .iter()
        .filter(|(n, l, _)| n == "exechealthz_probe_duration_seconds_bucket" && l.contains(ok))
        .map(|(_, l, v)| (l.clone(), *v))
        .collect();
    assert_eq!(buckets.len(), 15, "{buckets:?}");
    assert!(buckets[0].0.contains("\"le\":\"0.001\""), "{buckets:?}");
    assert!(buckets[13].0.contains("\"le\":\"30\""), "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    let count = value(&s, "exechealthz_probe_duration_seconds_count", ok);
    assert_eq!(buckets[14].1, count);
    let runs = value(&s, "exechealthz_probe_runs_total", ok);
    assert!(
        count >= 1.0 && (count - runs).abs() <= 1.0,
        "{count} vs {runs}"
    );
    let sum = value(&s, "exechealthz_probe_duration_seconds_sum", ok);
    assert!(sum > 0.0 && sum < count * 10.0, "{sum}");
    assert_eq!(
        value(&s, "exechealthz_probe_up", "\"probe\":\"/quotes\""),
        1.0
    );
    // Our own requests so far: several 200s and 503s while waiting.
    assert!(value(&s, "exechealthz_http_requests_total", "\"code\":\"200\"") >= 3.0);
    assert!(value(&s, "exechealthz_http_requests_total", "\"code\":\"503\"") >= 1.0);
}

#[test]
fn metrics_count_timeouts() {
    let server = Server::start(&["--cmd=sleep 10", "--timeout=100ms", "--period=10ms"]);
    server.wait_for("/healthz", |r| r.text().contains("timed out"));
    let Some(s) = samples(&server.get("/metrics").text()) else {
        return;
    };
    assert!(value(&s, "exechealthz_probe_timeouts_total", "/healthz") >= 1.0);
    assert_eq!(
        value(&s, "exechealthz_probe_last_exit_code", "/healthz"),
        -1.0
    );
}

#[test]
fn status_lists_every_probe_in_apiserver_style() {
    let server = three_probes();
    let all = server.get("/status");
    assert_eq!(all.status, 503);
    assert_eq!(
        all.text(),
        "[+]/ok ok\n[-]/bad failed: exit status 3\n[+]/quotes ok\nhealthz check failed\n"
    );
    let head = server.request("HEAD", "/status");
    assert_eq!(head.status, 503);
    assert!(head.body.is_empty());
    for query in ["exclude=/bad", "exclude=%2Fbad"] {
        let some = server.get(&format!("/status?{query}"));
        assert_eq!(some.status, 200, "{query}");
        assert_eq!(
            some.text(),
            "[+]/ok ok\n[+]/quotes ok\nhealthz check passed\n",
            "{query}"
        );
    }
    let two = server.get("/status?exclude=/bad&exclude=/ok");
    assert_eq!(two.text(), "[+]/quotes ok\nhealthz check passed\n");
    let unknown = server.get("/status?exclude=/bad&exclude=/nope");
    assert_eq!(unknown.status, 200);
    assert!(
        unknown
            .text()
            .contains("warn: some probes cannot be excluded: no matches for \"/nope\"")
    );
}

#[test]
fn status_before_any_result_is_pending() {
    let server = Server::start(&["--cmd=sleep 30"]);
    let status = server.get("/status");
    assert_eq!(status.status, 503);
    assert_eq!(
        status.text(),
        "[-]/healthz failed: no verdict yet\nhealthz check failed\n"
    );
}

#[test]
fn status_as_json() {
    let server = three_probes();
    let response = server.get("/status?format=json");
    assert_eq!(response.status, 503);
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let parsed = python("status_json.py", &response.text()).expect("stdlib json");
    let mut lines = parsed.lines();
    assert_eq!(lines.next(), Some("failed"));
    let probes: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert_eq!(probes.len(), 3);
    assert_eq!(&probes[0][..4], ["/ok", "passing", "true", "0"]);
    assert_eq!(&probes[1][..4], ["/bad", "failing", "false", "3"]);
    assert!(probes[1][4].parse::<u64>().unwrap() >= 1);
    let fields = probes[0][5];
    for field in [
        "consecutive_failures",
        "consecutive_successes",
        "failures",
        "last_duration_seconds",
        "last_error",
        "last_exit_code",
        "last_output",
        "last_output_truncated",
        "last_run_time",
        "last_run_timestamp_seconds",
        "passes",
        "reason",
        "runs",
        "state",
        "timeouts",
        "url",
    ] {
        assert!(
            fields.split(',').any(|f| f == field),
            "no {field} in {fields}"
        );
    }
    assert!(!fields.split(',').any(|f| f == "cmd"), "{fields}");
    assert!(
        response.text().contains("\"last_output\":\"broken\\n\""),
        "{}",
        response.text()
    );
    let passing = server.get("/status?format=json&exclude=/bad");
    assert_eq!(passing.status, 200);
    assert!(passing.text().starts_with("{\"status\":\"ok\""));
}

#[test]
fn index_lists_status_and_metrics() {
    let server = Server::start(&[]);
    let page = server.get("/").text();
    assert!(
        page.contains("href=\"/status\"") && page.contains("href=\"/metrics\""),
        "{page}"
    );
}

/// Checks a stderr line is a JSON object with time, level and msg, using
/// Python's json module; returns the parsed keys.
fn json_line_keys(line: &str) -> Vec<String> {
    let script = "import json,sys\nfor l in sys.stdin:\n    d=json.loads(l)\n    assert isinstance(d['time'],str) and d['level'] in ('info','error') and isinstance(d['msg'],str)\n    print(','.join(sorted(d)))\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{line}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "not a JSON log line: {line}");
    String::from_utf8(output.stdout)
        .unwrap()
        .trim()
        .split(',')
        .map(String::from)
        .collect()
}

#[test]
fn json_logs_are_one_object_per_line() {
    let server = Server::start(&[
        "--log-format=json",
        "--cmd=echo 'multi\nline'; exit 4",
        "--period=10ms",
        "--latency=100ms",
        "--timeout=1s",
    ]);
    server.wait_log(|l| l.contains("\"exit_code\":4"));
    server.wait_log(|l| l.contains("is now failing"));
    let logs = server.logs();
    assert!(logs.len() >= 3, "{logs:#?}");
    for line in &logs {
        json_line_keys(line);
    }
    let failure = logs.iter().find(|l| l.contains("\"exit_code\":4")).unwrap();
    let keys = json_line_keys(failure);
    for key in [
        "url",
        "cmd",
        "error",
        "exit_code",
        "duration_seconds",
        "output",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing in {failure}");
    }
    let listening = logs.iter().find(|l| l.contains("listening on")).unwrap();
    assert!(json_line_keys(listening).iter().any(|k| k == "address"));
}

#[test]
fn json_logs_cover_flag_errors() {
    let output = run_to_end(&["--log-format=json", "--period=10"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    json_line_keys(stderr.trim());
    assert!(stderr.contains("--period"));
}

#[test]
fn reports_copy_no_kept_output() {
    // 100 probes keeping 1 MiB each: 100 MiB of results. Scrapes must not
    // copy them (each used to: RSS 112 MB -> 368-445 MB over 50 scrapes).
    let mut args = vec!["--period=1h".to_string(), "--max-output=1MiB".to_string()];
    for i in 0..100 {
        args.push("--cmd=head -c 1048576 /dev/zero".into());
        args.push(format!("--url=/p{i}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    // Probe URLs answer `ok` without their output: wait on them, so no
    // report has run before the first measure.
    for i in 0..100 {
        server.wait_status(&format!("/p{i}"), 200);
    }
    let before = proc_status(server.pid(), "VmHWM");
    for _ in 0..25 {
        assert_eq!(server.get("/metrics").status, 200);
        assert_eq!(server.get("/status").status, 200);
        assert_eq!(server.get("/status?format=json").status, 200);
    }
    let after = proc_status(server.pid(), "VmHWM");
    assert!(
        after < before + 10 * 1024,
        "peak RSS grew from {before} kB to {after} kB over 75 reports"
    );
}

#[test]
fn standard_process_metrics_and_build_info() {
    let server = Server::start(&["--period=10ms"]);
    server.wait_status("/healthz", 200);
    let text = server.get("/metrics").text();
    let (Some(s), Some(families)) = (samples(&text), families(&text)) else {
        return;
    };
    let version = format!("\"version\":\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(value(&s, "exechealthz_build_info", &version), 1.0);
    // The commit built from: this checkout's, where git can tell.
    let head = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let revision = format!("\"revision\":\"{head}\"");
    assert_eq!(value(&s, "exechealthz_build_info", &revision), 1.0);
    let rss = value(&s, "process_resident_memory_bytes", "{}");
    let pid_rss = proc_status(server.pid(), "VmRSS") as f64 * 1024.0;
    assert!(
        rss > 0.0 && (rss - pid_rss).abs() < pid_rss,
        "{rss} vs {pid_rss}"
    );
    assert!(value(&s, "process_virtual_memory_bytes", "{}") >= rss);
    let fds = value(&s, "process_open_fds", "{}");
    assert!((3.0..100.0).contains(&fds), "{fds}");
    assert!(value(&s, "process_max_fds", "{}") >= fds);
    assert!(value(&s, "process_cpu_seconds_total", "{}") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Exact to a clock tick, not to a second: between the moments just
    // before and just after the test spawned it (give or take 30 ms: a
    // tick, and /proc/uptime's hundredths).
    let start = value(&s, "process_start_time_seconds", "{}");
    let epoch = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let (before, after) = (epoch(server.spawned.0), epoch(server.spawned.1));
    assert!(
        before - 0.03 <= start && start <= after + 0.03 && start <= now,
        "{start} vs spawned between {before} and {after}"
    );
    for (name, kind) in [
        ("exechealthz_build_info", "gauge"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        let family = families.iter().find(|(n, _, _)| n == name);
        let Some((_, parsed_kind, help)) = family else {
            panic!("no family {name} in {families:#?}");
        };
        assert_eq!(parsed_kind, kind, "{name}");
        assert!(!help.is_empty(), "{name} has no HELP");
    }
}

#[test]
fn command_text_is_never_served() {
    let secret = "SECRET-TOKEN-3141";
    let server = Server::start(&[
        &format!("--cmd=true # {secret}"),
        "--url=/ok",
        &format!("--cmd=exit 3 # {secret}"),
        "--url=/bad",
        "--period=10ms",
    ]);
    server.wait_status("/ok", 200);
    server.wait_for("/bad", |r| r.text().contains("exit status 3"));
    for path in [
        "/",
        "/ok",
        "/bad",
        "/ok?verbose",
        "/bad?verbose=1",
        "/status",
        "/status?format=json",
        "/metrics",
        "/nope",
    ] {
        let response = server.get(path);
        assert!(
            !response.text().contains(secret),
            "{path}: {}",
            response.text()
        );
        assert!(
            response.headers.iter().all(|(_, v)| !v.contains(secret)),
            "{path}: {response:?}"
        );
    }
    // It may be logged.
    server.wait_log(|l| l.contains(secret));
}
