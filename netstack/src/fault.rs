//! Test-only fault injection on the tap path (cargo feature `fault-injection`): drops,
//! duplicates and reorders frames in both directions, so integration tests can exercise
//! retransmission and reassembly without netem (which this kernel lacks).
//! Configured from `RR_FAULT_INJECT="drop=P,dup=P,reorder=P,seed=N"` (P in percent) when the
//! stack starts. Never compiled into release builds of the binaries unless asked for.

use std::io;

use crate::egress::FrameSink;

/// Variable that configures the faults.
pub const ENV: &str = "RR_FAULT_INJECT";

/// Probabilities (percent) of each fault, and the PRNG seed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultSpec {
    drop: u32,
    dup: u32,
    reorder: u32,
    seed: u32,
}

/// A malformed `RR_FAULT_INJECT` value.
#[derive(Debug, thiserror::Error)]
#[error("{ENV}: bad item {item:?} (expected drop=P,dup=P,reorder=P,seed=N with P in 0..=100)")]
pub struct FaultSpecError {
    item: String,
}

impl FaultSpec {
    /// Reads the spec from the environment; `Ok(None)` when unset.
    pub fn from_env() -> Result<Option<FaultSpec>, FaultSpecError> {
        match std::env::var(ENV) {
            Ok(v) => v.parse().map(Some),
            Err(_) => Ok(None),
        }
    }
}

impl std::str::FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(s: &str) -> Result<FaultSpec, FaultSpecError> {
        let mut spec = FaultSpec {
            seed: 1,
            ..FaultSpec::default()
        };
        for item in s.split(',').filter(|i| !i.is_empty()) {
            let bad = || FaultSpecError { item: item.into() };
            let (k, v) = item.split_once('=').ok_or_else(bad)?;
            let v: u32 = v.parse().map_err(|_| bad())?;
            match k {
                "drop" if v <= 100 => spec.drop = v,
                "dup" if v <= 100 => spec.dup = v,
                "reorder" if v <= 100 => spec.reorder = v,
                "seed" => spec.seed = v.max(1),
                _ => return Err(bad()),
            }
        }
        Ok(spec)
    }
}

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Pass,
    Drop,
    Dup,
    Hold,
}

/// Decides each frame's fate and holds at most one frame back for reordering.
#[derive(Debug)]
pub struct Faults {
    spec: FaultSpec,
    rng: u32,
    held: Vec<u8>,
    holding: bool,
}

impl Faults {
    /// Faults per `spec`, holding frames of up to `max_frame` bytes.
    pub fn new(spec: FaultSpec, max_frame: usize) -> Faults {
        Faults {
            spec,
            rng: spec.seed,
            held: Vec::with_capacity(max_frame),
            holding: false,
        }
    }

    fn roll(&mut self) -> u32 {
        // xorshift32: reproducible for a seed, good enough to spread faults.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        self.rng % 100
    }

    fn fate(&mut self) -> Fate {
        let r = self.roll();
        let s = self.spec;
        if r < s.drop {
            Fate::Drop
        } else if r < s.drop + s.dup {
            Fate::Dup
        } else if r < s.drop + s.dup + s.reorder && !self.holding {
            Fate::Hold
        } else {
            Fate::Pass
        }
    }

    /// Releases a held frame (end of a batch: reordering stays within a batch, as on a
    /// real link, instead of turning into a loss when traffic pauses).
    pub fn release(&mut self, mut deliver: impl FnMut(&[u8])) {
        if std::mem::take(&mut self.holding) {
            deliver(&self.held);
        }
    }

    /// Passes `frame` through the faults; `deliver` sees what survives, in the new order.
    pub fn apply(&mut self, frame: &[u8], mut deliver: impl FnMut(&[u8])) {
        match self.fate() {
            Fate::Drop => return,
            Fate::Dup => {
                deliver(frame);
                deliver(frame);
            }
            Fate::Hold => {
                self.held.clear();
                self.held.extend_from_slice(frame);
                self.holding = true;
                return;
            }
            Fate::Pass => deliver(frame),
        }
        if std::mem::take(&mut self.holding) {
            deliver(&self.held);
        }
    }
}

/// A `FrameSink` that applies faults before the real sink.
pub struct FaultySink {
    inner: Box<dyn FrameSink>,
    faults: Faults,
}

impl FaultySink {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn FrameSink>, faults: Faults) -> FaultySink {
        FaultySink { inner, faults }
    }
}

impl FrameSink for FaultySink {
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let inner = &mut self.inner;
        self.faults.apply(frame, |f| {
            let _ = inner.send_frame(f);
        });
        Ok(())
    }

    fn flush(&mut self) {
        let inner = &mut self.inner;
        self.faults.release(|f| {
            let _ = inner.send_frame(f);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_and_rejects_bad_items() {
        let s: FaultSpec = "drop=5,dup=2,reorder=3,seed=9".parse().unwrap();
        assert_eq!((s.drop, s.dup, s.reorder, s.seed), (5, 2, 3, 9));
        assert!("drop=101".parse::<FaultSpec>().is_err());
        assert!("loss=5".parse::<FaultSpec>().is_err());
    }

    #[test]
    fn reorder_swaps_neighbours_and_loses_nothing() {
        let spec: FaultSpec = "reorder=50,seed=3".parse().unwrap();
        let mut f = Faults::new(spec, 16);
        let mut out = Vec::new();
        for i in 0u8..100 {
            f.apply(&[i], |fr| out.push(fr[0]));
        }
        f.apply(&[100], |fr| out.push(fr[0]));
        let mut sorted = out.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert!(out.len() >= 100, "at most the last held frame is pending");
        assert_ne!(out, sorted, "some frames were reordered");
    }

    #[test]
    fn drop_and_dup_change_counts() {
        let spec: FaultSpec = "drop=20,dup=20,seed=5".parse().unwrap();
        let mut f = Faults::new(spec, 16);
        let mut n = 0;
        let mut seen = std::collections::HashMap::new();
        for i in 0u32..1000 {
            f.apply(&i.to_be_bytes(), |fr| {
                n += 1;
                *seen.entry(fr.to_vec()).or_insert(0) += 1;
            });
        }
        assert!(seen.len() < 1000, "some frames dropped");
        assert!(seen.values().any(|&c| c == 2), "some frames duplicated");
        assert!(n > 900 && n < 1100, "{n}");
    }
}
