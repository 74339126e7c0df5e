//! slirp4netns's API socket (`--api-socket PATH`): add, list and remove port forwards at run
//! time by JSON over a UNIX socket, byte-compatible with what rootlesskit and podman send,
//! plus IPv6 forwards.
//! `protocol` turns request bytes into a `Request` and a `Reply` into bytes (pure);
//! `server` owns the socket and its thread and calls `ForwardControl`. Neither touches the
//! data path: the forwards themselves live in the event loop behind `ForwardControl`.

pub mod protocol;
