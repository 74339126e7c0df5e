//! DNS forwarder: answers the sandbox's queries to the DNS address (10.0.2.3:53, fd00::3:53)
//! by relaying them over UDP to the host's resolvers, in order, and relaying their answers
//! back from the address the sandbox asked. Queries over TCP go through `tcp::TcpRelay`, with
//! the same validation and bounds (its length-prefixed framing: `framing`). Called by the event loop: `query` for each UDP
//! datagram to the DNS address's port 53, `on_readable` for readiness of an upstream socket,
//! `on_timer` at `next_timer`. It never blocks, and allocates nothing after `new`. Kernel mode,
//! which has no event loop of ours, reaches the same forwarder through host sockets
//! (`front::SocketFront`).
//!
//! # Theory of operation
//!
//! `new` opens one connected, non-blocking UDP socket per upstream (the host's resolv.conf
//! nameservers, loopback ones such as systemd-resolved's 127.0.0.53 included, or
//! `--dns-upstream`), in the host's network namespace. Being connected, each socket accepts
//! datagrams only from its upstream, and an ICMP port unreachable comes back as
//! ECONNREFUSED on its next send or receive.
//!
//! A query from the sandbox is validated (`message::Query`: QR = 0, one question, plain
//! labels, at most 255 octets); anything else is counted as malformed and dropped, never
//! relayed. A valid query takes a slot of the pending table (`pending.rs`) and travels
//! upstream under a fresh id, unique among pending queries and not predictable from the
//! sandbox's id (keyed SipHash). An answer is taken only from an upstream socket the query
//! was sent to, only when it is a response carrying a pending id, and, if it has a question,
//! only when that question is the query's (name case ignored). Its id is restored and it is
//! emitted from the server address the sandbox asked. Everything else is counted as unmatched.
//!
//! Each slot is in one state (`pending::State`); per event:
//!
//! | state          | event                                   | action                          | next          |
//! |----------------|-----------------------------------------|---------------------------------|---------------|
//! | Free           | valid query, no upstreams               | SERVFAIL                        | Free          |
//! | Free           | valid query, table full                 | SERVFAIL to the new query       | (none taken)  |
//! | Free           | valid query                             | send to upstream 0, 1, .. until one send succeeds | Waiting(i) / SERVFAIL, Free |
//! | Waiting(i)     | answer on a socket in `tried`           | restore id, emit to sandbox     | Free          |
//! | Waiting(i)     | send/receive error on socket i          | send to i+1, ..                 | Waiting(j) / SERVFAIL, Free |
//! | Waiting(i)     | attempt deadline (`ATTEMPT_TIMEOUT`)    | send to i+1, ..                 | Waiting(j) / SERVFAIL, Free |
//! | Waiting(i)     | `TOTAL_TIMEOUT` since the query came    | SERVFAIL                        | Free          |
//!
//! A query longer than `pending::QUERY_CAP` (512) is relayed from the sandbox's bytes, but only
//! its header and question are kept: its failover is a SERVFAIL. The SERVFAIL answer is the
//! query's header and question with QR, RA and RCODE 2 (`message::Query::emit_servfail`).
//!
//! # Bounds and timeouts
//!
//! - `pending::MAX_PENDING` (256) queries in flight; when full, a new query is answered SERVFAIL
//!   at once and counted in `DnsStats::dropped` (nothing pending is evicted: the oldest
//!   queries are the ones closest to their answer).
//! - `ATTEMPT_TIMEOUT` (2 s) per upstream, `TOTAL_TIMEOUT` (4 s) per query: a dead upstream
//!   costs a SERVFAIL within 4 s, never a hang.
//! - `MAX_UPSTREAMS` (8) upstreams; further ones are ignored with a warning.
//! - `RECV_BUDGET` datagrams per `on_readable`; the rest is read from `on_timer` (the socket
//!   asks for an immediate timer), so one chatty upstream cannot starve the loop.
//! - An answer longer than the sandbox link's MTU is dropped (`EgressStats::too_big`): we do
//!   not fragment. The sandbox's resolver then times out and retries; an upstream that honours
//!   the query's EDNS buffer size (or 512 bytes without EDNS) sets TC instead, and the resolver
//!   retries over TCP, which the stack carries as any TCP flow. TC is left to the upstream.
//!
//! With an egress policy (`set_policy`), a query for a name the policy does not allow is
//! answered REFUSED at once and never relayed (`DnsStats::refused`), and each relayed answer's
//! A/AAAA records open their addresses before the answer reaches the sandbox (`gate.rs`).
//!
//! Not done: the source port of each upstream socket is fixed for the process's life (one
//! socket per upstream, not per query), so an off-path spoofer guessing answers faces the
//! 16-bit id only; upstreams are usually on loopback, where that matters little. Every query
//! starts at upstream 0, even when it has just failed for the previous query.

pub mod answer;
pub mod framing;
pub mod front;
mod gate;
pub mod message;
mod pending;
mod tcp;

pub use front::{Endpoint, SocketFront};
pub use tcp::{TcpDnsStats, TcpRelay, Timeouts};

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;

use crate::egress::Egress;
use crate::policy::Shared;
use crate::sys::pages::ZeroedBuf;
use message::{Packet, Query, RCODE_REFUSED, RCODE_SERVFAIL};
use pending::{Pending, Table};

/// How long one upstream has to answer before the query fails over to the next. Resolvers
/// with a warm cache answer in milliseconds; a cold recursive lookup usually well below 2 s.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a query may stay pending in all. The sandbox's stub resolver waits 5 s for an
/// answer before its own retry (glibc RES_TIMEOUT, resolv.conf(5) "timeout:5"; musl's default
/// timeout is 5 s too); our SERVFAIL must reach it while it still listens, so it gets a
/// definite failure rather than a timeout of its own.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(4);

/// Most upstreams used (glibc reads at most 3 nameservers, MAXNS; the rest leaves room for
/// `--dns-upstream`). Bounded so a query's set of tried upstreams is one `u32` bitmask.
pub const MAX_UPSTREAMS: usize = 8;
const _: () = assert!(MAX_UPSTREAMS <= u32::BITS as usize);

/// Datagrams read from one upstream socket per `on_readable`.
const RECV_BUDGET: usize = 64;

/// Receive buffer: the largest UDP payload, so no answer is ever cut.
const RECV_BUF: usize = u16::MAX as usize;

/// Counters of the forwarder's work, by outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DnsStats {
    /// Valid queries from the sandbox.
    pub queries: u64,
    /// Upstream answers relayed to the sandbox.
    pub answers: u64,
    /// SERVFAIL answers we made (every upstream failed, the total bound passed, no upstreams,
    /// or the table was full).
    pub servfail: u64,
    /// Datagrams to the DNS address that are not a valid query; dropped.
    pub malformed: u64,
    /// Valid queries refused because the pending table was full (each also in `servfail`).
    pub dropped: u64,
    /// Send or receive errors on upstream sockets (ECONNREFUSED, a full socket buffer, ..).
    pub upstream_errors: u64,
    /// Attempts that saw no answer within `ATTEMPT_TIMEOUT` (or the total bound).
    pub timeouts: u64,
    /// Datagrams from upstreams that matched no pending query (late, spoofed, not a
    /// response, another question); ignored.
    pub unmatched: u64,
    /// Queries longer than 512 bytes: relayed, but answered SERVFAIL rather than failed over.
    pub oversized: u64,
    /// Queries the egress policy refused (answered REFUSED, never relayed).
    pub refused: u64,
}

/// One upstream resolver.
struct Upstream {
    addr: SocketAddr,
    sock: UdpSocket,
    /// The receive budget ran out before the socket was drained.
    backlog: bool,
}

/// The DNS forwarder (see the module header).
pub struct Forwarder {
    upstreams: Vec<Upstream>,
    table: Table,
    /// One datagram from an upstream, or an oversized query being relayed.
    scratch: ZeroedBuf,
    /// When a socket was left with a backlog: `next_timer` reports it, so it is due at once.
    backlog_since: Option<Instant>,
    stats: DnsStats,
    /// The egress policy, when one is in force (`set_policy`).
    policy: Option<Shared>,
}

impl Forwarder {
    /// Opens one connected, non-blocking UDP socket per upstream, in order (at most
    /// `MAX_UPSTREAMS`). An upstream that cannot be connected (no route, a link-local address
    /// without its scope) is skipped with a warning; failing to create a socket at all is the
    /// error. Allocates the pending table and buffers; `_now` starts no timer.
    pub fn new(upstreams: &[SocketAddr], _now: Instant) -> io::Result<Forwarder> {
        let mut socks = Vec::with_capacity(upstreams.len().min(MAX_UPSTREAMS));
        for &addr in upstreams {
            if socks.len() == MAX_UPSTREAMS {
                tracing::warn!(upstream = %addr, max = MAX_UPSTREAMS, "dns upstream ignored");
                continue;
            }
            let any = match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            let sock = UdpSocket::bind(SocketAddr::new(any, 0))?;
            match sock.connect(addr) {
                Ok(()) => socks.push(Upstream {
                    addr,
                    sock,
                    backlog: false,
                }),
                Err(error) => {
                    tracing::warn!(upstream = %addr, %error, "dns upstream unusable, skipped")
                }
            }
        }
        if socks.is_empty() {
            tracing::warn!("no dns upstream: every query to the dns address gets SERVFAIL");
        } else {
            tracing::info!(upstreams = socks.len(), "dns forwarder ready");
        }
        Ok(Forwarder {
            upstreams: socks,
            table: Table::new(),
            scratch: ZeroedBuf::new(RECV_BUF),
            backlog_since: None,
            stats: DnsStats::default(),
            policy: None,
        })
    }

    /// Upstream sockets opened; indices for `socket_mut` and `on_readable` are `0..count`.
    pub fn socket_count(&self) -> usize {
        self.upstreams.len()
    }

    /// Upstream socket `index`, to register for readability with the loop's poll. Call
    /// `on_readable` on every event it raises, error events included.
    pub fn socket_mut(&mut self, index: usize) -> Option<&mut UdpSocket> {
        self.upstreams.get_mut(index).map(|u| &mut u.sock)
    }

    /// Puts queries and answers under the egress policy (`gate`): names it does not allow
    /// are answered REFUSED, and allowed answers open their addresses.
    pub fn set_policy(&mut self, policy: Shared) {
        self.policy = Some(policy);
    }

    /// Counters.
    pub fn stats(&self) -> DnsStats {
        self.stats
    }

    /// Handles one UDP payload the sandbox (`sandbox`) sent to `server` (the DNS address, port
    /// 53): relays a valid query upstream, answers SERVFAIL when that cannot be done, drops
    /// and counts anything else. Answers go to `sandbox` from `server`.
    pub fn query(
        &mut self,
        sandbox: SocketAddr,
        server: SocketAddr,
        payload: &[u8],
        eg: &mut Egress,
        now: Instant,
    ) {
        let parsed = Packet::new_checked(payload).and_then(|p| Query::parse(&p).map(|q| (p, q)));
        let (packet, query) = match parsed {
            Ok(pq) => pq,
            Err(error) => {
                self.stats.malformed += 1;
                tracing::trace!(%error, %sandbox, "dns query dropped");
                return;
            }
        };
        self.stats.queries += 1;
        if let Some(policy) = &self.policy {
            if !gate::allow_query(policy, &packet) {
                self.stats.refused += 1;
                emit_rcode(eg, sandbox, server, &query, payload, RCODE_REFUSED);
                return;
            }
        }
        if self.upstreams.is_empty() {
            self.servfail_direct(sandbox, server, &query, payload, eg);
            return;
        }
        let Some(slot) = self.table.insert(sandbox, server, query, payload, now) else {
            self.stats.dropped += 1;
            tracing::debug!(%sandbox, "dns pending table full, SERVFAIL");
            self.servfail_direct(sandbox, server, &query, payload, eg);
            return;
        };
        let mut staged = None;
        if let Some(p) = self.table.get(slot).filter(|p| !p.complete) {
            self.stats.oversized += 1;
            staged = self.stage(payload, p.upstream_id);
        }
        self.relay(slot, 0, staged, eg, now);
    }

    /// Copies an oversized query into `scratch` with its upstream id; its length.
    fn stage(&mut self, payload: &[u8], upstream_id: u16) -> Option<usize> {
        let out = self.scratch.get_mut(..payload.len())?;
        out.copy_from_slice(payload);
        Packet::new_checked(&mut *out).ok()?.set_id(upstream_id);
        Some(payload.len())
    }

    /// Reads answers waiting on upstream socket `index` and relays those matching a pending
    /// query to the sandbox. A receive error (ECONNREFUSED) fails over every query whose
    /// current attempt is on this upstream.
    pub fn on_readable(&mut self, index: usize, eg: &mut Egress, now: Instant) {
        let Some(up) = self.upstreams.get_mut(index) else {
            return;
        };
        up.backlog = false;
        for _ in 0..RECV_BUDGET {
            let Some(up) = self.upstreams.get_mut(index) else {
                return;
            };
            match up.sock.recv(&mut self.scratch) {
                Ok(len) => self.on_answer(index, len, eg, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    self.stats.upstream_errors += 1;
                    tracing::debug!(upstream = %up.addr, %error, "dns upstream receive error");
                    self.fail_over_all(index, eg, now);
                }
            }
        }
        if let Some(up) = self.upstreams.get_mut(index) {
            up.backlog = true;
            self.backlog_since.get_or_insert(now);
        }
    }

    /// One datagram of `len` bytes in `scratch`, from upstream `index`.
    fn on_answer(&mut self, index: usize, len: usize, eg: &mut Egress, now: Instant) {
        let Some((slot, p)) = self.match_answer(index, len) else {
            self.stats.unmatched += 1;
            tracing::trace!(
                upstream = index,
                len,
                "dns datagram matches no query, ignored"
            );
            return;
        };
        let answer = self.scratch.get(..len).unwrap_or_default();
        if let (Some(policy), Ok(packet)) = (&self.policy, Packet::new_checked(answer)) {
            gate::learn(policy, &packet, now);
        }
        let sent = eg.udp_datagram(p.server, p.sandbox, |out| {
            // An answer longer than `out` is longer than the MTU: the egress counts and drops
            // it by the returned length (see `Egress::udp_datagram`).
            if let Some(dst) = out.get_mut(..len) {
                dst.copy_from_slice(answer);
                if let Ok(mut m) = Packet::new_checked(dst) {
                    m.set_id(p.query.id);
                }
            }
            Ok(len)
        });
        if let Err(error) = sent {
            tracing::trace!(%error, "dns answer not emitted");
        }
        self.stats.answers += 1;
        self.table.free(slot);
    }

    /// The pending query the datagram in `scratch[..len]` answers, if any.
    fn match_answer(&self, index: usize, len: usize) -> Option<(usize, Pending)> {
        let answer = Packet::new_checked(self.scratch.get(..len)?).ok()?;
        if !answer.is_response() {
            return None;
        }
        let slot = self.table.find(answer.id())?;
        let p = self.table.get(slot)?;
        if p.tried & (1 << index) == 0 {
            return None;
        }
        // FORMERR and NOTIMP answers may carry no question (RFC 1035 leaves it open).
        if answer.qdcount() != 0
            && !message::same_question(answer.question().ok()?, self.table.question(slot))
        {
            return None;
        }
        Some((slot, p))
    }

    /// Fails over every query whose current attempt is on upstream `index`.
    fn fail_over_all(&mut self, index: usize, eg: &mut Egress, now: Instant) {
        for slot in 0..pending::MAX_PENDING {
            match self.table.get(slot) {
                Some(p) if p.upstream == index => self.relay(slot, index + 1, None, eg, now),
                _ => {}
            }
        }
    }

    /// The earliest instant `on_timer` has work: an attempt deadline, or now if an upstream
    /// socket still holds datagrams. `None` with nothing pending.
    pub fn next_timer(&self) -> Option<Instant> {
        if self.table.busy() == 0 {
            return self.backlog_since;
        }
        let deadline = self.table.iter().map(|(_, p)| p.deadline).min();
        match (deadline, self.backlog_since) {
            (Some(d), Some(b)) => Some(d.min(b)),
            (d, b) => d.or(b),
        }
    }

    /// Reads what sockets left over, then fails over each query whose attempt timed out, or
    /// answers it SERVFAIL when no upstream is left or `TOTAL_TIMEOUT` has passed.
    pub fn on_timer(&mut self, eg: &mut Egress, now: Instant) {
        if self.backlog_since.take().is_some() {
            for index in 0..self.upstreams.len() {
                if self.upstreams.get(index).is_some_and(|u| u.backlog) {
                    self.on_readable(index, eg, now);
                }
            }
        }
        if self.table.busy() == 0 {
            return;
        }
        for slot in 0..pending::MAX_PENDING {
            let Some(p) = self.table.get(slot).filter(|p| p.deadline <= now) else {
                continue;
            };
            self.stats.timeouts += 1;
            if now >= p.started + TOTAL_TIMEOUT {
                tracing::debug!(sandbox = %p.sandbox, "dns query timed out, SERVFAIL");
                self.servfail(slot, eg);
            } else {
                tracing::debug!(upstream = p.upstream, "dns attempt timed out, failing over");
                self.relay(slot, p.upstream + 1, None, eg, now);
            }
        }
    }

    /// Sends `slot`'s query to the first upstream from `first` on whose socket takes it, or
    /// answers SERVFAIL when none does (or the query was not kept whole and is not `staged`
    /// in `scratch`, of that length).
    fn relay(
        &mut self,
        slot: usize,
        first: usize,
        staged: Option<usize>,
        eg: &mut Egress,
        now: Instant,
    ) {
        let Some(p) = self.table.get(slot) else {
            return;
        };
        let bytes = match staged {
            Some(len) => self.scratch.get(..len),
            None if p.complete => Some(self.table.bytes(slot)),
            None => None,
        };
        let sent = bytes.and_then(|bytes| {
            send_first(
                &mut self.upstreams,
                first,
                bytes,
                &mut self.stats.upstream_errors,
            )
        });
        match sent {
            Some(upstream) => {
                let deadline = (now + ATTEMPT_TIMEOUT).min(p.started + TOTAL_TIMEOUT);
                self.table.sent(slot, upstream, deadline);
                tracing::trace!(upstream, id = p.upstream_id, "dns query relayed");
            }
            None => self.servfail(slot, eg),
        }
    }

    /// Answers `slot`'s query SERVFAIL and frees the slot.
    fn servfail(&mut self, slot: usize, eg: &mut Egress) {
        if let Some(p) = self.table.get(slot) {
            let bytes = self.table.bytes(slot);
            emit_rcode(eg, p.sandbox, p.server, &p.query, bytes, RCODE_SERVFAIL);
            self.stats.servfail += 1;
        }
        self.table.free(slot);
    }

    /// Answers a query that holds no slot SERVFAIL, from its own bytes.
    fn servfail_direct(
        &mut self,
        sandbox: SocketAddr,
        server: SocketAddr,
        query: &Query,
        payload: &[u8],
        eg: &mut Egress,
    ) {
        emit_rcode(eg, sandbox, server, query, payload, RCODE_SERVFAIL);
        self.stats.servfail += 1;
    }
}

/// The DNS query in `payload`, if it is one the forwarder would take (see `message::Query`).
pub fn parse_query(payload: &[u8]) -> Option<Query> {
    Packet::new_checked(payload)
        .and_then(|p| Query::parse(&p))
        .ok()
}

/// Answers `query` (parsed from `payload`) SERVFAIL from `server` to `sandbox` at once, for a
/// query the stack cannot carry (`event_loop::exhaustion`).
pub fn servfail_now(
    eg: &mut Egress,
    sandbox: SocketAddr,
    server: SocketAddr,
    query: &Query,
    payload: &[u8],
) {
    emit_rcode(eg, sandbox, server, query, payload, RCODE_SERVFAIL);
}

/// Sends `bytes` on the first upstream socket from `first` on that takes them; its index.
fn send_first(
    upstreams: &mut [Upstream],
    first: usize,
    bytes: &[u8],
    errors: &mut u64,
) -> Option<usize> {
    for (index, up) in upstreams.iter_mut().enumerate().skip(first) {
        match up.sock.send(bytes) {
            Ok(_) => return Some(index),
            Err(error) => {
                *errors += 1;
                tracing::debug!(upstream = %up.addr, %error, "dns upstream send failed");
            }
        }
    }
    None
}

/// Emits the SERVFAIL (or REFUSED, by `rcode`) answer to `query`, built from `head` (its
/// bytes, at least its header and question; the id in them is replaced by the query's).
fn emit_rcode(
    eg: &mut Egress,
    sandbox: SocketAddr,
    server: SocketAddr,
    query: &Query,
    head: &[u8],
    rcode: u8,
) {
    let sent = eg.udp_datagram(server, sandbox, |out| {
        let len = query.head_len();
        let (Some(dst), Some(src)) = (out.get_mut(..len), head.get(..len)) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        dst.copy_from_slice(src);
        query
            .emit_rcode(dst, query.id, rcode)
            .map_err(|_| io::ErrorKind::InvalidInput.into())
    });
    if let Err(error) = sent {
        tracing::trace!(%error, rcode, "dns error answer not emitted");
    }
}

#[cfg(test)]
mod tests;
