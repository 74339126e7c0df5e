//! Fuzz target for rr-pasta's reading of the host's routes (`pasta/src/hostnet.rs`): the text
//! of /proc/net/route and /proc/net/ipv6_route (`routes_v4`, `routes_v6`), and the choice of
//! the template interface from them (`template`), which decides the addresses and routes
//! pasta copies into the namespace. rr-pasta is a binary crate, so the file is compiled here
//! as it is (it uses std, nix and thiserror). The input is one text given to both parsers;
//! the host's addresses are made from the routes read (every other gateway as an address of
//! its interface). Checks: nothing panics; a route has its parser's family, a prefix that fits
//! it, an interface name that is one word, and (IPv6) a gateway; the template is the first
//! default route's interface with exactly its routes, defaults first and by metric, and its
//! addresses of the family only; a forced interface without such an address gives none.
#![no_main]

#[path = "../../../pasta/src/hostnet.rs"]
#[allow(dead_code)]
mod hostnet;

use hostnet::{routes_v4, routes_v6, template, HostAddr, HostRoute};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (v6, routes) in [(false, routes_v4(text)), (true, routes_v6(text))] {
        for (ifname, r) in &routes {
            check_route(ifname, r, v6);
        }
        let addrs: Vec<(String, HostAddr)> = routes
            .iter()
            .step_by(2)
            .map(|(n, r)| {
                let addr = HostAddr {
                    addr: r.gateway,
                    prefix: r.prefix,
                };
                (n.clone(), addr)
            })
            .collect();
        check_template(&routes, &addrs, v6);
    }
});

fn check_route(ifname: &str, r: &HostRoute, v6: bool) {
    assert!(!ifname.is_empty() && !ifname.contains(char::is_whitespace));
    assert_eq!((r.dst.is_ipv6(), r.gateway.is_ipv6()), (v6, v6), "{r:?}");
    let max = if v6 { 128 } else { 32 };
    assert!(r.prefix <= max, "a /{} route of its family: {r:?}", r.prefix);
    if v6 {
        assert!(!r.gateway.is_unspecified(), "{r:?}");
    }
}

fn check_template(routes: &[(String, HostRoute)], addrs: &[(String, HostAddr)], v6: bool) {
    let picked = template(routes, addrs, None, v6);
    match routes.iter().find(|(_, r)| r.prefix == 0) {
        None => assert!(picked.is_none()),
        Some((name, _)) => {
            let t = picked.expect("a default route picks its interface");
            assert_eq!(&t.ifname, name);
            assert!(t.addrs.iter().all(|a| a.addr.is_ipv6() == v6));
            let on_it = routes.iter().filter(|(n, _)| *n == t.ifname).count();
            assert_eq!(t.routes.len(), on_it);
            let order = |r: &HostRoute| (r.prefix != 0, r.metric);
            assert!(t.routes.windows(2).all(|w| order(&w[0]) <= order(&w[1])));
            assert!(t.default_gateway().is_some());
        }
    }
    if let Some((name, _)) = routes.first() {
        let forced = template(routes, addrs, Some(name), v6);
        let has_addr = addrs.iter().any(|(n, a)| n == name && a.addr.is_ipv6() == v6);
        assert_eq!(forced.is_some(), has_addr);
    }
}
