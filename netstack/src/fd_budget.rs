//! The stack's fd budget (issue 15): `raise_nofile` lifts RLIMIT_NOFILE's soft limit to the
//! hard limit, and `flow_bound` sizes the flow table from the fds that leaves, so the table
//! runs out before the fds do. A connection past the bound is then refused at once (RST: the
//! sandbox's connect fails with ECONNREFUSED; a datagram gets port unreachable), and the fds
//! the helper needs besides its flows (the API socket's clients, the DNS-over-TCP relay, a
//! forward's accept) are still there: nothing meets EMFILE.
//!
//! Called by the three binaries that run the stack (rootless-run's stack process,
//! rr-slirp4netns, rr-pasta: `raise_nofile_logged`, at start, before any seccomp filter, which
//! allows neither getrlimit nor setrlimit) and by `event_loop` once, when the stack is built
//! (`table_bound`, also before the filter). Never raises the hard limit (that needs
//! CAP_SYS_RESOURCE), and never goes past the bound the configuration sets
//! (`StackConfig::max_flows` stays the upper limit).
//!
//! What the helper's fds pay for (counted in rr-netstack's /proc/PID/fd, docs/architecture.md
//! "Limits"):
//! - one per flow: a TCP, UDP or ICMP echo flow holds exactly one host socket, whoever opened
//!   it (a forward's accepted connection is its flow's socket; a UDP client of a forward uses
//!   the forward's socket and costs none). A TCP flow to the DNS address is one socket in the
//!   loop too; its two in the relay are below.
//! - fixed, `FIXED_FDS`: what an idle helper holds, measured in rootless-run's rr-netstack:
//!   10 with the defaults and one DNS upstream (stdio 3, the tap twice, epoll, the command
//!   channel's eventfd, the stop pipe, the DNS forwarder's upstream socket, the DNS relay's
//!   listener), 18 with `--api-socket` (its listener and stop pipe), a TCP and a UDP
//!   `--publish` and `--log-egress`; rounded up, with room for `dns::MAX_UPSTREAMS` upstreams
//!   and more forwards.
//! - `DNS_TCP_FDS`: the DNS-over-TCP relay at its bound (16 connections, each the accepted
//!   socket and one to an upstream).
//! - `SPARE_FDS`: the API thread's client, a forward's connection accepted only to be refused,
//!   transient sockets.
//! - a margin of 1/`MARGIN_DIVISOR` of the limit for what nobody counted (forwards added
//!   through the API at run time have no bound of their own). Not counted: rr-pasta's `-T`/`-U`
//!   relay (up to two fds per relayed connection, in the same process, beside the stack).
//!
//! So at the common limit of 1,024 the table holds 880 flows, and at 524,288 the fds would
//! allow 491,440 (the default `max_flows`, 4,096, bounds it then). Below `MIN_FLOWS` +
//! reserve the reserve cannot be kept; the table keeps `MIN_FLOWS` and EMFILE is answered as
//! before (`event_loop::exhaustion`).

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// Fds a flow costs: its one host socket.
pub const FDS_PER_FLOW: u64 = 1;
/// Fds of an idle helper, with room for every DNS upstream and a few forwards (measured 10
/// with the defaults, 18 with an API socket, two forwards and an egress log).
pub const FIXED_FDS: u64 = 40;
/// Fds of the DNS-over-TCP relay at its bound: 16 connections (`dns::tcp`'s
/// `MAX_CONNECTIONS`), each an accepted socket and an upstream socket.
pub const DNS_TCP_FDS: u64 = 2 * 16;
/// Fds in flight outside the table: the API thread's client, a forward's connection accepted
/// to be refused, a socket being replaced.
pub const SPARE_FDS: u64 = 8;
/// The share of the limit kept for what nobody counted: 1/16 (64 of 1,024).
pub const MARGIN_DIVISOR: u64 = 16;
/// The smallest table, whatever the limit: enough for a command's few connections even at a
/// limit too low to keep the reserve (tests run the helper at 64).
pub const MIN_FLOWS: usize = 16;

/// RLIMIT_NOFILE as `raise_nofile` left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile {
    /// The soft limit before.
    pub was: u64,
    /// The soft limit now (the hard limit, unless raising it failed).
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// A step of `raise_nofile` that failed.
#[derive(Debug, thiserror::Error)]
pub enum FdBudgetError {
    /// getrlimit(RLIMIT_NOFILE) failed.
    #[error("cannot read RLIMIT_NOFILE")]
    Read(#[source] nix::Error),
    /// setrlimit(RLIMIT_NOFILE) refused the hard limit as the soft one.
    #[error("cannot raise RLIMIT_NOFILE's soft limit from {from} to {to}")]
    Raise {
        /// The soft limit, unchanged.
        from: u64,
        /// The hard limit we asked for.
        to: u64,
        /// What setrlimit said.
        #[source]
        source: nix::Error,
    },
}

/// Raises RLIMIT_NOFILE's soft limit to its hard limit (no privilege needed), so the stack
/// may hold as many host sockets as the user may. Call it in the process that runs the
/// stack, before its seccomp filter, and never in one that then runs the user's command
/// (programs using select(2) expect 1,024).
pub fn raise_nofile() -> Result<Nofile, FdBudgetError> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(FdBudgetError::Read)?;
    if soft >= hard {
        return Ok(Nofile {
            was: soft,
            soft,
            hard,
        });
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|source| FdBudgetError::Raise {
        from: soft,
        to: hard,
        source,
    })?;
    Ok(Nofile {
        was: soft,
        soft: hard,
        hard,
    })
}

/// `raise_nofile` for a binary's start: the outcome logged (debug), a failure only warned
/// about, since the stack then still runs, at the soft limit it has (and bounds its table by
/// that).
pub fn raise_nofile_logged() {
    match raise_nofile() {
        Ok(n) => tracing::debug!(was = n.was, soft = n.soft, hard = n.hard, "RLIMIT_NOFILE"),
        Err(error) => tracing::warn!(error = %error, source = ?std::error::Error::source(&error),
                                     "fd limit not raised"),
    }
}

/// The fds kept out of the flow table at soft limit `nofile`.
pub fn reserve(nofile: u64) -> u64 {
    FIXED_FDS + DNS_TCP_FDS + SPARE_FDS + nofile / MARGIN_DIVISOR
}

/// The flow table's bound at soft limit `nofile`: the fds left after the reserve, one per
/// flow, at most `configured` and at least `MIN_FLOWS` (or `configured`, if smaller).
pub fn flow_bound(configured: usize, nofile: u64) -> usize {
    let for_flows = nofile.saturating_sub(reserve(nofile)) / FDS_PER_FLOW;
    let by_fds = usize::try_from(for_flows).unwrap_or(usize::MAX);
    configured.min(by_fds.max(MIN_FLOWS))
}

/// The flow table's bound for this process: `flow_bound` at its current soft limit (read
/// before any seccomp filter: `event_loop` builds the table first). `configured` as is when
/// the limit cannot be read or is unlimited.
pub(crate) fn table_bound(configured: usize) -> usize {
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) if soft != RLIM_INFINITY => soft,
        Ok(_) => return configured,
        Err(error) => {
            tracing::warn!(%error, "cannot read RLIMIT_NOFILE; flow table not bounded by it");
            return configured;
        }
    };
    let bound = flow_bound(configured, soft);
    if nofile_too_low(soft) {
        tracing::warn!(
            nofile = soft,
            max_flows = bound,
            "fd limit too low to keep a reserve beside the flow table"
        );
    }
    tracing::debug!(
        nofile = soft,
        reserve = reserve(soft),
        configured,
        max_flows = bound,
        "flow table bounded by the fd limit"
    );
    bound
}

/// `nofile` leaves less than `MIN_FLOWS` beside the reserve.
fn nofile_too_low(nofile: u64) -> bool {
    nofile.saturating_sub(reserve(nofile)) < MIN_FLOWS as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stack's default `max_flows`.
    const DEFAULT: usize = 4096;

    #[test]
    fn common_limit_of_1024_leaves_the_reserve_free() {
        let bound = flow_bound(DEFAULT, 1024);
        assert_eq!(bound, 1024 - 40 - 32 - 8 - 64);
        assert_eq!(bound, 880);
        // Every flow's fd plus everything counted outside the table fits under the limit.
        let fixed_and_relay = FIXED_FDS + DNS_TCP_FDS + SPARE_FDS;
        assert!(bound as u64 * FDS_PER_FLOW + fixed_and_relay < 1024);
    }

    #[test]
    fn a_large_limit_leaves_the_configured_bound_in_force() {
        assert_eq!(flow_bound(DEFAULT, 524_288), DEFAULT);
        assert_eq!(flow_bound(usize::MAX, 524_288), 524_288 - 80 - 32_768);
        assert_eq!(flow_bound(DEFAULT, 8192), DEFAULT);
    }

    #[test]
    fn the_bound_grows_with_the_limit_and_never_reaches_it() {
        let mut last = 0;
        for nofile in [256_u64, 1024, 4096, 8192, 65_536, 1 << 20] {
            let bound = flow_bound(usize::MAX, nofile);
            assert!(bound > last, "{nofile}: {bound} after {last}");
            assert!((bound as u64) < nofile - FIXED_FDS, "{nofile}: {bound}");
            last = bound;
        }
    }

    #[test]
    fn a_tiny_limit_keeps_the_smallest_table() {
        assert_eq!(flow_bound(DEFAULT, 64), MIN_FLOWS);
        assert_eq!(flow_bound(DEFAULT, 0), MIN_FLOWS);
        assert!(nofile_too_low(64));
        assert!(!nofile_too_low(1024));
    }

    #[test]
    fn a_smaller_configured_bound_wins() {
        assert_eq!(flow_bound(4, 1024), 4);
        assert_eq!(flow_bound(4, 64), 4);
        assert_eq!(flow_bound(500, 1024), 500);
    }

    #[test]
    fn an_unlimited_count_does_not_overflow() {
        assert_eq!(flow_bound(DEFAULT, u64::MAX), DEFAULT);
    }
}
