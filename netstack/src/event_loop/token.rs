//! Typed event-loop tokens: what an epoll readiness event is about, encoded in mio's `Token`.
//! Used only by `event_loop`; the encoding is private to this file.
//!
//! | token value              | meaning                                            |
//! |--------------------------|----------------------------------------------------|
//! | 0                        | the tap fd                                         |
//! | 1 ..= FLOW_MAX           | flow slot (value - 1): its host socket             |
//! | DNS_BASE + i             | the DNS forwarder's upstream socket i              |
//! | LISTENER_BASE + i        | forward slot i: its listening / bound host socket  |
//! | usize::MAX - 1           | the command channel's eventfd                      |
//! | usize::MAX               | the stop fd of `run_until`                         |
//!
//! The ranges fit a 32-bit usize; `max_flows` and the forward table stay far below them.

use mio::Token;

/// Flow slots addressable by a token.
const FLOW_MAX: usize = (1 << 28) - 1;
/// First DNS upstream token.
const DNS_BASE: usize = 1 << 28;
/// First forward token.
const LISTENER_BASE: usize = 1 << 29;
/// One past the last forward token.
const LISTENER_END: usize = 1 << 30;

/// What a readiness event refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    /// The tap device.
    Tap,
    /// The host socket of the flow in this slot.
    Flow(usize),
    /// The DNS forwarder's upstream socket with this index.
    Dns(usize),
    /// The host socket of the forward in this slot.
    Listener(usize),
    /// The command channel has commands queued.
    Commands,
    /// `run_until`'s stop fd.
    Stop,
}

impl Tok {
    /// The mio token; `None` for an index outside its range (the caller refuses the socket).
    pub fn token(self) -> Option<Token> {
        let value = match self {
            Tok::Tap => 0,
            Tok::Flow(slot) if slot < FLOW_MAX => slot + 1,
            Tok::Dns(i) if DNS_BASE + i < LISTENER_BASE => DNS_BASE + i,
            Tok::Listener(i) if LISTENER_BASE + i < LISTENER_END => LISTENER_BASE + i,
            Tok::Commands => usize::MAX - 1,
            Tok::Stop => usize::MAX,
            _ => return None,
        };
        Some(Token(value))
    }

    /// The flow token of `slot` (flow tables are bounded far below `FLOW_MAX`).
    pub fn flow(slot: usize) -> Token {
        Token(slot.min(FLOW_MAX - 1) + 1)
    }

    /// Decodes a token from an event; `None` for values no socket was given.
    pub fn of(token: Token) -> Option<Tok> {
        Some(match token.0 {
            0 => Tok::Tap,
            v if v <= FLOW_MAX => Tok::Flow(v - 1),
            v if v < LISTENER_BASE => Tok::Dns(v - DNS_BASE),
            v if v < LISTENER_END => Tok::Listener(v - LISTENER_BASE),
            v if v == usize::MAX - 1 => Tok::Commands,
            v if v == usize::MAX => Tok::Stop,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_token() {
        for tok in [
            Tok::Tap,
            Tok::Flow(0),
            Tok::Flow(4095),
            Tok::Dns(0),
            Tok::Dns(3),
            Tok::Listener(0),
            Tok::Listener(65535),
            Tok::Commands,
            Tok::Stop,
        ] {
            let token = tok.token().expect("in range");
            assert_eq!(Tok::of(token), Some(tok), "{tok:?}");
        }
        assert_eq!(Tok::flow(7), Tok::Flow(7).token().unwrap());
    }

    #[test]
    fn out_of_range_indexes_get_no_token() {
        assert_eq!(Tok::Flow(FLOW_MAX).token(), None);
        assert_eq!(Tok::Listener(LISTENER_END).token(), None);
        assert_eq!(Tok::of(Token(LISTENER_END)), None);
    }
}
