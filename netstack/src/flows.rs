//! Flow table: maps a 5-tuple, as the sandbox sees it, to its TCP, UDP or ICMP flow and host
//! socket. Flows the sandbox opens (NAT) and flows a forward opens (a host client reaching a
//! sandbox service) share it: the key is always (protocol, sandbox address, remote address as
//! the sandbox sees it), so a segment from the sandbox finds its flow whoever opened it.
//! Used by `event_loop`; a flow's slot index is also its event token (`Tok::Flow`).
//! Bounded by `StackConfig::max_flows`, allocated up front. When full, the least recently
//! active UDP or ICMP flow is evicted; if there is none, the new flow is refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::host::HostTcp;
use crate::icmp::PingFlow;
use crate::tcp::TcpFlow;
use crate::udp::UdpFlow;

/// Transport protocol of a flow key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP echo (ports are the echo identifier on the sandbox side, 0 on the remote).
    Icmp,
}

/// Identity of a flow as the sandbox sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Protocol.
    pub proto: Proto,
    /// Sandbox address and port.
    pub sandbox: SocketAddr,
    /// Remote address and port, as the sandbox addressed it.
    pub remote: SocketAddr,
}

/// A flow of one of the three kinds.
#[derive(Debug)]
pub enum Flow {
    /// TCP translation state plus its host socket.
    Tcp(Box<TcpFlow>, HostTcp),
    /// UDP NAT entry.
    Udp(UdpFlow),
    /// ICMP echo through a ping socket.
    Ping(PingFlow),
    /// UDP from a host client through a forward: replies leave through the forward's socket.
    UdpIn(InboundUdp),
}

/// A UDP client of a forward, as a flow: the sandbox's replies go back to `client` from the
/// forward's socket (the one the client sent to), so the client sees the address it used.
#[derive(Debug, Clone, Copy)]
pub struct InboundUdp {
    /// Slot of the forward in the event loop's forward table.
    pub forward_slot: usize,
    /// Id of that forward (a slot reused by a later forward has another id).
    pub forward_id: u32,
    /// The client's real address on the host side.
    pub client: SocketAddr,
    /// Last datagram either way.
    pub last_active: Instant,
}

impl Flow {
    /// Last time the flow carried traffic.
    pub fn last_active(&self) -> Instant {
        match self {
            Flow::Tcp(f, _) => f.last_active(),
            Flow::Udp(f) => f.last_active(),
            Flow::Ping(f) => f.last_active(),
            Flow::UdpIn(f) => f.last_active,
        }
    }
}

struct Slot {
    key: FlowKey,
    flow: Flow,
}

/// The table itself.
pub struct FlowTable {
    /// Slots in use or freed; grows up to `capacity` within its reservation, so memory is
    /// touched only as flows appear (a full table of `max_flows` slots is ~600 KiB).
    slots: Vec<Option<Slot>>,
    capacity: usize,
    free: Vec<usize>,
    index: HashMap<FlowKey, usize>,
}

impl FlowTable {
    /// A table of `capacity` slots, reserved now.
    pub fn new(capacity: usize) -> FlowTable {
        FlowTable {
            slots: Vec::with_capacity(capacity),
            capacity,
            free: Vec::with_capacity(capacity),
            index: HashMap::with_capacity(capacity),
        }
    }

    /// Slot of the flow with `key`.
    pub fn find(&self, key: &FlowKey) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// The flow in `slot`.
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Flow> {
        self.slots.get_mut(slot)?.as_mut().map(|s| &mut s.flow)
    }

    /// A free slot, evicting the least recently active UDP/ICMP flow when full.
    /// Returns the slot and the evicted flow (to be deregistered), or `None` if all are TCP.
    pub fn reserve(&mut self) -> Option<(usize, Option<Flow>)> {
        if let Some(slot) = self.free.pop() {
            return Some((slot, None));
        }
        if self.slots.len() < self.capacity {
            self.slots.push(None);
            return Some((self.slots.len() - 1, None));
        }
        let victim = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .filter(|(_, s)| !matches!(s.flow, Flow::Tcp(..)))
            .min_by_key(|(_, s)| s.flow.last_active())
            .map(|(i, _)| i)?;
        let evicted = self.take(victim)?;
        self.free.retain(|&s| s != victim);
        Some((victim, Some(evicted)))
    }

    /// Puts `flow` into `slot` (from `reserve`).
    pub fn insert(&mut self, slot: usize, key: FlowKey, flow: Flow) {
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(Slot { key, flow });
            self.index.insert(key, slot);
        }
    }

    /// Gives back a slot from `reserve` that was not used.
    pub fn release(&mut self, slot: usize) {
        if self.slots.get(slot).is_some_and(|s| s.is_none()) {
            self.free.push(slot);
        }
    }

    /// Removes and returns the flow in `slot`, freeing the slot. Dropping the flow closes its
    /// socket, which also removes it from the epoll set (no EPOLL_CTL_DEL needed).
    pub fn remove(&mut self, slot: usize) -> Option<Flow> {
        let flow = self.take(slot)?;
        self.free.push(slot);
        Some(flow)
    }

    fn take(&mut self, slot: usize) -> Option<Flow> {
        let s = self.slots.get_mut(slot)?.take()?;
        self.index.remove(&s.key);
        Some(s.flow)
    }

    /// Whether the flow in `slot` has nothing more to carry from the sandbox: UDP and ICMP
    /// always, TCP once the sandbox's FIN or RST arrived.
    pub fn sandbox_closed(&self, slot: usize) -> bool {
        match self.slots.get(slot) {
            Some(Some(Slot {
                flow: Flow::Tcp(f, _),
                ..
            })) => f.sandbox_closed(),
            _ => true,
        }
    }

    /// Number of slots handed out so far (used or free).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The key of the flow in `slot`.
    pub fn key(&self, slot: usize) -> Option<FlowKey> {
        self.slots.get(slot)?.as_ref().map(|s| s.key)
    }

    /// Slots in use (for timer scans).
    pub fn occupied(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|_| i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::Endpoints;
    use crate::udp::UdpFlow;

    fn udp_flow(port: u16, now: Instant) -> (FlowKey, Flow) {
        let ep = Endpoints {
            sandbox: SocketAddr::from(([10, 0, 2, 100], port)),
            remote: SocketAddr::from(([10, 0, 2, 2], 9)),
        };
        let target = SocketAddr::from(([127, 0, 0, 1], 9));
        let flow = UdpFlow::open(ep, target, None, now).expect("udp socket");
        let key = FlowKey {
            proto: Proto::Udp,
            sandbox: ep.sandbox,
            remote: ep.remote,
        };
        (key, Flow::Udp(flow))
    }

    #[test]
    fn full_table_evicts_the_least_recently_active_udp_flow() {
        let mut t = FlowTable::new(3);
        let start = Instant::now();
        let mut keys = Vec::new();
        for i in 0..3u16 {
            let (slot, evicted) = t.reserve().expect("room");
            assert!(evicted.is_none());
            let (key, flow) = udp_flow(
                1000 + i,
                start + std::time::Duration::from_secs(u64::from(i)),
            );
            t.insert(slot, key, flow);
            keys.push(key);
        }
        let (slot, evicted) = t.reserve().expect("evicts");
        assert!(evicted.is_some());
        assert_eq!(t.find(&keys[0]), None, "the oldest flow went");
        assert!(t.find(&keys[1]).is_some() && t.find(&keys[2]).is_some());
        t.release(slot);
        assert_eq!(
            t.reserve().map(|(s, e)| (s, e.is_none())),
            Some((slot, true))
        );
    }

    #[test]
    fn removed_slot_is_reused_and_index_forgets_the_key() {
        let mut t = FlowTable::new(2);
        let (slot, _) = t.reserve().expect("room");
        let (key, flow) = udp_flow(2000, Instant::now());
        t.insert(slot, key, flow);
        assert!(t.remove(slot).is_some());
        assert_eq!(t.find(&key), None);
        assert_eq!(t.reserve().map(|(s, _)| s), Some(slot));
    }
}
