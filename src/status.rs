//! `/status`: every probe at once, in the Kubernetes apiserver's verbose
//! health style (`[+]/healthz ok`, `[-]/x failed: reason`, then a summary),
//! or as JSON with `?format=json`; `?exclude=URL` leaves probes out.
//!
//! It reads snapshots; it changes nothing.

use std::fmt::Write;
use std::time::{Instant, UNIX_EPOCH};

use crate::json;
use crate::log::result_timestamp;
use crate::results::{Policy, Probe, Snapshot, Verdict};

/// Output kept per probe in the JSON form.
const JSON_OUTPUT_LIMIT: usize = 1024;

pub struct Rendered {
    pub status: u16,
    pub body: String,
    pub json: bool,
}

/// Renders `/status` for a request's query string.
pub fn render(probes: &[Probe], policy: &Policy, query: &str) -> Rendered {
    let mut excluded: Vec<String> = Vec::new();
    let mut json = false;
    for (key, value) in query_pairs(query) {
        match key.as_str() {
            "exclude" => excluded.push(value),
            "format" => json = value == "json",
            _ => {}
        }
    }
    let now = Instant::now();
    let output_limit = if json { JSON_OUTPUT_LIMIT } else { 0 };
    let included: Vec<(&Probe, Snapshot)> = probes
        .iter()
        .filter(|p| !excluded.contains(&p.spec.url))
        .map(|p| (p, p.snapshot(now, policy, output_limit)))
        .collect();
    let unknown: Vec<&String> = excluded
        .iter()
        .filter(|url| !probes.iter().any(|p| &p.spec.url == *url))
        .collect();
    let all_pass = included.iter().all(|(_, s)| s.passes);
    let status = if all_pass { 200 } else { 503 };
    let body = if json {
        render_json(&included, all_pass)
    } else {
        render_text(&included, &unknown, all_pass)
    };
    Rendered { status, body, json }
}

/// `?verbose` on a probe's URL: its `[+]`/`[-]` line in the apiserver's
/// style, then the summary; 200 when it passes, 503 otherwise.
pub fn render_probe(probe: &Probe, policy: &Policy) -> Rendered {
    let snapshot = probe.snapshot(Instant::now(), policy, 0);
    let passes = snapshot.passes;
    Rendered {
        status: if passes { 200 } else { 503 },
        body: render_text(&[(probe, snapshot)], &[], passes),
        json: false,
    }
}

fn render_text(included: &[(&Probe, Snapshot)], unknown: &[&String], all_pass: bool) -> String {
    let mut out = String::new();
    for (probe, snapshot) in included {
        match &snapshot.reason {
            None => writeln!(out, "[+]{} ok", probe.spec.url),
            // One line per probe: a reason never carries a line break.
            Some(reason) => writeln!(out, "[-]{} failed: {}", probe.spec.url, one_line(reason)),
        }
        .expect("writing to a String");
    }
    if !unknown.is_empty() {
        let names: Vec<String> = unknown.iter().map(|u| json::string(u)).collect();
        let _ = writeln!(
            out,
            "warn: some probes cannot be excluded: no matches for {}",
            names.join(",")
        );
    }
    out.push_str(if all_pass {
        "healthz check passed\n"
    } else {
        "healthz check failed\n"
    });
    out
}

fn render_json(included: &[(&Probe, Snapshot)], all_pass: bool) -> String {
    // One buffer for the whole report: written field by field, not
    // assembled from a string per field (an allocation each, and under
    // load the allocator's lock is shared by every worker).
    let mut out = String::with_capacity(64 + 512 * included.len());
    out.push_str("{\"status\":");
    json::write_string(&mut out, if all_pass { "ok" } else { "failed" });
    out.push_str(",\"probes\":[");
    for (i, (probe, s)) in included.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let state = match (s.verdict, s.stale) {
            (Verdict::Pending, _) => "pending",
            (Verdict::Failing, _) => "failing",
            (Verdict::Passing, true) => "stale",
            (Verdict::Passing, false) => "passing",
        };
        let mut o = json::Object::new(&mut out);
        o.string("url", &probe.spec.url);
        o.string("state", state);
        o.value("passes", s.passes);
        o.string_or_null("reason", s.reason.as_deref());
        o.value("runs", s.runs);
        o.value("failures", s.failures);
        o.value("timeouts", s.timeouts);
        o.value("consecutive_successes", s.consecutive_successes);
        o.value("consecutive_failures", s.consecutive_failures);
        if let Some(run) = &s.latest {
            let since = run.finished.duration_since(UNIX_EPOCH).unwrap_or_default();
            o.value("last_exit_code", run.outcome.exit_code());
            o.string_or_null("last_error", run.outcome.error().as_deref());
            o.string("last_output", &String::from_utf8_lossy(&run.output));
            o.value("last_output_truncated", run.discarded > 0);
            o.string("last_run_time", &result_timestamp(run.finished));
            o.value(
                "last_run_timestamp_seconds",
                format_args!("{}.{:03}", since.as_secs(), since.subsec_millis()),
            );
            o.value(
                "last_duration_seconds",
                crate::duration::seconds(run.duration),
            );
        }
        o.end();
    }
    out.push_str("]}\n");
    out
}

fn one_line(text: &str) -> String {
    text.replace('\n', "\\n").replace('\r', "\\r")
}

/// `a=1&b=%2Fx` as decoded pairs; `+` is a space, as in forms.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        assert_eq!(
            query_pairs("exclude=%2Fa&exclude=/b&format=json&x"),
            [
                ("exclude".to_string(), "/a".to_string()),
                ("exclude".to_string(), "/b".to_string()),
                ("format".to_string(), "json".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("a+b"), "a b");
    }
}
