//! Where frames toward the sandbox are addressed: the sandbox's MAC, taken from its tap
//! device, never from what the sandbox sends.
//!
//! A frame's source MAC is whatever its sender wrote, and the sandbox's root may write
//! anything (raw frames on tap0). Learning the destination from every frame let 20k frames
//! with random source MACs send our traffic nowhere (issue 14). So the tap's own address is
//! read from its fd (SIOCGIFHWADDR) when the loop starts, and read again when a frame comes
//! from another MAC, at most once per `RECHECK` (an `ip link set tap0 address ..` inside is
//! honoured within that; a flood of forged frames costs one ioctl per `RECHECK`). A fd that is
//! no tap (a socket pair in tests) falls back to the first unicast source MAC, kept for good.
//!
//! | source         | frame from another MAC, before the next check | after it                       |
//! |----------------|-----------------------------------------------|--------------------------------|
//! | `Device`       | nothing changes                               | re-read the device's MAC       |
//! | `FirstFrame`   | learnt if none is known yet, else nothing     | (no checks)                    |

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use smoltcp::wire::EthernetAddress;

use crate::egress::Egress;

/// Least time between two reads of the device's MAC prompted by foreign frames.
pub const RECHECK: Duration = Duration::from_millis(200);

/// How the sandbox's MAC is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMac {
    /// Read from the tap device; next read allowed at `next_check`.
    Device {
        /// Earliest time of the next re-read.
        next_check: Instant,
    },
    /// Not a tap: the first unicast source MAC seen, then fixed.
    FirstFrame,
}

impl SandboxMac {
    /// Reads the device's MAC into `egress`, or settles for learning from the first frame.
    pub fn start(tap: BorrowedFd<'_>, egress: &mut Egress, now: Instant) -> SandboxMac {
        match crate::tap::device_mac(tap) {
            Some(mac) => {
                egress.set_sandbox_mac(EthernetAddress(mac));
                SandboxMac::Device { next_check: now }
            }
            None => SandboxMac::FirstFrame,
        }
    }

    /// A frame came from `src`; keeps `egress`'s destination the sandbox's own MAC.
    pub fn on_frame(
        &mut self,
        src: EthernetAddress,
        tap: BorrowedFd<'_>,
        egress: &mut Egress,
        now: Instant,
    ) {
        if egress.sandbox_mac() == Some(src) {
            return;
        }
        match self {
            SandboxMac::FirstFrame => {
                if egress.sandbox_mac().is_none() {
                    egress.set_sandbox_mac(src);
                }
            }
            SandboxMac::Device { next_check } => {
                if now < *next_check {
                    return;
                }
                *next_check = now + RECHECK;
                if let Some(mac) = crate::tap::device_mac(tap) {
                    egress.set_sandbox_mac(EthernetAddress(mac));
                }
            }
        }
    }
}
