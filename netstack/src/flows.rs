//! Flow table: maps a 5-tuple, as the sandbox sees it, to its TCP, UDP or ICMP flow and host
//! socket. Flows the sandbox opens (NAT) and flows a forward opens (a host client reaching a
//! sandbox service) share it: the key is always (protocol, sandbox address, remote address as
//! the sandbox sees it), so a segment from the sandbox finds its flow whoever opened it.
//! Used by `event_loop`; a flow's slot index is also its event token (`Tok::Flow`).
//!
//! # Bounds and eviction (issue 14: a hostile sandbox floods it)
//! - `max_flows` slots, allocated up front: `StackConfig::max_flows`, lowered to what the
//!   helper's fd limit can hold (`fd_budget::flow_bound`: one host socket per flow), so the
//!   table fills, and new flows are refused cleanly, before socket() could fail on EMFILE.
//! - Half-open TCP flows (the sandbox's SYN seen, the host connect in flight or our SYN-ACK
//!   unanswered: `TcpFlow::is_half_open`) are at most `half_open_max` (`HALF_OPEN_MAX`, 256,
//!   or a quarter of the table if smaller) and live at most `HALF_OPEN_LIFETIME` (10 s) from
//!   the SYN (the event loop resets them then). A new SYN beyond the bound evicts the oldest
//!   half-open flow: a SYN flood recycles its own 256 slots, holds at most 256 connections on
//!   the host, and never takes a slot an established flow or a datagram flow holds.
//! - When the table is full, a new flow evicts: for a SYN, the oldest half-open flow, else
//!   the least recently active datagram (UDP, ICMP echo) flow; for anything else the other
//!   way round; else it is refused (all slots hold established TCP flows).
//! - "Least recently active" is kept in O(1) per eviction, amortised: datagram flows queue in
//!   the order they were opened; the one at the front is evicted unless it carried traffic
//!   since it was queued, in which case it goes to the back (second chance). Half-open flows
//!   queue by their SYN's time. Entries of flows gone or established are skipped; the queues
//!   are compacted when full, so they never grow past twice their bound.
//!
//! An evicted flow is handed back to the caller, whose drop closes its socket: a TCP host
//! socket then resets its peer (SO_LINGER 0: `host`); the sandbox is told nothing (its SYN,
//! repeated, opens a new flow).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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

/// Most half-open TCP flows at once (a quarter of the table when that is smaller): the
/// sandbox's resolver or browser rarely has more than a few dozen connects in flight, and
/// each of these is a real connection on the host.
pub const HALF_OPEN_MAX: usize = 256;
/// Longest life of a half-open flow, from the sandbox's SYN: passt's SYN_TIMEOUT (10 s, for
/// the handshake on either side). A connect still pending after 10 s has lost three SYNs.
pub const HALF_OPEN_LIFETIME: Duration = Duration::from_secs(10);

/// What a new flow is, for the eviction order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A TCP flow the sandbox opens with a SYN (half-open until its handshake ends).
    HalfOpen,
    /// Any other flow: a datagram flow, or a TCP flow a forward opens.
    Other,
}

/// Counters of what the table's bounds did.
#[derive(Debug, Default, Clone, Copy)]
pub struct TableStats {
    /// Half-open TCP flows evicted for a newer SYN or flow.
    pub half_open_evicted: u64,
    /// Datagram flows evicted for a new flow.
    pub datagram_evicted: u64,
    /// Half-open TCP flows reset at the end of `HALF_OPEN_LIFETIME` (counted by the loop).
    pub half_open_expired: u64,
}

struct Slot {
    key: FlowKey,
    flow: Flow,
    /// When it was inserted (for a half-open flow: its SYN).
    opened: Instant,
    /// Counted among the half-open flows.
    half_open: bool,
    /// Tells a queue entry for this flow from one for an earlier flow in the same slot.
    gen: u32,
}

/// The table itself.
pub struct FlowTable {
    /// Slots in use or freed; grows up to `capacity` within its reservation, so memory is
    /// touched only as flows appear (a full table of `max_flows` slots is ~600 KiB).
    slots: Vec<Option<Slot>>,
    capacity: usize,
    free: Vec<usize>,
    index: HashMap<FlowKey, usize>,
    /// Half-open flows, oldest SYN first: (slot, gen).
    half_open: VecDeque<(usize, u32)>,
    half_open_count: usize,
    half_open_max: usize,
    /// Datagram flows, least recently queued first: (slot, gen, activity when queued).
    datagrams: VecDeque<(usize, u32, Instant)>,
    next_gen: u32,
    /// What the bounds did.
    pub stats: TableStats,
}

impl FlowTable {
    /// A table of `capacity` slots, reserved now.
    pub fn new(capacity: usize) -> FlowTable {
        let half_open_max = HALF_OPEN_MAX.min(capacity / 4).max(1);
        FlowTable {
            slots: Vec::with_capacity(capacity),
            capacity,
            free: Vec::with_capacity(capacity),
            index: HashMap::with_capacity(capacity),
            half_open: VecDeque::with_capacity(2 * half_open_max),
            half_open_count: 0,
            half_open_max,
            datagrams: VecDeque::with_capacity(2 * capacity),
            next_gen: 0,
            stats: TableStats::default(),
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

    /// A free slot for a flow of kind `need`, evicting as the header says. Returns the slot
    /// and the evicted flow (to be dropped), or `None` if nothing may be evicted.
    pub fn reserve(&mut self, need: Need) -> Option<(usize, Option<Flow>)> {
        if need == Need::HalfOpen && self.half_open_count >= self.half_open_max {
            if let Some(victim) = self.oldest_half_open() {
                return self.evict(victim);
            }
        }
        if let Some(slot) = self.free.pop() {
            return Some((slot, None));
        }
        if self.slots.len() < self.capacity {
            self.slots.push(None);
            return Some((self.slots.len() - 1, None));
        }
        let victim = match need {
            Need::HalfOpen => self.oldest_half_open().or_else(|| self.stalest_datagram()),
            Need::Other => self.stalest_datagram().or_else(|| self.oldest_half_open()),
        }?;
        self.evict(victim)
    }

    /// Takes the flow out of `victim` for a new flow to use the slot.
    fn evict(&mut self, victim: usize) -> Option<(usize, Option<Flow>)> {
        let evicted = self.take(victim)?;
        match evicted {
            Flow::Tcp(..) => self.stats.half_open_evicted += 1,
            _ => self.stats.datagram_evicted += 1,
        }
        Some((victim, Some(evicted)))
    }

    /// The slot of the half-open flow with the oldest SYN, dropping stale queue entries.
    fn oldest_half_open(&mut self) -> Option<usize> {
        while let Some(&(slot, gen)) = self.half_open.front() {
            if self.live(slot, gen).is_some_and(|s| s.half_open) {
                return Some(slot);
            }
            self.half_open.pop_front();
        }
        None
    }

    /// The slot of the least recently active datagram flow (second chance, see the header).
    fn stalest_datagram(&mut self) -> Option<usize> {
        // Each live entry is requeued at most once per pass: two passes always decide.
        for _ in 0..2 * self.datagrams.len() + 1 {
            let (slot, gen, stamp) = self.datagrams.pop_front()?;
            let Some(active) = self.live(slot, gen).map(|s| s.flow.last_active()) else {
                continue;
            };
            if active <= stamp {
                return Some(slot);
            }
            self.datagrams.push_back((slot, gen, active));
        }
        None
    }

    /// The slot's flow, if it is still the one with generation `gen`.
    fn live(&self, slot: usize, gen: u32) -> Option<&Slot> {
        self.slots.get(slot)?.as_ref().filter(|s| s.gen == gen)
    }

    /// Puts `flow` into `slot` (from `reserve`), opened `now`.
    pub fn insert(&mut self, slot: usize, key: FlowKey, flow: Flow, now: Instant) {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let half_open = matches!(&flow, Flow::Tcp(f, _) if f.is_half_open());
        let datagram = !matches!(flow, Flow::Tcp(..));
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        *s = Some(Slot {
            key,
            flow,
            opened: now,
            half_open,
            gen,
        });
        self.index.insert(key, slot);
        if half_open {
            self.half_open_count += 1;
            if self.half_open.len() == self.half_open.capacity() {
                let slots = &self.slots;
                self.half_open.retain(
                    |&(i, g)| matches!(slots.get(i), Some(Some(s)) if s.gen == g && s.half_open),
                );
            }
            self.half_open.push_back((slot, gen));
        }
        if datagram {
            if self.datagrams.len() == self.datagrams.capacity() {
                let slots = &self.slots;
                self.datagrams
                    .retain(|&(i, g, _)| matches!(slots.get(i), Some(Some(s)) if s.gen == g));
            }
            self.datagrams.push_back((slot, gen, now));
        }
    }

    /// Notes that the TCP flow in `slot` may have finished its handshake (call after each of
    /// its events): it then no longer counts against the half-open bound.
    pub fn refresh(&mut self, slot: usize) {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return;
        };
        if s.half_open && !matches!(&s.flow, Flow::Tcp(f, _) if f.is_half_open()) {
            s.half_open = false;
            self.half_open_count -= 1;
        }
    }

    /// When the half-open flow in `slot` must be reset (`None`: not half-open).
    pub fn half_open_deadline(&self, slot: usize) -> Option<Instant> {
        let s = self.slots.get(slot)?.as_ref()?;
        s.half_open.then(|| s.opened + HALF_OPEN_LIFETIME)
    }

    /// Half-open flows now.
    pub fn half_open_count(&self) -> usize {
        self.half_open_count
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
        if s.half_open {
            self.half_open_count -= 1;
        }
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
    use crate::tcp::{Endpoints, Origin, TcpFlow};
    use crate::udp::UdpFlow;
    use crate::wire::{TcpFlags, TcpSegment};

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

    /// A half-open TCP flow (the sandbox's SYN from `port`, host connect in flight) whose host
    /// socket is connected to `listener`.
    fn syn_flow(port: u16, listener: &std::net::TcpListener, now: Instant) -> (FlowKey, Flow) {
        let ep = Endpoints {
            sandbox: SocketAddr::from(([10, 0, 2, 100], port)),
            remote: SocketAddr::from(([10, 0, 2, 2], 80)),
        };
        let syn = TcpSegment {
            src_port: port,
            dst_port: 80,
            seq: 1,
            ack: 0,
            flags: TcpFlags {
                syn: true,
                ..TcpFlags::default()
            },
            window: 1000,
            mss: None,
            window_scale: None,
            timestamp: None,
            payload: &[],
        };
        let origin = Origin {
            iss: 7,
            ts_epoch: now,
        };
        let flow = TcpFlow::new(ep, &syn, 1500, origin, now);
        let addr = listener.local_addr().expect("address");
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        let host = HostTcp::new(mio::net::TcpStream::from_std(stream));
        let key = FlowKey {
            proto: Proto::Tcp,
            sandbox: ep.sandbox,
            remote: ep.remote,
        };
        (key, Flow::Tcp(Box::new(flow), host))
    }

    #[test]
    fn full_table_evicts_the_least_recently_active_udp_flow() {
        let mut t = FlowTable::new(3);
        let start = Instant::now();
        let mut keys = Vec::new();
        for i in 0..3u16 {
            let (slot, evicted) = t.reserve(Need::Other).expect("room");
            assert!(evicted.is_none());
            let at = start + Duration::from_secs(u64::from(i));
            let (key, flow) = udp_flow(1000 + i, at);
            t.insert(slot, key, flow, at);
            keys.push(key);
        }
        let (slot, evicted) = t.reserve(Need::Other).expect("evicts");
        assert!(evicted.is_some());
        assert_eq!(t.find(&keys[0]), None, "the oldest flow went");
        assert!(t.find(&keys[1]).is_some() && t.find(&keys[2]).is_some());
        t.release(slot);
        assert_eq!(
            t.reserve(Need::Other).map(|(s, e)| (s, e.is_none())),
            Some((slot, true))
        );
    }

    #[test]
    fn a_datagram_flow_active_since_it_was_queued_gets_a_second_chance() {
        let mut t = FlowTable::new(2);
        let start = Instant::now();
        let mut keys = Vec::new();
        for i in 0..2u16 {
            let (slot, _) = t.reserve(Need::Other).expect("room");
            let (key, flow) = udp_flow(3000 + i, start);
            t.insert(slot, key, flow, start);
            keys.push(key);
        }
        let first = t.find(&keys[0]).expect("first");
        if let Some(Flow::Udp(f)) = t.get_mut(first) {
            f.send_from_sandbox(b"x", start + Duration::from_secs(1));
        }
        assert!(t.reserve(Need::Other).expect("evicts").1.is_some());
        assert!(t.find(&keys[0]).is_some(), "the flow used since stays");
        assert_eq!(t.find(&keys[1]), None, "the idle one went");
    }

    #[test]
    fn half_open_flows_beyond_their_bound_evict_the_oldest_and_spare_the_rest() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        // 8 slots: at most 2 half-open flows; one UDP flow stands by.
        let mut t = FlowTable::new(8);
        let start = Instant::now();
        let (slot, _) = t.reserve(Need::Other).expect("room");
        let (udp_key, udp) = udp_flow(4000, start);
        t.insert(slot, udp_key, udp, start);
        let mut keys = Vec::new();
        for i in 0..5u16 {
            let at = start + Duration::from_millis(u64::from(i));
            let (slot, evicted) = t.reserve(Need::HalfOpen).expect("a place");
            assert_eq!(evicted.is_some(), i >= 2, "SYN {i}");
            let (key, flow) = syn_flow(5000 + i, &listener, at);
            t.insert(slot, key, flow, at);
            keys.push(key);
        }
        assert_eq!(t.half_open_count(), 2);
        assert_eq!(t.stats.half_open_evicted, 3);
        let kept: Vec<bool> = keys.iter().map(|k| t.find(k).is_some()).collect();
        assert_eq!(
            kept,
            [false, false, false, true, true],
            "the newest two stay"
        );
        assert!(t.find(&udp_key).is_some(), "the UDP flow is not touched");
        let newest = t.find(&keys[4]).expect("newest");
        assert_eq!(
            t.half_open_deadline(newest),
            Some(start + Duration::from_millis(4) + HALF_OPEN_LIFETIME)
        );
        t.remove(newest);
        assert_eq!(t.half_open_count(), 1);
    }

    #[test]
    fn removed_slot_is_reused_and_index_forgets_the_key() {
        let mut t = FlowTable::new(2);
        let (slot, _) = t.reserve(Need::Other).expect("room");
        let now = Instant::now();
        let (key, flow) = udp_flow(2000, now);
        t.insert(slot, key, flow, now);
        assert!(t.remove(slot).is_some());
        assert_eq!(t.find(&key), None);
        assert_eq!(t.reserve(Need::Other).map(|(s, _)| s), Some(slot));
    }
}
