//! Entry points for the fuzz targets (netstack/fuzz) into parsers that are private to the
//! crate: the netlink replies `netconf` reads. Built only with the `fuzzing` feature, which
//! nothing but the fuzz crate turns on; each function calls the real parser and adds nothing.
//! Grows by one function per private parser that takes outside input.

use netlink_packet_route::link::LinkMessage;

use crate::netconf::{self, NetconfError};

/// Records the ACKs and NACKs in `data` (a netlink reply buffer) against a batch of `count`
/// requests, as `netconf` does after sending a configuration batch; returns each request's
/// slot: `None` not answered yet, `Some(None)` done, `Some(Some(errno))` refused.
pub fn netlink_acks(data: &[u8], count: usize) -> Result<Vec<Option<Option<i32>>>, NetconfError> {
    let mut acked = vec![None; count];
    netconf::record_acks(data, &mut acked)?;
    Ok(acked)
}

/// Reads `data` as the kernel's reply to RTM_GETLINK, as `netconf::get_link` does.
pub fn netlink_link_reply(data: &[u8]) -> Result<Option<LinkMessage>, NetconfError> {
    netconf::link_reply(data)
}
