//! DNS service at the sandbox's DNS address (10.0.2.3:53, fd00::3:53). So far only the wire
//! view of messages (`message`); the forwarder that relays queries to the host's resolvers
//! builds on it.

pub mod message;
