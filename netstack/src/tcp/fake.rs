//! Test doubles for the TCP translator: a scripted `HostSocket`, a scripted stack-wide
//! `ChallengeLimit`, a frame sink that records what the flow emits, decoded back into
//! segments, and the `Rig` holding a flow with them (each test file adds the constructors it
//! needs). Test builds only; used by `tests` and
//! `tests_inbound`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use smoltcp::wire::EthernetAddress;

use super::{ChallengeLimit, HostSocket, TcpFlow, Verdict};
use crate::egress::{Egress, FrameSink};
use crate::wire::{self, Frame, TcpFlags, TcpSegment, L4};

/// One flow under test, its scripted host side, and what it emitted.
pub(super) struct Rig {
    pub(super) flow: TcpFlow,
    pub(super) host: FakeHost,
    pub(super) eg: Egress,
    pub(super) sink: Sink,
    pub(super) now: Instant,
    /// The stack-wide challenge ACK limit the flow is given (unlimited unless a test says).
    pub(super) challenges: Challenges,
}

impl Rig {
    /// Feeds one segment from the sandbox, then flushes the ACK it owes (end of batch).
    pub(super) fn input(&mut self, s: TcpSegment<'_>) -> Verdict {
        let v = self.flow.on_segment(
            &s,
            &mut self.host,
            &mut self.eg,
            &mut self.challenges,
            self.now,
        );
        self.flow.flush_ack(&mut self.host, &mut self.eg, self.now);
        v
    }

    /// The host socket became readable (hung up when the fake's EOF is set).
    pub(super) fn host_readable(&mut self) -> Verdict {
        let hup = self.host.eof;
        self.flow
            .on_host_readable(&mut self.host, &mut self.eg, self.now, hup)
    }

    /// Moves the clock on by `d` and runs the flow's timers.
    pub(super) fn advance(&mut self, d: Duration) -> Verdict {
        self.now += d;
        self.flow.on_timer(&mut self.host, &mut self.eg, self.now)
    }
}

/// A stack-wide challenge ACK limit with `left` challenges to give (`None`: any number), that
/// counts how often it was asked.
#[derive(Debug, Default)]
pub(super) struct Challenges {
    pub(super) left: Option<u32>,
    pub(super) asked: u32,
}

impl ChallengeLimit for Challenges {
    fn allow_challenge(&mut self, _now: Instant) -> bool {
        self.asked += 1;
        match self.left.as_mut() {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }
}

/// Host socket whose queues and limits the test sets.
#[derive(Default)]
pub(super) struct FakeHost {
    /// Bytes `send` accepts before returning WouldBlock.
    pub(super) send_cap: usize,
    /// Bytes `send` took (sandbox -> host).
    pub(super) sent: Vec<u8>,
    /// Host -> sandbox bytes still queued (head = first unacknowledged byte).
    pub(super) queued: VecDeque<u8>,
    /// The host peer's FIN follows `queued`.
    pub(super) eof: bool,
    /// `shutdown_write` was called.
    pub(super) shut_wr: bool,
    /// `abort` was called.
    pub(super) aborted: bool,
    /// What `send_space` reports.
    pub(super) space: usize,
}

impl HostSocket for FakeHost {
    fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.send_cap);
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.send_cap -= n;
        self.sent.extend_from_slice(&data[..n]);
        Ok(n)
    }
    fn peek_at(&mut self, offset: usize, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.queued.len().saturating_sub(offset);
        if avail == 0 {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = avail.min(buf.len());
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = self.queued[offset + i];
        }
        Ok(n)
    }
    fn discard(&mut self, len: usize) -> io::Result<()> {
        assert!(len <= self.queued.len(), "discarding more than queued");
        self.queued.drain(..len);
        Ok(())
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shut_wr = true;
        Ok(())
    }
    fn send_space(&mut self) -> usize {
        self.space
    }
    fn abort(&mut self) {
        self.aborted = true;
    }
}

/// Frame sink that keeps every frame for `take`.
#[derive(Clone, Default)]
pub(super) struct Sink(Rc<RefCell<Vec<Vec<u8>>>>);

impl FrameSink for Sink {
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.0.borrow_mut().push(frame.to_vec());
        Ok(())
    }
}

/// A segment we emitted, decoded.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Out {
    pub(super) src: SocketAddr,
    pub(super) dst: SocketAddr,
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) flags: TcpFlags,
    pub(super) window: u16,
    pub(super) mss: Option<u16>,
    pub(super) scale: Option<u8>,
    pub(super) ts: Option<(u32, u32)>,
    pub(super) payload: Vec<u8>,
}

impl Sink {
    /// Decodes and removes the frames emitted so far.
    pub(super) fn take(&self) -> Vec<Out> {
        self.0
            .borrow_mut()
            .drain(..)
            .map(|f| match wire::parse(&f) {
                Ok((
                    _,
                    Frame::Ip {
                        meta,
                        l4: L4::Tcp(s),
                    },
                )) => Out {
                    src: SocketAddr::new(meta.src, s.src_port),
                    dst: SocketAddr::new(meta.dst, s.dst_port),
                    seq: s.seq,
                    ack: s.ack,
                    flags: s.flags,
                    window: s.window,
                    mss: s.mss,
                    scale: s.window_scale,
                    ts: s.timestamp,
                    payload: s.payload.to_vec(),
                },
                other => panic!("not a tcp frame: {other:?}"),
            })
            .collect()
    }
}

impl FakeHost {
    /// A host socket that takes every byte and reports 1 MiB of send space.
    pub(super) fn unlimited() -> FakeHost {
        FakeHost {
            send_cap: usize::MAX,
            space: 1 << 20,
            ..FakeHost::default()
        }
    }
}

/// An egress for an `mtu` link whose frames `sink` records; the sandbox's MAC is known.
pub(super) fn egress(mtu: usize, sink: &Sink) -> Egress {
    let mut eg = Egress::new(
        mtu,
        EthernetAddress([0x52, 0x55, 10, 0, 2, 2]),
        Box::new(sink.clone()),
        false,
    );
    eg.set_sandbox_mac(EthernetAddress([0x02, 0, 0, 0, 0, 1]));
    eg
}

/// The payload length of each segment in `out`.
pub(super) fn payload_lens(out: &[Out]) -> Vec<usize> {
    out.iter().map(|o| o.payload.len()).collect()
}
