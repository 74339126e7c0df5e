//! Where a flow's sequence and timestamp numbers start: RFC 6528 initial sequence numbers and
//! one TSval clock for the whole stack. Owned by the event loop (one per stack); each new flow
//! takes an `Origin` from it. No I/O; the secret is drawn once, at start.
//!
//! Why it matters: the same 4-tuple comes back while the other side still holds the previous
//! connection in TIME_WAIT. That is routine for port forwards, where every client of the host's
//! loopback appears from the gateway and host ports are reused quickly, and the sandbox's
//! service closing first leaves TIME_WAIT in the sandbox. Linux accepts a SYN for a
//! TIME_WAIT 4-tuple only when its sequence number is beyond the old connection's, or its
//! TSval is newer (tcp_timewait_state_process); otherwise it answers the old ACK and the new
//! connection waits for retransmissions. Forwarded connect/close at full rate stalled after
//! ~3,100 connections (from 3,000/s to 20-40/s) while each flow's clocks started at random
//! and zero. ISS = 4 µs ticks since the stack's start + SipHash(4-tuple, secret), and TSval =
//! milliseconds since the stack's start, both grow for a returning 4-tuple.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Instant;

use super::Endpoints;

/// The stack-wide source of ISNs and timestamps.
#[derive(Debug)]
pub struct TcpClock {
    epoch: Instant,
    secret: RandomState,
}

/// What a new flow starts from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// Our initial sequence number.
    pub iss: u32,
    /// Zero of our TSval clock (milliseconds since then).
    pub ts_epoch: Instant,
}

/// RFC 6528's timer M ticks every 4 microseconds.
const ISN_TICK_US: u128 = 4;

impl TcpClock {
    /// A clock starting now, with a fresh secret.
    pub fn new() -> TcpClock {
        TcpClock {
            epoch: Instant::now(),
            secret: RandomState::new(),
        }
    }

    /// The origin of a flow with endpoints `ep` opened at `now`.
    pub fn origin(&self, ep: &Endpoints, now: Instant) -> Origin {
        let ticks = now.saturating_duration_since(self.epoch).as_micros() / ISN_TICK_US;
        let keyed = self.secret.hash_one((ep.sandbox, ep.remote)) as u32;
        Origin {
            iss: (ticks as u32).wrapping_add(keyed),
            ts_epoch: self.epoch,
        }
    }
}

impl Default for TcpClock {
    fn default() -> Self {
        TcpClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ep(port: u16) -> Endpoints {
        Endpoints {
            sandbox: "10.0.2.100:80".parse().unwrap(),
            remote: std::net::SocketAddr::from(([10, 0, 2, 2], port)),
        }
    }

    #[test]
    fn a_returning_four_tuple_starts_further_on() {
        let clock = TcpClock::new();
        let t0 = Instant::now();
        let first = clock.origin(&ep(40000), t0);
        let later = clock.origin(&ep(40000), t0 + Duration::from_millis(10));
        let gap = later.iss.wrapping_sub(first.iss);
        assert_eq!(gap, 2_500, "10 ms is 2,500 ticks of 4 us");
        assert_eq!(
            first.ts_epoch, later.ts_epoch,
            "one TSval clock for every flow"
        );
    }

    #[test]
    fn different_four_tuples_start_apart() {
        let clock = TcpClock::new();
        let t0 = Instant::now();
        let a = clock.origin(&ep(40000), t0).iss;
        let b = clock.origin(&ep(40001), t0).iss;
        assert_ne!(a, b);
    }
}
