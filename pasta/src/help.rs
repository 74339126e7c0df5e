//! rr-pasta's `--help` and `--version` texts. `--version` goes to stdout whether or not it is
//! a terminal (pasta prints nothing on a pipe, so `podman info` shows an empty version for it);
//! its first line is "pasta VERSION", the shape podman shows and rootlesskit probes.
//! Called by `main`; text only.

/// The `-h/--help` text.
pub fn usage(prog: &str) -> String {
    format!(
        "Usage: {prog} [OPTION]... --config-net PID
       {prog} [OPTION]... --config-net --netns [PATH|NAME]

Connect an existing network namespace to rootless-run's userspace network stack,
with pasta's command line (as podman 5/6 and rootlesskit run it).

  -d, --debug              log at debug level (--trace: trace level)
  -q, --quiet              no informational messages
  -f, --foreground         stay in the foreground; default: detach once ready
  -e, --stderr             log to stderr (with -f; detached, output goes to /dev/null)
  -h, --help               show this help and exit
      --version            show version and exit
  -I, --ns-ifname NAME     interface name in the namespace; default: the host's template's
  -P, --pid FILE           write the background process's PID to FILE
  -m, --mtu MTU            MTU in the namespace (68-65520); default: 65520
  -a, --address ADDR       IPv4 or IPv6 address (once per family); default: the host's
  -n, --netmask MASK       IPv4 prefix, bits or dot-decimal; default: the host's, else 24
  -g, --gateway ADDR       gateway (once per family); default: the host's
  -i, --interface NAME     host interface to copy from; default: first default route's
  -o, --outbound ADDR      source address of outbound sockets (once per family)
  -D, --dns ADDR           DNS address (nothing is advertised with --config-net)
      --dns-forward ADDR   answer DNS (UDP and TCP) at ADDR (once per family)
      --dns-host ADDR      where forwarded queries go; default: resolv.conf's first
  -t, --tcp-ports SPEC     TCP ports to forward to the namespace; default: none
  -u, --udp-ports SPEC     UDP ports to forward to the namespace; default: none
                           SPEC: none, or [ADDR][%IF/]PORT[-END][:PORT[-END]][,...] and
                           ~ exclusions; %IF binds to that interface; all, auto: refused
  -T, --tcp-ns SPEC        TCP ports on the namespace's loopback forwarded to the host's
                           loopback; SPEC: none or PORT[-END][:PORT[-END]][,...], ~; default: none
  -U, --udp-ns SPEC        as -T, for UDP; default: none
  -4, --ipv4-only          configure IPv4 only
  -6, --ipv6-only          configure IPv6 only
      --map-gw             the gateway address reaches the host's loopback (the default)
      --no-map-gw          it reaches the real gateway
      --map-host-loopback ADDR  ADDR reaches the host's loopback
      --map-guest-addr ADDR     ADDR reaches the host's own address
      --userns NSPATH      user namespace to join; default: the netns's owner
      --netns PATH|NAME    network namespace to serve (NAME: /run/netns/NAME)
      --no-netns-quit      keep serving after the --netns file is removed
      --config-net         configure the namespace (required)
      --ns-mac-addr ADDR   MAC address of the interface in the namespace
      --no-dhcp, --no-dhcpv6, --no-ndp, --no-ra  accepted: none of them is served

Other pasta options are refused by name; see docs/pasta-compat.md.
Exit status: 0 once the namespace is configured and served (or after -f ends), 1 on error.
"
    )
}

/// The `--version` text.
pub fn version() -> String {
    format!(
        "pasta rr-pasta-{}
rootless-run's network stack behind pasta's command line.
",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_first_line_is_pasta_and_a_version_word() {
        let v = super::version();
        let first = v.lines().next().unwrap();
        let mut words = first.split(' ');
        assert_eq!(words.next(), Some("pasta"));
        assert!(words.next().unwrap().starts_with("rr-pasta-0."));
    }
}
