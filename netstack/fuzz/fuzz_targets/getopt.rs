//! Fuzz target for rr-getopt, the getopt_long(3) work-alike that reads rr-slirp4netns's and
//! rr-pasta's command lines: the input is argv (words separated by NUL bytes), parsed against
//! a table shaped like slirp4netns's (flags, required values, long names that prefix each
//! other), in GNU and in POSIXLY_CORRECT order. It must never panic nor loop; a flag never
//! carries a value and a required value is always there; an ambiguous prefix names at least
//! two options, each starting with it; the operands are words of argv, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rr_getopt::{Getopt, GetoptError, HasArg, OptSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id {
    Configure,
    Mtu,
    Six,
    Outbound,
    Outbound6,
    DisableHostLoopback,
    DisableDns,
    Help,
}

const SPECS: &[OptSpec<Id>] = &[
    OptSpec::long(Some('c'), "configure", HasArg::No, Id::Configure),
    OptSpec::long(Some('m'), "mtu", HasArg::Required, Id::Mtu),
    OptSpec::long(Some('6'), "enable-ipv6", HasArg::No, Id::Six),
    OptSpec::long(None, "outbound-addr", HasArg::Required, Id::Outbound),
    OptSpec::long(None, "outbound-addr6", HasArg::Required, Id::Outbound6),
    OptSpec::long(
        None,
        "disable-host-loopback",
        HasArg::No,
        Id::DisableHostLoopback,
    ),
    OptSpec::long(None, "disable-dns", HasArg::No, Id::DisableDns),
    OptSpec::long(Some('h'), "help", HasArg::No, Id::Help),
];

fn takes_value(id: Id) -> bool {
    SPECS
        .iter()
        .any(|s| s.id == id && s.has_arg == HasArg::Required)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<String> = text.split('\0').map(str::to_owned).collect();
    for posixly_correct in [false, true] {
        let mut g = Getopt::new(SPECS, &args, posixly_correct);
        // Each step consumes at least one letter or word.
        let bound = text.len() + args.len() + 1;
        let mut steps = 0;
        for item in g.by_ref() {
            steps += 1;
            assert!(steps <= bound, "no progress");
            match item {
                Ok((id, value)) => assert_eq!(value.is_some(), takes_value(id), "{id:?}"),
                Err(GetoptError::Ambiguous { given, candidates }) => {
                    assert!(candidates.len() >= 2);
                    let name = given.split_once('=').map_or(given.as_str(), |(n, _)| n);
                    assert!(candidates.iter().all(|c| c.starts_with(name)));
                    break;
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    break;
                }
            }
        }
        let mut words = args.iter().map(String::as_str);
        for operand in g.operands() {
            assert!(
                words.any(|w| w == *operand),
                "operand {operand:?} out of order"
            );
        }
    }
});
