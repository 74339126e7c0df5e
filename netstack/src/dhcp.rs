//! A minimal DHCPv4 server (RFC 2131), as libslirp runs one for slirp4netns: a sandbox that
//! brings tap0 up without `--configure` can ask for an address (`udhcpc`, `dhclient`) and gets
//! one of the 16 addresses network + 15 ..= network + 30, with the gateway as router and the
//! DNS address as name server.
//!
//! Called by the event loop (`dispatch`) for UDP to port 67 on the broadcast address or the
//! gateway, before the NAT; present only with `StackConfig::dhcp_server`. The server parses
//! with smoltcp's `DhcpPacket`/`DhcpRepr`, decides in `answer` (which knows no bytes) and
//! emits its reply through `Egress`: from the gateway, port 67, to 255.255.255.255:68 (the
//! client may have no address yet), in an Ethernet frame to the sandbox's MAC.
//!
//! Leases: one slot per pool address, keyed by the client's hardware address (`chaddr`). Each
//! slot is in one `Slot` state:
//!
//! ```text
//! event (from MAC m)          slot of m: none           Offered(m)          Bound(m)
//! DISCOVER                    free slot -> Offered      OFFER, hold again   OFFER, stays Bound
//!                             (none free: no answer,
//!                             counted `pool_full`)
//! REQUEST for pool addr a     a free -> Bound, ACK      a is it -> Bound,   a is it -> Bound
//!   (no server id, or ours)   a taken -> NAK            ACK; else NAK       (renewed), ACK; else NAK
//! REQUEST for a not ours      NAK                       NAK                 NAK
//! REQUEST, other server id    ignored                   -> Free             ignored
//! RELEASE of ciaddr a         ignored                   a is it -> Free     a is it -> Free
//! DECLINE, INFORM, replies    ignored (counted)
//! ```
//!
//! Limit: the table holds `POOL_SIZE` slots, no more. A slot is free when
//! it is `Free` or its deadline has passed: an offer is held `OFFER_HOLD`, a lease lasts
//! `LEASE_TIME`. When every slot is live, a DISCOVER from a new MAC gets no offer. A client
//! whose expired slot was not reused gets its old address again.
//!
//! One datagram in, at most one out, built in the egress buffer: no allocation. Anything that
//! does not parse as a DHCP request from an Ethernet client is dropped and counted.
//!
//! Not done: DHCPINFORM answers, DECLINE marking an address unusable, replies unicast to a
//! renewing client's address or through a relay (`giaddr`), options beyond those below
//! (no domain name, search list, T1/T2: clients use 50 % and 87.5 % of the lease).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use smoltcp::wire::{
    DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr, EthernetAddress, DHCP_CLIENT_PORT,
    DHCP_SERVER_PORT,
};

use crate::config::Addressing;
use crate::egress::Egress;

/// Port the server listens on (RFC 2131 section 4.1).
pub const SERVER_PORT: u16 = DHCP_SERVER_PORT;
/// Host part of the first address handed out (libslirp's START_ADDR: network + 15).
const POOL_FIRST_HOST: u32 = 15;
/// Addresses in the pool (libslirp's NB_BOOTP_CLIENTS): network + 15 ..= network + 30.
pub const POOL_SIZE: usize = 16;
/// Lease time given to clients: 24 hours, as libslirp (LEASE_TIME).
pub const LEASE_TIME: Duration = Duration::from_secs(24 * 3600);
/// How long an offer holds its address for a client that does not come back with a REQUEST.
pub const OFFER_HOLD: Duration = Duration::from_secs(60);
/// DHCP option: domain name servers (RFC 2132 section 3.8).
const OPT_DNS: u8 = 6;
/// Smallest BOOTP message (RFC 951, RFC 1542 section 2.1: 300 bytes); some clients drop
/// shorter ones, so replies are padded up to it.
const MIN_MESSAGE: usize = 300;

/// Why a datagram to port 67 got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    /// Too short, not a BOOTREQUEST with a known message type, not Ethernet, or a bad magic
    /// cookie (smoltcp's `DhcpRepr::parse` refused it).
    #[error("malformed DHCP message")]
    Malformed,
    /// A message type a server does not answer (DECLINE, INFORM, or a server's own types).
    #[error("DHCP message type not answered")]
    Ignored,
    /// A DISCOVER while every pool address is offered or leased.
    #[error("DHCP pool exhausted")]
    PoolFull,
    /// The reply does not fit the buffer (a link MTU below 576).
    #[error("DHCP reply does not fit the link")]
    TooBig,
}

/// What the server did over its life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DhcpStats {
    /// OFFERs sent.
    pub offers: u64,
    /// ACKs sent.
    pub acks: u64,
    /// NAKs sent.
    pub naks: u64,
    /// Leases freed by RELEASE, or offers dropped because the client chose another server.
    pub released: u64,
    /// DISCOVERs left unanswered because the pool was full.
    pub pool_full: u64,
    /// Datagrams that did not parse.
    pub malformed: u64,
    /// Well-formed messages needing no answer.
    pub ignored: u64,
}

/// The state of one pool address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Nobody holds it.
    Free,
    /// Offered to `mac`, held until `until`.
    Offered {
        mac: EthernetAddress,
        until: Instant,
    },
    /// Leased to `mac` until `until`.
    Bound {
        mac: EthernetAddress,
        until: Instant,
    },
}

impl Slot {
    fn holder(&self) -> Option<EthernetAddress> {
        match *self {
            Slot::Free => None,
            Slot::Offered { mac, .. } | Slot::Bound { mac, .. } => Some(mac),
        }
    }

    /// Whether a client other than its holder may take it at `now`.
    fn is_free(&self, now: Instant) -> bool {
        match *self {
            Slot::Free => true,
            Slot::Offered { until, .. } | Slot::Bound { until, .. } => until <= now,
        }
    }
}

/// The kind of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// DHCPOFFER of `Reply::your_ip`.
    Offer,
    /// DHCPACK of `Reply::your_ip`.
    Ack,
    /// DHCPNAK: the client must start over.
    Nak,
}

/// An answer to send, decided by `Server::answer`, written by `Server::emit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// What it is.
    pub kind: Kind,
    /// The request's transaction id.
    pub xid: u32,
    /// The client's hardware address.
    pub chaddr: EthernetAddress,
    /// The request's `ciaddr`, echoed in an ACK (RFC 2131 table 3).
    pub ciaddr: Ipv4Addr,
    /// The address offered or leased (unspecified in a NAK).
    pub your_ip: Ipv4Addr,
    /// The request's relay agent address, echoed.
    pub giaddr: Ipv4Addr,
    /// The request's broadcast flag, echoed.
    pub broadcast: bool,
}

/// The DHCP server and its lease table.
#[derive(Debug, Clone)]
pub struct Server {
    gateway: Ipv4Addr,
    dns: Option<Ipv4Addr>,
    mask: Ipv4Addr,
    first: u32,
    slots: [Slot; POOL_SIZE],
    stats: DhcpStats,
}

impl Server {
    /// A server for `addr`'s IPv4 network, naming `addr`'s DNS address as name server when
    /// `dns` (off with `--disable-dns`).
    pub fn new(addr: &Addressing, dns: bool) -> Server {
        let len = u32::from(addr.prefix_v4());
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        Server {
            gateway: addr.gateway_v4(),
            dns: dns.then(|| addr.dns_v4()),
            mask: Ipv4Addr::from(mask),
            first: u32::from(addr.network_v4()) | POOL_FIRST_HOST,
            slots: [Slot::Free; POOL_SIZE],
            stats: DhcpStats::default(),
        }
    }

    /// What the server counted so far.
    pub fn stats(&self) -> DhcpStats {
        self.stats
    }

    /// Handles one datagram from the sandbox to port 67, sending the reply if there is one.
    pub fn input(&mut self, payload: &[u8], egress: &mut Egress, now: Instant) {
        let Some(reply) = self.answer(payload, now) else {
            return;
        };
        let from = SocketAddr::new(IpAddr::V4(self.gateway), SERVER_PORT);
        let to = SocketAddr::new(IpAddr::V4(Ipv4Addr::BROADCAST), DHCP_CLIENT_PORT);
        let sent = egress.udp_datagram(from, to, |buf| {
            self.emit(&reply, buf)
                .map_err(|_| io::Error::from(io::ErrorKind::WriteZero))
        });
        if sent.is_err() {
            tracing::warn!(error = %DhcpError::TooBig, "dhcp reply not sent");
        }
    }

    /// Decides the answer to `payload` at `now`, updating the lease table and the counters;
    /// `None` when nothing is to be sent.
    pub fn answer(&mut self, payload: &[u8], now: Instant) -> Option<Reply> {
        match self.decide(payload, now) {
            Ok(reply) => {
                match reply.map(|r| r.kind) {
                    Some(Kind::Offer) => self.stats.offers += 1,
                    Some(Kind::Ack) => self.stats.acks += 1,
                    Some(Kind::Nak) => self.stats.naks += 1,
                    None => {}
                }
                reply
            }
            Err(error) => {
                match error {
                    DhcpError::Malformed => self.stats.malformed += 1,
                    DhcpError::Ignored => self.stats.ignored += 1,
                    DhcpError::PoolFull => self.stats.pool_full += 1,
                    DhcpError::TooBig => {}
                }
                tracing::trace!(%error, "dhcp message not answered");
                None
            }
        }
    }

    fn decide(&mut self, payload: &[u8], now: Instant) -> Result<Option<Reply>, DhcpError> {
        let packet = DhcpPacket::new_checked(payload).map_err(|_| DhcpError::Malformed)?;
        let req = DhcpRepr::parse(&packet).map_err(|_| DhcpError::Malformed)?;
        let mac = req.client_hardware_address;
        let reply = |kind, your_ip| Reply {
            kind,
            xid: req.transaction_id,
            chaddr: mac,
            ciaddr: match kind {
                Kind::Ack => req.client_ip,
                _ => Ipv4Addr::UNSPECIFIED,
            },
            your_ip,
            giaddr: req.relay_agent_ip,
            broadcast: req.broadcast,
        };
        match req.message_type {
            DhcpMessageType::Discover => {
                let i = self.for_discover(mac, req.requested_ip, now)?;
                if !matches!(self.slots[i], Slot::Bound { mac: m, .. } if m == mac) {
                    let until = now + OFFER_HOLD;
                    self.slots[i] = Slot::Offered { mac, until };
                }
                Ok(Some(reply(Kind::Offer, self.addr(i))))
            }
            DhcpMessageType::Request => {
                if req.server_identifier.is_some_and(|id| id != self.gateway) {
                    // The client took another server's offer: ours is no longer held.
                    if let Some(i) = self.find(mac) {
                        if matches!(self.slots[i], Slot::Offered { .. }) {
                            self.slots[i] = Slot::Free;
                            self.stats.released += 1;
                        }
                    }
                    return Err(DhcpError::Ignored);
                }
                let wanted = req.requested_ip.unwrap_or(req.client_ip);
                match self.index(wanted) {
                    Some(i)
                        if self.slots[i].holder() == Some(mac) || self.slots[i].is_free(now) =>
                    {
                        if let Some(old) = self.find(mac).filter(|&o| o != i) {
                            self.slots[old] = Slot::Free;
                        }
                        let until = now + LEASE_TIME;
                        self.slots[i] = Slot::Bound { mac, until };
                        Ok(Some(reply(Kind::Ack, self.addr(i))))
                    }
                    _ => Ok(Some(reply(Kind::Nak, Ipv4Addr::UNSPECIFIED))),
                }
            }
            DhcpMessageType::Release => {
                if let Some(i) = self.index(req.client_ip) {
                    if self.slots[i].holder() == Some(mac) {
                        self.slots[i] = Slot::Free;
                        self.stats.released += 1;
                        return Ok(None);
                    }
                }
                Err(DhcpError::Ignored)
            }
            _ => Err(DhcpError::Ignored),
        }
    }

    /// The slot to offer `mac`: its own, else the one it asks for if free, else the first free.
    fn for_discover(
        &self,
        mac: EthernetAddress,
        requested: Option<Ipv4Addr>,
        now: Instant,
    ) -> Result<usize, DhcpError> {
        let asked = requested
            .and_then(|a| self.index(a))
            .filter(|&i| self.slots[i].is_free(now));
        self.find(mac)
            .or(asked)
            .or_else(|| self.slots.iter().position(|s| s.is_free(now)))
            .ok_or(DhcpError::PoolFull)
    }

    /// The slot held by (offered or leased to) `mac`, expired or not.
    fn find(&self, mac: EthernetAddress) -> Option<usize> {
        self.slots.iter().position(|s| s.holder() == Some(mac))
    }

    /// The slot of pool address `ip`.
    fn index(&self, ip: Ipv4Addr) -> Option<usize> {
        let i = usize::try_from(u32::from(ip).checked_sub(self.first)?).ok()?;
        (i < POOL_SIZE).then_some(i)
    }

    fn addr(&self, i: usize) -> Ipv4Addr {
        // i < POOL_SIZE (16): the cast is lossless.
        Ipv4Addr::from(self.first + i as u32)
    }

    /// Writes `reply` as a DHCP message into `buf`; its length.
    pub fn emit(&self, reply: &Reply, buf: &mut [u8]) -> Result<usize, DhcpError> {
        let (message_type, lease) = match reply.kind {
            Kind::Offer => (DhcpMessageType::Offer, true),
            Kind::Ack => (DhcpMessageType::Ack, true),
            Kind::Nak => (DhcpMessageType::Nak, false),
        };
        let dns_data = self.dns.map(|d| d.octets()).unwrap_or_default();
        let dns_option = [DhcpOption {
            kind: OPT_DNS,
            data: &dns_data,
        }];
        let extra: &[DhcpOption<'_>] = match (lease, self.dns) {
            (true, Some(_)) => &dns_option,
            _ => &[],
        };
        let repr = DhcpRepr {
            message_type,
            transaction_id: reply.xid,
            secs: 0,
            client_hardware_address: reply.chaddr,
            client_ip: reply.ciaddr,
            your_ip: reply.your_ip,
            server_ip: Ipv4Addr::UNSPECIFIED,
            router: lease.then_some(self.gateway),
            subnet_mask: lease.then_some(self.mask),
            relay_agent_ip: reply.giaddr,
            broadcast: reply.broadcast,
            requested_ip: None,
            client_identifier: None,
            server_identifier: Some(self.gateway),
            parameter_request_list: None,
            dns_servers: None,
            max_size: None,
            lease_duration: lease.then_some(LEASE_TIME.as_secs() as u32),
            renew_duration: None,
            rebind_duration: None,
            additional_options: extra,
        };
        let len = repr.buffer_len().max(MIN_MESSAGE);
        let out = buf.get_mut(..len).ok_or(DhcpError::TooBig)?;
        out.fill(0);
        repr.emit(&mut DhcpPacket::new_unchecked(&mut out[..]))
            .map_err(|_| DhcpError::TooBig)?;
        Ok(len)
    }
}

#[cfg(test)]
pub(crate) mod tests;
