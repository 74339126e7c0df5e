//! Published ports (`-t`, `-u`): one bound host socket per port and family, delivering to the
//! namespace's address of that family, as pasta binds them: `ADDR/` binds that address only;
//! no address binds every address of each family the namespace has; `%IF/` binds the socket
//! to that interface (SO_BINDTODEVICE), so only traffic arriving on it is forwarded. The
//! stack keeps the client's address (netstack `forward`). Bound before anything forks, so a
//! port in use fails the start with exit 1. Called by `run`.
//!
//! SO_BINDTODEVICE without CAP_NET_RAW: Linux allows it since 5.7 (commit c427bfec18f2) on a
//! socket not yet bound to a device, which ours never are; older kernels refuse with EPERM,
//! and the start fails naming the interface and the reason. The option is set right after
//! netstack's `Listener::bind` (which binds and listens), not before, so two forwards of one
//! port on two interfaces clash, and a connection arriving elsewhere within those
//! microseconds, before the stack runs, would still be taken.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context;
use netstack::forward::{Bound, ForwardSpec, Listener, Transport};
use nix::sys::socket::{setsockopt, sockopt};

use crate::plan::Plan;
use crate::ports::PortMap;

/// Binds every forward of `tcp` and `udp`.
pub fn bind(tcp: &[PortMap], udp: &[PortMap], plan: &Plan) -> anyhow::Result<Vec<Listener>> {
    let mut out = Vec::new();
    for (proto, maps) in [(Transport::Tcp, tcp), (Transport::Udp, udp)] {
        for m in maps {
            for spec in specs(proto, m, plan)? {
                let mut listener = Listener::bind(spec).with_context(|| {
                    format!("cannot forward {} port {}", proto.name(), spec.host)
                })?;
                if let Some(ifname) = &m.ifname {
                    to_device(&mut listener, ifname).with_context(|| {
                        format!(
                            "cannot forward {} port {}: cannot bind it to interface {ifname}",
                            proto.name(),
                            spec.host
                        )
                    })?;
                }
                out.push(listener);
            }
        }
    }
    Ok(out)
}

/// Restricts `listener` to what arrives on interface `ifname`.
fn to_device(listener: &mut Listener, ifname: &str) -> nix::Result<()> {
    let name = std::ffi::OsString::from(ifname);
    match listener.bound_mut() {
        Bound::Tcp(l) => setsockopt(&*l, sockopt::BindToDevice, &name),
        Bound::Udp(u) => setsockopt(&*u, sockopt::BindToDevice, &name),
    }
}

/// The forwards one port map asks for.
fn specs(proto: Transport, m: &PortMap, plan: &Plan) -> anyhow::Result<Vec<ForwardSpec>> {
    let hosts: Vec<IpAddr> = match m.addr {
        Some(a) => vec![a],
        None => vec![Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()],
    };
    let mut out = Vec::new();
    for host in hosts {
        match plan.ns_addr_for(host.is_ipv6()) {
            Some(guest) => out.push(ForwardSpec {
                proto,
                host: SocketAddr::new(host, m.host),
                guest: SocketAddr::new(guest, m.guest),
            }),
            None if m.addr.is_some() => anyhow::bail!(
                "cannot forward {} port {host}/{}: the namespace has no address of that family",
                proto.name(),
                m.host
            ),
            None => {}
        }
    }
    Ok(out)
}
