//! Netlink configuration of the sandbox side: `lo` up; tap0's MTU, txqueuelen, optional MAC
//! address and link up; the sandbox's IPv4 address (10.0.2.100/24 by default) with a default
//! route via the gateway (10.0.2.2), and optionally its IPv6 address (fd00::100/64) with a
//! default route via fd00::2. Then sysctls of the namespace, not netlink:
//! `net.ipv4.tcp_tw_reuse` = 1 (`reuse_time_wait` says why). `tap_congestion_control`
//! (`net.ipv4.tcp_congestion_control` = reno) is for the callers whose namespace's only way
//! out is a tap our stack serves: the launcher's tap (not kernel mode's veth), rr-slirp4netns
//! and rr-pasta. The addresses come from an `Addressing` (`--cidr`, `--cidr6`).
//! Called once by the launcher's child inside the new network namespace, after it opened the tap
//! device and before it hands the fd over; synchronous and thread-free (no tokio: the child is a
//! freshly forked process and must stay lean). It does not open the tap device, pick addresses
//! (they come from `config::Addressing`) or retry. Small by design: one batch of requests, one
//! read of ACKs.
//!
//! All requests go out in a single `sendmsg`; the kernel handles them in order and ACKs each one
//! (NLM_F_ACK), so the whole configuration costs one round trip. The order matters: the link must
//! be up before its address's prefix route exists, and that route must exist before a default
//! route through a gateway on it is accepted.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::config::{Addressing, PREFIX_LEN_V6};

/// Index of `lo` in every network namespace (`LOOPBACK_IFINDEX` in include/net/net_namespace.h).
pub const LOOPBACK_IFINDEX: u32 = 1;
/// Transmit queue length of tap0: the default 1000 overflows on bursts at large TCP windows.
pub const TAP_TXQUEUELEN: u32 = 10_000;
/// IPv6 needs links of at least this MTU (RFC 8200 section 5); below it the kernel disables IPv6.
pub const IPV6_MIN_MTU: u32 = 1280;

/// What to configure; built by `configure` from the caller's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Interface index of the tap device.
    pub tap_index: u32,
    /// MTU to set on the tap device.
    pub mtu: u32,
    /// Transmit queue length to set on the tap device.
    pub txqueuelen: u32,
    /// The sandbox's network and gateways.
    pub addr: Addressing,
    /// The sandbox's own addresses: `addr`'s (10.0.2.100, fd00::100) unless a kernel-mode lease
    /// gave others.
    pub sandbox: SandboxAddrs,
    /// Also add the IPv6 address and default route (needs `mtu >= IPV6_MIN_MTU`).
    pub ipv6: bool,
    /// MAC address to give the tap device; the kernel's random one if `None`.
    pub mac: Option<[u8; 6]>,
}

/// The sandbox's own IPv4 and IPv6 addresses inside `Addressing`'s networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxAddrs {
    /// IPv4 address (prefix length from `Addressing`).
    pub v4: Ipv4Addr,
    /// IPv6 address (/64).
    pub v6: Ipv6Addr,
}

impl SandboxAddrs {
    /// The default ones of `addr` (network + 100, network ::100).
    pub fn of(addr: &Addressing) -> SandboxAddrs {
        SandboxAddrs {
            v4: addr.sandbox_v4(),
            v6: addr.sandbox_v6(),
        }
    }
}

/// One request of the configuration batch, in the order they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Bring `lo` up.
    LoopbackUp,
    /// Set tap0's MTU, txqueuelen and MAC address and bring it up.
    TapLink,
    /// Add the sandbox's IPv4 address (10.0.2.100/24) to tap0.
    AddressV4,
    /// Add the IPv4 default route via the gateway (10.0.2.2).
    RouteV4,
    /// Add the sandbox's IPv6 address (fd00::100/64, nodad) to tap0.
    AddressV6,
    /// Add the IPv6 default route via the gateway (fd00::2).
    RouteV6,
}

/// Failure to configure the sandbox's network.
#[derive(Debug, thiserror::Error)]
pub enum NetconfError {
    /// The tap device's interface index could not be found.
    #[error("cannot find interface {name}")]
    TapIndex {
        /// Device name.
        name: String,
        /// Errno of if_nametoindex.
        #[source]
        source: nix::Error,
    },
    /// IPv6 was asked for on a link whose MTU cannot carry it.
    #[error("IPv6 needs an MTU of at least {IPV6_MIN_MTU}, not {mtu}")]
    MtuTooSmallForIpv6 {
        /// The configured MTU.
        mtu: u32,
    },
    /// Opening the NETLINK_ROUTE socket failed.
    #[error("cannot open a netlink socket")]
    Socket(#[source] io::Error),
    /// Sending the request batch failed.
    #[error("cannot send netlink requests")]
    Send(#[source] io::Error),
    /// Reading the kernel's answers failed.
    #[error("cannot read netlink answers")]
    Receive(#[source] io::Error),
    /// The kernel's answer did not parse.
    #[error("malformed netlink answer")]
    Malformed(#[source] netlink_packet_core::DecodeError),
    /// A message's length field disagrees with the bytes read.
    #[error("truncated netlink answer")]
    Truncated,
    /// An acknowledgement names a sequence number we did not send.
    #[error("netlink answer for unknown request {seq}")]
    UnknownSequence {
        /// The sequence number in the answer.
        seq: u32,
    },
    /// Bringing `lo` up failed.
    #[error("cannot bring lo up")]
    LoopbackUp(#[source] io::Error),
    /// Setting the tap device's MTU, txqueuelen or MAC address, or bringing it up, failed.
    #[error("cannot set the MTU, txqueuelen and MAC address of the tap device and bring it up")]
    TapLink(#[source] io::Error),
    /// Adding the IPv4 address failed.
    #[error("cannot add {addr}/{prefix_len} to the tap device")]
    AddressV4 {
        /// The sandbox's address.
        addr: Ipv4Addr,
        /// Its prefix length.
        prefix_len: u8,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Adding the IPv4 default route failed.
    #[error("cannot add the default route via {gateway}")]
    RouteV4 {
        /// The gateway.
        gateway: Ipv4Addr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Adding the IPv6 address failed.
    #[error("cannot add {addr}/{PREFIX_LEN_V6} to the tap device")]
    AddressV6 {
        /// The sandbox's address.
        addr: Ipv6Addr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Adding the IPv6 default route failed.
    #[error("cannot add the default route via {gateway}")]
    RouteV6 {
        /// The gateway.
        gateway: Ipv6Addr,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl Step {
    fn error(self, plan: &Plan, source: io::Error) -> NetconfError {
        let a = &plan.addr;
        match self {
            Step::LoopbackUp => NetconfError::LoopbackUp(source),
            Step::TapLink => NetconfError::TapLink(source),
            Step::AddressV4 => NetconfError::AddressV4 {
                addr: plan.sandbox.v4,
                prefix_len: a.prefix_v4(),
                source,
            },
            Step::RouteV4 => NetconfError::RouteV4 {
                gateway: a.gateway_v4(),
                source,
            },
            Step::AddressV6 => NetconfError::AddressV6 {
                addr: plan.sandbox.v6,
                source,
            },
            Step::RouteV6 => NetconfError::RouteV6 {
                gateway: a.gateway_v6(),
                source,
            },
        }
    }
}

/// Configures the tap device named `tap_name` (already created in this network namespace) and
/// `lo`: `mtu` and `mac` (if any) on the tap, the addresses and routes of `addr`, IPv6 only if
/// `ipv6`.
pub fn configure(
    tap_name: &str,
    mtu: u32,
    addr: &Addressing,
    ipv6: bool,
    mac: Option<[u8; 6]>,
) -> Result<(), NetconfError> {
    configure_as(tap_name, mtu, addr, SandboxAddrs::of(addr), ipv6, mac)
}

/// As `configure`, with the sandbox's own addresses given (kernel mode's leased ones).
pub fn configure_as(
    tap_name: &str,
    mtu: u32,
    addr: &Addressing,
    sandbox: SandboxAddrs,
    ipv6: bool,
    mac: Option<[u8; 6]>,
) -> Result<(), NetconfError> {
    let tap_index =
        nix::net::if_::if_nametoindex(tap_name).map_err(|source| NetconfError::TapIndex {
            name: tap_name.into(),
            source,
        })?;
    apply(&Plan {
        tap_index,
        mtu,
        txqueuelen: TAP_TXQUEUELEN,
        addr: *addr,
        sandbox,
        ipv6,
        mac,
    })?;
    reuse_time_wait();
    Ok(())
}

/// This network namespace's `net.ipv4.tcp_tw_reuse`: 1, not the kernel's default 2.
const TW_REUSE: (&str, &str) = ("/proc/sys/net/ipv4/tcp_tw_reuse", "1");

/// Lets new outgoing connections of the sandbox reuse ports whose connections sit in
/// TIME_WAIT (timestamps keep old segments apart: RFC 7323's PAWS). The kernel's default, 2,
/// does that for loopback traffic only; every connection of the sandbox goes to its gateway,
/// our stack, which opens a host socket per connection, so the sandbox's TIME_WAIT protects
/// nothing the host's own sockets do not. Without it, a client that closes first (most HTTP
/// clients) fills the ephemeral ports with TIME_WAIT and each connect() searches longer:
/// `rr-bench client crr-cf` through 10.0.2.2 ran at 4,865 connections/s with 2 and 8,165/s with
/// 1, in one run (docs/performance.md). Best effort: a /proc/sys that refuses the write (a
/// read-only mount) leaves the default, and nothing else changes.
fn reuse_time_wait() {
    let (path, value) = TW_REUSE;
    if let Err(error) = std::fs::write(path, value) {
        tracing::debug!(%error, path, "tcp_tw_reuse left at the kernel's default");
    }
}

/// This network namespace's `net.ipv4.tcp_congestion_control` when its only link out is a tap
/// that our stack serves.
const CONGESTION: (&str, &str) = ("/proc/sys/net/ipv4/tcp_congestion_control", "reno");

/// Sets the sandbox's TCP congestion control to reno, for a tap our stack serves. Every TCP
/// connection of the sandbox then ends at the stack, one hop away over the tap, and the host
/// socket the stack opens for it, under the host's own congestion control, is what meets the
/// real network: the sandbox's congestion control only paces the tap, which has no queue to
/// spare and no loss to learn from. A namespace inherits the host's algorithm, and with BBR
/// (which paces every segment to its estimate of the path's rate) the sandbox's senders ran
/// far below what the stack carries: `iperf3 -c 10.0.2.2` in 3 interleaved rounds of 3 s,
/// BBR against reno, 20.5-25.5 against 30.9-32.0 Gbit/s for one stream, 19.3-21.4 against
/// 38.2-40.1 for four, and at MTU 1500 16.7-17.2 against 29.9-31.0 (docs/performance.md).
/// Reno, because it is built into every kernel and always allowed (a namespace may only
/// pick from `net.ipv4.tcp_allowed_congestion_control`, where reno always is); without loss it
/// grows its window as any other would. Not for kernel mode, whose veth leads to the real
/// network. Best effort, as `reuse_time_wait`; `sysctl -w net.ipv4.tcp_congestion_control=...`
/// inside puts another one back.
pub fn tap_congestion_control() {
    let (path, value) = CONGESTION;
    if let Err(error) = std::fs::write(path, value) {
        tracing::debug!(%error, path, "tcp_congestion_control left at the host's");
    }
}

/// Sends the requests of `plan` as one batch and checks every acknowledgement.
pub fn apply(plan: &Plan) -> Result<(), NetconfError> {
    let requests = requests(plan)?;
    let batch = encode(&requests);
    let acked = exchange(&batch, requests.len())?;
    for ((step, _), result) in requests.iter().zip(acked) {
        if let Some(errno) = result {
            return Err(step.error(plan, io::Error::from_raw_os_error(errno)));
        }
    }
    Ok(())
}

/// Sends `requests` (each with its extra header flags, e.g. NLM_F_CREATE) as one batch with
/// sequence numbers 1, 2, ... and returns each one's errno (`None`: done). For kernel mode's
/// bridge and veth (launcher `links`), which decide themselves which errno is fatal.
pub fn transact(requests: &[(u16, RouteNetlinkMessage)]) -> Result<Vec<Option<i32>>, NetconfError> {
    let mut batch = Vec::new();
    for (seq, (flags, msg)) in (1u32..).zip(requests) {
        encode_one(&mut batch, seq, NLM_F_REQUEST | NLM_F_ACK | flags, msg);
    }
    exchange(&batch, requests.len())
}

/// Sends `batch` of `count` requests; waits for every ACK and returns each request's errno.
fn exchange(batch: &[u8], count: usize) -> Result<Vec<Option<i32>>, NetconfError> {
    let socket = Socket::new(NETLINK_ROUTE).map_err(NetconfError::Socket)?;
    // Ask for short ACKs (header only, not the echoed request); older kernels ignore it.
    let _ = socket.set_cap_ack(true);
    let kernel = SocketAddr::new(0, 0);
    let sent = socket
        .send_to(batch, &kernel, 0)
        .map_err(NetconfError::Send)?;
    if sent != batch.len() {
        return Err(NetconfError::Send(io::Error::new(
            io::ErrorKind::WriteZero,
            "short netlink send",
        )));
    }
    let mut acked = vec![None; count];
    let mut buf = vec![0u8; 16 * 1024];
    while acked.iter().any(Option::is_none) {
        let n = socket
            .recv(&mut &mut buf[..], 0)
            .map_err(NetconfError::Receive)?;
        let data = buf.get(..n).unwrap_or_default();
        if data.is_empty() {
            return Err(NetconfError::Truncated);
        }
        record_acks(data, &mut acked)?;
    }
    Ok(acked.into_iter().map(Option::flatten).collect())
}

/// The request batch for `plan`, in sending order; sequence number i + 1 is entry i.
pub fn requests(plan: &Plan) -> Result<Vec<(Step, RouteNetlinkMessage)>, NetconfError> {
    if plan.ipv6 && plan.mtu < IPV6_MIN_MTU {
        return Err(NetconfError::MtuTooSmallForIpv6 { mtu: plan.mtu });
    }
    let mut tap = vec![
        LinkAttribute::Mtu(plan.mtu),
        LinkAttribute::TxQueueLen(plan.txqueuelen),
    ];
    if let Some(mac) = plan.mac {
        tap.push(LinkAttribute::Address(mac.to_vec()));
    }
    let a = &plan.addr;
    let mut families = vec![(
        IpAddr::V4(plan.sandbox.v4),
        a.prefix_v4(),
        IpAddr::V4(a.gateway_v4()),
    )];
    if plan.ipv6 {
        families.push((
            IpAddr::V6(plan.sandbox.v6),
            PREFIX_LEN_V6,
            IpAddr::V6(a.gateway_v6()),
        ));
    }
    let mut out = vec![
        (
            Step::LoopbackUp,
            RouteNetlinkMessage::SetLink(link_up(LOOPBACK_IFINDEX, Vec::new())),
        ),
        (
            Step::TapLink,
            RouteNetlinkMessage::SetLink(link_up(plan.tap_index, tap)),
        ),
    ];
    for (sandbox, prefix_len, gateway) in families {
        let (add, route) = match sandbox {
            IpAddr::V4(_) => (Step::AddressV4, Step::RouteV4),
            IpAddr::V6(_) => (Step::AddressV6, Step::RouteV6),
        };
        out.push((
            add,
            RouteNetlinkMessage::NewAddress(address(plan.tap_index, sandbox, prefix_len)),
        ));
        out.push((
            route,
            RouteNetlinkMessage::NewRoute(default_route(plan.tap_index, gateway)),
        ));
    }
    Ok(out)
}

/// RTM_SETLINK for interface `index`: up, with `attributes` (MTU, MAC address, ...). Also
/// used by the pasta drop-in's own batch (`transact`).
pub fn link_up(index: u32, attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes = attributes;
    msg
}

fn family(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// RTM_NEWADDR of `addr/prefix_len` on interface `index` (IPv6: nodad). Also used by the
/// pasta drop-in's own batch (`transact`).
pub fn address(index: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(addr);
    msg.header.prefix_len = prefix_len;
    msg.header.scope = AddressScope::Universe;
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(addr));
    msg.attributes.push(AddressAttribute::Address(addr));
    if addr.is_ipv6() {
        // No duplicate address detection: nothing else is on this link, and DAD would leave the
        // address tentative (unusable) for 1-2 s after the command starts.
        msg.header.flags = AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    msg
}

fn default_route(index: u32, gateway: IpAddr) -> RouteMessage {
    let header = RouteHeader {
        address_family: family(gateway),
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: RouteProtocol::Boot,
        scope: RouteScope::Universe,
        kind: RouteType::Unicast,
        ..Default::default()
    };
    let mut msg = RouteMessage::default();
    msg.header = header;
    msg.attributes
        .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
    msg.attributes.push(RouteAttribute::Oif(index));
    msg
}

/// Serializes the batch; request i gets sequence number i + 1.
pub fn encode(requests: &[(Step, RouteNetlinkMessage)]) -> Vec<u8> {
    let mut batch = Vec::new();
    for (seq, (step, msg)) in (1u32..).zip(requests) {
        let mut flags = NLM_F_REQUEST | NLM_F_ACK;
        if matches!(
            step,
            Step::AddressV4 | Step::RouteV4 | Step::AddressV6 | Step::RouteV6
        ) {
            flags |= NLM_F_CREATE | NLM_F_EXCL;
        }
        encode_one(&mut batch, seq, flags, msg);
    }
    batch
}

/// Appends request `msg` with sequence number `seq` and header `flags` to `batch`.
fn encode_one(batch: &mut Vec<u8>, seq: u32, flags: u16, msg: &RouteNetlinkMessage) {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg.clone()));
    packet.finalize();
    let start = batch.len();
    batch.resize(start + packet.buffer_len(), 0);
    packet.serialize(&mut batch[start..]);
}

/// The link named `name` as the kernel describes it (RTM_GETLINK by IFLA_IFNAME), or `None`
/// when there is none.
pub fn get_link(name: &str) -> Result<Option<LinkMessage>, NetconfError> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.into()));
    let mut batch = Vec::new();
    encode_one(
        &mut batch,
        1,
        NLM_F_REQUEST,
        &RouteNetlinkMessage::GetLink(msg),
    );
    let socket = Socket::new(NETLINK_ROUTE).map_err(NetconfError::Socket)?;
    let sent = socket
        .send_to(&batch, &SocketAddr::new(0, 0), 0)
        .map_err(NetconfError::Send)?;
    if sent != batch.len() {
        return Err(NetconfError::Send(io::Error::new(
            io::ErrorKind::WriteZero,
            "short netlink send",
        )));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let n = socket
        .recv(&mut &mut buf[..], 0)
        .map_err(NetconfError::Receive)?;
    link_reply(buf.get(..n).unwrap_or_default())
}

/// The kernel's answer to `get_link`: the link, `None` for ENODEV (or a plain ACK), or why
/// the reply cannot be used.
pub(crate) fn link_reply(data: &[u8]) -> Result<Option<LinkMessage>, NetconfError> {
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(data)
        .map_err(NetconfError::Malformed)?;
    match msg.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => Ok(Some(link)),
        NetlinkPayload::Error(e) => match e.code.map(|c| errno(c.get())) {
            Some(errno) if errno == nix::errno::Errno::ENODEV as i32 => Ok(None),
            Some(errno) => Err(NetconfError::Receive(io::Error::from_raw_os_error(errno))),
            None => Ok(None),
        },
        _ => Err(NetconfError::Truncated),
    }
}

/// Walks the messages in `data` and records each ACK (`Some(None)`) or NACK (`Some(Some(errno))`)
/// against its request by sequence number.
pub(crate) fn record_acks(
    mut data: &[u8],
    acked: &mut [Option<Option<i32>>],
) -> Result<(), NetconfError> {
    while !data.is_empty() {
        let len = NetlinkBuffer::new_checked(data)
            .map_err(NetconfError::Malformed)?
            .length() as usize;
        if len == 0 {
            return Err(NetconfError::Truncated);
        }
        let (this, rest) = data.split_at_checked(len).ok_or(NetconfError::Truncated)?;
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(this)
            .map_err(NetconfError::Malformed)?;
        if let NetlinkPayload::Error(err) = &msg.payload {
            let slot = (msg.header.sequence_number as usize)
                .checked_sub(1)
                .and_then(|i| acked.get_mut(i))
                .ok_or(NetconfError::UnknownSequence {
                    seq: msg.header.sequence_number,
                })?;
            *slot = Some(err.code.map(|c| errno(c.get())));
        }
        // Netlink pads each message to 4 bytes; the last one may end exactly at the buffer end.
        let pad = (4 - len % 4) % 4;
        data = rest.get(pad..).unwrap_or_default();
    }
    Ok(())
}

/// The errno of a NLMSG_ERROR code (the kernel sends it negated). Saturating: i32::MIN, which
/// no kernel sends, must not overflow (found by the netlink_reply fuzz target).
fn errno(code: i32) -> i32 {
    code.saturating_abs()
}

#[cfg(test)]
mod tests;
