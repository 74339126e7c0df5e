//! Fuzz target for `wire::parse`, the one parser every frame from the sandbox goes through:
//! it must never panic, and whatever it accepts must describe bytes inside the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::wire::{self, Frame, L4};

fuzz_target!(|data: &[u8]| {
    if let Ok((_, Frame::Ip { l4, .. })) = wire::parse(data) {
        let inside = |s: &[u8]| {
            let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
            let p = s.as_ptr() as usize;
            s.is_empty() || (p >= start && p + s.len() <= end)
        };
        match l4 {
            L4::Tcp(seg) => assert!(inside(seg.payload)),
            L4::Udp { payload, .. } => assert!(inside(payload)),
            L4::EchoRequest { message, .. } => assert!(inside(message)),
            L4::Other => {}
        }
    }
});
