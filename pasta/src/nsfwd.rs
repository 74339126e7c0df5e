//! `-T`/`-U`: the sockets that forward from the namespace to the host, as pasta makes them
//! (tcp.c `tcp_ns_sock_init`, udp.c): each port listens on the namespace's loopback, 127.0.0.1
//! and ::1 (one family with `-4`/`-6`), and reaches the same (or mapped) port on the host's
//! loopback of that family.
//! `plan` runs before anything forks; `bind` runs in `attach`'s namespace child, which sends
//! the sockets out with the tap fd; `relay` carries the traffic in the daemon. No sockets
//! are bound here but in the namespace. Bounded by the spec: one socket per port and family.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;

use netstack::forward::Transport;
use nix::errno::Errno;

use crate::cli::{Family, Options};
use crate::ports::PortMap;

/// One namespace-to-host forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsForward {
    /// TCP or UDP.
    pub proto: Transport,
    /// Where it listens, in the namespace.
    pub listen: SocketAddr,
    /// Where it delivers, on the host.
    pub target: SocketAddr,
}

/// Why a namespace socket could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NsFwdError {
    /// bind (or listen) failed in the namespace.
    #[error("cannot forward {} port {} from the namespace", .proto.name(), .addr)]
    Bind {
        /// TCP or UDP.
        proto: Transport,
        /// The namespace address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The forwards `-T` and `-U` ask for, TCP first, each port per family in order.
pub fn plan(o: &Options) -> Vec<NsForward> {
    let loopbacks: Vec<IpAddr> = [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
        .into_iter()
        .filter(|ip| o.family.allows(*ip))
        .collect();
    let mut out = Vec::new();
    for (proto, maps) in [(Transport::Tcp, &o.tcp_ns), (Transport::Udp, &o.udp_ns)] {
        for PortMap { host, guest, .. } in maps {
            out.extend(loopbacks.iter().map(|&ip| NsForward {
                proto,
                listen: SocketAddr::new(ip, *host),
                target: SocketAddr::new(ip, *guest),
            }));
        }
    }
    out
}

/// Binds each of `fwds` in the namespace we are in, in order. With both families asked for,
/// an IPv6 loopback the namespace does not have (IPv6 disabled) is skipped (`None`) with a
/// warning, as pasta goes on without it.
pub fn bind(fwds: &[NsForward], family: Family) -> Result<Vec<Option<OwnedFd>>, NsFwdError> {
    let mut out = Vec::new();
    for f in fwds {
        match bind_one(f) {
            Ok(fd) => out.push(Some(fd)),
            Err(e) if no_ipv6(f, family, &e) => {
                tracing::warn!(addr = %f.listen, "no IPv6 loopback in the namespace; skipped");
                out.push(None);
            }
            Err(source) => {
                return Err(NsFwdError::Bind {
                    proto: f.proto,
                    addr: f.listen,
                    source,
                })
            }
        }
    }
    Ok(out)
}

fn no_ipv6(f: &NsForward, family: Family, e: &io::Error) -> bool {
    let errno = e.raw_os_error().map(Errno::from_raw);
    let missing = matches!(errno, Some(Errno::EADDRNOTAVAIL | Errno::EAFNOSUPPORT));
    family == Family::Both && f.listen.is_ipv6() && missing
}

/// A non-blocking listener or bound UDP socket (std sets SO_REUSEADDR on listeners and
/// close-on-exec on both).
fn bind_one(f: &NsForward) -> io::Result<OwnedFd> {
    match f.proto {
        Transport::Tcp => {
            let l = TcpListener::bind(f.listen)?;
            l.set_nonblocking(true)?;
            Ok(l.into())
        }
        Transport::Udp => {
            let u = UdpSocket::bind(f.listen)?;
            u.set_nonblocking(true)?;
            Ok(u.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::options;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_port_listens_on_both_loopbacks_and_reaches_the_mapped_port() {
        let p = plan(&options(&["-T", "80:8080", "-U", "53"]));
        let got: Vec<_> = p.iter().map(|f| (f.proto, f.listen, f.target)).collect();
        assert_eq!(
            got,
            [
                (Transport::Tcp, sa("127.0.0.1:80"), sa("127.0.0.1:8080")),
                (Transport::Tcp, sa("[::1]:80"), sa("[::1]:8080")),
                (Transport::Udp, sa("127.0.0.1:53"), sa("127.0.0.1:53")),
                (Transport::Udp, sa("[::1]:53"), sa("[::1]:53")),
            ]
        );
    }

    #[test]
    fn one_family_listens_on_its_loopback_only() {
        let p = plan(&options(&["-4", "-T", "80"]));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].listen, sa("127.0.0.1:80"));
        let p = plan(&options(&["-6", "-U", "80"]));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].target, sa("[::1]:80"));
    }
}
