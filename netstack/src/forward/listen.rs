//! The host side of a forward: a listening TCP socket or a bound UDP socket at the forward's
//! host address, non-blocking and close-on-exec, ready for the event loop to register.
//! Called by the launcher for `--publish` (before it forks, so a port in use is a start-up
//! error) and by `command::Control::add` for the API socket. Binds and nothing else.
//!
//! IPv6 sockets are IPV6_V6ONLY, so `0.0.0.0:P` and `[::]:P` are two forwards that coexist,
//! as docker and podman bind them; a client never arrives as an IPv4-mapped address.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{self as sock, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};

use super::{ForwardError, ForwardSpec, Transport};

/// Pending connections the kernel queues per TCP forward (as `listen(2)`'s SOMAXCONN).
const BACKLOG: i32 = 4096;

/// A bound host socket for one forward.
#[derive(Debug)]
pub struct Listener {
    spec: ForwardSpec,
    sock: Bound,
}

/// The socket itself, by transport.
#[derive(Debug)]
pub enum Bound {
    /// A listening TCP socket.
    Tcp(mio::net::TcpListener),
    /// A bound, unconnected UDP socket (one per forward, shared by its clients).
    Udp(mio::net::UdpSocket),
}

impl Listener {
    /// Checks `spec` and binds its host address.
    pub fn bind(spec: ForwardSpec) -> Result<Listener, ForwardError> {
        check(&spec)?;
        let fd = bind_socket(&spec).map_err(|source| ForwardError::Bind {
            addr: spec.host,
            source: source.into(),
        })?;
        let sock = match spec.proto {
            Transport::Tcp => Bound::Tcp(mio::net::TcpListener::from_std(
                std::net::TcpListener::from(fd),
            )),
            Transport::Udp => {
                Bound::Udp(mio::net::UdpSocket::from_std(std::net::UdpSocket::from(fd)))
            }
        };
        Ok(Listener { spec, sock })
    }

    /// What it forwards; with a host port of 0 in the request, the port the kernel chose.
    pub fn spec(&self) -> ForwardSpec {
        self.spec
    }

    /// The socket, for registration and I/O.
    pub fn bound_mut(&mut self) -> &mut Bound {
        &mut self.sock
    }
}

fn check(spec: &ForwardSpec) -> Result<(), ForwardError> {
    if spec.host.is_ipv4() != spec.guest.is_ipv4() {
        return Err(ForwardError::Family {
            host: spec.host.ip(),
            guest: spec.guest.ip(),
        });
    }
    if spec.guest.port() == 0 {
        return Err(ForwardError::PortZero);
    }
    Ok(())
}

fn bind_socket(spec: &ForwardSpec) -> nix::Result<OwnedFd> {
    let family = match spec.host.ip() {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let ty = match spec.proto {
        Transport::Tcp => SockType::Stream,
        Transport::Udp => SockType::Datagram,
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = sock::socket(family, ty, flags, None)?;
    if spec.host.is_ipv6() {
        sock::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    if spec.proto == Transport::Tcp {
        // Rebinding right after a run whose connections sit in TIME_WAIT must work.
        sock::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    sock::bind(fd.as_raw_fd(), &SockaddrStorage::from(spec.host))?;
    if spec.proto == Transport::Tcp {
        sock::listen(
            &fd,
            sock::Backlog::new(BACKLOG).unwrap_or(sock::Backlog::MAXCONN),
        )?;
    }
    Ok(fd)
}

/// The host port of a bound listener (for specs that asked for port 0: tests, benchmarks).
pub fn local_addr(bound: &Bound) -> Option<SocketAddr> {
    match bound {
        Bound::Tcp(l) => l.local_addr().ok(),
        Bound::Udp(u) => u.local_addr().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(proto: Transport, host: &str, guest: &str) -> ForwardSpec {
        ForwardSpec {
            proto,
            host: host.parse().unwrap(),
            guest: guest.parse().unwrap(),
        }
    }

    #[test]
    fn v4_and_v6_wildcards_on_one_port_coexist() {
        let mut v4 =
            Listener::bind(spec(Transport::Tcp, "127.0.0.1:0", "10.0.2.100:80")).expect("bind v4");
        let port = local_addr(v4.bound_mut()).expect("bound").port();
        let v6 = format!("[::1]:{port}");
        Listener::bind(spec(Transport::Tcp, &v6, "[fd00::100]:80")).expect("v6only: no clash");
    }

    #[test]
    fn a_port_in_use_is_a_bind_error_naming_the_address() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = Listener::bind(spec(Transport::Udp, &addr, "10.0.2.100:53")).unwrap_err();
        assert!(
            matches!(err, ForwardError::Bind { addr: a, ref source } if a.to_string() == addr
                && source.kind() == std::io::ErrorKind::AddrInUse),
            "{err:?}"
        );
    }

    #[test]
    fn mixed_families_and_port_zero_are_refused_before_binding() {
        let err = Listener::bind(spec(Transport::Tcp, "127.0.0.1:0", "[fd00::100]:80"));
        assert!(matches!(err, Err(ForwardError::Family { .. })));
        let err = Listener::bind(spec(Transport::Tcp, "127.0.0.1:0", "10.0.2.100:0"));
        assert!(matches!(err, Err(ForwardError::PortZero)));
    }
}
