//! The audit log (`--log-egress FILE`): one JSON line per flow the sandbox opened or was
//! denied, and per open flow a rule change closed:
//! `{"time":1764590000.123,"proto":"tcp","dst":"198.51.100.7","port":443,"name":"pypi.org",
//!   "verdict":"allow","rule":"allow pypi.org:443"}`
//! `time` is Unix time in seconds (milliseconds after the point); `name` is present when a
//! name rule decided; `verdict` is `allow`, `deny` or `closed`; `rule` is the deciding rule as
//! `--print-policy` writes it, or `default allow|deny`.
//! Called by `Enforcer` once per new flow (never per packet). A write error is logged once
//! at warn and the log is then given up: the sandbox's network does not stop for it.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{Proto, Verdict};

/// The audit log's sink.
pub struct Audit {
    out: Option<Box<dyn Write + Send>>,
}

impl fmt::Debug for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("open", &self.out.is_some())
            .finish()
    }
}

/// One line.
#[derive(Serialize)]
struct Line<'a> {
    time: f64,
    proto: &'static str,
    dst: String,
    port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    verdict: &'static str,
    rule: &'a str,
}

impl Audit {
    /// Writes lines to `out` (a file opened by the launcher; each line is one `write`).
    pub fn new(out: Box<dyn Write + Send>) -> Audit {
        Audit { out: Some(out) }
    }

    /// A new flow's line.
    pub fn flow(&mut self, proto: Proto, dst: SocketAddr, v: &Verdict, rule: &str) {
        self.write(proto, dst, v, v.action.name(), rule);
    }

    /// A line for an open flow a rule change closed.
    pub fn closed(&mut self, proto: Proto, dst: SocketAddr, v: &Verdict, rule: &str) {
        self.write(proto, dst, v, "closed", rule);
    }

    fn write(
        &mut self,
        proto: Proto,
        dst: SocketAddr,
        v: &Verdict,
        verdict: &'static str,
        rule: &str,
    ) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0);
        let line = Line {
            time,
            proto: proto.name(),
            dst: dst.ip().to_string(),
            port: dst.port(),
            name: v.name.as_deref(),
            verdict,
            rule,
        };
        let mut bytes = match serde_json::to_vec(&line) {
            Ok(b) => b,
            Err(error) => {
                tracing::warn!(%error, "egress log line not written");
                return;
            }
        };
        bytes.push(b'\n');
        if let Err(error) = out.write_all(&bytes).and_then(|()| out.flush()) {
            tracing::warn!(%error, "cannot write the egress log; giving it up");
            self.out = None;
        }
    }
}
