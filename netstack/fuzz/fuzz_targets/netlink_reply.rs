//! Fuzz target for the netlink replies `netconf` reads (through `netstack::fuzzing`, which
//! calls the real parsers): the ACK walk after a configuration batch (`record_acks`) and the
//! RTM_GETLINK answer (`link_reply`). The first byte is the batch size (as `netconf` sends
//! 1 to 8 requests); the rest is the reply. Neither may panic; an accepted walk only ever
//! records errnos as positive numbers against requests of the batch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::fuzzing::{netlink_acks, netlink_link_reply};

fuzz_target!(|data: &[u8]| {
    let Some((&count, reply)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 9);
    if let Ok(acked) = netlink_acks(reply, count) {
        assert_eq!(acked.len(), count);
        for errno in acked.into_iter().flatten().flatten() {
            assert!(errno >= 0, "errno {errno} is stored as its absolute value");
        }
    }
    let _ = netlink_link_reply(reply);
});
