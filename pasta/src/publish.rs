//! Published ports (`-t`, `-u`): one bound host socket per port and family, delivering to the
//! namespace's address of that family, as pasta binds them: `ADDR/` binds that address only;
//! no address binds every address of each family the namespace has. The stack keeps the
//! client's address (netstack `forward`). Bound before anything forks, so a port in use fails
//! the start with exit 1. Called by `run`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context;
use netstack::forward::{ForwardSpec, Listener, Transport};

use crate::plan::Plan;
use crate::ports::PortMap;

/// Binds every forward of `tcp` and `udp`.
pub fn bind(tcp: &[PortMap], udp: &[PortMap], plan: &Plan) -> anyhow::Result<Vec<Listener>> {
    let mut out = Vec::new();
    for (proto, maps) in [(Transport::Tcp, tcp), (Transport::Udp, udp)] {
        for m in maps {
            for spec in specs(proto, m, plan)? {
                let listener = Listener::bind(spec).with_context(|| {
                    format!("cannot forward {} port {}", proto.name(), spec.host)
                })?;
                out.push(listener);
            }
        }
    }
    Ok(out)
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
