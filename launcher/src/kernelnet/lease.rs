//! Address leases of kernel mode: concurrent sandboxes on one bridge need distinct addresses.
//! A lease is an exclusive `flock` on the file `<dir>/<IPv4 address>`; the sandbox's IPv6
//! address follows from the same host number. The lock goes with the last fd on the file, so a
//! run killed by SIGKILL frees its lease by dying. Files are never removed (unlinking a lock
//! file races with a run about to lock it); they are empty and at most one per address.
//! `dir` is per network namespace (`/run/rootless-run/leases/net-<inode>`), because a bridge and
//! its addresses are. Called by `kernelnet::prepare` before the fork; knows nothing of links.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use netstack::config::Addressing;
use netstack::netconf::SandboxAddrs;
use nix::fcntl::{Flock, FlockArg};

/// The first host number handed out: the rootless path's 10.0.2.100 and fd00::100.
pub const FIRST_HOST: u32 = 100;

/// A held address lease; dropping it frees the address.
#[derive(Debug)]
pub struct Lease {
    /// The leased addresses.
    pub addrs: SandboxAddrs,
    _lock: Flock<File>,
}

/// Failure to take a lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The lease directory could not be made.
    #[error("cannot create the lease directory {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A lease file could not be opened or locked.
    #[error("cannot lock the lease file {path}")]
    Lock {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Every address from network + 100 to the last host is leased.
    #[error("all {count} sandbox addresses of {net}/{prefix} are in use (use another --cidr)")]
    Exhausted {
        /// The network.
        net: Ipv4Addr,
        /// Its prefix length.
        prefix: u8,
        /// How many addresses there are.
        count: u32,
    },
}

/// The candidate addresses of `addr`, in the order they are tried: host numbers from
/// `FIRST_HOST` to the last before the broadcast address.
pub fn candidates(addr: &Addressing) -> Vec<SandboxAddrs> {
    let net4 = u32::from(addr.network_v4());
    let last = u32::from(addr.broadcast_v4()).saturating_sub(net4);
    (FIRST_HOST..last)
        .map(|host| SandboxAddrs {
            v4: Ipv4Addr::from(net4 | host),
            v6: Ipv6Addr::from(
                u128::from(addr.network_v6()) | u128::from(0x100 + host - FIRST_HOST),
            ),
        })
        .collect()
}

/// Takes the first free lease of `addr` in `dir` (created 0700 if missing).
pub fn take(dir: &Path, addr: &Addressing) -> Result<Lease, LeaseError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| LeaseError::Dir {
            path: dir.into(),
            source,
        })?;
    let all = candidates(addr);
    for addrs in &all {
        let path = dir.join(addrs.v4.to_string());
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| LeaseError::Lock {
                path: path.clone(),
                source,
            })?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                return Ok(Lease {
                    addrs: *addrs,
                    _lock: lock,
                })
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => continue,
            Err((_, e)) => {
                return Err(LeaseError::Lock {
                    path,
                    source: e.into(),
                })
            }
        }
    }
    Err(LeaseError::Exhausted {
        net: addr.network_v4(),
        prefix: addr.prefix_v4(),
        count: all.len() as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_candidate_is_the_rootless_paths_address() {
        let a = Addressing::default();
        let c = candidates(&a);
        assert_eq!(c[0], SandboxAddrs::of(&a));
        assert_eq!(c.len(), 155, "10.0.2.100 ..= 10.0.2.254");
        assert_eq!(c[154].v4, Ipv4Addr::new(10, 0, 2, 254));
        assert_eq!(c[1].v6, "fd00::101".parse::<Ipv6Addr>().expect("literal"));
    }

    #[test]
    fn concurrent_leases_differ_and_free_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Addressing::default();
        let one = take(dir.path(), &a).expect("first");
        let two = take(dir.path(), &a).expect("second");
        assert_eq!(one.addrs.v4, Ipv4Addr::new(10, 0, 2, 100));
        assert_eq!(two.addrs.v4, Ipv4Addr::new(10, 0, 2, 101));
        drop(one);
        let three = take(dir.path(), &a).expect("third");
        assert_eq!(three.addrs.v4, Ipv4Addr::new(10, 0, 2, 100));
    }

    #[test]
    fn a_small_network_runs_out_with_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Addressing::default()
            .with_cidr_v4("10.9.0.0/25")
            .expect("valid cidr");
        let held: Vec<Lease> = (0..27)
            .map(|_| take(dir.path(), &a).expect("free"))
            .collect();
        assert_eq!(held[26].addrs.v4, Ipv4Addr::new(10, 9, 0, 126));
        let e = take(dir.path(), &a).expect_err("exhausted");
        assert_eq!(
            e.to_string(),
            "all 27 sandbox addresses of 10.9.0.0/25 are in use (use another --cidr)"
        );
    }
}
