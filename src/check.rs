//! Built-in checks, for images with no shell: a `--cmd` written as a URL
//! runs inside the process instead of `sh -c`.
//!
//! - `tcp://HOST:PORT`: a TCP connection opens;
//! - `http://HOST[:PORT]/PATH`: GET answers 200-399 (the kubelet's httpGet);
//! - `file:///PATH`: the path exists;
//! - `dns://[SERVER[:PORT]]/NAME`: an A or AAAA query for NAME gets an
//!   answer (no SERVER: the first nameserver of /etc/resolv.conf).
//!
//! Names resolve at every run, so a changed address is followed. Each check
//! finishes within the probe's timeout. Parsing happens once at start-up
//! (`parse`); `run` is called by the probe loop and returns a result like a
//! command's. Nothing here spawns processes.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::outcome::Outcome;

#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Tcp {
        host: String,
        port: u16,
    },
    Http {
        host: String,
        port: u16,
        path: String,
    },
    File {
        path: PathBuf,
    },
    Dns {
        server: Option<(String, u16)>,
        name: String,
    },
}

/// Schemes of the built-in checks; a `--cmd` that begins with one of these
/// (or `https://`) is a check, or an error, never a shell command.
const SCHEMES: [&str; 5] = ["tcp", "http", "https", "file", "dns"];

/// `Ok(None)` when `cmd` is not a URL (it is a command); an error for a
/// URL we cannot run.
pub fn parse(cmd: &str) -> Result<Option<Check>, String> {
    let Some((scheme, rest)) = cmd.split_once("://") else {
        return Ok(None);
    };
    let is_scheme = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return Ok(None);
    }
    let builtin = SCHEMES.contains(&scheme.to_ascii_lowercase().as_str());
    if cmd.contains(char::is_whitespace) {
        if builtin {
            return Err(format!(
                "{}: a built-in check is one URL, with no spaces \
                 (percent-encode them, or write a command that does not begin with {scheme}://)",
                crate::json::string(cmd)
            ));
        }
        return Ok(None);
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let check = match scheme.to_ascii_lowercase().as_str() {
        "tcp" => {
            let (host, port) = host_port(authority, None)?;
            Check::Tcp { host, port }
        }
        "http" => {
            let (host, port) = host_port(authority, Some(80))?;
            let path = if path.is_empty() { "/" } else { path };
            Check::Http {
                host,
                port,
                path: path.to_string(),
            }
        }
        "https" => {
            return Err(format!(
                "{cmd}: TLS is not built in; use http://, or a command such as curl"
            ));
        }
        "file" => {
            if !authority.is_empty() || path.is_empty() {
                return Err(format!("{cmd}: write files as file:///PATH"));
            }
            Check::File {
                path: PathBuf::from(path),
            }
        }
        "dns" => {
            let name = path.trim_start_matches('/');
            if name.is_empty() || name.split('.').any(|l| l.len() > 63) || name.len() > 253 {
                return Err(format!(
                    "{cmd}: write dns://[SERVER[:PORT]]/NAME with a valid NAME"
                ));
            }
            let server = if authority.is_empty() {
                None
            } else {
                Some(host_port(authority, Some(53))?)
            };
            Check::Dns {
                server,
                name: name.trim_end_matches('.').to_string(),
            }
        }
        other => {
            return Err(format!(
                "{cmd}: unknown scheme {other}:// (built-in checks: tcp, http, file, dns)"
            ));
        }
    };
    Ok(Some(check))
}

impl Check {
    /// Which check, for messages: `http check of http://a:80/healthz`.
    pub fn name(&self) -> String {
        let host = |host: &str| {
            if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_string()
            }
        };
        match self {
            Check::Tcp { host: h, port } => format!("tcp check of {}:{port}", host(h)),
            Check::Http {
                host: h,
                port,
                path,
            } => format!("http check of http://{}:{port}{path}", host(h)),
            Check::File { path } => format!("file check of {}", path.display()),
            Check::Dns { name, .. } => format!("dns check of {name}"),
        }
    }
}

/// `HOST:PORT`, `[V6]:PORT`; `default` when the port may be left out.
fn host_port(authority: &str, default: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{authority}: unclosed ["))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{authority}: missing host"));
    }
    let port = match (port, default) {
        (Some(port), _) => port
            .parse()
            .map_err(|_| format!("{authority}: bad port {port}"))?,
        (None, Some(default)) => default,
        (None, None) => return Err(format!("{authority}: missing :PORT")),
    };
    Ok((host.to_string(), port))
}

/// Runs a check within `timeout`: its outcome and what it has to say.
pub fn run(check: &Check, timeout: Duration) -> (Outcome, Vec<u8>) {
    let deadline = Instant::now() + timeout;
    let result = match check {
        Check::Tcp { host, port } => {
            connect(host, *port, deadline).map(|(_, addr)| format!("connected to {addr}"))
        }
        Check::Http { host, port, path } => http_get(host, *port, path, deadline),
        Check::File { path } => std::fs::symlink_metadata(path)
            .map(|_| format!("{} exists", path.display()))
            .map_err(|e| Failure::Error(format!("{}: {e}", path.display()))),
        Check::Dns { server, name } => dns(server.as_ref(), name, deadline),
    };
    match result {
        Ok(said) => (Outcome::Exited(0), said.into_bytes()),
        Err(Failure::TimedOut) => (
            Outcome::CheckTimedOut {
                check: check.name(),
                after: timeout,
            },
            Vec::new(),
        ),
        Err(Failure::Error(why)) => (Outcome::CheckFailed(why), Vec::new()),
        Err(Failure::Answered { said, why }) => (Outcome::CheckFailed(why), said.into_bytes()),
    }
}

enum Failure {
    TimedOut,
    Error(String),
    /// The peer answered, and the answer is a failure.
    Answered {
        said: String,
        why: String,
    },
}

fn io_failure(what: &str, e: io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Failure::TimedOut,
        _ => Failure::Error(format!("{what}: {e}")),
    }
}

fn left(deadline: Instant) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Failure::TimedOut)
    } else {
        Ok(left)
    }
}

fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
    match (host, port).to_socket_addrs() {
        Ok(addrs) => Ok(addrs.collect()),
        Err(e) => Err(Failure::Error(format!("resolve {host}: {e}"))),
    }
}

/// Connects to the first address of `host` that answers.
fn connect(host: &str, port: u16, deadline: Instant) -> Result<(TcpStream, SocketAddr), Failure> {
    let mut last = Failure::Error(format!("{host}: no addresses"));
    for addr in resolve(host, port)? {
        match TcpStream::connect_timeout(&addr, left(deadline)?) {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => last = io_failure(&format!("connect {addr}"), e),
        }
    }
    Err(last)
}

fn http_get(host: &str, port: u16, path: &str, deadline: Instant) -> Result<String, Failure> {
    let (mut stream, addr) = connect(host, port, deadline)?;
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: exechealthz\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .set_write_timeout(Some(left(deadline)?))
        .and_then(|_| stream.write_all(request.as_bytes()))
        .map_err(|e| io_failure(&format!("send to {addr}"), e))?;
    // Only the status line matters; at most 1 KiB of it is read.
    let mut line = Vec::new();
    let mut byte = [0u8; 256];
    while !line.contains(&b'\n') && line.len() < 1024 {
        stream
            .set_read_timeout(Some(left(deadline)?))
            .map_err(|e| io_failure("set timeout", e))?;
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&byte[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_failure(&format!("read from {addr}"), e)),
        }
    }
    let line = String::from_utf8_lossy(&line);
    let status_line = line.lines().next().unwrap_or("").trim_end().to_string();
    let code = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok());
    match code {
        Some(200..=399) => Ok(status_line),
        Some(code) => Err(Failure::Answered {
            why: format!("HTTP status {code} (want 200-399)"),
            said: status_line,
        }),
        None => Err(Failure::Answered {
            why: "no HTTP status line in the answer".into(),
            said: status_line,
        }),
    }
}

fn dns(server: Option<&(String, u16)>, name: &str, deadline: Instant) -> Result<String, Failure> {
    let server = match server {
        Some((host, port)) => *resolve(host, *port)?
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

enum Answer {
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

fn parse_reply(reply: &[u8], qtype: u16) -> Option<Answer> {
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
    fn parses_check_urls() {
        assert_eq!(parse("ls /tmp").unwrap(), None);
        assert_eq!(parse("echo http://x").unwrap(), None);
        assert_eq!(
            parse("tcp://[::1]:53").unwrap(),
            Some(Check::Tcp {
                host: "::1".into(),
                port: 53
            })
        );
        assert_eq!(
            parse("http://localhost/healthz?x=1").unwrap(),
            Some(Check::Http {
                host: "localhost".into(),
                port: 80,
                path: "/healthz?x=1".into()
            })
        );
        assert_eq!(
            parse("http://10.0.0.1:8080").unwrap(),
            Some(Check::Http {
                host: "10.0.0.1".into(),
                port: 8080,
                path: "/".into()
            })
        );
        assert_eq!(
            parse("file:///tmp/x").unwrap(),
            Some(Check::File {
                path: "/tmp/x".into()
            })
        );
        assert_eq!(
            parse("dns:///kubernetes.default.svc.cluster.local.").unwrap(),
            Some(Check::Dns {
                server: None,
                name: "kubernetes.default.svc.cluster.local".into()
            })
        );
        assert_eq!(
            parse("dns://127.0.0.1:10053/a.b").unwrap(),
            Some(Check::Dns {
                server: Some(("127.0.0.1".into(), 10053)),
                name: "a.b".into()
            })
        );
        for bad in [
            "tcp://host",
            "tcp://:80",
            "tcp://h:x",
            "file://host/x",
            "dns://",
            "ftp://x/y",
            "tcp://[::1:5",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(
            parse("ftp://x/y")
                .unwrap_err()
                .contains("unknown scheme ftp://")
        );
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
