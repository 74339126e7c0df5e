//! Control plane on smoltcp's `Interface`: ARP and NDP for the gateway and DNS addresses, and
//! ICMP/ICMPv6 echo replies from them, so `ping 10.0.2.2` works without ping sockets.
//! The event loop hands it only frames addressed to those services (never TCP/UDP, which
//! the NAT carries); replies go out through `Egress`. One frame in, zero or more frames out.

use std::time::Instant as StdInstant;

use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use crate::config::{Addressing, PREFIX_LEN_V6};
use crate::egress::Egress;
use crate::sys::pages::ZeroedBuf;

/// The smoltcp interface that speaks for the gateway and DNS addresses.
pub struct ControlPlane {
    iface: Interface,
    sockets: SocketSet<'static>,
    epoch: StdInstant,
    tx: ZeroedBuf,
    mtu: usize,
}

/// A device that offers one received frame and sends replies through `Egress`.
struct OneFrame<'a> {
    rx: Option<&'a [u8]>,
    tx: &'a mut [u8],
    egress: &'a mut Egress,
    mtu: usize,
}

struct Rx<'a>(&'a [u8]);

struct Tx<'a, 'b> {
    tx: &'b mut [u8],
    egress: &'b mut Egress,
    _frame: std::marker::PhantomData<&'a ()>,
}

impl RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl TxToken for Tx<'_, '_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let head = self.egress.headroom();
        let end = (head + len).min(self.tx.len());
        let r = f(&mut self.tx[head..end]);
        if end == head + len {
            self.egress.raw(&mut self.tx[..end]);
        }
        r
    }
}

impl<'a> Device for OneFrame<'a> {
    type RxToken<'b>
        = Rx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'a, 'b>
    where
        Self: 'b;

    fn receive(&mut self, _: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.take()?;
        Some((
            Rx(frame),
            Tx {
                tx: self.tx,
                egress: self.egress,
                _frame: std::marker::PhantomData,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<Self::TxToken<'_>> {
        Some(Tx {
            tx: self.tx,
            egress: self.egress,
            _frame: std::marker::PhantomData,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + ETH_HEADER;
        caps
    }
}

/// Ethernet header length.
const ETH_HEADER: usize = 14;

impl ControlPlane {
    /// An interface with our MAC holding the gateway and DNS addresses (v4 and v6) of `addr`.
    pub fn new(
        mac: EthernetAddress,
        mtu: usize,
        addr: &Addressing,
        egress: &mut Egress,
    ) -> ControlPlane {
        let epoch = StdInstant::now();
        let mut tx = ZeroedBuf::new(crate::wire::vnet::LEN + mtu + ETH_HEADER);
        let mut dev = OneFrame {
            rx: None,
            tx: &mut tx,
            egress,
            mtu,
        };
        let config = Config::new(HardwareAddress::Ethernet(mac));
        let mut iface = Interface::new(config, &mut dev, Instant::from_millis(0));
        iface.update_ip_addrs(|addrs| {
            for cidr in [
                IpCidr::new(IpAddress::Ipv4(addr.gateway_v4()), addr.prefix_v4()),
                IpCidr::new(IpAddress::Ipv4(addr.dns_v4()), addr.prefix_v4()),
                IpCidr::new(IpAddress::Ipv6(addr.gateway_v6()), PREFIX_LEN_V6),
                IpCidr::new(IpAddress::Ipv6(addr.dns_v6()), PREFIX_LEN_V6),
            ] {
                // Capacity is four (smoltcp feature iface-max-addr-count-4): cannot fail.
                let _ = addrs.push(cidr);
            }
        });
        let storage: Vec<SocketStorage<'static>> = Vec::new();
        ControlPlane {
            iface,
            sockets: SocketSet::new(storage),
            epoch,
            tx,
            mtu,
        }
    }

    /// Lets smoltcp process one frame (ARP, NDP, echo to our addresses) and send its replies.
    pub fn input(&mut self, frame: &[u8], egress: &mut Egress, now: StdInstant) {
        let ts = Instant::from_micros(now.duration_since(self.epoch).as_micros() as i64);
        let mut dev = OneFrame {
            rx: Some(frame),
            tx: &mut self.tx,
            egress,
            mtu: self.mtu,
        };
        self.iface.poll(ts, &mut dev, &mut self.sockets);
    }
}
