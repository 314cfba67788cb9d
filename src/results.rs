//! The shared state of each probe: its latest runs, its verdict after the
//! failure and success thresholds, and how stale it is.
//!
//! Probe threads write here, HTTP workers and the watchdog read. Each probe's
//! state sits behind its own `Mutex`, held only to copy or replace a few
//! fields: never across a command run, a socket write or a log write.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::duration;
use crate::log::result_timestamp;
use crate::outcome::Outcome;
use crate::spec::ProbeSpec;

/// One completed run of a probe's command.
#[derive(Debug, Clone)]
pub struct Run {
    /// Wall-clock time it finished, for messages.
    pub finished: SystemTime,
    /// Monotonic time it finished, for staleness.
    pub finished_at: Instant,
    pub duration: Duration,
    /// Combined stdout and stderr, at most `--max-output` bytes; shared
    /// with the answers being written (`--output`).
    pub output: Arc<[u8]>,
    /// Bytes the command wrote beyond `output`, thrown away.
    pub discarded: u64,
    pub outcome: Outcome,
}

impl Run {
    /// A copy with at most `keep` bytes of output; the rest is counted as
    /// discarded.
    fn summary(&self, keep: usize) -> Run {
        let kept = self.output.len().min(keep);
        Run {
            finished: self.finished,
            finished_at: self.finished_at,
            duration: self.duration,
            output: self.output[..kept].into(),
            discarded: self.discarded + (self.output.len() - kept) as u64,
            outcome: self.outcome.clone(),
        }
    }

    /// The original's `Result of last exec: <output>, at <time>, error <err>`.
    pub fn describe(&self) -> String {
        let mut output = String::from_utf8_lossy(&self.output).into_owned();
        if self.discarded > 0 {
            output.push_str(&format!(
                "[... {} more bytes of output discarded]",
                self.discarded
            ));
        }
        format!(
            "Result of last exec: {output}, at {}, error {}",
            result_timestamp(self.finished),
            self.outcome.error().as_deref().unwrap_or("None")
        )
    }
}

/// What a probe's URL says, after the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough results yet to pass or fail.
    Pending,
    Passing,
    Failing,
}

/// The thresholds and limits every probe shares (the flags); a probe's
/// check URL may set its own thresholds (`for_probe`).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub latency: Duration,
    /// Answer with the command's output instead of `ok`.
    pub output: bool,
}

impl Policy {
    /// The policy for `spec`: its own thresholds where it has them.
    pub fn for_probe(&self, spec: &ProbeSpec) -> Policy {
        let timing = spec.timing();
        Policy {
            failure_threshold: timing.failure_threshold.unwrap_or(self.failure_threshold),
            success_threshold: timing.success_threshold.unwrap_or(self.success_threshold),
            ..*self
        }
    }
}

#[derive(Debug)]
pub struct Probe {
    pub spec: ProbeSpec,
    state: Mutex<State>,
    /// The `ok` body, made once: every passing answer shares it.
    ok: Arc<[u8]>,
}

#[derive(Debug)]
struct State {
    verdict: Verdict,
    consecutive_successes: u32,
    consecutive_failures: u32,
    last_success: Option<Run>,
    last_failure: Option<Run>,
    /// When the run under way started, if one is.
    running_since: Option<Instant>,
    /// When the probe started, the age of "no result yet".
    created_at: Instant,
    runs: u64,
    failures: u64,
    timeouts: u64,
    durations: Durations,
    /// Whether the watchdog already reported the current stale spell.
    stale_reported: bool,
    /// The last 503 answer made, and whether it was the stale one: the
    /// same until the next run is recorded, so every client that asks
    /// meanwhile shares its bytes.
    unavailable: Option<(bool, Arc<[u8]>)>,
}

/// An HTTP answer for a probe URL: status and body (shared: the same
/// bytes for every request until the next run).
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Arc<[u8]>,
}

/// What changed when a run was recorded, for the log.
#[derive(Debug, PartialEq)]
pub struct Recorded {
    pub from: Verdict,
    pub to: Verdict,
}

impl Probe {
    pub fn new(spec: ProbeSpec) -> Probe {
        Probe {
            spec,
            state: Mutex::new(State {
                verdict: Verdict::Pending,
                consecutive_successes: 0,
                consecutive_failures: 0,
                last_success: None,
                last_failure: None,
                running_since: None,
                created_at: Instant::now(),
                runs: 0,
                failures: 0,
                timeouts: 0,
                durations: Durations::default(),
                stale_reported: false,
                unavailable: None,
            }),
            ok: Arc::from(&b"ok"[..]),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere aborts the process (panic = "abort"), so a
        // poisoned lock can only be seen in tests; its data is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn run_started(&self, at: Instant) {
        self.state().running_since = Some(at);
    }

    /// Stores a finished run and applies the thresholds.
    pub fn record(&self, run: Run, policy: &Policy) -> Recorded {
        let policy = &policy.for_probe(&self.spec);
        let mut state = self.state();
        let from = state.verdict;
        state.running_since = None;
        state.stale_reported = false;
        state.unavailable = None;
        // An output like the last one (a status page, a fixed text) is
        // kept as the same bytes, so answers still being written with the
        // old one share them with the new.
        let mut run = run;
        if let Some(same) = [&state.last_success, &state.last_failure]
            .into_iter()
            .flatten()
            .find(|old| old.output == run.output)
        {
            run.output = Arc::clone(&same.output);
        }
        state.runs += 1;
        state.durations.add(run.duration);
        if run.outcome.timed_out() {
            state.timeouts += 1;
        }
        if run.outcome.passed() {
            state.consecutive_successes += 1;
            state.consecutive_failures = 0;
            if state.consecutive_successes >= policy.success_threshold {
                state.verdict = Verdict::Passing;
            }
            state.last_success = Some(run);
        } else {
            state.failures += 1;
            state.consecutive_failures += 1;
            state.consecutive_successes = 0;
            if state.consecutive_failures >= policy.failure_threshold {
                state.verdict = Verdict::Failing;
            }
            state.last_failure = Some(run);
        }
        Recorded {
            from,
            to: state.verdict,
        }
    }

    /// The answer for a request arriving at `now`.
    pub fn answer(&self, now: Instant, policy: &Policy) -> Answer {
        let policy = &policy.for_probe(&self.spec);
        let mut state = self.state();
        let stale = latest(&state)
            .is_some_and(|run| now.saturating_duration_since(run.finished_at) > policy.latency);
        let ok = state.verdict == Verdict::Passing && !stale;
        if ok {
            let body = if policy.output {
                let success = state.last_success.as_ref().expect("passing");
                Arc::clone(&success.output)
            } else {
                Arc::clone(&self.ok)
            };
            return Answer { status: 200, body };
        }
        if let Some((_, body)) = state.unavailable.as_ref().filter(|(s, _)| *s == stale) {
            return Answer {
                status: 503,
                body: Arc::clone(body),
            };
        }
        let body: Arc<[u8]> = self.unavailable(&state, policy).into_bytes().into();
        state.unavailable = Some((stale, Arc::clone(&body)));
        Answer { status: 503, body }
    }

    /// The 503 message for the state, as the original words it.
    fn unavailable(&self, state: &State, policy: &Policy) -> String {
        let url = &self.spec.url;
        // Go's `http.Error`, which wrote the original's 503s, ends the
        // message with a line break.
        let unavailable = |message: String| format!("{message}\n");
        match state.verdict {
            Verdict::Pending => {
                let progress = match (&state.last_failure, &state.last_success) {
                    (None, None) => "the first run has not finished".to_string(),
                    (Some(failure), _) if state.consecutive_failures > 0 => format!(
                        "{} of {} consecutive failures needed to fail; {}",
                        state.consecutive_failures,
                        policy.failure_threshold,
                        failure.describe()
                    ),
                    _ => format!(
                        "{} of {} consecutive successes needed to pass",
                        state.consecutive_successes, policy.success_threshold
                    ),
                };
                unavailable(format!(
                    "Healthz probe on {url} error: no verdict yet: {progress}"
                ))
            }
            Verdict::Failing => {
                let failure = state
                    .last_failure
                    .as_ref()
                    .expect("a failing probe has a failed run");
                let mut message = format!("Healthz probe on {url} error: {}", failure.describe());
                if state.consecutive_successes > 0 {
                    message.push_str(&format!(
                        " ({} of {} consecutive successes needed to pass since)",
                        state.consecutive_successes, policy.success_threshold
                    ));
                }
                unavailable(message)
            }
            Verdict::Passing => {
                // Stale: `answer` made the 200 otherwise.
                let latest = latest(state).expect("a passing probe has a run");
                unavailable(format!(
                    "Latest result too old to be useful: {}.",
                    latest.describe()
                ))
            }
        }
    }

    /// Everything `/metrics` and `/status` report, copied under the lock,
    /// with at most `output_limit` bytes of the latest run's output (the
    /// rest counted as discarded): a report costs the same whatever
    /// `--max-output` keeps.
    pub fn snapshot(&self, now: Instant, policy: &Policy, output_limit: usize) -> Snapshot {
        let policy = &policy.for_probe(&self.spec);
        let state = self.state();
        let latest = latest(&state).map(|run| run.summary(output_limit));
        let stale = latest
            .as_ref()
            .is_some_and(|run| now.saturating_duration_since(run.finished_at) > policy.latency);
        let reason = match state.verdict {
            Verdict::Pending => Some("no verdict yet".to_string()),
            Verdict::Failing => state
                .last_failure
                .as_ref()
                .and_then(|run| run.outcome.error()),
            Verdict::Passing if stale => Some(format!(
                "latest result too old (older than --latency {})",
                duration::format(policy.latency)
            )),
            Verdict::Passing => None,
        };
        Snapshot {
            verdict: state.verdict,
            durations: state.durations,
            stale,
            passes: reason.is_none(),
            reason,
            runs: state.runs,
            failures: state.failures,
            timeouts: state.timeouts,
            consecutive_successes: state.consecutive_successes,
            consecutive_failures: state.consecutive_failures,
            latest,
        }
    }

    /// For the watchdog: `Some(age)` the first time, per stale spell, that the
    /// newest result (or, before any, the probe's start) is older than
    /// `latency`; `None` otherwise. Also says how long a run has been going.
    pub fn newly_stale(&self, now: Instant, latency: Duration) -> Option<Staleness> {
        let mut state = self.state();
        let since = latest(&state).map_or(state.created_at, |run| run.finished_at);
        let age = now.saturating_duration_since(since);
        if age <= latency || state.stale_reported {
            return None;
        }
        state.stale_reported = true;
        Some(Staleness {
            age,
            running_for: state
                .running_since
                .map(|start| now.saturating_duration_since(start)),
        })
    }
}

/// A copy of a probe's state at one instant.
#[derive(Debug)]
pub struct Snapshot {
    pub verdict: Verdict,
    /// How long its runs took, in `DURATION_BUCKETS`.
    pub durations: Durations,
    /// The newest result is older than `--latency`.
    pub stale: bool,
    /// What the probe's URL answers 200 for.
    pub passes: bool,
    /// Why it does not pass, on one line.
    pub reason: Option<String>,
    pub runs: u64,
    pub failures: u64,
    pub timeouts: u64,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    pub latest: Option<Run>,
}

/// Upper bounds of the run-duration histogram's buckets, in microseconds
/// and as `le` labels: 1 ms (a built-in check on loopback) to 30 s (the
/// default --latency). Integers, not floats: float formatting and parsing
/// would cost the binary more than all of /metrics.
pub const DURATION_BUCKETS: [(u64, &str); 14] = [
    (1_000, "0.001"),
    (2_500, "0.0025"),
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
    (30_000_000, "30"),
];

/// Runs counted by how long they took: one count per bucket (not
/// cumulative; the last is past every bound), and their total.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Durations {
    pub counts: [u64; DURATION_BUCKETS.len() + 1],
    pub sum: Duration,
}

impl Durations {
    fn add(&mut self, took: Duration) {
        let micros = took.as_micros();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|&(bound, _)| micros <= u128::from(bound))
            .unwrap_or(DURATION_BUCKETS.len());
        self.counts[bucket] += 1;
        self.sum += took;
    }
}

pub struct Staleness {
    pub age: Duration,
    pub running_for: Option<Duration>,
}

fn latest(state: &State) -> Option<&Run> {
    match (&state.last_success, &state.last_failure) {
        (Some(s), Some(f)) => Some(if s.finished_at >= f.finished_at { s } else { f }),
        (s, f) => s.as_ref().or(f.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(failure_threshold: u32, success_threshold: u32) -> Policy {
        Policy {
            failure_threshold,
            success_threshold,
            latency: Duration::from_secs(30),
            output: false,
        }
    }

    fn run(outcome: Outcome, output: &str) -> Run {
        Run {
            finished: SystemTime::UNIX_EPOCH,
            finished_at: Instant::now(),
            duration: Duration::from_millis(1),
            output: output.as_bytes().into(),
            discarded: 0,
            outcome,
        }
    }

    fn probe() -> Probe {
        Probe::new(ProbeSpec {
            url: "/healthz".into(),
            cmd: "true".into(),
            action: crate::spec::Action::Exec {
                program: "true".into(),
                args: Vec::new(),
            },
        })
    }

    fn body(answer: &Answer) -> String {
        String::from_utf8(answer.body.to_vec()).unwrap()
    }

    #[test]
    fn no_result_is_not_ok() {
        let answer = probe().answer(Instant::now(), &policy(1, 1));
        assert_eq!(answer.status, 503);
        assert!(body(&answer).contains("first run has not finished"));
    }

    #[test]
    fn failure_message_has_the_originals_shape() {
        let p = probe();
        p.record(run(Outcome::Exited(2), "ls: nope\n"), &policy(1, 1));
        let answer = p.answer(Instant::now(), &policy(1, 1));
        assert_eq!(answer.status, 503);
        let text = body(&answer);
        assert!(
            text.starts_with("Healthz probe on /healthz error: Result of last exec: ls: nope\n, at 1970-01-01 00:00:00.000000000 +0000 UTC, error exit status 2"),
            "{text}"
        );
    }

    #[test]
    fn thresholds_need_consecutive_results() {
        let p = probe();
        let pol = policy(3, 2);
        p.record(run(Outcome::Exited(0), ""), &pol);
        assert_eq!(
            p.answer(Instant::now(), &pol).status,
            503,
            "1 of 2 successes"
        );
        let r = p.record(run(Outcome::Exited(0), ""), &pol);
        assert_eq!(r.to, Verdict::Passing);
        for _ in 0..2 {
            p.record(run(Outcome::Exited(1), ""), &pol);
            assert_eq!(p.answer(Instant::now(), &pol).status, 200);
        }
        p.record(run(Outcome::Exited(0), ""), &pol); // resets the failure count
        p.record(run(Outcome::Exited(1), ""), &pol);
        p.record(run(Outcome::Exited(1), ""), &pol);
        assert_eq!(p.answer(Instant::now(), &pol).status, 200);
        let r = p.record(run(Outcome::Exited(1), ""), &pol);
        assert_eq!((r.from, r.to), (Verdict::Passing, Verdict::Failing));
        p.record(run(Outcome::Exited(0), ""), &pol);
        let answer = p.answer(Instant::now(), &pol);
        assert_eq!(answer.status, 503);
        assert!(body(&answer).contains("1 of 2 consecutive successes"));
    }

    #[test]
    fn stale_results_are_refused_once_reported() {
        let p = probe();
        let pol = policy(1, 1);
        p.record(run(Outcome::Exited(0), ""), &pol);
        let later = Instant::now() + Duration::from_secs(31);
        let answer = p.answer(later, &pol);
        assert_eq!(answer.status, 503);
        assert!(body(&answer).starts_with("Latest result too old to be useful: "));
        assert!(p.newly_stale(later, pol.latency).is_some());
        assert!(p.newly_stale(later, pol.latency).is_none(), "reported once");
        p.record(run(Outcome::Exited(0), ""), &pol);
        assert!(p.newly_stale(Instant::now(), pol.latency).is_none());
    }

    #[test]
    fn output_mode_serves_the_output() {
        let p = probe();
        let pol = Policy {
            output: true,
            ..policy(1, 1)
        };
        p.record(run(Outcome::Exited(0), "all good\n"), &pol);
        assert_eq!(body(&p.answer(Instant::now(), &pol)), "all good\n");
    }

    #[test]
    fn answers_share_their_bytes_until_the_next_run() {
        let p = probe();
        let pol = Policy {
            output: true,
            ..policy(1, 1)
        };
        p.record(run(Outcome::Exited(0), "same"), &pol);
        let first = p.answer(Instant::now(), &pol);
        // The same output again: the same bytes, shared with answers
        // still being written.
        p.record(run(Outcome::Exited(0), "same"), &pol);
        let second = p.answer(Instant::now(), &pol);
        assert!(Arc::ptr_eq(&first.body, &second.body));
        p.record(run(Outcome::Exited(0), "other"), &pol);
        assert!(!Arc::ptr_eq(
            &first.body,
            &p.answer(Instant::now(), &pol).body
        ));

        // A 503 is made once per run, whoever asks.
        p.record(run(Outcome::Exited(1), "bad"), &pol);
        let a = p.answer(Instant::now(), &pol);
        let b = p.answer(Instant::now(), &pol);
        assert_eq!(a.status, 503);
        assert!(Arc::ptr_eq(&a.body, &b.body));
        p.record(run(Outcome::Exited(1), "bad"), &pol);
        let c = p.answer(Instant::now(), &pol);
        assert!(!Arc::ptr_eq(&a.body, &c.body), "made anew after a run");
        assert_eq!(a.body, c.body);
    }
}
