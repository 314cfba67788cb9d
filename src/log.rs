//! Log lines on stderr in Go's `log` format (`2006/01/02 15:04:05 message`),
//! and the wall-clock formats our messages share with the original.
//!
//! Times are UTC: a `FROM scratch` image has no time zone database, and a
//! sidecar's logs are read next to other containers' UTC logs. Each line is
//! written with one `write` so lines from different threads never interleave.
//! This module decides how a line looks, never whether an event matters.
//!
//! Logging never blocks probing, serving or shutdown: once `start_writer`
//! has run, lines go into a bounded queue that one writer thread drains.
//! While stderr takes nothing (a stalled log collector), new lines are
//! dropped and counted; when it drains again, one line says how many. An
//! exit waits a moment for the queue (`flush`), never longer.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::json;

static QUIET: AtomicBool = AtomicBool::new(false);
static JSON: AtomicBool = AtomicBool::new(false);

/// Lines waiting for the writer, at most `QUEUE_BYTES` of them.
const QUEUE_BYTES: usize = 256 * 1024;

struct Queue {
    lines: VecDeque<String>,
    bytes: usize,
    /// Dropped since the last line about it was queued.
    dropped_unreported: u64,
    /// A writer thread drains the queue; without one, lines are written
    /// where they are made (start-up, flag errors, tests).
    writer: bool,
    /// The writer is in the middle of a write.
    writing: bool,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    lines: VecDeque::new(),
    bytes: 0,
    dropped_unreported: 0,
    writer: false,
    writing: false,
});
/// Signalled when a line is queued, and when the queue empties.
static QUEUED: Condvar = Condvar::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn queue() -> MutexGuard<'static, Queue> {
    QUEUE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Log lines dropped so far because stderr did not take them.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// From here on, lines are queued and written by the calling thread, which
/// never returns: the log writer's body.
pub fn write_forever() -> ! {
    queue().writer = true;
    loop {
        let line = {
            let mut queue = queue();
            while queue.lines.is_empty() {
                queue = QUEUED.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
            let line = queue.lines.pop_front().expect("not empty");
            queue.bytes -= line.len();
            queue.writing = true;
            line
        };
        // Blocks while stderr is stuck; only this thread waits.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        let mut queue = queue();
        let dropped = std::mem::take(&mut queue.dropped_unreported);
        if dropped == 0 {
            queue.writing = false;
        }
        drop(queue);
        if dropped > 0 {
            // Written here, not queued: the queue is likely full again
            // (it filled while we waited on stderr), and a count line
            // dropped there would lose its count. The counts in these
            // lines add up to `exechealthz_log_lines_dropped_total`.
            let line = format_line(
                Level::Error,
                format_args!("{dropped} log lines were dropped while stderr was not taking them"),
                &[("dropped", Value::Num(dropped.to_string()))],
            );
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
            self::queue().writing = false;
        }
        QUEUED.notify_all();
    }
}

/// Waits up to `limit` for queued lines to be written: before an exit.
pub fn flush(limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut queue = queue();
    while queue.writer && (!queue.lines.is_empty() || queue.writing) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        queue = QUEUED
            .wait_timeout(queue, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

fn emit(line: String) {
    let mut queue = queue();
    if !queue.writer {
        drop(queue);
        // Nothing sensible can be done when stderr is gone.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        return;
    }
    if queue.bytes + line.len() > QUEUE_BYTES {
        queue.dropped_unreported += 1;
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    queue.bytes += line.len();
    queue.lines.push_back(line);
    drop(queue);
    QUEUED.notify_all();
}

/// With quiet set, only errors are written.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// `--log-format json`: one JSON object per line from here on.
pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

#[derive(Clone, Copy, PartialEq)]
pub enum Level {
    Info,
    Error,
}

/// A field of a JSON log line; text lines carry the same facts in words.
pub enum Value<'a> {
    Str(&'a str),
    Num(String),
}

/// Writes an informational line, unless `--quiet`.
pub fn info(message: std::fmt::Arguments) {
    event(Level::Info, message, &[]);
}

/// Writes an error line, always.
pub fn error(message: std::fmt::Arguments) {
    event(Level::Error, message, &[]);
}

/// Writes a line whatever `--quiet` says: the start-up line, which tells
/// where we listen.
pub fn always(message: std::fmt::Arguments, fields: &[(&str, Value)]) {
    write_line(Level::Info, message, fields);
}

/// Whether a line of `level` is written (not hidden by `--quiet`): for
/// callers that would otherwise build its fields for nothing.
pub fn enabled(level: Level) -> bool {
    level == Level::Error || !QUIET.load(Ordering::Relaxed)
}

/// Writes a line with fields for JSON logs, unless quiet hides its level.
pub fn event(level: Level, message: std::fmt::Arguments, fields: &[(&str, Value)]) {
    if enabled(level) {
        write_line(level, message, fields);
    }
}

fn write_line(level: Level, message: std::fmt::Arguments, fields: &[(&str, Value)]) {
    emit(format_line(level, message, fields));
}

/// A whole line, newline included, in the format chosen.
fn format_line(level: Level, message: std::fmt::Arguments, fields: &[(&str, Value)]) -> String {
    let now = SystemTime::now();
    let message = message.to_string();
    let message = message.trim_end_matches('\n');
    if JSON.load(Ordering::Relaxed) {
        let mut line = format!(
            "{{\"time\":{},\"level\":{},\"msg\":{}",
            json::string(&rfc3339(now)),
            json::string(if level == Level::Error {
                "error"
            } else {
                "info"
            }),
            json::string(message)
        );
        for (key, value) in fields {
            let value = match value {
                Value::Str(text) => json::string(text),
                Value::Num(number) => number.clone(),
            };
            line.push_str(&format!(",{}:{value}", json::string(key)));
        }
        line.push_str("}\n");
        line
    } else {
        // One event, one line, and nothing for a terminal to act on:
        // command output and request bytes in a message cannot start a
        // forged line (LF, CR) or drive the reader's terminal (ESC).
        format!("{} {}\n", log_timestamp(now), escape_controls(message))
    }
}

/// `text` with control characters (C0, DEL, C1) written as escapes:
/// `\n`, `\r`, `\t`, `\xNN`, `\u{NN}`; a backslash stays as it is.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::info(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::error(format_args!($($arg)*)) };
}

/// Civil UTC time of a `SystemTime`.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

fn civil(time: SystemTime) -> Civil {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, in_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = date_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: (in_day / 3600) as u32,
        minute: (in_day / 60 % 60) as u32,
        second: (in_day % 60) as u32,
        nanos: since.subsec_nanos(),
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01, by counting
/// 400-year eras (146,097 days each) from 0000-03-01 so leap days fall last.
fn date_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2006/01/02 15:04:05`, Go's `log` prefix.
pub fn log_timestamp(time: SystemTime) -> String {
    let c = civil(time);
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `2006-01-02T15:04:05.999999Z`, for JSON logs.
pub fn rfc3339(time: SystemTime) -> String {
    let c = civil(time);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.nanos / 1000
    )
}

/// `2006-01-02 15:04:05.999999999 +0000 UTC`, Go's `time.Time.String` in UTC,
/// as the original printed when a result was taken.
pub fn result_timestamp(time: SystemTime) -> String {
    let c = civil(time);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:09} +0000 UTC",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.nanos
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain \\ text é"), "plain \\ text é");
        assert_eq!(
            escape_controls("a\nb\rc\td\x1b[31me\0f\x7fg\u{85}h"),
            "a\\nb\\rc\\td\\x1b[31me\\x00f\\x7fg\\u{85}h"
        );
    }

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(log_timestamp(at(0, 0)), "1970/01/01 00:00:00");
        // 2015-07-09 00:59:45 UTC, the README's example instant.
        assert_eq!(log_timestamp(at(1_436_403_585, 0)), "2015/07/09 00:59:45");
        // A leap day and the day after.
        assert_eq!(log_timestamp(at(951_782_400, 0)), "2000/02/29 00:00:00");
        assert_eq!(log_timestamp(at(951_868_800, 0)), "2000/03/01 00:00:00");
        assert_eq!(log_timestamp(at(4_102_444_799, 0)), "2099/12/31 23:59:59");
        assert_eq!(
            result_timestamp(at(1_436_403_585, 698_036_238)),
            "2015-07-09 00:59:45.698036238 +0000 UTC"
        );
        assert_eq!(
            rfc3339(at(1_436_403_585, 698_036_238)),
            "2015-07-09T00:59:45.698036Z"
        );
    }
}
