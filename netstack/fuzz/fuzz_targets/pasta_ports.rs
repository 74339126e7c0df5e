//! Fuzz target for rr-pasta's port specs (`-t`, `-u`, `-T`, `-U` SPEC). rr-pasta is a binary
//! crate, so its `ports` module is compiled here from its own source file, unchanged (it uses
//! only std and thiserror). The first byte picks the option's side (even: `-t`/`-u`, odd:
//! `-T`/`-U`; the seeds start with '0' or '1'), the rest is the SPEC. `parse` must never panic; a list names only ports 1-65535, keeps
//! the offset between host and namespace port within each item, and never holds a port an
//! exclusion (`~PORT[-END]`) in the same spec names.
#![no_main]

#[path = "../../../pasta/src/ports.rs"]
#[allow(dead_code)]
mod ports;

use libfuzzer_sys::fuzz_target;
use ports::{PortSpec, PortsError, Side};

/// Longest spec tried: a spec expands ranges port by port (65535 entries each), so longer
/// ones only measure the allocator.
const MAX_SPEC: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let side = if first % 2 == 0 { Side::Host } else { Side::Ns };
    let Ok(spec) = std::str::from_utf8(rest) else {
        return;
    };
    if spec.len() > MAX_SPEC {
        return;
    }
    match ports::parse(spec, side) {
        Ok(PortSpec::None) => assert_eq!(spec, "none"),
        Ok(PortSpec::List(maps)) => {
            assert!(!maps.is_empty() || spec.contains('~'));
            let list = spec.rsplit_once('/').map_or(spec, |(_, l)| l);
            let excluded: Vec<(u16, u16)> = list
                .split(',')
                .filter_map(|item| item.strip_prefix('~'))
                .map(|ex| match ex.split_once('-') {
                    Some((a, b)) => (a.parse().expect("parsed"), b.parse().expect("parsed")),
                    None => {
                        let p = ex.parse().expect("parsed");
                        (p, p)
                    }
                })
                .collect();
            for m in &maps {
                assert!(m.host != 0 && m.guest != 0, "{m:?}");
                assert!(!excluded.iter().any(|&(lo, hi)| (lo..=hi).contains(&m.host)));
            }
        }
        Err(PortsError::Auto | PortsError::All | PortsError::ExcludeOnly) => {}
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
