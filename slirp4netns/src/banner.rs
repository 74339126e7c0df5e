//! What slirp4netns prints, byte for byte where clients or users read it: the child's
//! `sent tapfd=N for TAP` and the parent's `received tapfd=N` (stderr), and the banner on
//! stdout (`Starting slirp`, `* MTU:` ... `* API Socket:`, the optional outbound and MAC lines,
//! and the host-loopback warning). This is output of the process contract, not logging, so it
//! is written directly and not through `tracing`.
//! Called by `attach` (the tapfd lines) and `run` (the banner); pure: builds strings only.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use netstack::config::Addressing;

/// First DHCP lease: network + 15 (slirp4netns's `DEFAULT_VDHCPSTART_OFFSET`).
const DHCP_START: u32 = 15;
/// Leases libslirp hands out (its hard-coded `NB_BOOTP_CLIENTS`), so the last is start + 15.
const DHCP_LEASES: u32 = 16;

/// The child's line after sending the tap fd.
pub fn sent_tapfd(fd: i32, tap: &str) -> String {
    format!("sent tapfd={fd} for {tap}")
}

/// The parent's line after receiving it.
pub fn received_tapfd(fd: i32) -> String {
    format!("received tapfd={fd}")
}

/// What the banner shows.
#[derive(Debug, Clone)]
pub struct Banner<'a> {
    /// `--mtu`.
    pub mtu: u32,
    /// The virtual network.
    pub addr: &'a Addressing,
    /// `--api-socket`.
    pub api_socket: Option<&'a Path>,
    /// Resolved `--outbound-addr`.
    pub outbound_v4: Option<IpAddr>,
    /// Resolved `--outbound-addr6`.
    pub outbound_v6: Option<IpAddr>,
    /// `--macaddress`.
    pub mac: Option<[u8; 6]>,
    /// The gateway reaches the host's loopback.
    pub host_loopback: bool,
}

fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    // slirp4netns pads "* Label:" to 19 columns.
    out.push_str(&format!("{label:<19}{value}\n"));
}

fn offset(net: Ipv4Addr, by: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net).wrapping_add(by))
}

fn netmask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

impl Banner<'_> {
    /// The stdout text, ending in a newline.
    pub fn render(&self) -> String {
        let a = self.addr;
        let dhcp_start = offset(a.network_v4(), DHCP_START);
        let mut out = String::from("Starting slirp\n");
        line(&mut out, "* MTU:", self.mtu);
        line(&mut out, "* Network:", a.network_v4());
        line(&mut out, "* Netmask:", netmask(a.prefix_v4()));
        line(&mut out, "* Gateway:", a.gateway_v4());
        line(&mut out, "* DNS:", a.dns_v4());
        line(&mut out, "* DHCP begin:", dhcp_start);
        line(&mut out, "* DHCP end:", offset(dhcp_start, DHCP_LEASES - 1));
        line(&mut out, "* Recommended IP:", a.sandbox_v4());
        if let Some(p) = self.api_socket {
            line(&mut out, "* API Socket:", p.display());
        }
        // slirp4netns pads these two to 20 columns.
        if let Some(ip) = self.outbound_v4 {
            out.push_str(&format!("* Outbound IPv4:    {ip}\n"));
        }
        if let Some(ip) = self.outbound_v6 {
            out.push_str(&format!("* Outbound IPv6:    {ip}\n"));
        }
        if let Some(m) = self.mac {
            let hex: Vec<String> = m.iter().map(|b| format!("{b:02x}")).collect();
            line(&mut out, "* MAC address:", hex.join(":"));
        }
        if self.host_loopback {
            out.push_str(&format!(
                "WARNING: 127.0.0.1:* on the host is accessible as {} (set \
                 --disable-host-loopback to prohibit connecting to 127.0.0.1:*)\n",
                a.gateway_v4()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_banner_is_slirp4netns_byte_for_byte() {
        let addr = Addressing::default();
        let b = Banner {
            mtu: 65520,
            addr: &addr,
            api_socket: Some(Path::new("/tmp/api.sock")),
            outbound_v4: None,
            outbound_v6: None,
            mac: None,
            host_loopback: true,
        };
        assert_eq!(
            b.render(),
            "Starting slirp
* MTU:             65520
* Network:         10.0.2.0
* Netmask:         255.255.255.0
* Gateway:         10.0.2.2
* DNS:             10.0.2.3
* DHCP begin:      10.0.2.15
* DHCP end:        10.0.2.30
* Recommended IP:  10.0.2.100
* API Socket:      /tmp/api.sock
WARNING: 127.0.0.1:* on the host is accessible as 10.0.2.2 (set --disable-host-loopback to \
prohibit connecting to 127.0.0.1:*)
"
        );
    }

    #[test]
    fn cidr_outbound_and_mac_lines_follow_the_options() {
        let addr = Addressing::default()
            .with_cidr_v4("192.168.64.0/25")
            .unwrap();
        let b = Banner {
            mtu: 1500,
            addr: &addr,
            api_socket: None,
            outbound_v4: Some("192.0.2.1".parse().unwrap()),
            outbound_v6: Some("2001:db8::1".parse().unwrap()),
            mac: Some([0x02, 0, 0, 0xab, 0, 1]),
            host_loopback: false,
        };
        let text = b.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "* Network:         192.168.64.0");
        assert_eq!(lines[3], "* Netmask:         255.255.255.128");
        assert_eq!(lines[4], "* Gateway:         192.168.64.2");
        assert_eq!(lines[6], "* DHCP begin:      192.168.64.15");
        assert_eq!(lines[7], "* DHCP end:        192.168.64.30");
        assert_eq!(lines[8], "* Recommended IP:  192.168.64.100");
        assert_eq!(lines[9], "* Outbound IPv4:    192.0.2.1");
        assert_eq!(lines[10], "* Outbound IPv6:    2001:db8::1");
        assert_eq!(lines[11], "* MAC address:     02:00:00:ab:00:01");
        assert_eq!(lines.len(), 12, "no API line, no loopback warning: {text}");
    }

    #[test]
    fn tapfd_lines() {
        assert_eq!(sent_tapfd(5, "tap0"), "sent tapfd=5 for tap0");
        assert_eq!(received_tapfd(7), "received tapfd=7");
    }
}
