//! Frames toward the sandbox: one preallocated frame buffer, the link addresses, and the sink
//! (the tap fd, or a recording sink in tests). `tcp`, `udp` and `icmp` fill the payload in
//! place and call the typed `wire::emit` functions through here; nothing here allocates.
//! With a vnet_hdr tap, TCP/UDP checksums are left to the sandbox's kernel (NEEDS_CSUM) and
//! TCP segments may be up to 64 KiB, marked GSO with the sandbox's MSS.

use std::io;
use std::net::{IpAddr, SocketAddr};

use smoltcp::wire::EthernetAddress;

use crate::sys::pages::ZeroedBuf;
use crate::sys::socket::MAX_BATCH;
use crate::wire::emit::{self, Csum, TcpHeader};
use crate::wire::vnet::{self, Gso};
use crate::wire::L2;

/// Where finished frames go.
pub trait FrameSink {
    /// Sends one frame; a failure drops the frame (the sandbox retransmits or times out).
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()>;

    /// End of a batch: anything the sink held back must go out now.
    fn flush(&mut self) {}
}

/// What the `fill` of `Egress::tcp` put in a segment: `len` payload bytes, and whether the
/// segment also carries our FIN (the host peer's EOF right behind that payload).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// Payload bytes written.
    pub len: usize,
    /// Set FIN on the segment.
    pub fin: bool,
}

/// Counters of what was emitted or dropped on the way out.
#[derive(Debug, Default, Clone, Copy)]
pub struct EgressStats {
    /// Frames handed to the sink.
    pub frames: u64,
    /// Bytes of those frames (headers included).
    pub bytes: u64,
    /// Frames the sink refused.
    pub sink_errors: u64,
    /// Frames not sent because the sandbox's MAC is not known yet.
    pub no_link: u64,
    /// Datagrams too large for the link (we do not fragment).
    pub too_big: u64,
}

impl EgressStats {
    fn count(&mut self, len: usize) {
        self.frames += 1;
        self.bytes += len as u64;
    }
}

/// Builder and sender of frames toward the sandbox.
pub struct Egress {
    buf: ZeroedBuf,
    /// `MAX_BATCH` frame buffers of `frame` bytes, one per datagram of a `udp_batch`; their
    /// pages are mapped in only as batches fill them (`ZeroedBuf`).
    batch: ZeroedBuf,
    /// Bytes of one frame buffer.
    frame: usize,
    /// Bytes reserved in front of each frame for the virtio-net header (0 without vnet_hdr).
    head: usize,
    mac: EthernetAddress,
    sandbox_mac: Option<EthernetAddress>,
    sink: Box<dyn FrameSink>,
    mtu: usize,
    /// Counters.
    pub stats: EgressStats,
}

/// Ethernet header length; frames are MTU + this.
const ETH_HEADER: usize = 14;
/// Largest IP packet (16-bit length fields).
const MAX_IP_PACKET: usize = u16::MAX as usize;

impl Egress {
    /// Prepares a frame buffer for `mtu`-sized IP packets (64 KiB ones with `vnet_hdr`);
    /// `mac` is our (gateway) address.
    pub fn new(
        mtu: usize,
        mac: EthernetAddress,
        sink: Box<dyn FrameSink>,
        vnet_hdr: bool,
    ) -> Egress {
        let (head, packet) = if vnet_hdr {
            (vnet::LEN, MAX_IP_PACKET)
        } else {
            (0, mtu)
        };
        let frame = head + ETH_HEADER + packet;
        Egress {
            buf: ZeroedBuf::new(frame),
            batch: ZeroedBuf::new(MAX_BATCH * frame),
            frame,
            head,
            mac,
            sandbox_mac: None,
            sink,
            mtu,
            stats: EgressStats::default(),
        }
    }

    /// Sets where frames go: the sandbox's MAC (`event_loop::link` decides which); frames go
    /// nowhere until it is known. A multicast or broadcast address is ignored.
    pub fn set_sandbox_mac(&mut self, mac: EthernetAddress) {
        if mac.is_unicast() {
            self.sandbox_mac = Some(mac);
        }
    }

    /// The sandbox's MAC, once known.
    pub fn sandbox_mac(&self) -> Option<EthernetAddress> {
        self.sandbox_mac
    }

    /// MTU of the sandbox link.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Whether TCP segments larger than the MSS may be sent as one GSO frame.
    pub fn gso(&self) -> bool {
        self.head > 0
    }

    /// Bytes a frame handed to `raw` must reserve in front for the virtio-net header.
    pub fn headroom(&self) -> usize {
        self.head
    }

    /// The link addresses of a frame to the sandbox, for frames built elsewhere and sent
    /// with `raw`; `None` (counted) while the sandbox's MAC is unknown.
    pub fn link(&mut self) -> Option<L2> {
        self.l2()
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

    fn csum(&self) -> Csum {
        if self.head > 0 {
            Csum::Partial
        } else {
            Csum::Full
        }
    }

    /// Sends `buf[..head + len]` (with vnet_hdr) or `buf[head..head + len]`.
    fn send(&mut self, len: usize) {
        if let Some(frame) = self.buf.get(..self.head + len) {
            deliver(self.sink.as_mut(), &mut self.stats, frame);
        }
    }

    /// Largest TCP payload one frame toward `remote`'s family may carry: 64 KiB with GSO,
    /// else what fits the MTU.
    pub fn max_tcp_payload(&self, remote: SocketAddr) -> usize {
        if self.gso() {
            emit::max_tcp_payload(remote.ip())
        } else {
            self.link_mss(remote)
        }
    }

    /// TCP payload that fits one MTU-sized packet toward `remote`'s family.
    pub fn link_mss(&self, remote: SocketAddr) -> usize {
        (self.mtu + ETH_HEADER).saturating_sub(emit::tcp_payload_offset(remote.ip(), 0))
    }

    /// Emits a TCP segment from `remote` to `sandbox` with no payload (SYN, ACK, FIN, RST).
    pub fn tcp_control(&mut self, remote: SocketAddr, sandbox: SocketAddr, hdr: &TcpHeader) {
        let _ = self.tcp(remote, sandbox, hdr, 0, 0, |_| Ok(Payload::default()));
    }

    /// Emits a TCP segment from `remote` to `sandbox`. `fill` writes up to `max_payload` bytes
    /// of payload in place and says how many, and whether FIN goes with them; its error is
    /// returned and nothing is sent. A payload longer than `mss` goes out as one GSO frame
    /// (only when `gso()`; the sandbox's kernel keeps FIN on the last segment).
    pub fn tcp<F>(
        &mut self,
        remote: SocketAddr,
        sandbox: SocketAddr,
        hdr: &TcpHeader,
        max_payload: usize,
        mss: usize,
        fill: F,
    ) -> io::Result<Payload>
    where
        F: FnOnce(&mut [u8]) -> io::Result<Payload>,
    {
        let Some(l2) = self.l2() else {
            return Ok(Payload::default());
        };
        let head = self.head;
        let off = emit::tcp_payload_offset(remote.ip(), hdr.options_len());
        let end = self.buf.len().min(head + off + max_payload);
        let filled = match self.buf.get_mut(head + off..end) {
            Some(slot) if !slot.is_empty() => fill(slot)?,
            _ => Payload::default(),
        };
        let mut hdr = *hdr;
        hdr.flags.fin |= filled.fin;
        let n = filled.len;
        let csum = self.csum();
        let frame = &mut self.buf[head..];
        let len = match emit::tcp(frame, l2, remote.ip(), sandbox.ip(), &hdr, n, csum) {
            Ok(len) => len,
            Err(error) => {
                tracing::trace!(%error, "tcp segment not emitted");
                return Ok(filled);
            }
        };
        if head > 0 {
            let gso = gso_for(remote.ip(), n, mss, off);
            let l4 = emit::l4_offset(remote.ip()) as u16;
            vnet::write(&mut self.buf, l4, vnet::TCP_CSUM_OFFSET, gso);
        }
        self.send(len);
        Ok(filled)
    }

    /// Emits up to `MAX_BATCH` UDP datagrams from `remote` to `sandbox`, which `recv` reads
    /// into one payload slot each (their lengths into its second argument, as
    /// `sys::socket::recv_batch` does) and returns how many it read. Each goes out as its own
    /// frame; those that do not fit the MTU are dropped (we do not fragment).
    pub fn udp_batch<F>(
        &mut self,
        remote: SocketAddr,
        sandbox: SocketAddr,
        recv: F,
    ) -> io::Result<usize>
    where
        F: FnOnce(&mut [&mut [u8]], &mut [usize]) -> io::Result<usize>,
    {
        let Some(l2) = self.l2() else {
            return Ok(0);
        };
        let start = self.head + emit::udp_payload_offset(remote.ip());
        let mut lens = [0; MAX_BATCH];
        let frame = self.frame;
        let got = {
            let mut frames = self.batch.chunks_exact_mut(frame);
            let mut slots: [&mut [u8]; MAX_BATCH] = std::array::from_fn(|_| {
                frames
                    .next()
                    .and_then(|b| b.get_mut(start..))
                    .unwrap_or_default()
            });
            recv(&mut slots, &mut lens)?
        };
        let (batch, mut out) = self.parts();
        for (buf, &len) in batch.chunks_exact_mut(frame).zip(lens.iter()).take(got) {
            let dgram = Datagram {
                l2,
                remote,
                sandbox,
                len,
            };
            out.udp(buf, dgram);
        }
        Ok(got)
    }

    /// Emits one UDP datagram from `remote` to `sandbox` whose payload `fill` writes in place
    /// (the DNS forwarder's answers, datagrams arriving on a published port). Returns the
    /// payload length; a datagram too large for the MTU is counted and dropped.
    pub fn udp_datagram<F>(
        &mut self,
        remote: SocketAddr,
        sandbox: SocketAddr,
        fill: F,
    ) -> io::Result<usize>
    where
        F: FnOnce(&mut [u8]) -> io::Result<usize>,
    {
        let Some(l2) = self.l2() else {
            return Ok(0);
        };
        let start = self.head + emit::udp_payload_offset(remote.ip());
        let Some(slot) = self.buf.get_mut(start..) else {
            return Ok(0);
        };
        let len = fill(slot)?;
        let dgram = Datagram {
            l2,
            remote,
            sandbox,
            len,
        };
        let mut buf = std::mem::take(&mut self.buf);
        let (_, mut out) = self.parts();
        out.udp(&mut buf, dgram);
        self.buf = buf;
        Ok(len)
    }

    /// The batch buffers and the sending half, borrowed apart.
    fn parts(&mut self) -> (&mut [u8], Out<'_>) {
        let out = Out {
            head: self.head,
            mtu: self.mtu,
            csum: self.csum(),
            sink: self.sink.as_mut(),
            stats: &mut self.stats,
        };
        (&mut self.batch, out)
    }

    /// Emits an echo reply (ICMP or ICMPv6, by `remote`'s family) to `sandbox` carrying
    /// `ident`; `fill` writes the reply's whole ICMP message (as a ping socket returns it).
    pub fn echo_reply<F>(
        &mut self,
        remote: IpAddr,
        sandbox: IpAddr,
        ident: u16,
        fill: F,
    ) -> io::Result<usize>
    where
        F: FnOnce(&mut [u8]) -> io::Result<usize>,
    {
        let Some(l2) = self.l2() else {
            return Ok(0);
        };
        let head = self.head;
        let end = self.buf.len().min(head + ETH_HEADER + self.mtu);
        let Some(slot) = self.buf.get_mut(head + emit::l4_offset(remote)..end) else {
            return Ok(0);
        };
        let n = fill(slot)?;
        match emit::echo_reply(&mut self.buf[head..], l2, remote, sandbox, ident, n) {
            Ok(len) => {
                vnet::write_plain(&mut self.buf[..head]);
                self.send(len)
            }
            Err(error) => tracing::trace!(%error, "echo reply not emitted"),
        }
        Ok(n)
    }

    /// End of a batch: lets the sink send anything it held back.
    pub fn flush(&mut self) {
        self.sink.flush();
    }

    /// Sends a frame built elsewhere (the smoltcp control plane). `buf` starts with
    /// `headroom()` spare bytes for the virtio-net header, then the Ethernet frame.
    pub fn raw(&mut self, buf: &mut [u8]) {
        let head = self.head.min(buf.len());
        vnet::write_plain(&mut buf[..head]);
        match self.sink.send_frame(buf) {
            Ok(()) => self.stats.count(buf.len()),
            Err(_) => self.stats.sink_errors += 1,
        }
    }
}

/// One UDP datagram whose payload already sits in a frame buffer.
#[derive(Debug, Clone, Copy)]
struct Datagram {
    l2: L2,
    remote: SocketAddr,
    sandbox: SocketAddr,
    /// Payload bytes (as the host socket reported them: more than the buffer held if cut).
    len: usize,
}

/// The parts of the egress that finish and send a frame, borrowed apart from its buffers.
struct Out<'a> {
    head: usize,
    mtu: usize,
    csum: Csum,
    sink: &'a mut dyn FrameSink,
    stats: &'a mut EgressStats,
}

impl Out<'_> {
    /// Writes the headers in front of the payload in `buf` and sends the frame; drops a
    /// datagram that does not fit the MTU.
    fn udp(&mut self, buf: &mut [u8], d: Datagram) {
        if emit::udp_payload_offset(d.remote.ip()) + d.len > self.mtu + ETH_HEADER {
            self.stats.too_big += 1;
            return;
        }
        let Some(frame) = buf.get_mut(self.head..) else {
            return;
        };
        let len = match emit::udp(frame, d.l2, d.remote, d.sandbox, d.len, self.csum) {
            Ok(len) => len,
            Err(error) => {
                tracing::trace!(%error, "udp datagram not emitted");
                return;
            }
        };
        if self.head > 0 {
            let l4 = emit::l4_offset(d.remote.ip()) as u16;
            vnet::write(buf, l4, vnet::UDP_CSUM_OFFSET, Gso::None);
        }
        if let Some(frame) = buf.get(..self.head + len) {
            deliver(self.sink, self.stats, frame);
        }
    }
}

/// Hands one finished frame to the sink and counts it.
fn deliver(sink: &mut dyn FrameSink, stats: &mut EgressStats, frame: &[u8]) {
    match sink.send_frame(frame) {
        Ok(()) => stats.count(frame.len()),
        Err(error) => {
            stats.sink_errors += 1;
            tracing::trace!(%error, "tap write failed, frame dropped");
        }
    }
}

/// GSO marking for a TCP payload of `len` bytes with segment size `mss`.
fn gso_for(ip: IpAddr, len: usize, mss: usize, hdr_len: usize) -> Gso {
    if len <= mss || mss == 0 {
        return Gso::None;
    }
    let mss = mss.min(usize::from(u16::MAX)) as u16;
    let hdr_len = hdr_len as u16;
    match ip {
        IpAddr::V4(_) => Gso::Tcp4 { mss, hdr_len },
        IpAddr::V6(_) => Gso::Tcp6 { mss, hdr_len },
    }
}
