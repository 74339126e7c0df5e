//! The forwarder's pending-query table: `MAX_PENDING` preallocated slots, each one query in
//! flight with the sandbox's address, the server address it used, the validated `Query`
//! (original id, question length), the id it travels upstream with, and its bytes (up to
//! `QUERY_CAP`) in one arena. Called only by `dns::Forwarder`; does no I/O and holds no policy
//! beyond "unique, unpredictable upstream ids". Nothing here allocates after `Table::new`.
//!
//! Bound: `MAX_PENDING` slots; `insert` returns `None` when all are taken (the forwarder then
//! answers the new query SERVFAIL at once: nothing is evicted). Each slot is freed by the
//! forwarder on an answer or a SERVFAIL, at the latest `TOTAL_TIMEOUT` after it was taken.
//! Lookups are linear scans of at most `MAX_PENDING` small entries: a few hundred compares
//! per datagram, well below the cost of the syscall that brought it.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::time::Instant;

use crate::sys::pages::ZeroedBuf;

use super::message::{Query, HEADER_LEN, MAX_QUERY_HEAD};

/// Queries in flight at once. A resolver in the sandbox rarely has more than a few dozen
/// outstanding (glibc: one or two per lookup); 256 leaves room for a parallel crawler while
/// the arena stays at 128 KiB.
pub const MAX_PENDING: usize = 256;

/// Query bytes kept per slot: the classic UDP DNS message limit (RFC 1035 4.2.1), which every
/// ordinary query (one question, an EDNS OPT record, a cookie) fits. A longer query is relayed
/// from the sandbox's own bytes but only its header and question are kept (enough for a
/// SERVFAIL), so it cannot fail over to another upstream.
pub const QUERY_CAP: usize = 512;

const _: () = assert!(
    MAX_QUERY_HEAD <= QUERY_CAP,
    "a SERVFAIL's bytes always fit a slot"
);

/// Candidate ids drawn from the keyed hash before falling back to a linear probe; with at most
/// `MAX_PENDING` of 65,536 ids taken, one draw already succeeds with p > 0.99.
const ID_DRAWS: usize = 8;

/// One query in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The sandbox's address and port: the answer's destination.
    pub sandbox: SocketAddr,
    /// The DNS address:53 the sandbox asked: the answer's source.
    pub server: SocketAddr,
    /// The validated query (the sandbox's id, what a SERVFAIL copies).
    pub query: Query,
    /// The id the query carries upstream.
    pub upstream_id: u16,
    /// When the query arrived: the total bound runs from here.
    pub started: Instant,
    /// The upstream (index) the current attempt went to.
    pub upstream: usize,
    /// When the current attempt gives up.
    pub deadline: Instant,
    /// Upstreams (bit per index) this query was sent to; an answer is accepted from these.
    pub tried: u32,
    /// The whole query is stored (else only header and question: no failover).
    pub complete: bool,
    /// Bytes stored in the slot's arena.
    pub len: usize,
}

/// A slot of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Free.
    Free,
    /// Not yet sent (between `insert` and the first send), or waiting for an answer.
    Waiting(Pending),
}

/// The table.
pub struct Table {
    slots: Box<[State]>,
    /// `MAX_PENDING * QUERY_CAP` bytes, slot i at `i * QUERY_CAP`.
    arena: ZeroedBuf,
    /// Key of the hash that draws upstream ids (SipHash, seeded from the OS's randomness).
    ids: RandomState,
    /// Input of the next draw.
    draws: u64,
    busy: usize,
}

impl Table {
    /// Allocates every slot and the arena.
    pub fn new() -> Table {
        Table {
            slots: vec![State::Free; MAX_PENDING].into_boxed_slice(),
            arena: ZeroedBuf::new(MAX_PENDING * QUERY_CAP),
            ids: RandomState::new(),
            draws: 0,
            busy: 0,
        }
    }

    /// Slots in use.
    pub fn busy(&self) -> usize {
        self.busy
    }

    /// Takes a free slot for `query` (whose bytes are `payload`) under a fresh upstream id,
    /// stores the bytes (all of them if they fit `QUERY_CAP`, else header and question) with
    /// that id written in, and returns the slot. `None` when the table is full.
    pub fn insert(
        &mut self,
        sandbox: SocketAddr,
        server: SocketAddr,
        query: Query,
        payload: &[u8],
        now: Instant,
    ) -> Option<usize> {
        let slot = self.slots.iter().position(|s| *s == State::Free)?;
        let complete = payload.len() <= QUERY_CAP;
        let keep = if complete {
            payload.len()
        } else {
            query.head_len()
        };
        let upstream_id = self.fresh_id();
        let stored = self
            .arena
            .get_mut(slot * QUERY_CAP..slot * QUERY_CAP + keep)?;
        stored.copy_from_slice(payload.get(..keep)?);
        stored
            .get_mut(..2)?
            .copy_from_slice(&upstream_id.to_be_bytes());
        self.slots[slot] = State::Waiting(Pending {
            sandbox,
            server,
            query,
            upstream_id,
            started: now,
            upstream: 0,
            deadline: now,
            tried: 0,
            complete,
            len: keep,
        });
        self.busy += 1;
        Some(slot)
    }

    /// An id no pending query carries, not predictable from anything the sandbox sees: a
    /// keyed SipHash of a counter, the key drawn from the OS when the table was made.
    fn fresh_id(&mut self) -> u16 {
        let mut id = 0;
        for _ in 0..ID_DRAWS {
            self.draws = self.draws.wrapping_add(1);
            id = self.ids.hash_one(self.draws) as u16;
            if self.find(id).is_none() {
                return id;
            }
        }
        // At most MAX_PENDING - 1 ids are taken, so the probe ends within MAX_PENDING steps.
        while self.find(id).is_some() {
            id = id.wrapping_add(1);
        }
        id
    }

    /// The slot of the pending query travelling upstream as `upstream_id`.
    pub fn find(&self, upstream_id: u16) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| matches!(s, State::Waiting(p) if p.upstream_id == upstream_id))
    }

    /// The pending query in `slot`.
    pub fn get(&self, slot: usize) -> Option<Pending> {
        match self.slots.get(slot) {
            Some(State::Waiting(p)) => Some(*p),
            _ => None,
        }
    }

    /// Records that `slot`'s query went to `upstream` and waits until `deadline`.
    pub fn sent(&mut self, slot: usize, upstream: usize, deadline: Instant) {
        if let Some(State::Waiting(p)) = self.slots.get_mut(slot) {
            p.upstream = upstream;
            p.deadline = deadline;
            p.tried |= 1 << upstream;
        }
    }

    /// Frees `slot`.
    pub fn free(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot) {
            if *s != State::Free {
                *s = State::Free;
                self.busy -= 1;
            }
        }
    }

    /// The stored bytes of `slot` (the whole query with the upstream id, or its head).
    pub fn bytes(&self, slot: usize) -> &[u8] {
        let len = self.get(slot).map_or(0, |p| p.len);
        self.arena
            .get(slot * QUERY_CAP..slot * QUERY_CAP + len)
            .unwrap_or_default()
    }

    /// The stored question section of `slot`.
    pub fn question(&self, slot: usize) -> &[u8] {
        let end = self.get(slot).map_or(0, |p| p.query.head_len());
        self.bytes(slot).get(HEADER_LEN..end).unwrap_or_default()
    }

    /// The slots in use, as (slot, pending) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (usize, Pending)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| match s {
            State::Waiting(p) => Some((i, *p)),
            State::Free => None,
        })
    }
}
