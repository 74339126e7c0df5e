//! Bytes to typed views and back: parses frames read from the tap and emits the frames we
//! send to it. Decides nothing (no addresses, no policy): `nat` and `event_loop` decide.
//! Built on smoltcp::wire's Packet/Repr types; a malformed frame is an `Err`, never a panic.

pub mod emit;
pub mod frame;
pub mod prohibited;
pub mod vnet;

pub use emit::{EmitError, L2};
pub use frame::{parse, Frame, IpMeta, ParseError, TcpFlags, TcpSegment, L4};
