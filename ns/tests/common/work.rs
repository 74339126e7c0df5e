//! What confined children check with: /proc/self/status read across confinement, and TCP
//! and UDP echo on loopback as the stack does it.
//! Called by the children of `confine_seccomp` and `confine_sandbox`; confines nothing itself.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};

use super::{Check, STEP_TIMEOUT};

/// /proc/self/status, opened before confinement (afterwards there is no /proc to open) and
/// read once, from its start, afterwards: a single read needs no lseek, which seccomp refuses.
pub struct Status(File);

impl Status {
    pub fn open() -> Result<Status, String> {
        File::open("/proc/self/status")
            .map(Status)
            .map_err(|e| format!("open /proc/self/status: {e}"))
    }

    pub fn read(mut self) -> Result<StatusText, String> {
        let mut text = String::new();
        self.0
            .read_to_string(&mut text)
            .map_err(|e| format!("read status: {e}"))?;
        Ok(StatusText(text))
    }
}

/// The text of /proc/self/status at one moment.
pub struct StatusText(String);

impl StatusText {
    pub fn field(&self, name: &str) -> Result<String, String> {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| format!("no {name} in /proc/self/status"))
    }
}

/// Connect, accept, data both ways, half-close, and the socket calls the stack makes on flows.
pub fn tcp_echo(listener: &TcpListener) -> Check {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    let mut client =
        TcpStream::connect_timeout(&addr, STEP_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let (mut server, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mine = client
        .local_addr()
        .map_err(|e| format!("getsockname: {e}"))?;
    if peer != mine {
        return Err(format!("accepted {peer}, connected from {mine}"));
    }
    for s in [&client, &server] {
        s.set_read_timeout(Some(STEP_TIMEOUT))
            .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
        s.set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    }
    client
        .write_all(b"ping")
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 4];
    server
        .read_exact(&mut buf)
        .map_err(|e| format!("read: {e}"))?;
    server
        .write_all(b"pong")
        .map_err(|e| format!("write back: {e}"))?;
    client
        .read_exact(&mut buf)
        .map_err(|e| format!("read back: {e}"))?;
    if buf != *b"pong" {
        return Err(format!("echo carried {buf:?}"));
    }
    client
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    let n = server
        .read(&mut buf)
        .map_err(|e| format!("read FIN: {e}"))?;
    if n != 0 {
        return Err(format!("{n} bytes after the FIN"));
    }
    let copy = server.try_clone().map_err(|e| format!("dup: {e}"))?;
    copy.set_nonblocking(true)
        .map_err(|e| format!("FIONBIO: {e}"))?;
    if let Some(e) = copy.take_error().map_err(|e| format!("SO_ERROR: {e}"))? {
        return Err(format!("socket error {e}"));
    }
    Ok(())
}

pub fn udp_echo() -> Check {
    let a = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp bind: {e}"))?;
    let b = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp bind: {e}"))?;
    b.set_read_timeout(Some(STEP_TIMEOUT))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    let to = b.local_addr().map_err(|e| format!("local_addr: {e}"))?;
    a.send_to(b"datagram", to)
        .map_err(|e| format!("send_to: {e}"))?;
    let mut buf = [0u8; 16];
    let (n, from) = b
        .recv_from(&mut buf)
        .map_err(|e| format!("recv_from: {e}"))?;
    let sent_from = a.local_addr().map_err(|e| format!("local_addr: {e}"))?;
    if buf.get(..n) != Some(b"datagram".as_slice()) || from != sent_from {
        return Err(format!("got {:?} from {from}", buf.get(..n)));
    }
    Ok(())
}
