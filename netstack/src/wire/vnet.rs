//! The virtio-net header that prefixes every frame on a tap opened with IFF_VNET_HDR
//! (`struct virtio_net_hdr_mrg_rxbuf`, little-endian on the hosts we run on).
//! `egress` writes it in front of frames it sends: "checksum partial" and, for TCP segments
//! longer than the sandbox's MSS, GSO so the sandbox's kernel takes them as one super-frame.
//! Frames read from the tap only have it skipped: we never verify checksums anyway.

/// Length of the header (TUNSETVNETHDRSZ 12).
pub const LEN: usize = crate::tap::VNET_HDR_LEN;
/// The checksum at `csum_start + csum_offset` holds only the pseudo-header sum.
const F_NEEDS_CSUM: u8 = 1;
/// gso_type values from <linux/virtio_net.h>.
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
/// Offset of the checksum field inside the TCP and UDP headers.
pub const TCP_CSUM_OFFSET: u16 = 16;
/// Offset of the checksum field inside the UDP header.
pub const UDP_CSUM_OFFSET: u16 = 6;

/// Segmentation the sandbox's kernel should apply to an emitted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gso {
    /// A single packet.
    None,
    /// TCP over IPv4 with segments of `mss` bytes; `hdr_len` covers Ethernet to TCP options.
    Tcp4 {
        /// Segment size.
        mss: u16,
        /// Header bytes before the payload.
        hdr_len: u16,
    },
    /// Same over IPv6.
    Tcp6 {
        /// Segment size.
        mss: u16,
        /// Header bytes before the payload.
        hdr_len: u16,
    },
}

/// Writes a header for a frame whose L4 checksum (at `csum_start + csum_offset`) is partial.
pub fn write(buf: &mut [u8], csum_start: u16, csum_offset: u16, gso: Gso) {
    let (gso_type, mss, hdr_len) = match gso {
        Gso::None => (GSO_NONE, 0, 0),
        Gso::Tcp4 { mss, hdr_len } => (GSO_TCPV4, mss, hdr_len),
        Gso::Tcp6 { mss, hdr_len } => (GSO_TCPV6, mss, hdr_len),
    };
    let Some(h) = buf.get_mut(..LEN) else {
        return;
    };
    h[0] = F_NEEDS_CSUM;
    h[1] = gso_type;
    h[2..4].copy_from_slice(&hdr_len.to_le_bytes());
    h[4..6].copy_from_slice(&mss.to_le_bytes());
    h[6..8].copy_from_slice(&csum_start.to_le_bytes());
    h[8..10].copy_from_slice(&csum_offset.to_le_bytes());
    h[10..12].copy_from_slice(&0u16.to_le_bytes());
}

/// Writes an all-zero header: a complete frame with nothing left for the kernel to do.
pub fn write_plain(buf: &mut [u8]) {
    if let Some(h) = buf.get_mut(..LEN) {
        h.fill(0);
    }
}
