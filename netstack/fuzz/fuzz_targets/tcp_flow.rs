//! Fuzz target for the TCP translator's state machine (`tcp::TcpFlow`), the part of the stack
//! a sandbox drives with every segment, against a scripted host socket (the `HostSocket` seam
//! the event loop fills with a real socket). The input is a script: the first byte opens the
//! flow (the sandbox's SYN, or a host client on a forward), then each op is a segment from the
//! sandbox, host data or EOF, a change in the host's send room, a clock step with the flow's
//! timers, the host connect's result, the end of a batch, or a host error. The stack-wide
//! challenge ACK limit (`ChallengeLimit`) allows every other challenge.
//!
//! Sandbox bytes carry their own sequence number (`sandbox_byte`), host bytes their own stream
//! offset (`host_byte`), so the checks need no model of the protocol:
//! - the host socket receives exactly the sandbox's stream from its first byte, in order,
//!   nothing skipped, doubled or invented (while every SYN the sandbox sent carried `IRS`);
//! - every segment toward the sandbox has the flow's addresses, fits the MTU, and carries host
//!   bytes at their stream offset, never beyond what the host queued;
//! - nothing panics, including the fake's own check that no more is discarded than was queued.
#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netstack::egress::{Egress, FrameSink};
use netstack::tcp::{ChallengeLimit, Endpoints, HostSocket, Origin, TcpFlow, Verdict};
use netstack::wire::{self, Frame, TcpFlags, TcpSegment, L4};
use smoltcp::wire::EthernetAddress;

const MTU: usize = 1500;
/// The sandbox's initial sequence number (every SYN it sends uses it, unless the script says).
const IRS: u32 = 0x1000_0000;
/// Our initial sequence number.
const ISS: u32 = 0xfff0_0000;
/// Most bytes one op queues on the host side.
const MAX_HOST_CHUNK: usize = 16 * 1024;
/// Ops per input.
const MAX_OPS: usize = 256;

/// Byte at sequence number `seq` of the sandbox's stream.
fn sandbox_byte(seq: u32) -> u8 {
    (seq.wrapping_mul(0x9e37_79b1) >> 24) as u8
}

/// Byte at offset `off` of the host peer's stream.
fn host_byte(off: u32) -> u8 {
    (off.wrapping_mul(0x85eb_ca6b) >> 24) as u8 ^ 0x5a
}

/// The host side: takes up to `send_cap` bytes, holds what the host peer sent.
#[derive(Default)]
struct FakeHost {
    send_cap: usize,
    space: usize,
    /// What the flow sent to the host peer.
    received: Vec<u8>,
    /// Host stream bytes still queued; `discarded` came before them.
    queued: VecDeque<u8>,
    discarded: usize,
    eof: bool,
    aborted: bool,
}

impl FakeHost {
    fn total(&self) -> usize {
        self.discarded + self.queued.len()
    }
}

impl HostSocket for FakeHost {
    fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.send_cap);
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.send_cap -= n;
        self.received.extend_from_slice(&data[..n]);
        Ok(n)
    }
    fn peek_at(&mut self, offset: usize, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.queued.len().saturating_sub(offset);
        if avail == 0 {
            return match self.eof {
                true => Ok(0),
                false => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = avail.min(buf.len());
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = self.queued[offset + i];
        }
        Ok(n)
    }
    fn discard(&mut self, len: usize) -> io::Result<()> {
        assert!(
            len <= self.queued.len(),
            "discarding {len} of {}",
            self.queued.len()
        );
        self.queued.drain(..len);
        self.discarded += len;
        Ok(())
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn send_space(&mut self) -> usize {
        self.space
    }
    fn abort(&mut self) {
        self.aborted = true;
    }
}

/// The stack-wide challenge ACK limit: allows every other challenge, so both ways are taken.
#[derive(Default)]
struct Challenges {
    asked: u32,
}

impl ChallengeLimit for Challenges {
    fn allow_challenge(&mut self, _now: Instant) -> bool {
        self.asked = self.asked.wrapping_add(1);
        self.asked % 2 == 1
    }
}

/// Keeps every frame the flow emits.
#[derive(Clone, Default)]
struct Sink(Rc<RefCell<Vec<Vec<u8>>>>);

impl FrameSink for Sink {
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.0.borrow_mut().push(frame.to_vec());
        Ok(())
    }
}

/// Reads the script's bytes; zeros once it runs out.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        first
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

struct Rig {
    flow: TcpFlow,
    host: FakeHost,
    eg: Egress,
    sink: Sink,
    ep: Endpoints,
    now: Instant,
    challenges: Challenges,
    /// Every SYN from the sandbox carried IRS, so its stream starts at IRS + 1.
    exact: bool,
    /// Highest sequence number the sandbox has sent data up to (for picking the next seq).
    sandbox_nxt: u32,
}

impl Rig {
    /// One segment from the sandbox, its fields from the script.
    fn segment(&mut self, s: &mut Script<'_>) -> Verdict {
        let bits = s.u8();
        let flags = TcpFlags {
            syn: bits & 1 != 0,
            ack: bits & 2 != 0,
            fin: bits & 4 != 0,
            rst: bits & 8 != 0,
        };
        // Mostly near what the sandbox would send next; sometimes anywhere.
        let seq = match (flags.syn, bits & 0x30) {
            (true, 0x30) => s.u32(),
            (true, _) => IRS,
            (false, 0x30) => s.u32(),
            (false, _) => self
                .sandbox_nxt
                .wrapping_add(i32::from(s.u16() as i16) as u32),
        };
        if flags.syn && seq != IRS {
            self.exact = false;
        }
        let ack = match bits & 0xc0 {
            0xc0 => s.u32(),
            _ => ISS
                .wrapping_add(1)
                .wrapping_add(self.host.discarded as u32)
                .wrapping_add(u32::from(s.u16())),
        };
        let window = s.u16();
        let len = usize::from(s.u16()) % (MTU + 64);
        let options = s.u8();
        let start = seq.wrapping_add(u32::from(flags.syn));
        let payload: Vec<u8> = (0..len as u32)
            .map(|i| sandbox_byte(start.wrapping_add(i)))
            .collect();
        let seg = TcpSegment {
            src_port: self.ep.sandbox.port(),
            dst_port: self.ep.remote.port(),
            seq,
            ack,
            flags,
            window,
            mss: (options & 1 != 0).then(|| s.u16()),
            window_scale: (options & 2 != 0).then(|| s.u8()),
            timestamp: (options & 4 != 0).then(|| (s.u32(), s.u32())),
            payload: &payload,
        };
        let end = start.wrapping_add(len as u32);
        if (end.wrapping_sub(self.sandbox_nxt) as i32) > 0 {
            self.sandbox_nxt = end;
        }
        self.flow.on_segment(
            &seg,
            &mut self.host,
            &mut self.eg,
            &mut self.challenges,
            self.now,
        )
    }

    /// Checks what reached the host and what went to the sandbox.
    fn check(&mut self) {
        self.eg.flush();
        if self.exact {
            for (i, &b) in self.host.received.iter().enumerate() {
                let seq = IRS.wrapping_add(1).wrapping_add(i as u32);
                assert_eq!(b, sandbox_byte(seq), "host byte {i} is not the sandbox's");
            }
        }
        let frames = std::mem::take(&mut *self.sink.0.borrow_mut());
        for f in &frames {
            assert!(f.len() <= 14 + MTU, "frame of {} bytes", f.len());
            let Ok((
                _,
                Frame::Ip {
                    meta,
                    l4: L4::Tcp(seg),
                },
            )) = wire::parse(f)
            else {
                panic!("the flow emitted a frame that is not TCP");
            };
            assert_eq!(SocketAddr::new(meta.src, seg.src_port), self.ep.remote);
            assert_eq!(SocketAddr::new(meta.dst, seg.dst_port), self.ep.sandbox);
            if seg.payload.is_empty() {
                continue;
            }
            let off = seg.seq.wrapping_sub(ISS.wrapping_add(1));
            assert!(
                off as usize + seg.payload.len() <= self.host.total(),
                "sent host bytes {off}+{} beyond the {} queued",
                seg.payload.len(),
                self.host.total()
            );
            for (i, &b) in seg.payload.iter().enumerate() {
                assert_eq!(
                    b,
                    host_byte(off.wrapping_add(i as u32)),
                    "host byte {off}+{i}"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script(data);
    let sink = Sink::default();
    let mut eg = Egress::new(
        MTU,
        EthernetAddress([0x52, 0x55, 10, 0, 2, 2]),
        Box::new(sink.clone()),
        false,
    );
    eg.set_sandbox_mac(EthernetAddress([0x02, 0, 0, 0, 0, 1]));
    let ep = Endpoints {
        sandbox: "10.0.2.100:40000".parse().expect("address"),
        remote: "10.0.2.2:8000".parse().expect("address"),
    };
    let now = Instant::now();
    let origin = Origin {
        iss: ISS,
        ts_epoch: now,
    };
    let open = s.u8();
    let inbound = open & 1 != 0;
    let flow = if inbound {
        TcpFlow::new_inbound(ep, MTU, origin, now)
    } else {
        let syn = TcpSegment {
            src_port: ep.sandbox.port(),
            dst_port: ep.remote.port(),
            seq: IRS,
            ack: 0,
            flags: TcpFlags {
                syn: true,
                ..TcpFlags::default()
            },
            window: s.u16(),
            mss: (open & 2 != 0).then(|| s.u16()),
            window_scale: (open & 4 != 0).then(|| s.u8()),
            timestamp: (open & 8 != 0).then(|| (s.u32(), 0)),
            payload: &[],
        };
        TcpFlow::new(ep, &syn, MTU, origin, now)
    };
    let host = FakeHost {
        send_cap: usize::MAX,
        space: 1 << 20,
        ..FakeHost::default()
    };
    let mut r = Rig {
        flow,
        host,
        eg,
        sink,
        ep,
        now,
        challenges: Challenges::default(),
        exact: true,
        sandbox_nxt: IRS.wrapping_add(1),
    };
    if inbound {
        r.flow.send_syn(&mut r.host, &mut r.eg, r.now);
    }
    for _ in 0..MAX_OPS {
        if s.done() {
            break;
        }
        let verdict = match s.u8() % 9 {
            0 | 1 => r.segment(&mut s),
            2 => {
                let n = usize::from(s.u16()) % MAX_HOST_CHUNK;
                let base = r.host.total() as u32;
                r.host
                    .queued
                    .extend((0..n as u32).map(|i| host_byte(base.wrapping_add(i))));
                let hup = s.u8() & 1 != 0;
                r.host.eof |= hup;
                // As the event loop: host readiness waits until the connect finished.
                match r.flow.is_connecting() {
                    true => Verdict::Keep,
                    false => r.flow.on_host_readable(&mut r.host, &mut r.eg, r.now, hup),
                }
            }
            3 => {
                r.host.send_cap = usize::from(s.u16()) * 16;
                r.host.space = usize::from(s.u16()) * 16;
                if !r.flow.is_connecting() {
                    r.flow.on_host_writable(&mut r.host, &mut r.eg, r.now);
                }
                Verdict::Keep
            }
            4 => {
                r.now += Duration::from_millis(u64::from(s.u16()));
                r.flow.on_timer(&mut r.host, &mut r.eg, r.now)
            }
            5 => {
                let result = match s.u8() & 1 {
                    0 => Ok(()),
                    _ => Err(io::ErrorKind::ConnectionRefused.into()),
                };
                match r.flow.is_connecting() {
                    true => r.flow.on_connected(result, &mut r.host, &mut r.eg, r.now),
                    false => Verdict::Keep,
                }
            }
            6 => {
                r.flow.end_batch(&mut r.host, &mut r.eg, r.now);
                Verdict::Keep
            }
            7 => {
                r.flow.flush_ack(&mut r.host, &mut r.eg, r.now);
                Verdict::Keep
            }
            _ => r.flow.reset(&mut r.host, &mut r.eg),
        };
        r.check();
        if verdict == Verdict::Close {
            break;
        }
    }
    let _ = (r.flow.next_timer(), r.flow.sandbox_closed(), r.host.aborted);
});
