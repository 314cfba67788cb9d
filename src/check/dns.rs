//! The dns:// check: one UDP query for A, then AAAA, to the server named
//! or the first nameserver of /etc/resolv.conf. It must not retry over TCP
//! or follow CNAMEs: an answer with records of the type asked passes.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Instant;

use super::{Failure, io_failure, left, resolve};

pub(super) fn run(
    server: Option<&(String, u16)>,
    name: &str,
    deadline: Instant,
) -> Result<String, Failure> {
    let server = match server {
        Some((host, port)) => *resolve(host, *port, deadline)?
            .first()
            .ok_or_else(|| Failure::Error(format!("{host}: no addresses")))?,
        None => SocketAddr::new(resolv_conf_nameserver()?, 53),
    };
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

fn resolv_conf_nameserver() -> Result<IpAddr, Failure> {
    let conf = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| Failure::Error(format!("/etc/resolv.conf: {e}")))?;
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
