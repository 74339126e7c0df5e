//! `--publish` in kernel mode, before any rule is written: the forwards re-aimed at the
//! sandbox's leased address, and the refusal of a host port that a socket already holds.
//! The kernel's DNAT binds nothing, so a listener on a published port would silently lose its
//! traffic to the sandbox; we test-bind each host address and port (TCP with SO_REUSEADDR, as
//! std's listener does, so only a bound or listening socket conflicts, not TIME_WAIT) and let
//! the socket go at once: the port is checked, not reserved against other programs. Against
//! other kernel-mode runs (whose DNAT binds nothing either) each published protocol and port
//! is claimed, as `lease` claims addresses: an exclusive `flock` on `<dir>/<proto>-<port>`,
//! held for the run and freed by its death. Called by `kernelnet::prepare`; no rules, no links.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use netstack::forward::{ForwardSpec, Transport};
use netstack::netconf::SandboxAddrs;

use crate::config::Publish;

/// A published host port that cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A socket on the host already holds the address and port.
    #[error("--publish {value}: {addr}/{proto} is already in use on the host")]
    InUse {
        /// The `--publish` value.
        value: String,
        /// The host address and port.
        addr: SocketAddr,
        /// "tcp" or "udp".
        proto: &'static str,
    },
    /// Another kernel-mode run publishes the same protocol and port.
    #[error(
        "--publish {value}: {proto} port {port} is already published by another kernel-mode run"
    )]
    Claimed {
        /// The `--publish` value.
        value: String,
        /// The host port.
        port: u16,
        /// "tcp" or "udp".
        proto: &'static str,
    },
    /// A claim file could not be made, opened or locked.
    #[error("cannot lock the port claim {path}")]
    Claim {
        /// The file (or its directory).
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The test bind failed otherwise (for instance HOSTIP is not an address of the host).
    #[error("--publish {value}: cannot bind {addr}/{proto}")]
    Bind {
        /// The `--publish` value.
        value: String,
        /// The host address and port.
        addr: SocketAddr,
        /// "tcp" or "udp".
        proto: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Refuses the first forward whose host address and port a socket already holds.
pub fn check_free(publish: &[Publish]) -> Result<(), PortError> {
    for p in publish {
        for f in &p.specs {
            let bound = match f.proto {
                Transport::Tcp => TcpListener::bind(f.host).map(drop),
                Transport::Udp => UdpSocket::bind(f.host).map(drop),
            };
            match bound {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    return Err(PortError::InUse {
                        value: p.value.clone(),
                        addr: f.host,
                        proto: f.proto.name(),
                    })
                }
                Err(source) => {
                    return Err(PortError::Bind {
                        value: p.value.clone(),
                        addr: f.host,
                        proto: f.proto.name(),
                        source,
                    })
                }
            }
        }
    }
    Ok(())
}

/// Claims every published protocol and port in `dir` (created 0700 if missing), whatever the
/// host address; the claims last as long as the returned locks.
pub fn claim(dir: &Path, publish: &[Publish]) -> Result<Vec<Flock<File>>, PortError> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| PortError::Claim { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(failed(dir))?;
    let mut held: Vec<(PathBuf, Flock<File>)> = Vec::new();
    for p in publish {
        for f in &p.specs {
            let path = dir.join(format!("{}-{}", f.proto.name(), f.host.port()));
            // The IPv4 and IPv6 forwards of one port share a claim.
            if held.iter().any(|(h, _)| *h == path) {
                continue;
            }
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(failed(&path))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => held.push((path, lock)),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(PortError::Claimed {
                        value: p.value.clone(),
                        port: f.host.port(),
                        proto: f.proto.name(),
                    })
                }
                Err((_, e)) => return Err(failed(&path)(e.into())),
            }
        }
    }
    Ok(held.into_iter().map(|(_, l)| l).collect())
}

/// Every forward of `publish`, its sandbox end moved to the leased address of its family.
pub fn to_lease(publish: &[Publish], addrs: SandboxAddrs) -> Vec<ForwardSpec> {
    publish
        .iter()
        .flat_map(|p| &p.specs)
        .map(|f| {
            let ip = match f.guest.ip() {
                IpAddr::V4(_) => IpAddr::V4(addrs.v4),
                IpAddr::V6(_) => IpAddr::V6(addrs.v6),
            };
            ForwardSpec {
                guest: SocketAddr::new(ip, f.guest.port()),
                ..*f
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn publish(proto: Transport, host: SocketAddr) -> Publish {
        Publish {
            value: "v".into(),
            specs: vec![ForwardSpec {
                proto,
                host,
                guest: "10.0.2.100:80".parse().expect("literal"),
            }],
        }
    }

    #[test]
    fn a_listening_port_is_refused_and_a_free_one_passes() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = l.local_addr().expect("addr");
        let e = check_free(&[publish(Transport::Tcp, taken)]).expect_err("in use");
        assert_eq!(
            e.to_string(),
            format!("--publish v: {taken}/tcp is already in use on the host")
        );
        drop(l);
        check_free(&[publish(Transport::Tcp, taken)]).expect("free again");
    }

    #[test]
    fn a_bound_udp_port_is_refused() {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let taken = u.local_addr().expect("addr");
        let e = check_free(&[publish(Transport::Udp, taken)]).expect_err("in use");
        assert!(matches!(e, PortError::InUse { proto: "udp", .. }), "{e}");
    }

    #[test]
    fn a_port_claimed_by_another_run_is_refused_until_it_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut both = publish(Transport::Tcp, "0.0.0.0:8080".parse().expect("literal"));
        both.specs.push(ForwardSpec {
            host: "[::]:8080".parse().expect("literal"),
            ..both.specs[0]
        });
        let first = claim(dir.path(), &[both.clone()]).expect("free");
        assert_eq!(first.len(), 1, "one claim per protocol and port");
        let udp = publish(Transport::Udp, "0.0.0.0:8080".parse().expect("literal"));
        let other = claim(dir.path(), &[udp]).expect("udp is another claim");
        let e = claim(dir.path(), &[both.clone()]).expect_err("claimed");
        assert_eq!(
            e.to_string(),
            "--publish v: tcp port 8080 is already published by another kernel-mode run"
        );
        drop((first, other));
        claim(dir.path(), &[both]).expect("free again");
    }

    #[test]
    fn guests_move_to_the_leased_address_of_their_family() {
        let mut p = publish(Transport::Tcp, "0.0.0.0:8080".parse().expect("literal"));
        p.specs.push(ForwardSpec {
            proto: Transport::Tcp,
            host: "[::]:8080".parse().expect("literal"),
            guest: "[fd00::100]:80".parse().expect("literal"),
        });
        let addrs = SandboxAddrs {
            v4: Ipv4Addr::new(10, 0, 2, 101),
            v6: "fd00::101".parse::<Ipv6Addr>().expect("literal"),
        };
        let got: Vec<String> = to_lease(&[p], addrs)
            .iter()
            .map(|f| f.guest.to_string())
            .collect();
        assert_eq!(got, ["10.0.2.101:80", "[fd00::101]:80"]);
    }
}
