//! The h2c:// check's one request: the http:// check's GET (its headers,
//! from `http::request_fields`) over HTTP/2 cleartext with prior knowledge,
//! as the kubelet's `protocol: HTTP2` probe makes it, on the one-stream
//! client that grpc:// uses (`h2`). Its answer is read into http's
//! `Response`, whose pass rule, redirect rule and 10 KiB body bound are
//! http's. It must not read more than that body bound.

use std::time::Instant;

use super::h2::{self, Client};
use super::hpack;
use super::http::{MAX_BODY, Response, Target, request_fields};
use super::options::Options;
use super::{Failure, open};

/// `:method: GET` in HPACK's static table.
const METHOD_GET: usize = 2;

/// The first `name` field of `response`, as text.
#[inline(never)]
fn field(response: &h2::Response, name: &str) -> Option<String> {
    response
        .headers
        .iter()
        .find(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// One GET for `target` over h2c: its response, the body cut at
/// `MAX_BODY` (the rest is not read). A server that answers in HTTP/1
/// fails at once, saying so.
#[inline(never)]
pub(super) fn fetch(
    target: &Target,
    options: &Options,
    deadline: Instant,
) -> Result<Response, Failure> {
    let (mut stream, addr) = open(&target.host, target.port, options, None, deadline)?;
    let (authority, fields) = request_fields(target, options);
    let mut block = Vec::with_capacity(128);
    hpack::indexed(&mut block, METHOD_GET);
    hpack::indexed(&mut block, hpack::SCHEME_HTTP);
    hpack::literal(&mut block, hpack::PATH, "", &target.path);
    hpack::literal(&mut block, hpack::AUTHORITY, "", &authority);
    for (name, value) in &fields {
        // HTTP/2 field names are lower case (RFC 9113 8.2.1).
        hpack::literal(&mut block, 0, &name.to_ascii_lowercase(), value);
    }
    let mut client = Client::new(&block, Vec::new(), MAX_BODY);
    client.truncate_body = true;
    let response = h2::call(&mut stream, &addr, client, deadline)?;
    let field = |name| field(&response, name);
    let status = field(":status")
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| Failure::Error(format!("{addr}: malformed :status")))?;
    Ok(Response {
        status,
        status_line: format!("HTTP/2 {status}"),
        location: field("location"),
        body: response.body,
    })
}
