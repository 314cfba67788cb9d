//! `/metrics`: probe state and HTTP counts in the Prometheus text exposition
//! format 0.0.4, written by hand (a page of code against a crate's weight).
//!
//! It reads snapshots and counters; it changes nothing.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::results::{DURATION_BUCKETS, Policy, Probe, Snapshot};

/// The commit this binary was built from (`build.rs`), or `unknown`.
const REVISION: &str = env!("EXECHEALTHZ_REVISION");

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
pub fn render(probes: &[Probe], policy: &Policy, requests: &[(u16, u64)]) -> String {
    let now = Instant::now();
    let snapshots: Vec<_> = probes
        .iter()
        .map(|p| (p, p.snapshot(now, policy, 0)))
        .collect();
    // One buffer, written sample by sample (see `status::render_json`).
    let mut out = String::with_capacity(2048 + 1024 * probes.len());
    // Probes are named by their URL: command text may carry secrets and
    // has no bound on its length, so it is never a label.
    let mut per_probe =
        |name: &str, kind: &str, help: &str, value: &dyn Fn(&Snapshot) -> Option<String>| {
            header(&mut out, name, kind, help);
            for (probe, snapshot) in &snapshots {
                if let Some(value) = value(snapshot) {
                    sample(&mut out, name, Some(("probe", &probe.spec.url)), value);
                }
            }
        };
    per_probe(
        "exechealthz_probe_up",
        "gauge",
        "Whether the probe's URL currently answers 200 (1) or 503 (0).",
        &|s| Some(u8::from(s.passes).to_string()),
    );
    per_probe(
        "exechealthz_probe_runs_total",
        "counter",
        "Completed runs of the probe's command.",
        &|s| Some(s.runs.to_string()),
    );
    per_probe(
        "exechealthz_probe_failures_total",
        "counter",
        "Runs that failed (non-zero exit, signal, timeout or failed start).",
        &|s| Some(s.failures.to_string()),
    );
    per_probe(
        "exechealthz_probe_timeouts_total",
        "counter",
        "Runs killed for exceeding --timeout.",
        &|s| Some(s.timeouts.to_string()),
    );
    per_probe(
        "exechealthz_probe_last_duration_seconds",
        "gauge",
        "How long the latest completed run took.",
        &|s| {
            s.latest
                .as_ref()
                .map(|run| crate::duration::seconds(run.duration))
        },
    );
    per_probe(
        "exechealthz_probe_last_run_timestamp_seconds",
        "gauge",
        "When the latest completed run finished, in seconds since the epoch.",
        &|s| s.latest.as_ref().map(|run| epoch_seconds(run.finished)),
    );
    per_probe(
        "exechealthz_probe_last_exit_code",
        "gauge",
        "Exit code of the latest completed run; 128+N for signal N; -1 for a timeout or failed start.",
        &|s| {
            s.latest
                .as_ref()
                .map(|run| run.outcome.exit_code().to_string())
        },
    );
    // The kubelet's prober_probe_duration_seconds, per probe.
    let name = "exechealthz_probe_duration_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "How long the probe's runs took, in seconds.",
    );
    for (probe, snapshot) in &snapshots {
        let durations = &snapshot.durations;
        let mut below = 0;
        for (i, count) in durations.counts.iter().enumerate() {
            below += count;
            let le = DURATION_BUCKETS.get(i).map_or("+Inf", |(_, le)| le);
            out.push_str(name);
            out.push_str("_bucket{probe=\"");
            write_label_value(&mut out, &probe.spec.url);
            let _ = writeln!(out, "\",le=\"{le}\"}} {below}");
        }
        let url = Some(("probe", probe.spec.url.as_str()));
        let sum = durations.sum;
        let seconds = format!("{}.{:09}", sum.as_secs(), sum.subsec_nanos());
        sample(&mut out, &format!("{name}_sum"), url, seconds);
        sample(&mut out, &format!("{name}_count"), url, below);
    }
    header(
        &mut out,
        "exechealthz_http_requests_total",
        "counter",
        "HTTP requests answered, by status code.",
    );
    for (code, count) in requests {
        sample(
            &mut out,
            "exechealthz_http_requests_total",
            Some(("code", &code.to_string())),
            count,
        );
    }
    single(
        &mut out,
        "exechealthz_log_lines_dropped_total",
        "counter",
        "Log lines dropped because stderr was not taking them.",
        None,
        &crate::log::dropped().to_string(),
    );
    header(
        &mut out,
        "exechealthz_build_info",
        "gauge",
        "The version of exechealthz serving, and the commit it was built from; always 1.",
    );
    let _ = writeln!(
        out,
        "exechealthz_build_info{{version=\"{}\",revision=\"{REVISION}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    // What every Prometheus client library exports by default, with the
    // same names and meaning (read from /proc; left out where unreadable).
    for (name, kind, help, value) in process_metrics() {
        single(&mut out, name, kind, help, None, &value);
    }
    out
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric family of one sample.
fn single(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    label: Option<(&str, &str)>,
    value: &str,
) {
    header(out, name, kind, help);
    sample(out, name, label, value);
}

/// One sample line, with at most one label.
fn sample(
    out: &mut String,
    name: &str,
    label: Option<(&str, &str)>,
    value: impl std::fmt::Display,
) {
    out.push_str(name);
    if let Some((key, text)) = label {
        let _ = write!(out, "{{{key}=\"");
        write_label_value(out, text);
        out.push_str("\"}");
    }
    let _ = writeln!(out, " {value}");
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
    // Its start, in clock ticks since boot, is that long before now: exact
    // to a tick (/proc/stat's btime is whole seconds, a second off).
    if let (Some(start), Some(uptime), true) = (field(22), uptime(), ticks > 0) {
        let ticks = ticks as u64;
        let at = Duration::from_secs(start / ticks)
            + Duration::from_nanos(start % ticks * 1_000_000_000 / ticks);
        let since_start = uptime.saturating_sub(at);
        let started = SystemTime::now() - since_start;
        metrics.push((
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            epoch_seconds(started),
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
/// Time since boot, from /proc/uptime (to a hundredth of a second).
fn uptime() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    // `12345.67`: seconds and hundredths, read without floats.
    let (whole, hundredths) = text.split_whitespace().next()?.split_once('.')?;
    let hundredths: u64 = hundredths.get(..2)?.parse().ok()?;
    Some(Duration::from_secs(whole.parse().ok()?) + Duration::from_millis(hundredths * 10))
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

/// Appends a label value as the format requires: `\`, `"` and line feeds
/// escaped.
fn write_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_escaping() {
        let mut out = String::new();
        super::write_label_value(&mut out, "a\\b\"c\nd");
        assert_eq!(out, "a\\\\b\\\"c\\nd");
    }
}
