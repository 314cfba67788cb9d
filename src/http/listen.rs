//! The one listening socket: `--port` on `--address`, or dual-stack `[::]`
//! (IPv4 clients too) falling back to `0.0.0.0` where the host has no IPv6.
//! Nothing else in the program listens. It binds; it does not accept.

use std::io;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
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

fn bind_any(address: Option<IpAddr>, port: u16) -> io::Result<TcpListener> {
    match address {
        Some(address) => TcpListener::bind((address, port)),
        None => match bind_dual_stack(port) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
                ) =>
            {
                info!("no IPv6 on this host ({e}); listening on IPv4 only");
                TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
            }
            other => other,
        },
    }
}

/// `[::]:port` with `IPV6_V6ONLY` off, whatever the host's default, so IPv4
/// clients (mapped addresses) reach us too.
fn bind_dual_stack(port: u16) -> io::Result<TcpListener> {
    // SAFETY: plain syscall; the descriptor is owned right below.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_option(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, true)?;
    set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, false)?;
    // SAFETY: sockaddr_in6 is plain data; all-zero is the unspecified address.
    let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    addr.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    addr.sin6_port = port.to_be();
    // SAFETY: addr is a valid sockaddr_in6 of the given length.
    check(unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in6).cast(),
            size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    })?;
    // SAFETY: plain syscall on a bound socket.
    check(unsafe { libc::listen(fd, 1024) })?;
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
