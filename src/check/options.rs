//! A check URL's options, in its fragment: `URL#key=value&key=value`. The
//! fragment is never sent (it is not part of a request target, RFC 9110
//! 7.1), so it is free to say how the check is made: headers, the statuses
//! that pass, a text the body must hold, gRPC metadata, a Unix socket, and
//! the probe's own period, timeout and thresholds.
//!
//! This file parses and validates them, once, at start-up; it knows which
//! scheme takes which key, and nothing of how a check uses them.

use std::path::PathBuf;
use std::time::Duration;

use crate::duration;

/// What a check URL's fragment asks for. `Default`: no fragment, the check
/// exactly as without options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// `header=Name:value`, in order (http, h2c).
    pub headers: Vec<(String, String)>,
    /// `metadata=key:value`, keys lower-cased, `-bin` values as bytes
    /// (grpc).
    pub metadata: Vec<(String, Vec<u8>)>,
    /// `status=LIST`: the codes that pass, as inclusive ranges (http, h2c);
    /// `None`: 200-399.
    pub status: Option<Vec<(u16, u16)>>,
    /// `body=TEXT`: the body must contain it (http, h2c).
    pub body: Option<String>,
    /// `socket=PATH`: connect to this Unix socket (http, h2c, grpc,
    /// https, grpcs).
    pub socket: Option<PathBuf>,
    /// The TLS keys (https, grpcs): `ca=FILE` turns verification on,
    /// `server-name=NAME` is the name sent and verified, `cert=FILE` and
    /// `key=FILE` a client certificate. Files are read at every run.
    pub tls: Box<TlsOptions>,
    pub timing: Timing,
}

/// How a TLS check connects (https, grpcs); see `Options::tls`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsOptions {
    pub ca: Option<PathBuf>,
    pub server_name: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A probe's own timing (every scheme); `None`: the flag's value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    pub period: Option<Duration>,
    pub timeout: Option<Duration>,
    pub failure_threshold: Option<u32>,
    pub success_threshold: Option<u32>,
}

/// The schemes, by bit: a key's mask in KEYS says which take it.
const SCHEMES: [&str; 8] = [
    "tcp", "http", "h2c", "file", "dns", "grpc", "https", "grpcs",
];
const HTTP: u8 = 0b0100_0110;
const GRPC: u8 = 0b1010_0000;
const SOCKET: u8 = HTTP | GRPC;
const ALL: u8 = 0xff;
const TLS: u8 = 0b1100_0000;

/// Each key and the schemes that take it.
const KEYS: [(&str, u8); 13] = [
    ("header", HTTP),
    ("metadata", GRPC),
    ("status", HTTP),
    ("body", HTTP),
    ("socket", SOCKET),
    ("period", ALL),
    ("timeout", ALL),
    ("failure-threshold", ALL),
    ("success-threshold", ALL),
    ("ca", TLS),
    ("server-name", TLS),
    ("cert", TLS),
    ("key", TLS),
];

/// The options in `fragment` (without its `#`) for a `scheme` check. An
/// empty fragment is no options. Errors name the key.
pub fn parse(scheme: &str, fragment: &str) -> Result<Options, String> {
    let mut options = Options::default();
    let scheme_bit = SCHEMES
        .iter()
        .position(|s| *s == scheme)
        .map_or(0, |i| 1u8 << i);
    // Keys seen, by their place in KEYS: a one-value key may come once.
    let mut seen = 0u16;
    for pair in fragment.split('&').filter(|_| !fragment.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(index) = KEYS.iter().position(|(k, _)| *k == key) else {
            let mut keys = String::new();
            for (k, _) in KEYS {
                keys.push_str(if keys.is_empty() { "" } else { ", " });
                keys.push_str(k);
            }
            return Err(format!("unknown option {key:?} (options: {keys})"));
        };
        let mask = KEYS[index].1;
        if mask & scheme_bit == 0 {
            let mut takers = String::new();
            for (i, name) in SCHEMES.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    takers.push_str(if takers.is_empty() { "" } else { ", " });
                    takers.push_str(name);
                }
            }
            return Err(format!(
                "option {key:?} does not apply to {scheme}:// (only to {takers})"
            ));
        }
        if seen & (1 << index) != 0 && !matches!(key, "header" | "metadata") {
            return Err(format!("option {key:?} given twice (it takes one value)"));
        }
        seen |= 1 << index;
        value(&mut options, key, raw).map_err(|why| format!("option {key}={raw}: {why}"))?;
    }
    let tls = &options.tls;
    if tls.cert.is_some() != tls.key.is_some() {
        return Err("options cert and key go together (a client certificate and its key)".into());
    }
    Ok(options)
}

/// Takes `key`'s value, `raw` as written in the URL.
fn value(options: &mut Options, key: &str, raw: &str) -> Result<(), &'static str> {
    let bytes = percent_decode(raw).ok_or("a bad percent-escape")?;
    if key == "metadata" {
        let at = bytes
            .iter()
            .position(|&b| b == b':')
            .ok_or("write key:value")?;
        let (name, value) = (bytes[..at].to_ascii_lowercase(), &bytes[at + 1..]);
        let legal = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(b);
        if name.is_empty() || !name.iter().all(legal) {
            return Err("a metadata key is made of a-z, 0-9, '-', '_' and '.'");
        }
        if name.starts_with(b"grpc-") {
            return Err("grpc- keys are gRPC's own");
        }
        let value = if name.ends_with(b"-bin") {
            value.to_vec()
        } else if value.iter().all(|b| (0x20..0x7f).contains(b)) {
            value.trim_ascii().to_vec()
        } else {
            return Err("a text value is printable ASCII (use a key ending in -bin for bytes)");
        };
        let name = String::from_utf8(name).expect("ASCII");
        options.metadata.push((name, value));
        return Ok(());
    }
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    let timing = &mut options.timing;
    match key {
        "header" => {
            let (name, value) = text.split_once(':').ok_or("write Name:value")?;
            if name.is_empty() || !name.bytes().all(is_token) {
                return Err("the header name is not an HTTP token");
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err("control characters in the header value");
            }
            options
                .headers
                .push((name.to_string(), value.trim_ascii().to_string()));
        }
        "status" => options.status = Some(parse_status_list(&text)?),
        "body" if text.is_empty() => return Err("empty"),
        // The kubelet's 10 KiB is all of a body that is read.
        "body" if text.len() > super::http::MAX_BODY => {
            return Err("longer than the 10 KiB of a body that is read");
        }
        "body" => options.body = Some(text),
        "socket" if !text.starts_with('/') => return Err("write an absolute path"),
        // Linux's sun_path: 108 bytes with the terminating NUL.
        "socket" if text.len() > 107 => {
            return Err("longer than a Unix socket's path may be (107 bytes)");
        }
        "socket" => options.socket = Some(PathBuf::from(text)),
        "ca" | "cert" | "key" | "server-name" => tls_value(&mut options.tls, key, text)?,
        "period" | "timeout" => {
            let value = match duration::parse(&text) {
                Ok(nanos) if nanos > 0 => Some(Duration::from_nanos(nanos as u64)),
                _ => return Err("must be a Go duration greater than zero, such as 500ms or 2s"),
            };
            if key == "period" {
                timing.period = value;
            } else {
                timing.timeout = value;
            }
        }
        _ => {
            let value = number(&text).filter(|&n| n >= 1);
            let value = Some(value.ok_or("must be a whole number, at least 1")?);
            if key == "failure-threshold" {
                timing.failure_threshold = value;
            } else {
                timing.success_threshold = value;
            }
        }
    }
    Ok(())
}

/// Takes a TLS key's value (the TLS build: elsewhere the schemes that
/// take these keys are refused before their options are read).
#[cfg(feature = "tls")]
fn tls_value(tls: &mut TlsOptions, key: &str, text: String) -> Result<(), &'static str> {
    if key != "server-name" {
        if text.is_empty() {
            return Err("write a file's path");
        }
        let path = Some(PathBuf::from(text));
        match key {
            "ca" => tls.ca = path,
            "cert" => tls.cert = path,
            _ => tls.key = path,
        }
        return Ok(());
    }
    let name = text.strip_suffix('.').unwrap_or(&text);
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let ip = name.parse::<std::net::IpAddr>().is_ok();
    if !ip && (name.len() > 253 || !name.split('.').all(label)) {
        return Err("write a DNS name, such as app.test");
    }
    tls.server_name = Some(name.to_string());
    Ok(())
}

/// Never reached: `check::parse` refuses https:// and grpcs:// in this
/// build, and no other scheme takes these keys.
#[cfg(not(feature = "tls"))]
fn tls_value(_: &mut TlsOptions, _: &str, _: String) -> Result<(), &'static str> {
    Err("TLS is not in this build (exechealthz-tls has it)")
}

impl Options {
    /// Whether `code` passes: in the `status` list, or 200-399.
    pub fn passes(&self, code: u16) -> bool {
        match &self.status {
            Some(list) => list.iter().any(|&(low, high)| (low..=high).contains(&code)),
            None => (200..=399).contains(&code),
        }
    }

    /// The statuses that pass, for a reason: `200-399`, `200,204,300-399`.
    pub fn wanted(&self) -> String {
        let mut out = String::new();
        for &(low, high) in self.status.as_deref().unwrap_or(&[(200, 399)]) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&low.to_string());
            if high != low {
                out.push('-');
                out.push_str(&high.to_string());
            }
        }
        out
    }
}

/// `200,204,300-399`: codes and inclusive ranges, each within 100-599.
fn parse_status_list(text: &str) -> Result<Vec<(u16, u16)>, &'static str> {
    let mut list = Vec::new();
    for item in text.split(',') {
        let (low, high) = item.split_once('-').unwrap_or((item, item));
        match (number(low), number(high)) {
            (Some(low @ 100..), Some(high @ ..=599)) if low <= high => {
                list.push((low as u16, high as u16));
            }
            _ => return Err("write status codes (100-599) and ranges, such as 200,204,300-399"),
        }
    }
    Ok(list)
}

/// A whole number written in at most 9 decimal digits (no sign, no
/// spaces), so that it fits a u32 without overflow checks.
fn number(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
}

/// RFC 9110 5.6.2's token characters.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `%XX` escapes decoded (nothing else: a `+` is a `+`); `None` for a `%`
/// not followed by two hex digits.
pub fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte != b'%' {
            out.push(byte);
            continue;
        }
        let hex = |b: Option<u8>| (b? as char).to_digit(16);
        let (high, low) = (hex(bytes.next())?, hex(bytes.next())?);
        out.push((high * 16 + low) as u8);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_key() {
        let o = parse(
            "http",
            "header=Host:app.test&header=X-A:%20b%20&status=200,204,300-399&body=all%20good\
             &socket=/run/app.sock&period=2s&timeout=300ms&failure-threshold=3&success-threshold=2",
        )
        .unwrap();
        assert_eq!(
            o.headers,
            [
                ("Host".into(), "app.test".into()),
                ("X-A".into(), "b".into())
            ]
        );
        assert_eq!(o.status, Some(vec![(200, 200), (204, 204), (300, 399)]));
        assert_eq!(o.body.as_deref(), Some("all good"));
        assert_eq!(o.socket, Some(PathBuf::from("/run/app.sock")));
        assert_eq!(
            o.timing,
            Timing {
                period: Some(Duration::from_secs(2)),
                timeout: Some(Duration::from_millis(300)),
                failure_threshold: Some(3),
                success_threshold: Some(2),
            }
        );
        assert!(o.passes(204) && o.passes(301) && !o.passes(201) && !o.passes(400));
        assert_eq!(o.wanted(), "200,204,300-399");
        assert_eq!(parse("http", "").unwrap(), Options::default());
        assert!(Options::default().passes(399) && !Options::default().passes(400));
        let g = parse(
            "grpc",
            "metadata=X-Token:abc&metadata=trace-bin:%00%FF&socket=/s",
        )
        .unwrap();
        assert_eq!(
            g.metadata,
            [
                ("x-token".into(), b"abc".to_vec()),
                ("trace-bin".into(), vec![0, 0xff])
            ]
        );
        // An empty Accept is a value (it removes ours), not an error.
        assert_eq!(
            parse("h2c", "header=Accept:").unwrap().headers,
            [("Accept".into(), String::new())]
        );
        assert_eq!(
            parse("tcp", "timeout=2s").unwrap().timing.timeout,
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn refuses_bad_keys_and_values() {
        for (scheme, fragment, says) in [
            (
                "http",
                "bogus=1",
                "unknown option \"bogus\" (options: header, metadata, status, body, socket, \
                 period, timeout, failure-threshold, success-threshold, ca, server-name, cert, key)",
            ),
            ("http", "header", "write Name:value"),
            ("http", "header=NoColon", "write Name:value"),
            ("http", "header=Bad%20Name:x", "not an HTTP token"),
            ("http", "header=X:a%0Db", "control characters"),
            ("http", "status=200-", "write status codes"),
            ("http", "status=99", "write status codes"),
            ("http", "status=300-200", "write status codes"),
            ("http", "status=200,", "write status codes"),
            ("http", "status=+200", "write status codes"),
            ("http", "status=600", "write status codes"),
            ("http", "status=%20200", "write status codes"),
            ("http", "status=200&status=204", "given twice"),
            ("http", "body=", "empty"),
            (
                "http",
                &format!("body={}", "b".repeat(10 * 1024 + 1)),
                "10 KiB",
            ),
            ("http", "body=a&body=b", "given twice"),
            ("http", "body=%zz", "bad percent-escape"),
            ("http", "body=%FF", "not UTF-8"),
            ("http", "socket=relative", "absolute path"),
            ("grpc", &format!("socket=/{}", "s".repeat(107)), "107 bytes"),
            ("http", "period=0s", "greater than zero"),
            ("http", "period=1", "a Go duration"),
            ("http", "timeout=1s&timeout=2s", "given twice"),
            ("http", "failure-threshold=0", "at least 1"),
            ("http", "success-threshold=x", "at least 1"),
            ("http", "failure-threshold=+2", "at least 1"),
            ("http", "failure-threshold=1000000000", "at least 1"),
            (
                "tcp",
                "ca=/x",
                "does not apply to tcp:// (only to https, grpcs)",
            ),
            (
                "http",
                "metadata=a:b",
                "does not apply to http:// (only to grpc, grpcs)",
            ),
            ("http", "metadata=a:b", "does not apply to http://"),
            ("grpc", "header=A:b", "does not apply to grpc://"),
            ("grpc", "status=200", "does not apply to grpc://"),
            ("grpc", "body=x", "does not apply to grpc://"),
            ("grpc", "metadata=:x", "metadata key"),
            ("grpc", "metadata=a%20b:x", "metadata key"),
            ("grpc", "metadata=grpc-timeout:1", "gRPC's own"),
            ("grpc", "metadata=a:%00", "printable ASCII"),
            ("tcp", "socket=/s", "does not apply to tcp://"),
            ("dns", "header=A:b", "does not apply to dns://"),
            ("file", "status=200", "does not apply to file://"),
        ] {
            let e = parse(scheme, fragment).unwrap_err();
            assert!(e.contains(says), "{scheme} #{fragment}: {e}");
        }
    }

    #[test]
    fn decodes_percent_escapes_only() {
        assert_eq!(
            percent_decode("a%20b+c%2f%C3%A9").unwrap(),
            "a b+c/é".as_bytes()
        );
        assert!(percent_decode("50%").is_none());
        assert!(percent_decode("%4").is_none() && percent_decode("%g0").is_none());
        let whole = format!("body={}", "b".repeat(10 * 1024));
        assert_eq!(
            parse("http", &whole).unwrap().body.unwrap().len(),
            10 * 1024
        );
        let longest = format!("socket=/{}", "s".repeat(106));
        assert_eq!(
            parse("h2c", &longest)
                .unwrap()
                .socket
                .unwrap()
                .as_os_str()
                .len(),
            107
        );
    }
}
