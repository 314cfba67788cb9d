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
    /// `socket=PATH`: connect to this Unix socket (http, h2c, grpc).
    pub socket: Option<PathBuf>,
    pub timing: Timing,
}

/// A probe's own timing (every scheme); `None`: the flag's value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    pub period: Option<Duration>,
    pub timeout: Option<Duration>,
    pub failure_threshold: Option<u32>,
    pub success_threshold: Option<u32>,
}

/// Each key and the schemes that take it.
const KEYS: [(&str, &[&str]); 9] = [
    ("header", &["http", "h2c"]),
    ("metadata", &["grpc"]),
    ("status", &["http", "h2c"]),
    ("body", &["http", "h2c"]),
    ("socket", &["http", "h2c", "grpc"]),
    ("period", ALL),
    ("timeout", ALL),
    ("failure-threshold", ALL),
    ("success-threshold", ALL),
];
const ALL: &[&str] = &["tcp", "http", "h2c", "file", "dns", "grpc"];

/// The options in `fragment` (without its `#`) for a `scheme` check. An
/// empty fragment is no options. Errors name the key.
pub fn parse(scheme: &str, fragment: &str) -> Result<Options, String> {
    let mut options = Options::default();
    if fragment.is_empty() {
        return Ok(options);
    }
    for pair in fragment.split('&') {
        let (key, raw) = pair
            .split_once('=')
            .ok_or_else(|| format!("option {pair:?}: write key=value"))?;
        let Some((_, schemes)) = KEYS.iter().find(|(k, _)| *k == key) else {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "unknown option {key:?} (options: {})",
                known.join(", ")
            ));
        };
        if !schemes.contains(&scheme) {
            return Err(format!(
                "option {key:?} does not apply to {scheme}:// (only to {})",
                schemes.join(", ")
            ));
        }
        let bytes = percent_decode(raw).map_err(|e| format!("option {key}: {e}"))?;
        let bad = |why: &str| format!("option {key}={raw}: {why}");
        let text = || String::from_utf8(bytes.clone()).map_err(|_| bad("not UTF-8"));
        let twice = || Err(format!("option {key:?} given twice (it takes one value)"));
        match key {
            "header" => {
                let text = text()?;
                let (name, value) = text
                    .split_once(':')
                    .ok_or_else(|| bad("write Name:value"))?;
                if name.is_empty() || !name.bytes().all(is_token) {
                    return Err(bad("the header name is not an HTTP token"));
                }
                let value = value.trim_matches([' ', '\t']);
                if value.chars().any(|c| c.is_control() && c != '\t') {
                    return Err(bad("control characters in the header value"));
                }
                options.headers.push((name.to_string(), value.to_string()));
            }
            "metadata" => {
                let (name, value) = match bytes.iter().position(|&b| b == b':') {
                    Some(i) => (&bytes[..i], &bytes[i + 1..]),
                    None => return Err(bad("write key:value")),
                };
                let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                let legal =
                    |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b);
                if name.is_empty() || !name.bytes().all(legal) {
                    return Err(bad("a metadata key is made of a-z, 0-9, '-', '_' and '.'"));
                }
                if name.starts_with("grpc-") {
                    return Err(bad("grpc- keys are gRPC's own"));
                }
                let binary = name.ends_with("-bin");
                if !binary && !value.iter().all(|&b| (0x20..0x7f).contains(&b)) {
                    return Err(bad(
                        "a text value is printable ASCII (use a key ending in -bin for bytes)",
                    ));
                }
                let value = if binary {
                    value.to_vec()
                } else {
                    value.trim_ascii().to_vec()
                };
                options.metadata.push((name, value));
            }
            "status" => {
                if options.status.is_some() {
                    return twice();
                }
                options.status = Some(parse_status_list(&text()?).map_err(|e| bad(&e))?);
            }
            "body" => {
                if options.body.is_some() {
                    return twice();
                }
                let text = text()?;
                if text.is_empty() {
                    return Err(bad("empty"));
                }
                options.body = Some(text);
            }
            "socket" => {
                if options.socket.is_some() {
                    return twice();
                }
                let text = text()?;
                if !text.starts_with('/') {
                    return Err(bad("write an absolute path"));
                }
                options.socket = Some(PathBuf::from(text));
            }
            "period" | "timeout" => {
                let nanos = duration::parse(&text()?).map_err(|e| bad(&e))?;
                if nanos <= 0 {
                    return Err(bad("must be greater than zero"));
                }
                let value = Some(Duration::from_nanos(nanos as u64));
                let slot = if key == "period" {
                    &mut options.timing.period
                } else {
                    &mut options.timing.timeout
                };
                if slot.is_some() {
                    return twice();
                }
                *slot = value;
            }
            _ => {
                let n = text()?
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| bad("must be a whole number, at least 1"))?;
                let slot = if key == "failure-threshold" {
                    &mut options.timing.failure_threshold
                } else {
                    &mut options.timing.success_threshold
                };
                if slot.is_some() {
                    return twice();
                }
                *slot = Some(n);
            }
        }
    }
    Ok(options)
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
        let Some(list) = &self.status else {
            return "200-399".into();
        };
        let shown: Vec<String> = list
            .iter()
            .map(|&(low, high)| {
                if low == high {
                    low.to_string()
                } else {
                    format!("{low}-{high}")
                }
            })
            .collect();
        shown.join(",")
    }
}

/// `200,204,300-399`: codes and inclusive ranges, each within 100-599.
fn parse_status_list(text: &str) -> Result<Vec<(u16, u16)>, String> {
    let code = |t: &str| {
        t.parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| format!("{t:?} is not a status code (100-599)"))
    };
    text.split(',')
        .map(|item| match item.split_once('-') {
            Some((low, high)) => {
                let (low, high) = (code(low)?, code(high)?);
                if low > high {
                    return Err(format!("the range {item} is empty"));
                }
                Ok((low, high))
            }
            None => code(item).map(|c| (c, c)),
        })
        .collect()
}

/// RFC 9110 5.6.2's token characters.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `%XX` escapes decoded (nothing else: a `+` is a `+`); a `%` not followed
/// by two hex digits is an error.
pub fn percent_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'%' {
            out.push(bytes[at]);
            at += 1;
            continue;
        }
        let hex = bytes
            .get(at + 1..at + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
            .ok_or_else(|| format!("bad percent-escape at {:?}", &text[at..]))?;
        out.push(hex);
        at += 3;
    }
    Ok(out)
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
            ("http", "bogus=1", "unknown option \"bogus\""),
            ("http", "header", "write key=value"),
            ("http", "header=NoColon", "write Name:value"),
            ("http", "header=Bad%20Name:x", "not an HTTP token"),
            ("http", "header=X:a%0Db", "control characters"),
            ("http", "status=200-", "not a status code"),
            ("http", "status=99", "not a status code"),
            ("http", "status=300-200", "is empty"),
            ("http", "status=200&status=204", "given twice"),
            ("http", "body=", "empty"),
            ("http", "body=a&body=b", "given twice"),
            ("http", "body=%zz", "bad percent-escape"),
            ("http", "body=%FF", "not UTF-8"),
            ("http", "socket=relative", "absolute path"),
            ("http", "period=0s", "greater than zero"),
            ("http", "period=1", "missing unit"),
            ("http", "timeout=1s&timeout=2s", "given twice"),
            ("http", "failure-threshold=0", "at least 1"),
            ("http", "success-threshold=x", "at least 1"),
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
        assert_eq!(percent_decode("a%20b+c%2f").unwrap(), b"a b+c/");
        assert!(percent_decode("50%").is_err());
    }
}
