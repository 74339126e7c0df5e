//! DNS over TCP for the sandbox: a small relay on the host's loopback that the NAT connects
//! the sandbox's TCP flows to 10.0.2.3:53 (and [fd00::3]:53) to, instead of the upstream
//! itself. It reads each length-prefixed message (RFC 1035 4.2.2, `framing`), drops and
//! counts what is not a query, relays queries to the upstreams over TCP in order, and answers
//! SERVFAIL when none answered within the same bounds as the UDP forwarder (`ATTEMPT_TIMEOUT`
//! per upstream, `TOTAL_TIMEOUT` per query), so a silent upstream never hangs the sandbox.
//!
//! Why a relay and not the TCP translator straight to the upstream: the translator carries
//! bytes, it does not read messages, so it could neither drop a malformed query nor answer
//! SERVFAIL on a timeout. Why threads: this is the control plane (a resolver falls back to
//! TCP only for truncated answers), and blocking reads with timeouts keep each connection a
//! dozen lines; the data path's event loop is untouched. Bounded by `MAX_CONNECTIONS`
//! concurrent connections (more are closed at once, counted), `IDLE_TIMEOUT` per connection,
//! and one query at a time per connection (answers come back in order, as RFC 7766 allows).
//!
//! Under an egress policy (`start_under`), a query for a name the policy does not allow is
//! answered REFUSED without reaching an upstream, and an answer's addresses are learnt before
//! it is written back (`gate.rs`), as for UDP.
//!
//! The relay listens on 127.0.0.1 with a port of the kernel's choice. Any local user could
//! connect to it, which gives them nothing they lack: it only relays to the host's own
//! resolvers, which they can already reach.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::framing::{read_message, write_message, MAX_MESSAGE};
use super::message::{same_question, Packet, Query, RCODE_REFUSED, RCODE_SERVFAIL};
use super::{ATTEMPT_TIMEOUT, MAX_UPSTREAMS, TOTAL_TIMEOUT};
use crate::policy::Shared as Policy;

/// Connections served at once; a sandbox rarely has more than a few TCP queries in flight.
const MAX_CONNECTIONS: usize = 16;
/// A connection with no query for this long is closed (RFC 7766 6.2.3 suggests seconds).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long each step may take (the constants above in production; short in tests).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// One upstream's time to answer.
    pub attempt: Duration,
    /// A query's time in all.
    pub total: Duration,
    /// A connection's time between queries.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            attempt: ATTEMPT_TIMEOUT,
            total: TOTAL_TIMEOUT,
            idle: IDLE_TIMEOUT,
        }
    }
}

/// Counters of the relay.
#[derive(Debug, Default)]
pub struct TcpDnsStats {
    /// Valid queries read.
    pub queries: AtomicU64,
    /// Answers relayed from an upstream.
    pub answers: AtomicU64,
    /// SERVFAIL answers we made.
    pub servfail: AtomicU64,
    /// Messages that were not a query, dropped.
    pub malformed: AtomicU64,
    /// Connections closed at once because `MAX_CONNECTIONS` were open.
    pub refused: AtomicU64,
    /// Queries the egress policy refused (answered REFUSED, never relayed).
    pub policy_refused: AtomicU64,
}

/// The running relay; dropping it stops accepting (open connections end on their own).
#[derive(Debug)]
pub struct TcpRelay {
    addr: SocketAddr,
    /// The accept thread's listener, shared so that `drop` can shut it down.
    listener: Arc<TcpListener>,
    stop: Arc<AtomicBool>,
    stats: Arc<TcpDnsStats>,
    thread: Option<JoinHandle<()>>,
}

/// What a connection's thread needs.
struct Shared {
    upstreams: Vec<SocketAddr>,
    timeouts: Timeouts,
    stats: Arc<TcpDnsStats>,
    open: AtomicUsize,
    policy: Option<Policy>,
}

impl TcpRelay {
    /// Starts the relay for `upstreams` on a thread named "dns-tcp".
    pub fn start(upstreams: &[SocketAddr]) -> io::Result<TcpRelay> {
        TcpRelay::start_under(upstreams, Timeouts::default(), None)
    }

    /// Same, with explicit timeouts.
    pub fn start_with(upstreams: &[SocketAddr], timeouts: Timeouts) -> io::Result<TcpRelay> {
        TcpRelay::start_under(upstreams, timeouts, None)
    }

    /// Same, listening on `bind` (port 0: the kernel's choice) instead of 127.0.0.1; kernel
    /// mode's `front::SocketFront` uses it for the bridge's IPv6 DNS address.
    pub fn start_on(
        bind: SocketAddr,
        upstreams: &[SocketAddr],
        timeouts: Timeouts,
    ) -> io::Result<TcpRelay> {
        TcpRelay::start_at(bind, upstreams, timeouts, None)
    }

    /// Same, under the egress `policy` when given (see `gate`).
    pub fn start_under(
        upstreams: &[SocketAddr],
        timeouts: Timeouts,
        policy: Option<Policy>,
    ) -> io::Result<TcpRelay> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        TcpRelay::start_at(loopback, upstreams, timeouts, policy)
    }

    fn start_at(
        bind: SocketAddr,
        upstreams: &[SocketAddr],
        timeouts: Timeouts,
        policy: Option<Policy>,
    ) -> io::Result<TcpRelay> {
        let listener = Arc::new(TcpListener::bind(bind)?);
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(TcpDnsStats::default());
        let shared = Arc::new(Shared {
            upstreams: upstreams.iter().take(MAX_UPSTREAMS).copied().collect(),
            timeouts,
            stats: stats.clone(),
            open: AtomicUsize::new(0),
            policy,
        });
        let flag = stop.clone();
        let accepting = listener.clone();
        let thread = std::thread::Builder::new()
            .name("dns-tcp".into())
            .spawn(move || accept_loop(&accepting, &flag, &shared))?;
        Ok(TcpRelay {
            addr,
            listener,
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// Where the NAT connects the sandbox's TCP queries.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn stats(&self) -> &TcpDnsStats {
        &self.stats
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept: shutting a listening socket down makes Linux close it
        // (accept then fails with EINVAL), and the thread sees the flag and returns. One
        // call, where connecting to ourselves took a loopback handshake and an accept; the
        // launcher waits for the stack process's exit, so this is on every run's way out.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Read);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else {
            continue; // ECONNABORTED and the like: that client is gone
        };
        if shared.open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            continue; // dropping `client` closes it
        }
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("dns-tcp-conn".into())
            .spawn(move || {
                serve(client, &s);
                s.open.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Answers the queries of one connection, one at a time, until EOF, an error or idleness.
fn serve(mut client: TcpStream, shared: &Shared) {
    if client.set_read_timeout(Some(shared.timeouts.idle)).is_err() {
        return;
    }
    let mut msg = vec![0u8; MAX_MESSAGE];
    loop {
        let Ok(len) = read_message(&mut client, &mut msg) else {
            return;
        };
        let Some(query) = msg.get(..len) else {
            return;
        };
        let parsed = Packet::new_checked(query).and_then(|p| Query::parse(&p));
        let Ok(q) = parsed else {
            shared.stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::trace!("malformed DNS query over TCP dropped");
            continue;
        };
        shared.stats.queries.fetch_add(1, Ordering::Relaxed);
        let refused = shared.policy.as_ref().is_some_and(|policy| {
            Packet::new_checked(query).is_ok_and(|p| !super::gate::allow_query(policy, &p))
        });
        let answer = match (refused, ask_upstreams(query, q, shared, refused)) {
            (false, Some(answer)) => {
                shared.stats.answers.fetch_add(1, Ordering::Relaxed);
                if let (Some(policy), Ok(p)) = (&shared.policy, Packet::new_checked(&answer[..])) {
                    super::gate::learn(policy, &p, Instant::now());
                }
                answer
            }
            (refused, _) => {
                let (rcode, counter) = match refused {
                    true => (RCODE_REFUSED, &shared.stats.policy_refused),
                    false => (RCODE_SERVFAIL, &shared.stats.servfail),
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let mut head = query.get(..q.head_len()).unwrap_or_default().to_vec();
                match q.emit_rcode(&mut head, q.id, rcode) {
                    Ok(n) => head.get(..n).unwrap_or_default().to_vec(),
                    Err(_) => return,
                }
            }
        };
        if write_message(&mut client, &answer).is_err() {
            return;
        }
    }
}

/// The first upstream's valid answer to `query`, within the total bound; none when `skip`.
fn ask_upstreams(query: &[u8], q: Query, shared: &Shared, skip: bool) -> Option<Vec<u8>> {
    if skip {
        return None;
    }
    let deadline = Instant::now() + shared.timeouts.total;
    for &upstream in &shared.upstreams {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let attempt = left.min(shared.timeouts.attempt);
        match ask(upstream, query, q, attempt) {
            Ok(answer) => return Some(answer),
            Err(error) => tracing::debug!(%upstream, %error, "DNS over TCP: upstream failed"),
        }
    }
    None
}

/// Sends `query` to `upstream` on a fresh connection and reads its answer, all within
/// `budget`. An answer must be a response with the query's id and question.
fn ask(upstream: SocketAddr, query: &[u8], q: Query, budget: Duration) -> io::Result<Vec<u8>> {
    let until = Instant::now() + budget;
    let mut conn = TcpStream::connect_timeout(&upstream, budget)?;
    let left = || {
        let d = until.saturating_duration_since(Instant::now());
        (!d.is_zero()).then_some(d).ok_or(io::ErrorKind::TimedOut)
    };
    conn.set_write_timeout(Some(left()?))?;
    write_message(&mut conn, query)?;
    let _ = conn.shutdown(Shutdown::Write);
    conn.set_read_timeout(Some(left()?))?;
    let mut answer = vec![0u8; MAX_MESSAGE];
    let len = read_message(&mut conn, &mut answer)?;
    answer.truncate(len);
    let bad = |_| io::Error::from(io::ErrorKind::InvalidData);
    let a = Packet::new_checked(&answer[..]).map_err(bad)?;
    let ours = Packet::new_checked(query).map_err(bad)?;
    let asked = ours.question().map_err(bad)?;
    let same = match a.question() {
        Ok(theirs) => same_question(theirs, asked),
        Err(_) => a.qdcount() == 0, // some FORMERR and NOTIMP answers carry no question
    };
    if !(a.is_response() && a.id() == q.id && same) {
        return Err(io::ErrorKind::InvalidData.into());
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for "a.test" type A, id 0x4242, RD.
    const QUERY: [u8; 24] = [
        0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 4, b't', b'e', b's', b't', 0, 0,
        1, 0, 1,
    ];

    fn short() -> Timeouts {
        Timeouts {
            attempt: Duration::from_millis(300),
            total: Duration::from_millis(600),
            idle: Duration::from_secs(5),
        }
    }

    /// An upstream that answers each query with itself, QR set; counts what it saw.
    fn echo_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut buf = vec![0u8; 65535];
                while let Ok(n) = read_message(&mut c, &mut buf) {
                    count.fetch_add(1, Ordering::SeqCst);
                    buf[2] |= 0x80;
                    if write_message(&mut c, &buf[..n]).is_err() {
                        break;
                    }
                }
            }
        });
        (addr, seen)
    }

    fn client(relay: &TcpRelay) -> TcpStream {
        let c = TcpStream::connect(relay.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    }

    fn answer(c: &mut TcpStream) -> Vec<u8> {
        let mut buf = vec![0u8; 65535];
        let n = read_message(c, &mut buf).expect("an answer");
        buf.truncate(n);
        buf
    }

    #[test]
    fn a_query_is_relayed_and_its_answer_returned() {
        let (up, seen) = echo_upstream();
        let relay = TcpRelay::start_with(&[up], short()).unwrap();
        let mut c = client(&relay);
        write_message(&mut c, &QUERY).unwrap();
        let a = answer(&mut c);
        assert_eq!(&a[..2], &[0x42, 0x42]);
        assert_eq!(a[2] & 0x80, 0x80, "a response");
        assert_eq!(&a[3..], &QUERY[3..]);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn malformed_messages_are_dropped_and_the_next_query_answered() {
        let (up, seen) = echo_upstream();
        let relay = TcpRelay::start_with(&[up], short()).unwrap();
        let mut c = client(&relay);
        let mut response = QUERY;
        response[2] |= 0x80;
        write_message(&mut c, &response).unwrap(); // not a query
        write_message(&mut c, &[1, 2, 3]).unwrap(); // shorter than a header
        write_message(&mut c, &QUERY).unwrap();
        let a = answer(&mut c);
        assert_eq!(&a[..2], &[0x42, 0x42]);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "only the query went upstream"
        );
        assert_eq!(relay.stats().malformed.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_silent_upstream_gets_servfail_within_the_total_bound() {
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let up = silent.local_addr().unwrap();
        let relay = TcpRelay::start_with(&[up, up], short()).unwrap();
        let mut c = client(&relay);
        let start = Instant::now();
        write_message(&mut c, &QUERY).unwrap();
        let a = answer(&mut c);
        let took = start.elapsed();
        assert_eq!(&a[..2], &[0x42, 0x42]);
        assert_eq!(a[3] & 0x0f, 2, "RCODE SERVFAIL");
        assert!(a[2] & 0x80 != 0);
        assert_eq!(a.len(), QUERY.len(), "header and question only");
        assert!(
            took >= Duration::from_millis(550) && took < Duration::from_secs(3),
            "took {took:?}"
        );
        drop(silent);
    }

    #[test]
    fn no_upstream_reachable_gets_servfail_at_once() {
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let relay = TcpRelay::start_with(&[closed], Timeouts::default()).unwrap();
        let mut c = client(&relay);
        let start = Instant::now();
        write_message(&mut c, &QUERY).unwrap();
        let a = answer(&mut c);
        assert_eq!(a[3] & 0x0f, 2);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "a refused connect fails at once"
        );
    }
}
