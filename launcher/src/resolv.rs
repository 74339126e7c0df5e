//! The sandbox's /etc/resolv.conf and the host's: reading the host's file (for the DNS
//! forwarder's upstreams and the generated file's search/options lines).
//! Called by `launch` before the fork. Reads files only; mounts nothing.

/// The resolver configuration file (resolv.conf(5)).
pub const PATH: &str = "/etc/resolv.conf";

/// The host's /etc/resolv.conf, or nothing if it cannot be read (then there are no default
/// upstreams and nothing to keep from it).
pub fn read_host_file() -> String {
    std::fs::read_to_string(PATH).unwrap_or_else(|error| {
        tracing::debug!(%error, path = PATH, "cannot read the host's resolver configuration");
        String::new()
    })
}
