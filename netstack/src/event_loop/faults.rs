//! Test builds with the `fault-injection` feature: wraps the tap sink and builds the
//! receive-side faults from RR_FAULT_INJECT (see `crate::fault`), and shrinks the flow table
//! to RR_TEST_MAX_FLOWS, so a test fills it with a handful of connections. Part of
//! `event_loop`.
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

/// Variable that shrinks the flow table in test builds (never grows it).
pub const MAX_FLOWS_ENV: &str = "RR_TEST_MAX_FLOWS";

/// `configured`, or RR_TEST_MAX_FLOWS when that is a smaller positive number.
pub fn max_flows(configured: usize) -> usize {
    let wanted = std::env::var(MAX_FLOWS_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    match wanted {
        Some(n) if n > 0 && n < configured => {
            tracing::warn!(max_flows = n, "flow table shrunk (test build)");
            n
        }
        _ => configured,
    }
}
