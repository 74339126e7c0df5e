//! Netlink configuration of the sandbox side (owned by the launcher work).
