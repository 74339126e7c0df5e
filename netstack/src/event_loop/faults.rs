//! Test builds with the `fault-injection` feature: wraps the tap sink and builds the
//! receive-side faults from RR_FAULT_INJECT (see `crate::fault`), and sets the flow table's size
//! to RR_TEST_MAX_FLOWS instead of the fd limit's bound, so a test fills it with a handful of
//! connections or exhausts the fds first. Part of `event_loop`.
use std::io;

use crate::egress::FrameSink;
use crate::fault::{FaultSpec, Faults, FaultySink};

/// Wraps the tap sink and builds the receive-side faults when RR_FAULT_INJECT is set.
pub fn wrap(
    sink: Box<dyn FrameSink>,
    max_frame: usize,
) -> io::Result<(Box<dyn FrameSink>, Option<Faults>)> {
    let spec = FaultSpec::from_env().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok(match spec {
        Some(spec) => {
            tracing::warn!(?spec, "fault injection on the tap path (test build)");
            let tx = Faults::new(spec, max_frame);
            let rx = Faults::new(spec, max_frame);
            (Box::new(FaultySink::new(sink, tx)), Some(rx))
        }
        None => (sink, None),
    })
}

/// Variable that sets the flow table's size in test builds: it replaces the bound derived from
/// the fd limit (`fd_budget`), so a test can fill the table with a handful of connections, or
/// run out of fds before the table (hostile.rs), but never exceeds the configured bound.
pub const MAX_FLOWS_ENV: &str = "RR_TEST_MAX_FLOWS";

/// RR_TEST_MAX_FLOWS (at most `configured`) when it is a positive number, else `by_fds`.
pub fn max_flows(configured: usize, by_fds: usize) -> usize {
    let wanted = std::env::var(MAX_FLOWS_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    match wanted {
        Some(n) if n > 0 => {
            let n = n.min(configured);
            tracing::warn!(max_flows = n, by_fds, "flow table size set (test build)");
            n
        }
        _ => by_fds,
    }
}
