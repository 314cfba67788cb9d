//! Flags → a validated `Config`, or a one-line error that names the flag.
//!
//! Existing pod specs were written for Go's `flag` package, so every spelling
//! it accepts is accepted here: `-name value`, `-name=value`, `--name value`,
//! `--name=value`, booleans as `-name` or `-name=true|false`, the last of a
//! repeated single-valued flag winning. Nothing here starts threads, binds
//! sockets or runs commands: it only reads arguments.

use std::ffi::OsString;
use std::net::IpAddr;
use std::time::Duration;

use crate::spec::{Action, ProbeSpec, RESERVED_PATHS};
use crate::{duration, json};

/// What the arguments ask for.
#[derive(Debug)]
pub enum Invocation {
    Run(Config),
    Help,
    Version,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub probes: Vec<ProbeSpec>,
    /// `None`: dual-stack `[::]`, falling back to `0.0.0.0` without IPv6.
    pub address: Option<IpAddr>,
    pub port: u16,
    pub period: Duration,
    pub latency: Duration,
    /// `--timeout`; unset, commands get `latency` and checks `CHECK_TIMEOUT`.
    pub timeout: Option<Duration>,
    pub max_output: usize,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub quiet: bool,
    pub output: bool,
    pub enable_quit: bool,
    pub json_logs: bool,
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

pub const DEFAULT_CMD: &str = "echo healthz";
pub const DEFAULT_URL: &str = "/healthz";
pub const DEFAULT_MAX_OUTPUT: usize = 32 * 1024;
/// A built-in check's timeout unless `--timeout` is given: the kubelet's
/// default probe timeout.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

impl Config {
    /// How long one run of `spec` may take: its URL's `timeout`, else
    /// `--timeout`, else the default for its kind.
    pub fn timeout_for(&self, spec: &ProbeSpec) -> Duration {
        match (&spec.action, spec.timing().timeout.or(self.timeout)) {
            (_, Some(timeout)) => timeout,
            (Action::Check(_), None) => CHECK_TIMEOUT,
            (Action::Exec { .. }, None) => self.latency,
        }
    }

    /// How often `spec` runs: its URL's `period`, else `--period`.
    pub fn period_for(&self, spec: &ProbeSpec) -> Duration {
        spec.timing().period.unwrap_or(self.period)
    }

    /// What is accepted but probably wrong, for the log at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.latency < self.period {
            warnings.push(format!(
                "--latency {} is shorter than --period {}: results will be too old \
                 between runs, and the probe URLs will flap (accepted, as the Go original did)",
                duration::format(self.latency),
                duration::format(self.period)
            ));
        }
        for spec in &self.probes {
            let period = self.period_for(spec);
            if spec.timing().period.is_some() && self.latency < period {
                warnings.push(format!(
                    "probe {}: --latency {} is shorter than its period {}: its results \
                     will be too old between runs, and its URL will flap (raise --latency)",
                    spec.url,
                    duration::format(self.latency),
                    duration::format(period)
                ));
            }
        }
        warnings
    }
}

struct Flag {
    name: &'static str,
    boolean: bool,
}

const fn value(name: &'static str) -> Flag {
    Flag {
        name,
        boolean: false,
    }
}

const fn boolean(name: &'static str) -> Flag {
    Flag {
        name,
        boolean: true,
    }
}

const FLAGS: &[Flag] = &[
    value("cmd"),
    value("url"),
    value("port"),
    value("address"),
    value("period"),
    value("latency"),
    value("timeout"),
    value("max-output"),
    value("failure-threshold"),
    value("success-threshold"),
    value("log-format"),
    value("shell"),
    value("head-timeout"),
    value("idle-timeout"),
    value("write-timeout"),
    boolean("quiet"),
    boolean("output"),
    boolean("enable-quit"),
    boolean("version"),
    boolean("help"),
];

pub const USAGE: &str = "\
Usage: exechealthz [flags]
       exechealthz check [--timeout D] TARGET...  (checks run once: see check --help)

Runs shell commands on a period and serves each result over HTTP:
200 'ok' when the latest run exited 0, 503 with the reason otherwise.
Flags may be written -name value, -name=value, --name value or --name=value.

  --cmd CMD                command run with --shell (repeatable; default \"echo healthz\"),
                           or a built-in check: tcp://HOST:PORT, http://HOST[:PORT]/PATH,
                           h2c://HOST[:PORT]/PATH, file:///PATH, dns://[SERVER[:PORT]]/NAME,
                           grpc://HOST:PORT[/SERVICE]; options after # (see below)
  --shell PROGRAM          program and leading arguments that run --cmd (default \"/bin/sh -c\");
                           none: split --cmd into words (shell-like quoting) and run it directly
  --url PATH               path serving the --cmd at the same position
                           (repeatable; default /healthz for a single command)
  --port N                 TCP port to listen on (default 8080; 0 picks a free one)
  --address IP             address to bind (default [::], dual-stack; 0.0.0.0 without IPv6)
  --period DURATION        how often each command runs (default 2s)
  --latency DURATION       a result older than this is answered with 503 (default 30s)
  --timeout DURATION       a run longer than this is killed and fails
                           (default: --latency for commands, 1s for built-in checks)
  --max-output BYTES       output kept per run; the rest is discarded (default 32KiB)
  --failure-threshold N    consecutive failures before a probe fails (default 1)
  --success-threshold N    consecutive successes before a probe passes (default 1)
  --output                 answer with the command's output instead of 'ok'
  --quiet                  log only errors
  --log-format FORMAT      text (Go's log format, default) or json (one object per line)
  --head-timeout DURATION  a request head must arrive within this (default 5s)
  --idle-timeout DURATION  a kept-alive connection may idle this long (default 30s)
  --write-timeout DURATION a client must take an answer within this (default 10s)
  --enable-quit            serve /quit, which stops the process (off: 404)
  --version                print the version and exit
  -h, --help               print this help and exit

Durations use Go syntax: 300ms, 1.5s, 1m30s, 2h, 10us (greater than 0).

Check options, in the URL's fragment (never sent), values percent-decoded:
  URL#key=value&key=value, e.g. http://127.0.0.1:8080/ready#header=Host:app.test&status=200,204
  header=Name:value      a request header, repeatable (http, h2c): Host replaces the
                         authority; User-Agent and Accept replace ours (empty: none sent)
  status=LIST            statuses that pass, e.g. 200,204,300-399 (http, h2c; default
                         200-399); a listed 3xx passes without being followed
  body=TEXT              the body's first 10 KiB must contain TEXT (http, h2c)
  metadata=key:value     gRPC metadata, repeatable (grpc; a -bin key's value is sent base64)
  socket=PATH            connect to this Unix socket; the host still names the server
                         (http, h2c, grpc)
  period=D, timeout=D    this probe's own period and timeout (every check; check takes
                         only timeout); commands keep the flags
  failure-threshold=N, success-threshold=N   this probe's own thresholds (every check)
";

/// Reads the arguments after the program name.
pub fn parse(args: Vec<OsString>) -> Result<Invocation, String> {
    let mut args = pico_args::Arguments::from_vec(go_flags_to_canonical(args)?);
    if args.contains("--help") {
        return Ok(Invocation::Help);
    }
    if args.contains("--version") {
        return Ok(Invocation::Version);
    }
    let quiet = args.contains("--quiet");
    let output = args.contains("--output");
    let enable_quit = args.contains("--enable-quit");

    let cmds = values(&mut args, "--cmd")?;
    let urls = values(&mut args, "--url")?;
    let port = last(&mut args, "--port", parse_port)?.unwrap_or(8080);
    let address = last(&mut args, "--address", parse_address)?;
    let period =
        last(&mut args, "--period", parse_positive_duration)?.unwrap_or(Duration::from_secs(2));
    let latency =
        last(&mut args, "--latency", parse_positive_duration)?.unwrap_or(Duration::from_secs(30));
    let timeout = last(&mut args, "--timeout", parse_positive_duration)?;
    let max_output = last(&mut args, "--max-output", parse_bytes)?.unwrap_or(DEFAULT_MAX_OUTPUT);
    let failure_threshold = last(&mut args, "--failure-threshold", parse_threshold)?.unwrap_or(1);
    let success_threshold = last(&mut args, "--success-threshold", parse_threshold)?.unwrap_or(1);
    let json_logs = last(&mut args, "--log-format", parse_log_format)?.unwrap_or(false);
    let shell = last(&mut args, "--shell", parse_shell)?
        .unwrap_or_else(|| Some(DEFAULT_SHELL.iter().map(|w| w.to_string()).collect()));
    let head_timeout = last(&mut args, "--head-timeout", parse_positive_duration)?
        .unwrap_or(Duration::from_secs(5));
    let idle_timeout = last(&mut args, "--idle-timeout", parse_positive_duration)?
        .unwrap_or(Duration::from_secs(30));
    let write_timeout = last(&mut args, "--write-timeout", parse_positive_duration)?
        .unwrap_or(Duration::from_secs(10));
    let leftover = args.finish();
    if let Some(arg) = leftover.first() {
        // The canonical form leaves nothing unconsumed; this is a safety net.
        return Err(format!(
            "unexpected argument {}",
            json::string(&arg.to_string_lossy())
        ));
    }

    Ok(Invocation::Run(Config {
        probes: pair_probes(cmds, urls, shell.as_deref())?,
        address,
        port,
        period,
        latency,
        timeout,
        max_output,
        failure_threshold,
        success_threshold,
        quiet,
        output,
        enable_quit,
        json_logs,
        head_timeout,
        idle_timeout,
        write_timeout,
    }))
}

/// Rewrites Go-style arguments into `--name value` pairs and bare `--name`
/// booleans, in the order given, walking them as Go's `flag` package does.
///
/// pico-args looks up `--name value` before `--name=value` wherever they
/// stand, and strips quotes from `--name="..."`; feeding it one canonical
/// spelling keeps repeated `--cmd`/`--url` in order (they pair by position)
/// and passes values through untouched.
fn go_flags_to_canonical(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let mut args = args.into_iter();
    let mut canonical = Vec::new();
    // Booleans: Go lets a later `-quiet=false` undo an earlier `-quiet`.
    let mut booleans: Vec<(&'static str, bool)> = Vec::new();
    while let Some(arg) = args.next() {
        let arg = arg.into_string().map_err(|arg| {
            format!(
                "argument {} is not valid UTF-8",
                json::string(&arg.to_string_lossy())
            )
        })?;
        if arg == "--" {
            if let Some(extra) = args.next() {
                return Err(format!(
                    "unexpected argument {}",
                    json::string(&extra.to_string_lossy())
                ));
            }
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!(
                "unexpected argument {} (flags start with -; quote a command with spaces)",
                json::string(&arg)
            ));
        };
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(format!("bad flag syntax: {arg}"));
        }
        let (name, inline_value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        // Messages name the flag as it was written: -cmd or --cmd.
        let dashes = &arg[..arg.len() - body.len()];
        let written = format!("{dashes}{name}");
        let name = if name == "h" { "help" } else { name };
        let flag = FLAGS
            .iter()
            .find(|flag| flag.name == name)
            .ok_or_else(|| format!("unknown flag {written}"))?;
        if flag.boolean {
            let on = match inline_value {
                None => true,
                Some(text) => parse_go_bool(text).ok_or_else(|| {
                    format!("invalid boolean {} for {written}", json::string(text))
                })?,
            };
            booleans.retain(|(seen, _)| *seen != flag.name);
            booleans.push((flag.name, on));
            continue;
        }
        let value = match inline_value {
            Some(value) => value.to_string(),
            None => args
                .next()
                .ok_or_else(|| format!("flag needs an argument: {written}"))?
                .into_string()
                .map_err(|arg| {
                    format!(
                        "value {} for {written} is not valid UTF-8",
                        json::string(&arg.to_string_lossy())
                    )
                })?,
        };
        if looks_like_our_flag(&value) {
            // Go would take it as the value; in a pod spec it is a missing one.
            return Err(format!("flag {written} needs a value, got flag {value}"));
        }
        canonical.push(format!("--{name}").into());
        canonical.push(value.into());
    }
    for (name, on) in booleans {
        if on {
            canonical.push(format!("--{name}").into());
        }
    }
    Ok(canonical)
}

fn looks_like_our_flag(value: &str) -> bool {
    let body = value.strip_prefix("--").or_else(|| value.strip_prefix('-'));
    let name = body.map(|body| body.split_once('=').map_or(body, |(name, _)| name));
    name.is_some_and(|name| name == "h" || FLAGS.iter().any(|flag| flag.name == name))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The last value of a single-valued flag (Go: the last one wins); every
/// value is parsed, as Go's flag package does, so a bad earlier one is an
/// error too. The values are read as text by one non-generic call, and only
/// `parse` differs between flags (one copy of pico-args' reading, not one
/// per value type: 3.5 KiB less of binary).
fn last<T>(
    args: &mut pico_args::Arguments,
    key: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    let mut found = None;
    each_value(args, key, &mut |text| {
        found = Some(parse(text)?);
        Ok(())
    })?;
    Ok(found)
}

/// `take` given each value of `key` in turn; its error, about the value,
/// made into the flag's error.
fn each_value(
    args: &mut pico_args::Arguments,
    key: &'static str,
    take: &mut dyn FnMut(&str) -> Result<(), String>,
) -> Result<(), String> {
    for text in values(args, key)? {
        take(&text).map_err(|cause| bad_value(key, &text, &cause))?;
    }
    Ok(())
}

/// Every value of `key`, in order, taken out of `args`.
fn values(args: &mut pico_args::Arguments, key: &'static str) -> Result<Vec<String>, String> {
    args.values_from_str(key).map_err(pico_error)
}

fn bad_value(key: &str, value: &str, cause: &str) -> String {
    format!("invalid value {} for {key}: {cause}", json::string(value))
}

fn pico_error(error: pico_args::Error) -> String {
    error.to_string()
}

pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// `none` → None (run commands directly); otherwise the shell's words.
fn parse_shell(text: &str) -> Result<Option<Vec<String>>, String> {
    if text == "none" {
        return Ok(None);
    }
    let words = crate::words::split(text)?;
    if words.is_empty() {
        return Err("empty; use none to run commands without a shell".into());
    }
    Ok(Some(words))
}

/// How a probe runs `cmd`: a built-in check, through `shell`, or directly.
fn action(cmd: &str, shell: Option<&[String]>, position: usize) -> Result<Action, String> {
    if let Some(check) =
        crate::check::parse(cmd).map_err(|e| format!("--cmd number {position}: {e}"))?
    {
        return Ok(Action::Check(check));
    }
    match shell {
        Some([program, leading @ ..]) => Ok(Action::Exec {
            program: program.clone(),
            args: leading.iter().cloned().chain([cmd.to_string()]).collect(),
        }),
        _ => {
            let mut words = crate::words::split(cmd)
                .map_err(|e| format!("--cmd number {position} with --shell none: {e}"))?
                .into_iter();
            let program = words
                .next()
                .ok_or_else(|| format!("--cmd number {position} is empty"))?;
            Ok(Action::Exec {
                program,
                args: words.collect(),
            })
        }
    }
}

fn pair_probes(
    cmds: Vec<String>,
    urls: Vec<String>,
    shell: Option<&[String]>,
) -> Result<Vec<ProbeSpec>, String> {
    let cmds = if cmds.is_empty() {
        vec![DEFAULT_CMD.to_string()]
    } else {
        cmds
    };
    let urls = if urls.is_empty() && cmds.len() == 1 {
        vec![DEFAULT_URL.to_string()]
    } else {
        urls
    };
    if cmds.len() != urls.len() {
        return Err(format!(
            "--cmd and --url must be given the same number of times ({} --cmd, {} --url); \
             they pair up by order",
            cmds.len(),
            urls.len()
        ));
    }
    for (i, cmd) in cmds.iter().enumerate() {
        if cmd.trim().is_empty() {
            return Err(format!("--cmd number {} is empty", i + 1));
        }
    }
    for (i, url) in urls.iter().enumerate() {
        check_url(url)?;
        if urls[..i].contains(url) {
            return Err(format!(
                "--url {url} is given twice; each URL serves one command"
            ));
        }
    }
    cmds.into_iter()
        .zip(urls)
        .enumerate()
        .map(|(i, (cmd, url))| {
            Ok(ProbeSpec {
                action: action(&cmd, shell, i + 1)?,
                url,
                cmd,
            })
        })
        .collect()
}

fn check_url(url: &str) -> Result<(), String> {
    if !url.starts_with('/') {
        return Err(format!("--url {} must start with /", json::string(url)));
    }
    if let Some(bad) = url
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'))
    {
        return Err(format!(
            "--url {} must not contain {}",
            json::string(url),
            json::string(&bad.to_string())
        ));
    }
    if RESERVED_PATHS.contains(&url) {
        return Err(format!(
            "--url {url} is reserved by the server (reserved: {})",
            RESERVED_PATHS.join(", ")
        ));
    }
    Ok(())
}

fn parse_port(text: &str) -> Result<u16, String> {
    let port = parse_go_int(text)?;
    u16::try_from(port).map_err(|_| "not a port number (0 to 65535)".to_string())
}

/// Go's `strconv.ParseInt(text, 0, 64)`, which `flag.Int` uses: an
/// optional sign, then decimal, `0x` hex, `0o` or leading-`0` octal, or
/// `0b` binary, with `_` allowed only between digits (or after the base
/// prefix). Errors in Go's words: a pod spec's `-port 020` is port 16 for
/// the Go original, and so it is here.
fn parse_go_int(text: &str) -> Result<i64, String> {
    const SYNTAX: &str = "parse error (a whole number, such as 8080, 0x1F90 or 0o17620)";
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = unsigned.to_ascii_lowercase();
    let (base, digits) = match lower.as_bytes() {
        [b'0', b'x', _, ..] => (16, &lower[2..]),
        [b'0', b'o', _, ..] => (8, &lower[2..]),
        [b'0', b'b', _, ..] => (2, &lower[2..]),
        [b'0', ..] => (8, &lower[1..]),
        [] => return Err(SYNTAX.into()),
        _ => (10, &lower[..]),
    };
    const RANGE: &str = "value out of range";
    // In Go's order: a bad digit, or else the first overflow, before the
    // underscores are looked at.
    let mut value: u64 = 0;
    for c in digits.chars().filter(|c| *c != '_') {
        let digit = c.to_digit(base).ok_or(SYNTAX)?;
        value = value
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(RANGE)?;
    }
    if !go_underscores_ok(&lower) {
        return Err(SYNTAX.into());
    }
    let limit = if negative {
        1u64 << 63
    } else {
        (1u64 << 63) - 1
    };
    if value > limit {
        return Err(RANGE.into());
    }
    Ok(if negative {
        (value as i64).wrapping_neg()
    } else {
        value as i64
    })
}

/// Go's rule for `_` in a number (`underscoreOK`), on the unsigned,
/// lowercased text: only between digits, or between a base prefix and a
/// digit.
fn go_underscores_ok(text: &str) -> bool {
    let bytes = text.as_bytes();
    // What came last: a digit ('0'), an underscore, or the start ('^').
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if bytes.len() >= 2 && bytes[0] == b'0' && matches!(bytes[1], b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = bytes[1] == b'x';
    }
    for &b in &bytes[i..] {
        if b.is_ascii_digit() || (hex && (b'a'..=b'f').contains(&b)) {
            saw = b'0';
        } else if b == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

fn parse_address(text: &str) -> Result<IpAddr, String> {
    // `[::1]` as well as `::1`: both appear in manifests.
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse()
        .map_err(|_| "not an IP address (e.g. 0.0.0.0, ::, 127.0.0.1)".to_string())
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let nanos = duration::parse(text)?;
    if nanos <= 0 {
        return Err("must be greater than zero".into());
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// `json` → true, `text` → false.
fn parse_log_format(text: &str) -> Result<bool, String> {
    match text {
        "json" => Ok(true),
        "text" => Ok(false),
        _ => Err("must be text or json".into()),
    }
}

/// Whether the arguments ask for JSON logs, read without validating the
/// rest: a flag error is then reported in the format the user chose.
pub fn wants_json_logs(args: &[OsString]) -> bool {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let mut json = false;
    for (i, arg) in args.iter().enumerate() {
        let body = arg.trim_start_matches('-');
        if body == "log-format" {
            json = args.get(i + 1) == Some(&"json");
        } else if let Some(value) = body.strip_prefix("log-format=") {
            json = value == "json";
        }
    }
    json
}

fn parse_threshold(text: &str) -> Result<u32, String> {
    match u32::try_from(parse_go_int(text)?) {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("must be at least 1 and at most {}", u32::MAX)),
    }
}

/// A byte count: `65536`, `64KiB`, `1MiB` (also `K`/`M`, read as binary).
fn parse_bytes(text: &str) -> Result<usize, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let scale = match unit {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1024,
        "M" | "MiB" => 1024 * 1024,
        _ => return Err("expected a byte count such as 65536, 64KiB or 1MiB".into()),
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n <= 64 * 1024 * 1024)
        .ok_or_else(|| "expected a byte count up to 64MiB, such as 65536 or 64KiB".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_read_as_gos_parse_int_with_base_0() {
        // Values and errors checked against Go 1.22's strconv.ParseInt(s, 0, 64).
        let ok = [
            ("0", 0),
            ("8080", 8080),
            ("020", 16),
            ("0o17", 15),
            ("0O17", 15),
            ("0x4E46", 20038),
            ("0X4e46", 20038),
            ("0b101", 5),
            ("20_038", 20038),
            ("0x_4E_46", 20038),
            ("0_20", 16),
            ("+7", 7),
            ("-7", -7),
            ("-0x10", -16),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ];
        for (text, value) in ok {
            assert_eq!(parse_go_int(text), Ok(value), "{text}");
        }
        let syntax = [
            "", "+", "-", "0x", "0b", "0o", "08", "0b2", "x", "1e3", "1.0", " 1", "1 ", "_1", "1_",
            "1__2", "0x_", "0_x1", "--1", "+-1", "١",
        ];
        for text in syntax {
            assert!(
                parse_go_int(text).unwrap_err().starts_with("parse error"),
                "{text}"
            );
        }
        let range = [
            "9223372036854775808",
            "-9223372036854775809",
            "0x8000000000000000",
            "99999999999999999999x",
        ];
        for text in range {
            assert_eq!(
                parse_go_int(text),
                Err("value out of range".into()),
                "{text}"
            );
        }
        let config = run(&[
            "-port",
            "020",
            "--failure-threshold=0b11",
            "--success-threshold=1_0",
        ])
        .unwrap();
        assert_eq!(
            (
                config.port,
                config.failure_threshold,
                config.success_threshold
            ),
            (16, 3, 10)
        );
    }

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse(args.iter().map(OsString::from).collect())? {
            Invocation::Run(config) => Ok(config),
            other => panic!("expected a config, got {other:?}"),
        }
    }

    fn probes(config: &Config) -> Vec<(&str, &str)> {
        config
            .probes
            .iter()
            .map(|p| (p.url.as_str(), p.cmd.as_str()))
            .collect()
    }

    #[test]
    fn checks_time_out_after_a_second_unless_told() {
        let config = run(&["--cmd=tcp://a:1", "--url=/a", "--cmd=true", "--url=/b"]).unwrap();
        assert_eq!(config.timeout_for(&config.probes[0]), CHECK_TIMEOUT);
        assert_eq!(config.timeout_for(&config.probes[1]), config.latency);
        let told = run(&["--cmd=tcp://a:1", "--timeout=3s"]).unwrap();
        assert_eq!(told.timeout_for(&told.probes[0]), Duration::from_secs(3));
    }

    #[test]
    fn a_latency_shorter_than_the_period_is_warned_of() {
        assert!(run(&[]).unwrap().warnings().is_empty());
        let warned = run(&["--period=10s", "--latency=5s"]).unwrap().warnings();
        assert_eq!(warned.len(), 1);
        assert!(
            warned[0].contains("--latency 5s is shorter than --period 10s"),
            "{warned:?}"
        );
    }

    #[test]
    fn defaults_match_the_original() {
        let config = run(&[]).unwrap();
        assert_eq!(probes(&config), [("/healthz", "echo healthz")]);
        assert_eq!(config.port, 8080);
        assert_eq!(config.period, Duration::from_secs(2));
        assert_eq!(config.latency, Duration::from_secs(30));
        assert_eq!(config.timeout, None);
        assert_eq!(config.timeout_for(&config.probes[0]), config.latency);
        assert_eq!(config.max_output, DEFAULT_MAX_OUTPUT);
        assert!(!config.quiet && !config.output && !config.enable_quit && !config.json_logs);
        assert_eq!(config.address, None);
    }

    #[test]
    fn every_go_spelling_is_accepted() {
        for args in [
            &["-cmd", "ls /tmp", "-period", "10ms"][..],
            &["-cmd=ls /tmp", "-period=10ms"],
            &["--cmd", "ls /tmp", "--period", "10ms"],
            &["--cmd=ls /tmp", "--period=10ms"],
        ] {
            let config = run(args).unwrap();
            assert_eq!(probes(&config), [("/healthz", "ls /tmp")], "{args:?}");
            assert_eq!(config.period, Duration::from_millis(10), "{args:?}");
        }
    }

    #[test]
    fn mixed_spellings_keep_their_order() {
        let config = run(&[
            "--cmd=a", "--url=/a", "-cmd", "b", "-url", "/b", "--cmd", "c", "--url=/c",
        ])
        .unwrap();
        assert_eq!(probes(&config), [("/a", "a"), ("/b", "b"), ("/c", "c")]);
    }

    #[test]
    fn values_pass_through_untouched() {
        let config = run(&["-cmd='a b' 'c'"]).unwrap();
        assert_eq!(config.probes[0].cmd, "'a b' 'c'");
        let config = run(&["--cmd=x=y"]).unwrap();
        assert_eq!(config.probes[0].cmd, "x=y");
    }

    #[test]
    fn booleans_take_go_forms_and_the_last_wins() {
        assert!(run(&["-quiet"]).unwrap().quiet);
        assert!(run(&["--quiet=true"]).unwrap().quiet);
        assert!(run(&["-quiet=T"]).unwrap().quiet);
        assert!(!run(&["-quiet", "-quiet=false"]).unwrap().quiet);
        assert!(!run(&["--output=0"]).unwrap().output);
        assert!(run(&["-output", "-enable-quit"]).unwrap().enable_quit);
        assert!(run(&["-quiet=maybe"]).unwrap_err().contains("-quiet"));
    }

    #[test]
    fn last_single_value_wins() {
        assert_eq!(run(&["-port=1", "--port", "2"]).unwrap().port, 2);
    }

    #[test]
    fn help_and_version() {
        for arg in ["-h", "--help", "-help", "--h"] {
            assert!(
                matches!(parse(vec![arg.into()]), Ok(Invocation::Help)),
                "{arg}"
            );
        }
        assert!(matches!(
            parse(vec!["-version".into()]),
            Ok(Invocation::Version)
        ));
    }

    #[test]
    fn bad_input_names_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--period=10"], "--period"),
            (&["--period", "-1s"], "--period"),
            (&["--latency=0"], "--latency"),
            (&["--timeout=abc"], "--timeout"),
            (&["--port=70000"], "--port"),
            (&["--port=http"], "--port"),
            (&["--address=localhost"], "--address"),
            (&["--max-output=lots"], "--max-output"),
            (&["--failure-threshold=0"], "--failure-threshold"),
            (&["--success-threshold=-1"], "--success-threshold"),
            (&["--log-format=xml"], "--log-format"),
            (&["--cmd=ftp://x/y"], "unknown scheme"),
            (&["--cmd=tcp://host"], "PORT"),
            (&["--shell=none", "--cmd='open"], "quote"),
            (&["--shell="], "--shell"),
            (&["--nosuch"], "-nosuch"),
            (&["--cmd"], "-cmd"),
            (&["--cmd", "--url"], "-cmd"),
            (&["--url=healthz"], "--url"),
            (&["--url=/a b"], "--url"),
            (&["--url=/"], "--url"),
            (&["--url=/quit"], "reserved"),
            (&["--cmd=a", "--cmd=b", "--url=/a"], "--url"),
            (&["--cmd=a", "--url=/a", "--url=/b"], "--url"),
            (&["--cmd=a", "--cmd=b", "--url=/a", "--url=/a"], "twice"),
            (&["--cmd="], "--cmd"),
            (&["stray"], "stray"),
            (&["---cmd=x"], "---cmd"),
        ];
        for (args, needle) in cases {
            let error = run(args).expect_err(&format!("{args:?} should fail"));
            assert!(
                error.contains(needle),
                "{args:?}: {error:?} lacks {needle:?}"
            );
            assert!(!error.contains('\n'), "{args:?}: error must be one line");
        }
    }

    #[test]
    fn shells_and_checks() {
        let exec = |program: &str, args: &[&str]| Action::Exec {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        assert_eq!(
            run(&["--cmd=ls /"]).unwrap().probes[0].action,
            exec("/bin/sh", &["-c", "ls /"])
        );
        assert_eq!(
            run(&["--shell=/bin/bash -eu -c", "--cmd=ls /"])
                .unwrap()
                .probes[0]
                .action,
            exec("/bin/bash", &["-eu", "-c", "ls /"])
        );
        assert_eq!(
            run(&["--shell", "none", "--cmd=/bin/sh -c 'exit 3'"])
                .unwrap()
                .probes[0]
                .action,
            exec("/bin/sh", &["-c", "exit 3"])
        );
        assert!(matches!(
            run(&["--cmd=tcp://127.0.0.1:80"]).unwrap().probes[0].action,
            Action::Check(_)
        ));
    }

    #[test]
    fn log_format() {
        assert!(run(&["--log-format=json"]).unwrap().json_logs);
        assert!(!run(&["-log-format", "text"]).unwrap().json_logs);
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_json_logs(&args(&[
            "-log-format",
            "json",
            "--period=1"
        ])));
        assert!(wants_json_logs(&args(&["--log-format=json"])));
        assert!(!wants_json_logs(&args(&[
            "--log-format=json",
            "--log-format=text"
        ])));
    }

    #[test]
    fn addresses_and_sizes() {
        let config = run(&["--address=[::1]", "--max-output=64KiB"]).unwrap();
        assert_eq!(config.address, Some("::1".parse().unwrap()));
        assert_eq!(config.max_output, 65536);
        assert_eq!(run(&["--max-output=100"]).unwrap().max_output, 100);
    }
}
