//! Fuzz target for `--cidr` and `--cidr6` (`config::Addressing::with_cidr_v4`/`with_cidr_v6`,
//! as the launcher, rr-slirp4netns and rr-pasta take them). Neither may panic; a network that
//! is accepted holds the gateway, DNS and sandbox addresses, all distinct and each one its
//! own kind (`is_gateway`, `is_dns`), and the IPv4 broadcast address is inside it too.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use netstack::config::Addressing;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = Addressing::default().with_cidr_v4(text) {
        let (gw, dns, me) = (a.gateway_v4(), a.dns_v4(), a.sandbox_v4());
        assert!(gw != dns && dns != me && me != gw, "{text:?}");
        for ip in [gw, dns, me, a.broadcast_v4()] {
            assert!(a.contains(IpAddr::V4(ip)), "{ip} outside {text:?}");
        }
        assert!(a.is_gateway(IpAddr::V4(gw)) && !a.is_gateway(IpAddr::V4(me)));
        assert!(a.is_dns(IpAddr::V4(dns)) && !a.is_dns(IpAddr::V4(gw)));
        assert!((1..=25).contains(&a.prefix_v4()));
        assert_eq!(a.sandbox_for(IpAddr::V4(gw)), IpAddr::V4(me));
    }
    if let Ok(a) = Addressing::default().with_cidr_v6(text) {
        let (gw, dns, me) = (a.gateway_v6(), a.dns_v6(), a.sandbox_v6());
        assert!(gw != dns && dns != me && me != gw, "{text:?}");
        for ip in [gw, dns, me] {
            assert!(a.contains(IpAddr::V6(ip)), "{ip} outside {text:?}");
        }
        assert!(a.is_gateway(IpAddr::V6(gw)) && a.is_dns(IpAddr::V6(dns)));
        assert_eq!(a.sandbox_for(IpAddr::V6(gw)), IpAddr::V6(me));
    }
});
