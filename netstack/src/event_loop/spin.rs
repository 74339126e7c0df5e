//! Adaptive busy-polling before the loop sleeps in epoll_wait.
//!
//! A request/response exchange through the stack wakes the loop twice per transaction (the
//! request from the tap, the answer from the host socket). Waking a thread whose CPU went idle
//! costs far more than the work itself, in a VM most of all (an IPI and a halted vCPU to
//! restart: on our 2-core test VM, 1-byte ping-pong between two processes runs about 4x faster
//! on one core than across two). So after a turn that moved little data, the loop polls with a
//! zero timeout for up to a budget before it blocks: an answer that comes within the budget is
//! picked up without a wakeup.
//!
//! The budget adapts the way the guest haltpoll cpuidle governor does: a wait that ended within
//! the maximum keeps (or restores) the full budget, a longer wait halves it, and below an eighth
//! of the maximum it drops to zero. A sandbox that talks rarely therefore costs one short spin
//! per event at most, and one whose events come further apart than the maximum costs none.
//! Turns that moved bulk data never spin: their wakeup cost is spread over many bytes, and on a
//! small machine the spinning would take a core the sandbox's client or the host's server needs.

use std::time::Duration;

/// A turn that moved more bytes than this (tap in plus tap out) is bulk: do not spin after it.
pub const BULK_TURN_BYTES: usize = 32 * 1024;

/// What the last turn did, as far as spinning is concerned.
#[derive(Debug, Clone, Copy, Default)]
pub struct Turn {
    /// It carried traffic of a TCP, UDP or ICMP flow (frames from the sandbox or host socket
    /// events). Control-plane traffic alone (ARP, neighbour discovery, MLD, pings of the
    /// gateway) has no answer coming from the host: the sandbox's start-up sends a burst of
    /// it, and spinning then would only take CPU from the command starting up.
    pub flow_traffic: bool,
    /// Bytes read from and written to the tap.
    pub moved: usize,
}

/// The busy-poll budget and how it adapts.
#[derive(Debug, Clone)]
pub struct Spin {
    max: Duration,
    budget: Duration,
}

impl Spin {
    /// A policy spinning at most `max` per wait; zero disables spinning.
    pub fn new(max: Duration) -> Spin {
        Spin { max, budget: max }
    }

    /// How long to poll before blocking after `last`, when the next deadline is `timeout`
    /// away (`None`: no deadline).
    pub fn budget(&self, last: Turn, timeout: Option<Duration>) -> Duration {
        if !last.flow_traffic || last.moved > BULK_TURN_BYTES {
            return Duration::ZERO;
        }
        timeout.map_or(self.budget, |t| self.budget.min(t))
    }

    /// Learns from a wait that took `waited` until an event came (`None`: it ended on its
    /// timeout with no event).
    pub fn record(&mut self, waited: Option<Duration>) {
        match waited {
            Some(w) if w <= self.max => self.budget = self.max,
            _ => {
                self.budget /= 2;
                if self.budget < self.max / 8 {
                    self.budget = Duration::ZERO;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(100);

    fn small() -> Turn {
        flows(1)
    }

    fn flows(moved: usize) -> Turn {
        Turn {
            flow_traffic: true,
            moved,
        }
    }

    #[test]
    fn starts_at_the_maximum_and_keeps_it_while_events_come_soon() {
        let mut s = Spin::new(MAX);
        assert_eq!(s.budget(small(), None), MAX);
        s.record(Some(Duration::from_micros(40)));
        assert_eq!(s.budget(small(), None), MAX);
    }

    #[test]
    fn long_waits_shrink_it_to_zero_and_one_short_wait_restores_it() {
        let mut s = Spin::new(MAX);
        s.record(Some(Duration::from_millis(5)));
        assert_eq!(s.budget(small(), None), MAX / 2);
        s.record(None);
        assert_eq!(s.budget(small(), None), MAX / 4);
        s.record(Some(Duration::from_micros(150)));
        assert_eq!(s.budget(small(), None), MAX / 8);
        s.record(None);
        assert_eq!(s.budget(small(), None), Duration::ZERO);
        s.record(None);
        assert_eq!(s.budget(small(), None), Duration::ZERO);
        s.record(Some(Duration::from_micros(30)));
        assert_eq!(s.budget(small(), None), MAX);
    }

    #[test]
    fn bulk_turns_and_near_deadlines_bound_it() {
        let s = Spin::new(MAX);
        assert_eq!(s.budget(flows(BULK_TURN_BYTES + 1), None), Duration::ZERO);
        assert_eq!(s.budget(flows(BULK_TURN_BYTES), None), MAX);
        let soon = Duration::from_micros(10);
        assert_eq!(s.budget(small(), Some(soon)), soon);
    }

    #[test]
    fn control_plane_turns_do_not_spin() {
        let s = Spin::new(MAX);
        let control = Turn {
            flow_traffic: false,
            moved: 90,
        };
        assert_eq!(s.budget(control, None), Duration::ZERO);
        assert_eq!(s.budget(Turn::default(), None), Duration::ZERO);
    }

    #[test]
    fn zero_disables_it() {
        let mut s = Spin::new(Duration::ZERO);
        s.record(Some(Duration::ZERO));
        assert_eq!(s.budget(small(), None), Duration::ZERO);
    }
}
