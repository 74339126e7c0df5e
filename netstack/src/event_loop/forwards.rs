//! Port forwards inside the event loop: the table of forwards in force (their bound host
//! sockets and ids), the commands that change it, and what a forward's socket delivers —
//! each accepted TCP connection and each new UDP client becomes a host-initiated flow in the
//! shared flow table, addressed to the sandbox's service.
//!
//! Which address the sandbox sees (`visible_source`): a client on a non-loopback host address
//! arrives as itself (address and port), so servers in the sandbox log and filter real
//! clients. A client on the host's loopback, or whose address the sandbox could not route back
//! (inside the virtual network, link-local, or the sandbox's own address: pasta's addressing
//! copies the host's) arrives from the gateway (10.0.2.2 / fd00::2), or from the host alias
//! (pasta's `--map-guest-addr`) when there is one, with its own port, never as the sandbox's own 127.0.0.1: a service that trusts its
//! loopback is not opened to every local user. Two loopback clients with the same port
//! (127.0.0.1:P and 127.0.0.2:P) would share a key; the second is refused.
//!
//! Bounds: ids run from 1 and are never reused in one run; the table grows with the forwards
//! (one slot per host socket; slots of removed forwards are reused under a new id). Each
//! readiness event accepts or receives at most `BUDGET` connections or datagrams; a forward
//! with more waiting is served again next turn.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mio::Interest;

use super::*;
use crate::command::Command;
use crate::flows::InboundUdp;
use crate::forward::{Bound, ForwardEntry, Listener, Transport};

/// Connections accepted or datagrams received per forward per turn.
const BUDGET: usize = 64;
/// Largest UDP datagram (16-bit length field).
const MAX_DATAGRAM: usize = u16::MAX as usize;

/// One forward in force.
struct Fwd {
    id: u32,
    listener: Listener,
}

/// The forward table.
pub(super) struct Forwards {
    slots: Vec<Option<Fwd>>,
    next_id: u32,
    /// Forwards whose budget ran out this turn (edge-triggered: no new event will come).
    pending: Vec<usize>,
    /// Receive buffer for forwarded UDP datagrams (allocated with the first UDP forward).
    scratch: Vec<u8>,
}

impl Forwards {
    pub(super) fn new() -> Forwards {
        Forwards {
            slots: Vec::new(),
            next_id: 1,
            pending: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The UDP socket of forward `id` in `slot`, if that forward is still in force.
    fn udp(&mut self, slot: usize, id: u32) -> Option<&mut mio::net::UdpSocket> {
        match self.slots.get_mut(slot)? {
            Some(f) if f.id == id => match f.listener.bound_mut() {
                Bound::Udp(sock) => Some(sock),
                Bound::Tcp(_) => None,
            },
            _ => None,
        }
    }

    fn entries(&self) -> Vec<ForwardEntry> {
        let mut out: Vec<ForwardEntry> = self
            .slots
            .iter()
            .flatten()
            .map(|f| ForwardEntry {
                id: f.id,
                spec: f.listener.spec(),
            })
            .collect();
        out.sort_by_key(|e| e.id);
        out
    }
}

impl EventLoop {
    /// Registers a bound forward socket and gives it the next id.
    pub fn publish(&mut self, mut listener: Listener) -> io::Result<u32> {
        let fw = &mut self.forwards;
        let slot = match fw.slots.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                fw.slots.push(None);
                fw.slots.len() - 1
            }
        };
        let tok = token(Tok::Listener(slot))?;
        let reg = self.poll.registry();
        match listener.bound_mut() {
            Bound::Tcp(l) => reg.register(l, tok, Interest::READABLE)?,
            Bound::Udp(u) => {
                if fw.scratch.is_empty() {
                    fw.scratch = vec![0; MAX_DATAGRAM];
                }
                reg.register(u, tok, Interest::READABLE)?
            }
        }
        let id = fw.next_id;
        fw.next_id = fw.next_id.wrapping_add(1).max(1);
        tracing::info!(id, spec = ?listener.spec(), "forward added");
        if let Some(s) = fw.slots.get_mut(slot) {
            *s = Some(Fwd { id, listener });
        }
        Ok(id)
    }

    /// Stops forward `id`: its socket closes (leaving epoll with it). TCP flows it opened
    /// carry on; its UDP clients' flows find no socket for replies and idle out.
    fn unpublish(&mut self, id: u32) -> bool {
        let found = self
            .forwards
            .slots
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|f| f.id == id));
        match found {
            Some(slot) => {
                *slot = None;
                tracing::info!(id, "forward removed");
                true
            }
            None => false,
        }
    }

    /// Applies every queued command; replies go back on each command's own channel (a sender
    /// that gave up waiting is not an error).
    pub(super) fn run_commands(&mut self) {
        loop {
            let Some(cmd) = self.commands.as_ref().and_then(|c| c.next()) else {
                return;
            };
            match cmd {
                Command::Add(listener, reply) => match self.publish(listener) {
                    Ok(id) => {
                        let _ = reply.send(id);
                    }
                    // Dropping `reply` unanswered tells the sender the add failed.
                    Err(error) => tracing::warn!(%error, "cannot register a forward"),
                },
                Command::Remove(id, reply) => {
                    let _ = reply.send(self.unpublish(id));
                }
                Command::List(reply) => {
                    let _ = reply.send(self.forwards.entries());
                }
                Command::Egress(req, reply) => {
                    let _ = reply.send(self.egress_command(req, Instant::now()));
                }
            }
        }
    }

    pub(super) fn serve_pending_listeners(&mut self, now: Instant) {
        let pending = std::mem::take(&mut self.forwards.pending);
        for slot in pending {
            self.listener_event(slot, now);
        }
    }

    /// A forward's socket is readable: new connections or datagrams.
    pub(super) fn listener_event(&mut self, slot: usize, now: Instant) {
        let Some(Some(fwd)) = self.forwards.slots.get(slot) else {
            return; // removed earlier in this turn
        };
        self.flow_traffic = true;
        let spec = fwd.listener.spec();
        let done = match spec.proto {
            Transport::Tcp => self.accept_tcp(slot, spec.guest, now),
            Transport::Udp => self.receive_udp(slot, spec.guest, now),
        };
        if !done {
            self.forwards.pending.push(slot);
        }
    }

    /// Accepts up to `BUDGET` connections; `true` when the queue is empty.
    fn accept_tcp(&mut self, slot: usize, guest: SocketAddr, now: Instant) -> bool {
        for _ in 0..BUDGET {
            let accepted = match self.forwards.slots.get_mut(slot) {
                Some(Some(Fwd { listener, .. })) => match listener.bound_mut() {
                    Bound::Tcp(l) => l.accept(),
                    Bound::Udp(_) => return true,
                },
                _ => return true,
            };
            match accepted {
                Ok((stream, peer)) => self.open_inbound_tcp(stream, peer, guest, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // ECONNABORTED, EMFILE...: the connection is lost, the forward stays.
                    self.drops.forward_refused += 1;
                    tracing::debug!(%error, "accept on a forward failed");
                    return true;
                }
            }
        }
        false
    }

    /// Opens a flow toward the sandbox's `guest` service for an accepted host connection.
    fn open_inbound_tcp(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        guest: SocketAddr,
        now: Instant,
    ) {
        let ep = Endpoints {
            sandbox: guest,
            remote: self.visible_source(peer, guest),
        };
        let key = FlowKey {
            proto: Proto::Tcp,
            sandbox: ep.sandbox,
            remote: ep.remote,
        };
        if self.flows.find(&key).is_some() {
            return self.refuse_inbound(stream, peer, "address clash");
        }
        let Some((slot, evicted)) = self.flows.reserve(Need::Other) else {
            self.drops.table_full += 1;
            return self.refuse_inbound(stream, peer, "flow table full");
        };
        drop(evicted);
        if let Err(error) = self.register_tcp(&mut stream, slot) {
            tracing::warn!(%error, "cannot register a forwarded connection");
            self.flows.release(slot);
            return self.refuse_inbound(stream, peer, "registration failed");
        }
        let origin = self.clock.origin(&ep, now);
        let mut flow = TcpFlow::new_inbound(ep, self.egress.mtu(), origin, now);
        let mut host = HostTcp::new(stream);
        tracing::debug!(%peer, remote = %ep.remote, sandbox = %ep.sandbox, "forwarded tcp flow opened");
        flow.send_syn(&mut host, &mut self.egress, now);
        self.insert_tcp(slot, key, flow, host, now);
    }

    /// Closes an accepted connection with RST: the client sees a reset, not an empty reply.
    fn refuse_inbound(&mut self, stream: TcpStream, peer: SocketAddr, why: &'static str) {
        self.drops.forward_refused += 1;
        tracing::debug!(%peer, why, "forwarded connection refused");
        HostTcp::new(stream).abort();
    }

    /// Receives up to `BUDGET` datagrams on a UDP forward and passes each to the sandbox
    /// from its client's visible address, opening the client's flow on first sight.
    fn receive_udp(&mut self, slot: usize, guest: SocketAddr, now: Instant) -> bool {
        let mut scratch = std::mem::take(&mut self.forwards.scratch);
        let mut done = false;
        for _ in 0..BUDGET {
            let got = match self.forwards.slots.get_mut(slot) {
                Some(Some(Fwd { listener, .. })) => match listener.bound_mut() {
                    Bound::Udp(u) => u.recv_from(&mut scratch),
                    Bound::Tcp(_) => break,
                },
                _ => break,
            };
            match got {
                Ok((len, client)) => {
                    let payload = scratch.get(..len).unwrap_or_default();
                    self.inbound_datagram(slot, client, guest, payload, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    done = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // e.g. ECONNREFUSED left by an ICMP error for an earlier reply.
                    tracing::trace!(%error, "udp forward receive error");
                }
            }
        }
        self.forwards.scratch = scratch;
        done || !matches!(self.forwards.slots.get(slot), Some(Some(_)))
    }

    fn inbound_datagram(
        &mut self,
        fwd_slot: usize,
        client: SocketAddr,
        guest: SocketAddr,
        payload: &[u8],
        now: Instant,
    ) {
        let remote = self.visible_source(client, guest);
        let key = FlowKey {
            proto: Proto::Udp,
            sandbox: guest,
            remote,
        };
        match self.flows.find(&key).and_then(|s| self.flows.get_mut(s)) {
            Some(Flow::UdpIn(f)) if f.client == client => f.last_active = now,
            Some(_) => {
                self.drops.forward_refused += 1;
                return; // the key belongs to another client or to a sandbox-opened flow
            }
            None => {
                let Some((slot, evicted)) = self.flows.reserve(Need::Other) else {
                    self.drops.table_full += 1;
                    return;
                };
                drop(evicted);
                let Some(Some(fwd)) = self.forwards.slots.get(fwd_slot) else {
                    self.flows.release(slot);
                    return;
                };
                let flow = InboundUdp {
                    forward_slot: fwd_slot,
                    forward_id: fwd.id,
                    client,
                    last_active: now,
                };
                self.flows.insert(slot, key, Flow::UdpIn(flow), now);
                self.arm(now + self.cfg.udp_idle_timeout);
            }
        }
        let sent = self.egress.udp_datagram(remote, guest, |buf| {
            let slot = buf
                .get_mut(..payload.len())
                .ok_or(io::ErrorKind::InvalidInput)?;
            slot.copy_from_slice(payload);
            Ok(payload.len())
        });
        if sent.is_err() {
            self.drops.forward_refused += 1;
        }
    }

    /// A datagram from the sandbox on a forward's flow: back to the client through the
    /// forward's socket. Dropped when the forward is gone or the socket's buffer is full.
    pub(super) fn reply_inbound_udp(&mut self, flow: InboundUdp, payload: &[u8]) {
        let Some(sock) = self.forwards.udp(flow.forward_slot, flow.forward_id) else {
            return;
        };
        if let Err(error) = sock.send_to(payload, flow.client) {
            tracing::trace!(%error, client = %flow.client, "udp forward reply dropped");
        }
    }

    /// The address a host client `peer` appears from in the sandbox (see the module header).
    fn visible_source(&self, peer: SocketAddr, guest: SocketAddr) -> SocketAddr {
        let ip = match peer.ip() {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
            v4 => v4,
        };
        let routable = !(ip.is_loopback()
            || ip.is_unspecified()
            || ip == guest.ip()
            || self.cfg.addr.contains(ip)
            || is_link_local(ip)
            || ip.is_ipv4() != guest.is_ipv4());
        let ip = if routable {
            ip
        } else {
            self.cfg.addr.host_face_for(guest.ip())
        };
        SocketAddr::new(ip, peer.port())
    }
}

/// 169.254.0.0/16 or fe80::/10: the sandbox would look for such a client on tap0 itself.
fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}
