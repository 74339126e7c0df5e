//! From parsed `cli::Options` to the plain `Config` that `run` carries out, with the checks
//! slirp4netns makes after parsing (bad CIDR, MAC, outbound address: an error line and exit 1,
//! no usage) and the refusals of this implementation (BESS, the confinement flags until
//! `confine` has them, combinations that cannot work with a tap fd).
//! Called by `main` once; no I/O (interface names are resolved later, by `outbound`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;
use std::path::PathBuf;

use netstack::config::{Addressing, AddressingError};
use netstack::netconf::IPV6_MIN_MTU;
use rr_ns::enter::NetTarget;

use crate::cli::{Options, Target};
use crate::confine;
use crate::inherit::Named;

/// Smallest MTU the stack carries (IPv4's minimum, RFC 791). slirp4netns takes 1..67 too.
pub const MIN_MTU: u32 = 68;
/// Longest interface name (IFNAMSIZ - 1, include/uapi/linux/if.h).
const MAX_IFNAME: usize = 15;

/// Where the tap device comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapSource {
    /// Open (or create) the device in this network namespace, joined in a child.
    Namespace {
        /// The network namespace.
        net: NetTarget,
        /// `--userns-path`.
        userns: Option<PathBuf>,
    },
    /// An inherited, already open tap fd (`--netns-type=tapfd`).
    Fd(RawFd),
}

/// `--outbound-addr[6]`: an address, or an interface whose first address to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A literal address of the flag's family.
    Addr(IpAddr),
    /// An interface name.
    Interface(String),
}

/// Everything `run` needs, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the tap comes from.
    pub source: TapSource,
    /// TAPNAME.
    pub tap_name: String,
    /// `-c`: configure lo and the tap in the child.
    pub configure: bool,
    /// `--macaddress` (only with `-c`).
    pub mac: Option<[u8; 6]>,
    /// `-6`.
    pub ipv6: bool,
    /// `-m`.
    pub mtu: u32,
    /// The virtual network (`--cidr`).
    pub addr: Addressing,
    /// Gateway reaches the host's loopback (not `--disable-host-loopback`).
    pub host_loopback: bool,
    /// DNS forwarder on (not `--disable-dns`).
    pub dns: bool,
    /// `--outbound-addr`.
    pub outbound_v4: Option<Outbound>,
    /// `--outbound-addr6`.
    pub outbound_v6: Option<Outbound>,
    /// `-a`.
    pub api_socket: Option<PathBuf>,
    /// `-r`.
    pub ready_fd: Option<RawFd>,
    /// `-e`.
    pub exit_fd: Option<RawFd>,
    /// `--enable-sandbox`, `--enable-seccomp`.
    pub confine: confine::Plan,
}

/// A value or combination this implementation cannot use. The message names the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--target-type=bess`.
    #[error(
        "--target-type=bess: not supported by rr-slirp4netns (it serves network namespaces \
         only; BESS sockets are for User-Mode Linux)"
    )]
    Bess,
    /// `--cidr`.
    #[error("--cidr={value}: {source}")]
    Cidr {
        /// The value.
        value: String,
        /// Why.
        source: AddressingError,
    },
    /// `--mtu` below what the stack carries.
    #[error("--mtu={0}: rr-slirp4netns needs an MTU of at least {MIN_MTU} (IPv4's minimum)")]
    MtuTooSmall(u32),
    /// `-c -6` below IPv6's minimum link MTU.
    #[error("--mtu={0}: --configure with --enable-ipv6 needs an MTU of at least {IPV6_MIN_MTU}")]
    MtuTooSmallForIpv6(u32),
    /// `--macaddress`.
    #[error(
        "--macaddress={0}: has to be a valid unicast MAC address (6 bytes in hex, separated by \
         ':')"
    )]
    Mac(String),
    /// `--outbound-addr` or `--outbound-addr6` with an address of the other family.
    #[error("{flag}={value}: not an {family} address (use {other} for it)")]
    OutboundFamily {
        /// The flag.
        flag: &'static str,
        /// The value.
        value: String,
        /// "IPv4" or "IPv6".
        family: &'static str,
        /// The flag for the other family.
        other: &'static str,
    },
    /// TAPNAME.
    #[error("TAPNAME {0:?}: must be 1 to {MAX_IFNAME} bytes without '/', ':' or whitespace")]
    TapName(String),
    /// A flag that needs the namespace, with `--netns-type=tapfd`.
    #[error("{0}: cannot be used with --netns-type=tapfd (the tap's namespace is not joined)")]
    NotWithTapFd(&'static str),
}

impl Config {
    /// Checks `o` and builds the configuration.
    pub fn from_options(o: Options) -> Result<Config, ConfigError> {
        let source = match o.target {
            Target::Bess(_) => return Err(ConfigError::Bess),
            Target::Pid(pid) => TapSource::Namespace {
                net: NetTarget::Pid(pid),
                userns: o.userns_path,
            },
            Target::Path(path) => TapSource::Namespace {
                net: NetTarget::Path(path),
                userns: o.userns_path,
            },
            Target::TapFd(fd) => {
                if o.configure {
                    return Err(ConfigError::NotWithTapFd("--configure"));
                }
                if o.userns_path.is_some() {
                    return Err(ConfigError::NotWithTapFd("--userns-path"));
                }
                TapSource::Fd(fd)
            }
        };
        if !valid_ifname(&o.tap_name) {
            return Err(ConfigError::TapName(o.tap_name));
        }
        if o.mtu < MIN_MTU {
            return Err(ConfigError::MtuTooSmall(o.mtu));
        }
        if o.configure && o.enable_ipv6 && o.mtu < IPV6_MIN_MTU {
            return Err(ConfigError::MtuTooSmallForIpv6(o.mtu));
        }
        let addr = match &o.cidr {
            Some(c) => {
                Addressing::default()
                    .with_cidr_v4(c)
                    .map_err(|source| ConfigError::Cidr {
                        value: c.clone(),
                        source,
                    })?
            }
            None => Addressing::default(),
        };
        let mac = match &o.macaddress {
            Some(m) => Some(parse_mac(m).ok_or_else(|| ConfigError::Mac(m.clone()))?),
            None => None,
        };
        let outbound_v4 = o
            .outbound_addr
            .as_deref()
            .map(|v| outbound("--outbound-addr", v, false))
            .transpose()?;
        let outbound_v6 = o
            .outbound_addr6
            .as_deref()
            .map(|v| outbound("--outbound-addr6", v, true))
            .transpose()?;
        let confine = confine::Plan {
            sandbox: o.enable_sandbox,
            seccomp: o.enable_seccomp,
        };
        Ok(Config {
            source,
            tap_name: o.tap_name,
            configure: o.configure,
            mac,
            ipv6: o.enable_ipv6,
            mtu: o.mtu,
            addr,
            host_loopback: !o.disable_host_loopback,
            dns: !o.disable_dns,
            outbound_v4,
            outbound_v6,
            api_socket: o.api_socket,
            ready_fd: o.ready_fd,
            exit_fd: o.exit_fd,
            confine,
        })
    }

    /// The fds named on the command line, for `inherit::take`.
    pub fn named_fds(&self) -> Named {
        Named {
            ready: self.ready_fd,
            exit: self.exit_fd,
            tap: match self.source {
                TapSource::Fd(fd) => Some(fd),
                TapSource::Namespace { .. } => None,
            },
        }
    }
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

/// `xx:xx:xx:xx:xx:xx` (one or two hex digits each), unicast and not all zero (the kernel
/// refuses those for an Ethernet device).
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    let multicast = mac[0] & 1 != 0;
    if parts.next().is_some() || multicast || mac == [0; 6] {
        return None;
    }
    Some(mac)
}

fn outbound(flag: &'static str, value: &str, v6: bool) -> Result<Outbound, ConfigError> {
    let family_error = || ConfigError::OutboundFamily {
        flag,
        value: value.to_owned(),
        family: if v6 { "IPv6" } else { "IPv4" },
        other: if v6 {
            "--outbound-addr"
        } else {
            "--outbound-addr6"
        },
    };
    match (value.parse::<Ipv4Addr>(), value.parse::<Ipv6Addr>()) {
        (Ok(a), _) if !v6 => Ok(Outbound::Addr(IpAddr::V4(a))),
        (_, Ok(a)) if v6 => Ok(Outbound::Addr(IpAddr::V6(a))),
        (Ok(_), _) | (_, Ok(_)) => Err(family_error()),
        _ => Ok(Outbound::Interface(value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cli::{parse, Action};

    fn config(s: &str) -> Result<Config, ConfigError> {
        let args: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
        match parse(&args, false, &|_: &Path| true).action {
            Action::Run(o) => Config::from_options(*o),
            other => panic!("{s}: expected Run, got {other:?}"),
        }
    }

    fn error(s: &str) -> String {
        config(s).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_slirp4netns_defaults() {
        let c = config("42").unwrap();
        assert_eq!(
            c.source,
            TapSource::Namespace {
                net: NetTarget::Pid(42),
                userns: None
            }
        );
        assert_eq!(c.addr, Addressing::default());
        assert_eq!(c.mtu, 1500);
        assert!(c.host_loopback && c.dns && !c.configure && !c.ipv6);
        assert_eq!(c.tap_name, "tap0");
        assert_eq!(c.named_fds(), Named::default());
    }

    #[test]
    fn cidr_moves_the_network_and_bad_ones_name_the_flag() {
        let c = config("--cidr=10.0.3.0/24 42").unwrap();
        assert_eq!(c.addr.sandbox_v4(), Ipv4Addr::new(10, 0, 3, 100));
        let e = error("--cidr=10.0.2.100/24 42");
        assert!(
            e.starts_with("--cidr=10.0.2.100/24: CIDR needs to be a network address"),
            "{e}"
        );
        assert!(error("--cidr=10.0.2.0/26 42").contains("prefix length"));
    }

    #[test]
    fn mac_addresses_parse_strictly() {
        let c = config("-c --macaddress=02:0a:B0:00:00:1 42").unwrap();
        assert_eq!(c.mac, Some([0x02, 0x0a, 0xb0, 0, 0, 1]));
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "02:00:00:00:00:0g",
            "02::00:00:00:00",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "002:00:00:00:00:01",
        ] {
            let e = error(&format!("-c --macaddress={bad} 42"));
            assert!(
                e.starts_with(&format!("--macaddress={bad}: ")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn outbound_takes_an_address_of_its_family_or_an_interface() {
        let c = config("--outbound-addr=192.0.2.1 --outbound-addr6=eth0 42").unwrap();
        assert_eq!(
            c.outbound_v4,
            Some(Outbound::Addr(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))))
        );
        assert_eq!(c.outbound_v6, Some(Outbound::Interface("eth0".into())));
        let e = error("--outbound-addr=::1 42");
        assert_eq!(
            e,
            "--outbound-addr=::1: not an IPv4 address (use --outbound-addr6 for it)"
        );
        let e = error("--outbound-addr6=127.0.0.1 42");
        assert!(e.contains("not an IPv6 address"), "{e}");
    }

    #[test]
    fn refusals_name_the_flag() {
        assert!(error("--target-type=bess /s").starts_with("--target-type=bess: not supported"));
        assert!(error("-m 67 42").starts_with("--mtu=67: "));
        assert_eq!(config("-m 68 42").unwrap().mtu, 68);
        assert!(error("-c -6 -m 1279 42").contains("at least 1280"));
        assert_eq!(config("-6 -m 1279 42").unwrap().mtu, 1279);
        assert!(error("-c --netns-type=tapfd 5").starts_with("--configure: cannot"));
        assert!(error("--userns-path=/u --netns-type=tapfd 5").starts_with("--userns-path: "));
        assert!(error("42 tap/0").starts_with("TAPNAME \"tap/0\""));
        assert!(error("42 abcdefghijklmnop").starts_with("TAPNAME"));
        assert_eq!(
            config("42 abcdefghijklmno").unwrap().tap_name,
            "abcdefghijklmno"
        );
    }

    #[test]
    fn named_fds_are_ready_exit_tap() {
        let c = config("-e 4 -r 3 --netns-type=tapfd 5").unwrap();
        assert_eq!(c.source, TapSource::Fd(5));
        let n = c.named_fds();
        assert_eq!((n.ready, n.exit, n.tap), (Some(3), Some(4), Some(5)));
    }
}
