//! A parent <-> child channel: a SOCK_SEQPACKET socketpair carrying one-byte tagged messages,
//! optionally with fds (SCM_RIGHTS). Used by the launcher's `handshake` (for `launch` and
//! `child`), and by the drop-ins to bring a tap fd out of a sandbox's namespaces.
//! Seqpacket keeps message boundaries, so a tag never merges with the next one; a read of zero
//! bytes means the other side closed (died). Messages are tiny; no buffering here.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

/// Most fds one message carries.
const MAX_FDS: usize = 4;
/// Largest payload after the tag.
const MAX_PAYLOAD: usize = 64;

/// One end of the channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

/// A received message.
#[derive(Debug)]
pub struct Msg {
    /// What it is (each user defines its tags).
    pub tag: u8,
    /// Fds that came with it (close-on-exec).
    pub fds: Vec<OwnedFd>,
}

impl Channel {
    /// A connected pair, both close-on-exec.
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel(a), Channel(b)))
    }

    /// Sends `tag` + `data` with `fds`.
    pub fn send(&self, tag: u8, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let tagb = [tag];
        let iov = [IoSlice::new(&tagb), IoSlice::new(data)];
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
        loop {
            match sendmsg::<()>(self.0.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Receives one message; `None` when the other end is closed.
    pub fn recv(&self) -> io::Result<Option<Msg>> {
        let mut buf = [0u8; 1 + MAX_PAYLOAD];
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let (n, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => {
                    let mut fds = Vec::new();
                    for c in m.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            for fd in raw {
                                // SAFETY: SCM_RIGHTS just installed `fd` in our table; nothing
                                // else owns it, so this OwnedFd is its only owner.
                                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                            }
                        }
                    }
                    break (m.bytes, fds);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let tag = buf[0];
        Ok(Some(Msg { tag, fds }))
    }
}
