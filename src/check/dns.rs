//! The dns:// check: one UDP query for A, then AAAA, to the server named
//! or the first nameserver of /etc/resolv.conf, for the name as glibc's
//! resolver (and nslookup) would ask it: a name with a trailing dot as
//! written; another with fewer dots than `ndots` with each `search` domain
//! first, then as written; one with as many or more, as written first. It
//! must not retry over TCP or follow CNAMEs: an answer with records of the
//! type asked passes.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Instant;

use super::{Failure, io_failure, left, resolve};

pub(super) fn run(
    server: Option<&(String, u16)>,
    name: &str,
    deadline: Instant,
) -> Result<String, Failure> {
    let conf = std::fs::read_to_string("/etc/resolv.conf");
    let server = match server {
        Some((host, port)) => *resolve(host, *port, deadline)?
            .first()
            .ok_or_else(|| Failure::Error(format!("{host}: no addresses")))?,
        None => {
            let conf = conf
                .as_ref()
                .map_err(|e| Failure::Error(format!("/etc/resolv.conf: {e}")))?;
            SocketAddr::new(nameserver(conf)?, 53)
        }
    };
    // Each name in turn; an answer with no records (NXDOMAIN, none of the
    // types) moves on to the next, as res_search does; the last one's is
    // the reason, naming the others tried.
    let names = candidates(name, conf.as_deref().unwrap_or(""));
    let mut tried = Vec::new();
    for candidate in &names {
        match ask(server, candidate, deadline) {
            Err(Failure::Answered { said, why }) if tried.len() + 1 == names.len() => {
                let said = if tried.is_empty() {
                    said
                } else {
                    format!("{said} (also tried {})", tried.join(", "))
                };
                return Err(Failure::Answered { said, why });
            }
            Err(Failure::Answered { .. }) => tried.push(candidate.as_str()),
            other => return other,
        }
    }
    unreachable!("at least one name is asked")
}

/// The names asked for `name`, in order, as glibc's `res_search` makes
/// them from resolv.conf's `search` (or `domain`) and `ndots` (default 1).
fn candidates(name: &str, conf: &str) -> Vec<String> {
    if let Some(absolute) = name.strip_suffix('.') {
        return vec![absolute.to_string()];
    }
    let mut ndots = 1;
    let mut search: Vec<&str> = Vec::new();
    for line in conf.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            // The last of `search` and `domain` wins, as in glibc.
            Some("search" | "domain") => search = words.collect(),
            Some("options") => {
                for option in words {
                    if let Some(n) = option.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                        ndots = std::cmp::min(n, 15);
                    }
                }
            }
            _ => {}
        }
    }
    let searched = search
        .iter()
        .map(|domain| format!("{name}.{}", domain.trim_end_matches('.')))
        .filter(|full| full.len() <= 253 && !full.ends_with('.'));
    let dots = name.matches('.').count();
    let mut names: Vec<String> = Vec::new();
    if dots >= ndots {
        names.push(name.to_string());
        names.extend(searched);
    } else {
        names.extend(searched);
        names.push(name.to_string());
    }
    names
}

/// A then AAAA for `name` at `server`.
fn ask(server: SocketAddr, name: &str, deadline: Instant) -> Result<String, Failure> {
    let mut said = Vec::new();
    for (qtype, label) in [(1u16, "A"), (28, "AAAA")] {
        match query(server, name, qtype, deadline)? {
            Answer::Records(n) => {
                return Ok(format!("{name}: {n} {label} record(s) from {server}"));
            }
            Answer::NxDomain => {
                return Err(Failure::Answered {
                    said: format!("{name}: NXDOMAIN from {server}"),
                    why: "NXDOMAIN".into(),
                });
            }
            Answer::Rcode(rcode) => said.push(format!("{label}: rcode {rcode}")),
            Answer::Empty => said.push(format!("{label}: no records")),
        }
    }
    Err(Failure::Answered {
        said: format!("{name}: {} from {server}", said.join(", ")),
        why: "no A or AAAA answer".into(),
    })
}

fn nameserver(conf: &str) -> Result<IpAddr, Failure> {
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|rest| rest.trim().parse().ok())
        .ok_or_else(|| Failure::Error("no nameserver in /etc/resolv.conf".into()))
}

pub(super) enum Answer {
    Records(usize),
    Empty,
    NxDomain,
    Rcode(u16),
}

/// One UDP query for `name` of type `qtype`; the number of records of that
/// type in the answer section.
fn query(server: SocketAddr, name: &str, qtype: u16, deadline: Instant) -> Result<Answer, Failure> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind).map_err(|e| io_failure("udp socket", e))?;
    socket
        .connect(server)
        .map_err(|e| io_failure(&format!("udp {server}"), e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let id = (std::process::id() as u16) ^ (nanos as u16) ^ qtype;
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&qtype.to_be_bytes());
    packet.extend_from_slice(&[0, 1]); // class IN
    socket
        .send(&packet)
        .map_err(|e| io_failure(&format!("send to {server}"), e))?;
    let mut reply = [0u8; 1500];
    loop {
        socket
            .set_read_timeout(Some(left(deadline)?))
            .map_err(|e| io_failure("set timeout", e))?;
        let n = socket
            .recv(&mut reply)
            .map_err(|e| io_failure(&format!("receive from {server}"), e))?;
        let reply = &reply[..n];
        // Not ours (or not an answer): keep waiting.
        if n < 12 || reply[..2] != id.to_be_bytes() || reply[2] & 0x80 == 0 {
            continue;
        }
        return parse_reply(reply, qtype)
            .ok_or_else(|| Failure::Error(format!("malformed answer from {server}")));
    }
}

pub(super) fn parse_reply(reply: &[u8], qtype: u16) -> Option<Answer> {
    let u16_at = |i: usize| Some(u16::from_be_bytes([*reply.get(i)?, *reply.get(i + 1)?]));
    let rcode = u16_at(2)? & 0x000f;
    match rcode {
        0 => {}
        3 => return Some(Answer::NxDomain),
        other => return Some(Answer::Rcode(other)),
    }
    let questions = u16_at(4)?;
    let answers = u16_at(6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(reply, at)? + 4;
    }
    let mut found = 0;
    for _ in 0..answers {
        at = skip_name(reply, at)?;
        let rtype = u16_at(at)?;
        let length = u16_at(at + 8)? as usize;
        at += 10 + length;
        if at > reply.len() {
            return None;
        }
        found += usize::from(rtype == qtype);
    }
    Some(if found > 0 {
        Answer::Records(found)
    } else {
        Answer::Empty
    })
}

/// The offset just past a (possibly compressed) name at `at`.
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *packet.get(at)? as usize;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += l + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_names_as_glibc_searches_them() {
        let conf = "nameserver 10.0.0.10\nsearch ns.svc.cluster.local svc.cluster.local.\n\
                    options ndots:5 timeout:1\n";
        assert_eq!(
            candidates("kubernetes", conf),
            [
                "kubernetes.ns.svc.cluster.local",
                "kubernetes.svc.cluster.local",
                "kubernetes"
            ]
        );
        // As many dots as ndots: as written first.
        assert_eq!(
            candidates("a.b.c.d.e", conf),
            [
                "a.b.c.d.e.ns.svc.cluster.local",
                "a.b.c.d.e.svc.cluster.local",
                "a.b.c.d.e"
            ]
        );
        assert_eq!(candidates("a.b.c.d.e.f", conf)[0], "a.b.c.d.e.f");
        // A trailing dot: the name as written, and nothing else.
        assert_eq!(
            candidates("kubernetes.default.", conf),
            ["kubernetes.default"]
        );
        // Default ndots 1; the last of search and domain wins.
        let conf = "search a.test\ndomain b.test\n";
        assert_eq!(candidates("x", conf), ["x.b.test", "x"]);
        assert_eq!(candidates("x.y", conf), ["x.y", "x.y.b.test"]);
        assert_eq!(candidates("x", ""), ["x"]);
    }

    #[test]
    fn reads_dns_answers() {
        // Question a.b A IN, answer with a pointer to it: one A record.
        let mut reply = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        reply.extend_from_slice(&[1, b'a', 1, b'b', 0, 0, 1, 0, 1]);
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
        assert!(matches!(parse_reply(&reply, 1), Some(Answer::Records(1))));
        assert!(matches!(parse_reply(&reply, 28), Some(Answer::Empty)));
        reply[3] = 0x83;
        assert!(matches!(parse_reply(&reply, 1), Some(Answer::NxDomain)));
        assert!(parse_reply(&reply[..14], 1).is_some()); // NXDOMAIN needs no more
        reply[3] = 0x80;
        assert!(parse_reply(&reply[..30], 1).is_none(), "truncated record");
    }
}
