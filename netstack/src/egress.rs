//! Frames toward the sandbox: one preallocated frame buffer, the link addresses, and the sink
//! (the tap fd, or a recording sink in tests). `tcp`, `udp` and `icmp` fill the payload in
//! place and call the typed `wire::emit` functions through here; nothing here allocates.

use std::io;
use std::net::SocketAddr;

use smoltcp::wire::EthernetAddress;

use crate::wire::emit::{self, TcpHeader};
use crate::wire::L2;

/// Where finished frames go.
pub trait FrameSink {
    /// Sends one frame; a failure drops the frame (the sandbox retransmits or times out).
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()>;
}

/// Counters of what was emitted or dropped on the way out.
#[derive(Debug, Default, Clone, Copy)]
pub struct EgressStats {
    /// Frames handed to the sink.
    pub frames: u64,
    /// Frames the sink refused.
    pub sink_errors: u64,
    /// Frames not sent because the sandbox's MAC is not known yet.
    pub no_link: u64,
}

/// Builder and sender of frames toward the sandbox.
pub struct Egress {
    buf: Box<[u8]>,
    mac: EthernetAddress,
    sandbox_mac: Option<EthernetAddress>,
    sink: Box<dyn FrameSink>,
    mtu: usize,
    /// Counters.
    pub stats: EgressStats,
}

/// Ethernet header length; frames are MTU + this.
const ETH_HEADER: usize = 14;

impl Egress {
    /// Prepares a frame buffer for `mtu`-sized IP packets; `mac` is our (gateway) address.
    pub fn new(mtu: usize, mac: EthernetAddress, sink: Box<dyn FrameSink>) -> Egress {
        Egress {
            buf: vec![0; mtu + ETH_HEADER].into_boxed_slice(),
            mac,
            sandbox_mac: None,
            sink,
            mtu,
            stats: EgressStats::default(),
        }
    }

    /// Records the sandbox's MAC (source of its frames); frames go nowhere until it is known.
    pub fn learn_sandbox_mac(&mut self, mac: EthernetAddress) {
        if mac.is_unicast() {
            self.sandbox_mac = Some(mac);
        }
    }

    /// MTU of the sandbox link.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    fn l2(&mut self) -> Option<L2> {
        match self.sandbox_mac {
            Some(dst) => Some(L2 { src: self.mac, dst }),
            None => {
                self.stats.no_link += 1;
                None
            }
        }
    }

    fn send(&mut self, len: usize) {
        let Some(frame) = self.buf.get(..len) else {
            return;
        };
        match self.sink.send_frame(frame) {
            Ok(()) => self.stats.frames += 1,
            Err(error) => {
                self.stats.sink_errors += 1;
                tracing::trace!(%error, "tap write failed, frame dropped");
            }
        }
    }

    /// Emits a TCP segment from `remote` to `sandbox`. `fill` writes up to `max_payload` bytes
    /// of payload in place and returns how many; its error is returned and nothing is sent.
    pub fn tcp<F>(
        &mut self,
        remote: SocketAddr,
        sandbox: SocketAddr,
        hdr: &TcpHeader,
        max_payload: usize,
        fill: F,
    ) -> io::Result<usize>
    where
        F: FnOnce(&mut [u8]) -> io::Result<usize>,
    {
        let Some(l2) = self.l2() else {
            return Ok(0);
        };
        let off = emit::tcp_payload_offset(remote.ip(), hdr.syn_options.is_some());
        let end = self.buf.len().min(off + max_payload);
        let n = match self.buf.get_mut(off..end) {
            Some(slot) if !slot.is_empty() => fill(slot)?,
            _ => 0,
        };
        match emit::tcp(&mut self.buf, l2, remote.ip(), sandbox.ip(), hdr, n) {
            Ok(len) => self.send(len),
            Err(error) => tracing::trace!(%error, "tcp segment not emitted"),
        }
        Ok(n)
    }

    /// Largest TCP payload that fits one frame toward `ip`'s family.
    pub fn max_tcp_payload(&self, remote: SocketAddr) -> usize {
        self.buf
            .len()
            .saturating_sub(emit::tcp_payload_offset(remote.ip(), false))
    }

    /// Emits a UDP datagram from `remote` to `sandbox`; `fill` writes the payload in place.
    pub fn udp<F>(&mut self, remote: SocketAddr, sandbox: SocketAddr, fill: F) -> io::Result<usize>
    where
        F: FnOnce(&mut [u8]) -> io::Result<usize>,
    {
        let Some(l2) = self.l2() else {
            return Ok(0);
        };
        let off = emit::udp_payload_offset(remote.ip());
        let Some(slot) = self.buf.get_mut(off..) else {
            return Ok(0);
        };
        let n = fill(slot)?;
        match emit::udp(&mut self.buf, l2, remote, sandbox, n) {
            Ok(len) => self.send(len),
            Err(error) => tracing::trace!(%error, "udp datagram not emitted"),
        }
        Ok(n)
    }

    /// Emits an ICMPv4 echo reply to `sandbox` carrying `ident`; `fill` writes the reply's
    /// whole ICMP message (as a ping socket returns it) in place.
    pub fn echo_reply_v4<F>(
        &mut self,
        remote: std::net::IpAddr,
        sandbox: std::net::IpAddr,
        ident: u16,
        fill: F,
    ) -> io::Result<usize>
    where
        F: FnOnce(&mut [u8]) -> io::Result<usize>,
    {
        let Some(l2) = self.l2() else {
            return Ok(0);
        };
        let Some(slot) = self.buf.get_mut(emit::ICMPV4_OFFSET..) else {
            return Ok(0);
        };
        let n = fill(slot)?;
        match emit::icmpv4_echo_reply(&mut self.buf, l2, remote, sandbox, ident, n) {
            Ok(len) => self.send(len),
            Err(error) => tracing::trace!(%error, "echo reply not emitted"),
        }
        Ok(n)
    }

    /// Sends an already built frame (from the smoltcp control plane).
    pub fn raw(&mut self, frame: &[u8]) {
        match self.sink.send_frame(frame) {
            Ok(()) => self.stats.frames += 1,
            Err(_) => self.stats.sink_errors += 1,
        }
    }
}
