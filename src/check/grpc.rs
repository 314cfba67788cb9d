//! The grpc:// check: one `grpc.health.v1.Health/Check` call over HTTP/2
//! cleartext (`h2`), decided as the kubelet's gRPC probe decides it: it
//! passes only when the call ends with grpc-status 0 and the answer's
//! status is SERVING.
//!
//! This file knows gRPC (its headers, message framing, status codes and
//! the two health messages in protobuf); HTTP/2 itself is `h2`'s. It must
//! not accept a compressed answer (we offer no compression) or more than
//! one message.

use std::time::{Duration, Instant};

use super::h2::{self, Client, Response};
use super::hpack::{self, Field};
use super::options::Options;
use super::{ALPN_H2, Failure, USER_AGENT, authority, left, open};

/// The health answer is a few bytes; a larger message fails the call.
const MAX_MESSAGE: usize = 4 * 1024;
/// The gRPC message prefix: compressed flag and length (gRPC over HTTP/2).
const PREFIX: usize = 5;

/// Calls Health/Check for `service` on `host:port` (or the `socket`
/// option's Unix socket) within `deadline`, with the `metadata` option's
/// fields.
pub(super) fn run(
    host: &str,
    port: u16,
    service: &str,
    tls: bool,
    options: &Options,
    deadline: Instant,
) -> Result<String, Failure> {
    // Not connected, or no HTTP/2 preface, by the deadline: the kubelet's
    // "failed to connect service ... within".
    let not_ready = |f: Failure| match f.during("connect") {
        Failure::TimedOutIn("connect") => Failure::ConnectTimedOut(authority(host, port)),
        other => other,
    };
    let alpn = tls.then_some(ALPN_H2);
    let (mut stream, addr) = open(host, port, options, alpn, deadline).map_err(not_ready)?;
    let left = left(deadline).map_err(|f| f.during("health rpc"))?;
    let mut headers = request_headers(host, port, tls, left);
    for (key, value) in &options.metadata {
        // gRPC metadata: a -bin key's value is sent in base64 (gRPC over
        // HTTP/2: unpadded is what grpc-go sends).
        let value = if key.ends_with("-bin") {
            base64(value)
        } else {
            String::from_utf8_lossy(value).into_owned()
        };
        hpack::literal(&mut headers, 0, key, &value);
    }
    let client = Client::new(&headers, request_message(service), PREFIX + MAX_MESSAGE);
    let response = h2::call(&mut stream, &addr, client, deadline).map_err(|f| match f {
        Failure::TimedOutIn("connect") => not_ready(f),
        other => other.during("health rpc"),
    })?;
    decide(&response)
}

/// The request's header block: a gRPC call's pseudo-headers and headers,
/// with what is left of the deadline as `grpc-timeout`.
pub(super) fn request_headers(host: &str, port: u16, tls: bool, left: Duration) -> Vec<u8> {
    let authority = authority(host, port);
    // Whole milliseconds, rounded up: the server never waits less than we do.
    let millis = left.as_micros().div_ceil(1000).clamp(1, 99_999_999);
    let mut block = Vec::with_capacity(160);
    hpack::indexed(&mut block, hpack::METHOD_POST);
    let scheme = if tls {
        hpack::SCHEME_HTTPS
    } else {
        hpack::SCHEME_HTTP
    };
    hpack::indexed(&mut block, scheme);
    hpack::literal(&mut block, hpack::PATH, "", "/grpc.health.v1.Health/Check");
    hpack::literal(&mut block, hpack::AUTHORITY, "", &authority);
    hpack::literal(&mut block, hpack::CONTENT_TYPE, "", "application/grpc");
    hpack::literal(&mut block, 0, "te", "trailers");
    hpack::literal(&mut block, hpack::USER_AGENT, "", USER_AGENT);
    hpack::literal(&mut block, 0, "grpc-timeout", &format!("{millis}m"));
    block
}

/// `HealthCheckRequest { service }` in protobuf (field 1, a string; left
/// out when empty, as proto3 does), with gRPC's prefix.
pub(super) fn request_message(service: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(PREFIX + 8 + service.len());
    message.push(0); // not compressed
    message.extend_from_slice(&[0; 4]);
    if !service.is_empty() {
        message.push(0x0a);
        let mut length = service.len();
        while length >= 0x80 {
            message.push(0x80 | (length & 0x7f) as u8);
            length >>= 7;
        }
        message.push(length as u8);
        message.extend_from_slice(service.as_bytes());
    }
    let length = (message.len() - PREFIX) as u32;
    message[1..PREFIX].copy_from_slice(&length.to_be_bytes());
    message
}

/// The check's result from the whole response: `status: SERVING`, or why
/// not (with `status: ...` as what was said, when the call answered).
///
/// The rules are grpc-go's (the kubelet's client; `operateHeaders` in
/// `internal/transport/http2_client.go`, `recv` in `rpc_util.go`, unary
/// `RecvMsg` in `stream.go`): the headers must say `:status` 200 and a gRPC
/// content-type; grpc-status is read from the trailers, or from the headers
/// only when they end the stream (trailers-only), never from headers that
/// DATA follows; a stream that DATA ends has no status ("server closed the
/// stream without sending trailers"); a unary call's answer is exactly one
/// message. Stricter than grpc-go, which lets the last of repeated fields
/// win: grpc-status, grpc-message or content-type twice in one block is a
/// malformed answer, never a pass.
pub(super) fn decide(response: &Response) -> Result<String, Failure> {
    let malformed = |why: String| Failure::Error(format!("malformed gRPC answer: {why}"));
    let header = |fields: &[Field], name: &str| -> Result<String, Failure> {
        let mut found = fields.iter().filter(|(n, _)| n == name.as_bytes());
        let value = found.next().map_or(String::new(), |(_, v)| {
            String::from_utf8_lossy(v).into_owned()
        });
        match found.next() {
            Some(_) => Err(malformed(format!("{name} twice in one header block"))),
            None => Ok(value),
        }
    };
    let status = header(&response.headers, ":status")?;
    let content_type = header(&response.headers, "content-type")?;
    for name in ["grpc-status", "grpc-message"] {
        header(&response.headers, name)?;
    }
    let grpc = content_type
        .strip_prefix("application/grpc")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']));
    if status != "200" {
        return Err(Failure::Error(format!(
            "HTTP status {status} (want 200 and a gRPC answer)"
        )));
    }
    if !grpc {
        return Err(Failure::Error(format!(
            "content-type {content_type:?} is not gRPC (want application/grpc)"
        )));
    }
    let trailers = match (&response.trailers, response.ended_by_headers) {
        (Some(trailers), _) => trailers.as_slice(),
        // A trailers-only answer has grpc-status among its headers.
        (None, true) => response.headers.as_slice(),
        (None, false) => {
            return Err(Failure::Error(
                "the server closed the stream without sending trailers (no grpc-status)".into(),
            ));
        }
    };
    let code = header(trailers, "grpc-status")?;
    let message = percent_decode(&header(trailers, "grpc-message")?);
    let why = match code.parse::<u32>() {
        Ok(0) => {
            let status = health_status(&response.body).map_err(Failure::Error)?;
            let said = format!("status: {status}");
            if status == "SERVING" {
                return Ok(said);
            }
            let why = format!("service unhealthy (responded with {status:?})");
            return Err(Failure::Answered { said, why });
        }
        Ok(12) => format!(
            "this server does not implement the gRPC health protocol \
             (grpc.health.v1.Health): {message}"
        ),
        Ok(code) => format!(
            "health rpc failed: {}{}{message}",
            code_name(code),
            if message.is_empty() { "" } else { ": " }
        ),
        Err(_) if code.is_empty() => "the answer ended without a grpc-status".into(),
        Err(_) => format!("malformed grpc-status {code:?}"),
    };
    Err(Failure::Error(why))
}

/// The status in the one `HealthCheckResponse` message of `body`.
fn health_status(body: &[u8]) -> Result<String, String> {
    let (Some(&compressed), Some(length)) = (body.first(), body.get(1..PREFIX)) else {
        return Err("the answer has no message".into());
    };
    if compressed != 0 {
        return Err("the answer is compressed, and we asked for none".into());
    }
    let length = u32::from_be_bytes(length.try_into().expect("4 bytes")) as usize;
    let message = &body[PREFIX..];
    if message.len() > length {
        // grpc-go: "client streaming protocol violation: get <nil>, want <EOF>".
        return Err(format!(
            "more than one message in a unary answer ({} bytes after a message of {length})",
            message.len() - length
        ));
    }
    if message.len() < length {
        return Err(format!(
            "the answer is {} bytes after its prefix, which says {length}",
            message.len()
        ));
    }
    // Protobuf: field 1 (status) is a varint; others are skipped.
    let malformed = || "malformed HealthCheckResponse".to_string();
    let mut status = 0;
    let mut at = 0;
    while at < message.len() {
        let key = varint(message, &mut at).ok_or_else(malformed)?;
        let size = match key & 7 {
            0 => {
                let value = varint(message, &mut at).ok_or_else(malformed)?;
                if key >> 3 == 1 {
                    status = value;
                }
                0
            }
            1 => 8,
            2 => varint(message, &mut at).ok_or_else(malformed)? as usize,
            5 => 4,
            _ => return Err(malformed()),
        };
        at = at
            .checked_add(size)
            .filter(|&end| end <= message.len())
            .ok_or_else(malformed)?;
    }
    const NAMES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];
    Ok(NAMES
        .get(status as usize)
        .map_or(format!("status {status}"), |name| name.to_string()))
}

/// A protobuf varint at `bytes[*at]`.
fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// gRPC's status codes by number.
fn code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES
        .get(code as usize)
        .map_or(format!("code {code}"), |name| name.to_string())
}

/// grpc-message is percent-encoded (gRPC over HTTP/2); one with a bad
/// escape is shown as it came (grpc-go keeps just that escape as written).
fn percent_decode(text: &str) -> String {
    let bytes = super::options::percent_decode(text).unwrap_or_else(|| text.as_bytes().to_vec());
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Standard base64 without padding (RFC 4648 4; gRPC's -bin values).
fn base64(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(DIGITS[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_rfc_4648_without_padding() {
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xff, 0xfe, 0x00], "//4A"),
        ] {
            assert_eq!(base64(bytes), text);
        }
    }
}
