//! `/metrics`: probe state and HTTP counts in the Prometheus text exposition
//! format 0.0.4, written by hand (a page of code against a crate's weight).
//!
//! It reads snapshots and counters; it changes nothing.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::results::{Policy, Probe};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every status code we answer with.
const CODES: [u16; 12] = [200, 204, 400, 404, 405, 408, 413, 414, 431, 500, 503, 505];

/// HTTP answers counted by status code, for `exechealthz_http_requests_total`.
#[derive(Default)]
pub struct RequestCounts([AtomicU64; CODES.len()]);

impl RequestCounts {
    pub fn count(&self, code: u16) {
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (code, count) for the codes answered at least once.
    pub fn snapshot(&self) -> Vec<(u16, u64)> {
        CODES
            .iter()
            .zip(&self.0)
            .map(|(code, n)| (*code, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Renders every metric. `requests` is (status code, count) for HTTP answers.
pub fn render(
    probes: &[Probe],
    policy: &Policy,
    started: SystemTime,
    requests: &[(u16, u64)],
) -> String {
    let now = Instant::now();
    let snapshots: Vec<_> = probes
        .iter()
        .map(|p| (p, p.snapshot(now, policy, 0)))
        .collect();
    let mut out = String::new();
    let mut family = |name: &str,
                      kind: &str,
                      help: &str,
                      samples: &mut dyn Iterator<Item = (String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    // Probes are named by their URL: command text may carry secrets and
    // has no bound on its length, so it is never a label.
    let labels = |probe: &Probe| format!("{{probe=\"{}\"}}", escape_label(&probe.spec.url));
    family(
        "exechealthz_probe_up",
        "gauge",
        "Whether the probe's URL currently answers 200 (1) or 503 (0).",
        &mut snapshots
            .iter()
            .map(|(p, s)| (labels(p), u8::from(s.passes).to_string())),
    );
    family(
        "exechealthz_probe_runs_total",
        "counter",
        "Completed runs of the probe's command.",
        &mut snapshots
            .iter()
            .map(|(p, s)| (labels(p), s.runs.to_string())),
    );
    family(
        "exechealthz_probe_failures_total",
        "counter",
        "Runs that failed (non-zero exit, signal, timeout or failed start).",
        &mut snapshots
            .iter()
            .map(|(p, s)| (labels(p), s.failures.to_string())),
    );
    family(
        "exechealthz_probe_timeouts_total",
        "counter",
        "Runs killed for exceeding --timeout.",
        &mut snapshots
            .iter()
            .map(|(p, s)| (labels(p), s.timeouts.to_string())),
    );
    family(
        "exechealthz_probe_last_duration_seconds",
        "gauge",
        "How long the latest completed run took.",
        &mut snapshots.iter().filter_map(|(p, s)| {
            s.latest
                .as_ref()
                .map(|run| (labels(p), crate::duration::seconds(run.duration)))
        }),
    );
    family(
        "exechealthz_probe_last_run_timestamp_seconds",
        "gauge",
        "When the latest completed run finished, in seconds since the epoch.",
        &mut snapshots.iter().filter_map(|(p, s)| {
            s.latest
                .as_ref()
                .map(|run| (labels(p), epoch_seconds(run.finished)))
        }),
    );
    family(
        "exechealthz_probe_last_exit_code",
        "gauge",
        "Exit code of the latest completed run; 128+N for signal N; -1 for a timeout or failed start.",
        &mut snapshots.iter().filter_map(|(p, s)| {
            s.latest
                .as_ref()
                .map(|run| (labels(p), run.outcome.exit_code().to_string()))
        }),
    );
    family(
        "exechealthz_process_start_time_seconds",
        "gauge",
        "When the process started, in seconds since the epoch.",
        &mut std::iter::once((String::new(), epoch_seconds(started))),
    );
    family(
        "exechealthz_http_requests_total",
        "counter",
        "HTTP requests answered, by status code.",
        &mut requests
            .iter()
            .map(|(code, count)| (format!("{{code=\"{code}\"}}"), count.to_string())),
    );
    family(
        "exechealthz_log_lines_dropped_total",
        "counter",
        "Log lines dropped because stderr was not taking them.",
        &mut std::iter::once((String::new(), crate::log::dropped().to_string())),
    );
    family(
        "exechealthz_build_info",
        "gauge",
        "The version of exechealthz serving; always 1.",
        &mut std::iter::once((
            format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
            "1".to_string(),
        )),
    );
    // What every Prometheus client library exports by default, with the
    // same names and meaning (read from /proc; left out where unreadable).
    let process = process_metrics();
    for (name, kind, help, value) in process {
        family(
            name,
            kind,
            help,
            &mut std::iter::once((String::new(), value)),
        );
    }
    out
}

type ProcessMetrics = Vec<(&'static str, &'static str, &'static str, String)>;

/// How long the `process_*` figures are reused: reading them costs a
/// listing of every open descriptor, and clients pipelining `/metrics`
/// over thousands of connections would make each answer cost that.
const PROCESS_METRICS_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// The `process_*` metrics, read at most once per `PROCESS_METRICS_AGE`.
fn process_metrics() -> ProcessMetrics {
    static LAST: std::sync::Mutex<Option<(Instant, ProcessMetrics)>> = std::sync::Mutex::new(None);
    let now = Instant::now();
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, metrics)) = &*last
        && now.saturating_duration_since(*at) < PROCESS_METRICS_AGE
    {
        return metrics.clone();
    }
    let metrics = read_process_metrics();
    *last = Some((now, metrics.clone()));
    metrics
}

/// The standard `process_*` metrics of this process, from /proc.
fn read_process_metrics() -> ProcessMetrics {
    let mut metrics = Vec::new();
    // SAFETY: plain queries with no pointers.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which may hold spaces: `state` is 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    if let (Some(utime), Some(stime), true) = (field(14), field(15), ticks > 0) {
        metrics.push((
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            decimal(utime + stime, ticks as u64),
        ));
    }
    if let (Some(start), Some(boot), true) = (field(22), boot_time(), ticks > 0) {
        metrics.push((
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            decimal(boot * ticks as u64 + start, ticks as u64),
        ));
    }
    if let Some(vsize) = field(23) {
        metrics.push((
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            vsize.to_string(),
        ));
    }
    if let Some(rss) = field(24) {
        metrics.push((
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            (rss * page.max(0) as u64).to_string(),
        ));
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metrics.push((
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            // One of them is this listing's own.
            fds.count().saturating_sub(1).to_string(),
        ));
    }
    // SAFETY: plain syscall with a valid out-pointer.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        metrics.push((
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            limit.rlim_cur.to_string(),
        ));
    }
    metrics
}

/// Boot time in seconds since the epoch (`btime` in /proc/stat).
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `value / unit` as an exact decimal (no float formatting code).
fn decimal(value: u64, unit: u64) -> String {
    let digits = unit.to_string().len() - 1;
    format!(
        "{}.{:0digits$}",
        value / unit,
        (value % unit) * 10u64.pow(digits as u32) / unit
    )
}

fn epoch_seconds(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}", since.as_secs(), since.subsec_millis())
}

/// A label value as the format requires: `\`, `"` and line feeds escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_escaping() {
        assert_eq!(super::escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
