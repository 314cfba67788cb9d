//! The one listening socket: `--port` on `--address`, or dual-stack `[::]`
//! (IPv4 clients too) falling back to `0.0.0.0` where the host has no IPv6.
//! Nothing else in the program listens. It binds; it does not accept.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::info;
use crate::process::check;

/// Binds `address:port`; with no address, `[::]` accepting IPv4 too, or
/// `0.0.0.0` where the host has no IPv6.
pub fn bind(address: Option<IpAddr>, port: u16) -> io::Result<TcpListener> {
    let listener = bind_any(address, port)?;
    // Accepted connections inherit it (Linux copies the listener's TCP
    // state): no setsockopt per connection. Without it, an answer written
    // while the client delays its ACK of the previous one waits for it.
    set_option(
        listener.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        true,
    )?;
    Ok(listener)
}

/// Connections the kernel queues before we accept them, whatever the
/// address (std's `TcpListener::bind` would use 128).
const BACKLOG: libc::c_int = 1024;

/// A connection is handed to us once its first bytes have come (or, for
/// a client that sends nothing, after about this long: the kernel then
/// retransmits its SYN-ACK and takes the client's next ACK), so that a
/// request is in the socket the moment it is accepted, and clients that
/// connect and say nothing take no slot while they are silent.
const DEFER_ACCEPT_SECONDS: libc::c_int = 1;

fn bind_any(address: Option<IpAddr>, port: u16) -> io::Result<TcpListener> {
    match address {
        Some(address) => bind_to(SocketAddr::new(address, port), None),
        None => match bind_to(
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
            Some(false),
        ) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
                ) =>
            {
                info!("no IPv6 on this host ({e}); listening on IPv4 only");
                bind_to(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port), None)
            }
            other => other,
        },
    }
}

/// A listening socket on `address` with `BACKLOG`, address reuse on (as
/// std's bind does) and, given `v6only`, `IPV6_V6ONLY` set so: `[::]` with
/// it off accepts IPv4 clients too (mapped addresses), whatever the host's
/// default.
fn bind_to(address: SocketAddr, v6only: Option<bool>) -> io::Result<TcpListener> {
    let family = if address.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall; the descriptor is owned right below.
    let fd = check(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_option(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, true)?;
    if let Some(v6only) = v6only {
        set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, v6only)?;
    }
    let rc = match address {
        SocketAddr::V4(v4) => {
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: addr is a valid sockaddr_in of the given length.
            unsafe {
                libc::bind(
                    fd,
                    (&addr as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
            let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            addr.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            addr.sin6_port = v6.port().to_be();
            addr.sin6_addr.s6_addr = v6.ip().octets();
            addr.sin6_flowinfo = v6.flowinfo();
            addr.sin6_scope_id = v6.scope_id();
            // SAFETY: addr is a valid sockaddr_in6 of the given length.
            unsafe {
                libc::bind(
                    fd,
                    (&addr as *const libc::sockaddr_in6).cast(),
                    size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    check(rc)?;
    let defer: libc::c_int = DEFER_ACCEPT_SECONDS;
    // SAFETY: plain syscall on our socket, with an int option of its size.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&defer as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    // SAFETY: plain syscall on a bound socket.
    check(unsafe { libc::listen(fd, BACKLOG) })?;
    Ok(TcpListener::from(owned))
}

fn set_option(fd: libc::c_int, level: libc::c_int, name: libc::c_int, on: bool) -> io::Result<()> {
    let value: libc::c_int = on.into();
    // SAFETY: valid descriptor and a c_int option value.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}
