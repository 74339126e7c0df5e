//! The API socket server: a UNIX stream socket speaking slirp4netns's JSON protocol
//! (`protocol`), served on a thread of its own named "api", which carries requests to the
//! network stack through `ForwardControl` (and the egress commands through `EgressControl`).
//! Called once by the binaries (`--api-socket PATH`); the returned `ApiSocket` guard stops the
//! thread and removes the socket file when dropped. Never touches the data path. A confining
//! caller splits `serve` into `bind` (needs the filesystem), `BoundApi::arm` (makes the stop
//! pipe) and `ArmedApi::start` (starts the thread; no new fd), confining between each.
//!
//! Theory of operation. `serve` has `socket_file` check the path, replace a stale socket,
//! bind, set mode 0600 and listen, on the caller's thread, so errors return and the socket
//! accepts connections once `serve` has returned. The thread polls the listener
//! together with the read end of a pipe whose write end the guard holds: dropping the guard
//! closes it, poll wakes with POLLHUP, and the thread returns. One connection is served at a
//! time, one request each, like slirp4netns:
//! ```text
//! accept -> read until: a complete JSON value | EOF | MAX_REQUEST bytes | REQUEST_TIMEOUT
//!        -> parse -> ForwardControl -> reply (compact JSON, no newline)
//!        -> drain unread input -> shutdown(RDWR), close
//! ```
//! Clients that half-close (podman, rootlesskit) are answered at EOF; clients that never do
//! (netcat) are answered as soon as their JSON is complete; a silent client is answered with
//! "cannot parse JSON" when `REQUEST_TIMEOUT` expires, so it delays the next one by at most
//! that. Writing the reply has its own `REQUEST_TIMEOUT`. Every wait also watches the stop
//! pipe, so dropping the guard never waits on a client.
//! Limits: one request in flight; `socket_file::BACKLOG` clients may queue behind it; a request is at most
//! `MAX_REQUEST` bytes.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, MsgFlags};

use super::protocol::{self, Reply, Request, RequestError, MAX_REQUEST};
use super::socket_file::{listen, SocketFile};
use super::ApiError;
use crate::config::Addressing;
use crate::forward::{ForwardControl, ForwardError};
use crate::policy::{EgressControl, EgressRequest};

/// How long a client has to send its request, and then to take the reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Most bytes read and dropped after a reply (`drain`): a client's excess, not a flood.
const DRAIN_LIMIT: usize = 64 * 1024;
/// Pause after a failing accept (e.g. EMFILE), so a listener that stays readable does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The running API socket. Dropping it stops the "api" thread (without waiting for a client)
/// and removes the socket file, unless something else has replaced it meanwhile.
#[derive(Debug)]
pub struct ApiSocket {
    // Field order matters: `file` is unlinked after the thread has been joined in `drop`.
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
    file: SocketFile,
}

impl ApiSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }
}

impl Drop for ApiSocket {
    fn drop(&mut self) {
        // Closing the write end wakes the thread's poll with POLLHUP.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(path = %self.file.path.display(), "API thread panicked");
            }
        }
        tracing::info!(path = %self.file.path.display(), "API socket closed");
    }
}

/// Listens on `path` and serves slirp4netns's API there on a new thread named "api", carrying
/// requests to `control`; `addr` gives the sandbox addresses that forwards lead to. The socket
/// accepts connections once this returns. Drop the returned guard to stop.
pub fn serve<C>(path: &Path, control: C, addr: Addressing) -> Result<ApiSocket, ApiError>
where
    C: ForwardControl + EgressControl + Send + 'static,
{
    bind(path)?.serve(control, addr)
}

/// A listening API socket whose thread has not started: `bind` then `BoundApi::serve`, for a
/// caller that must confine itself in between (the socket's file lives on the host's
/// filesystem, and a sandbox needs the process single-threaded). Connections wait in the
/// backlog until it is served; dropping it removes the file.
#[derive(Debug)]
pub struct BoundApi {
    listener: UnixListener,
    file: SocketFile,
}

/// Binds and listens on `path` (mode 0600, a stale socket file replaced), starting no thread.
pub fn bind(path: &Path) -> Result<BoundApi, ApiError> {
    let (listener, file) = listen(path)?;
    Ok(BoundApi { listener, file })
}

impl AsFd for BoundApi {
    /// The listening socket (a process that confines itself keeps this fd open).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

impl BoundApi {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Starts serving, as `serve` does.
    pub fn serve<C>(self, control: C, addr: Addressing) -> Result<ApiSocket, ApiError>
    where
        C: ForwardControl + EgressControl + Send + 'static,
    {
        start(self, control, addr, Options::default())
    }
}

/// Knobs that only tests turn.
#[derive(Debug)]
pub(crate) struct Options {
    /// How long a client has to send its request and to take the reply.
    pub timeout: Duration,
    /// Told of every accepted connection, so a test knows the thread is serving it.
    #[cfg(test)]
    pub accepted: Option<std::sync::mpsc::Sender<()>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: REQUEST_TIMEOUT,
            #[cfg(test)]
            accepted: None,
        }
    }
}

/// `serve` with `Options` (tests).
#[cfg(test)]
pub(crate) fn serve_with<C>(
    path: &Path,
    control: C,
    addr: Addressing,
    options: Options,
) -> Result<ApiSocket, ApiError>
where
    C: ForwardControl + EgressControl + Send + 'static,
{
    start(bind(path)?, control, addr, options)
}

/// Starts the "api" thread on a bound socket.
fn start<C>(
    bound: BoundApi,
    control: C,
    addr: Addressing,
    options: Options,
) -> Result<ApiSocket, ApiError>
where
    C: ForwardControl + EgressControl + Send + 'static,
{
    arm(bound, control, addr, options)?.start()
}

/// A bound API socket with everything its thread needs made (the stop pipe, the server's
/// state) but the thread not started: for a caller that installs a seccomp filter, which
/// forbids creating pipes, between the two, so that the thread never runs unconfined
/// (`rootless-run`'s stack process). Dropping it removes the file.
pub struct ArmedApi<C> {
    server: Server<C>,
    stop: OwnedFd,
    file: SocketFile,
}

impl BoundApi {
    /// Makes the stop pipe and the server's state; `ArmedApi::start` then starts the thread.
    pub fn arm<C>(self, control: C, addr: Addressing) -> Result<ArmedApi<C>, ApiError>
    where
        C: ForwardControl + EgressControl + Send + 'static,
    {
        arm(self, control, addr, Options::default())
    }
}

fn arm<C>(
    bound: BoundApi,
    control: C,
    addr: Addressing,
    options: Options,
) -> Result<ArmedApi<C>, ApiError>
where
    C: ForwardControl + EgressControl + Send + 'static,
{
    let BoundApi { listener, file } = bound;
    let (stop_rx, stop_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ApiError::Pipe {
        path: file.path.clone(),
        source: e.into(),
    })?;
    let server = Server {
        listener,
        stop: stop_rx,
        control,
        addr,
        options,
    };
    Ok(ArmedApi {
        server,
        stop: stop_tx,
        file,
    })
}

impl<C> ArmedApi<C>
where
    C: ForwardControl + EgressControl + Send + 'static,
{
    /// Starts the "api" thread, as `serve` does.
    pub fn start(self) -> Result<ApiSocket, ApiError> {
        let ArmedApi { server, stop, file } = self;
        let thread = std::thread::Builder::new()
            .name("api".into())
            .spawn(move || server.run())
            .map_err(|source| ApiError::Spawn {
                path: file.path.clone(),
                source,
            })?;
        tracing::info!(path = %file.path.display(), "API socket listening");
        Ok(ApiSocket {
            stop: Some(stop),
            thread: Some(thread),
            file,
        })
    }
}

/// What a wait ended with.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    /// The fd is ready (or has an error or hang-up to report).
    Ready,
    /// The guard was dropped.
    Stop,
    /// The deadline passed.
    Timeout,
}

/// The thread's state: everything it owns.
struct Server<C> {
    listener: UnixListener,
    stop: OwnedFd,
    control: C,
    addr: Addressing,
    options: Options,
}

impl<C: ForwardControl + EgressControl> Server<C> {
    fn run(self) {
        loop {
            match self.wait(Some((self.listener.as_fd(), PollFlags::POLLIN)), None) {
                Ok(Wake::Ready) => self.accept_one(),
                Ok(Wake::Stop) => break,
                Ok(Wake::Timeout) => {}
                Err(error) => {
                    tracing::error!(%error, "API socket poll failed; no longer serving it");
                    break;
                }
            }
        }
        tracing::debug!("API thread stopped");
    }

    fn accept_one(&self) {
        match self.listener.accept() {
            Ok((conn, _)) => {
                #[cfg(test)]
                if let Some(accepted) = &self.options.accepted {
                    let _ = accepted.send(());
                }
                self.serve_one(&conn)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot accept an API connection");
                // A stop request or poll failure shows up again in `run`'s next wait.
                let _ = self.wait(None, Some(Instant::now() + ACCEPT_BACKOFF));
            }
        }
    }

    /// Reads one request from `conn`, carries it out and answers; the caller closes `conn`.
    fn serve_one(&self, conn: &UnixStream) {
        if let Err(error) = conn.set_nonblocking(true) {
            tracing::warn!(%error, "cannot make an API connection non-blocking");
            return;
        }
        let mut buf = [0u8; MAX_REQUEST];
        let Some(len) = self.read_request(conn, &mut buf) else {
            return;
        };
        let request = buf.get(..len).unwrap_or_default();
        let reply = match protocol::parse(request, &self.addr) {
            Ok(request) => self.execute(request),
            Err(error) => {
                tracing::debug!(%error, "API request refused");
                Reply::Failed(error)
            }
        };
        match self.send_reply(conn, &reply.to_json()) {
            Ok(Wake::Ready) => {}
            Ok(_) => return,
            Err(error) => tracing::debug!(%error, "cannot send the API reply"),
        }
        drain(conn);
        if let Err(error) = conn.shutdown(std::net::Shutdown::Both) {
            tracing::debug!(%error, "cannot shut down an API connection");
        }
    }

    /// Reads until the request is complete, EOF, a full buffer or the deadline, and returns
    /// how many bytes it holds; `None` when there is no one to answer (stop, reset).
    fn read_request(&self, conn: &UnixStream, buf: &mut [u8]) -> Option<usize> {
        let deadline = Instant::now() + self.options.timeout;
        let mut len = 0;
        while len < buf.len() {
            match self.wait(Some((conn.as_fd(), PollFlags::POLLIN)), Some(deadline)) {
                Ok(Wake::Ready) => {}
                Ok(Wake::Stop) => return None,
                Ok(Wake::Timeout) => {
                    tracing::debug!(len, "API client sent no complete request in time");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot wait on an API connection");
                    return None;
                }
            }
            let rest = buf.get_mut(len..).unwrap_or_default();
            match (&mut &*conn).read(rest) {
                Ok(0) => break,
                Ok(n) => {
                    len += n;
                    if protocol::is_complete(buf.get(..len).unwrap_or_default()) {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(error) => {
                    tracing::debug!(%error, "cannot read an API request");
                    return None;
                }
            }
        }
        Some(len)
    }

    fn execute(&self, request: Request) -> Reply {
        tracing::debug!(?request, "API request");
        match request {
            Request::AddHostfwd(spec) => match self.control.add(spec) {
                Ok(id) => {
                    tracing::debug!(id, ?spec, "port forward added");
                    Reply::Added(id)
                }
                Err(error) => {
                    tracing::warn!(error = %chain(&error), ?spec, "cannot add a port forward");
                    Reply::Failed(RequestError::AddFailed)
                }
            },
            Request::ListHostfwd => match self.control.list() {
                Ok(entries) => Reply::Entries(entries),
                Err(error) => {
                    tracing::warn!(error = %chain(&error), "cannot list port forwards");
                    Reply::Failed(RequestError::ListFailed)
                }
            },
            Request::ListEgress => self.egress("list_egress", EgressRequest::List),
            Request::AddEgressRule { rule, index } => {
                self.egress("add_egress_rule", EgressRequest::Add { rule, index })
            }
            Request::RemoveEgressRule(id) => {
                self.egress("remove_egress_rule", EgressRequest::Remove(id))
            }
            Request::RemoveHostfwd(id) => match self.control.remove(id) {
                Ok(()) => Reply::Removed,
                Err(ForwardError::UnknownId(_)) => Reply::Failed(RequestError::BadRemoveId),
                Err(error) => {
                    tracing::warn!(error = %chain(&error), id, "cannot remove a port forward");
                    Reply::Failed(RequestError::RemoveFailed)
                }
            },
        }
    }

    /// Carries an egress request to the stack.
    fn egress(&self, execute: &'static str, req: EgressRequest) -> Reply {
        match self.control.egress(req) {
            Ok(reply) => Reply::Egress(reply),
            Err(error) => {
                tracing::debug!(%error, execute, "egress request failed");
                Reply::Failed(RequestError::EgressFailed(execute, error))
            }
        }
    }

    /// Sends all of `reply` before the deadline. `Ready` once sent; `Stop` or `Timeout` if
    /// the guard was dropped or the client would not take it.
    fn send_reply(&self, conn: &UnixStream, reply: &[u8]) -> io::Result<Wake> {
        let deadline = Instant::now() + self.options.timeout;
        let mut rest = reply;
        while !rest.is_empty() {
            // MSG_NOSIGNAL: a client gone away must not raise SIGPIPE in a host process that
            // did not ignore it.
            match socket::send(
                conn.as_raw_fd(),
                rest,
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                Err(Errno::EAGAIN) => {
                    match self.wait(Some((conn.as_fd(), PollFlags::POLLOUT)), Some(deadline))? {
                        Wake::Ready => {}
                        other => return Ok(other),
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Wake::Ready)
    }

    /// Waits until `fd` has `events`, the guard is dropped, or `deadline` passes (`None`:
    /// never). The stop pipe is checked first, so a dropped guard always wins.
    fn wait(
        &self,
        fd: Option<(BorrowedFd<'_>, PollFlags)>,
        deadline: Option<Instant>,
    ) -> io::Result<Wake> {
        loop {
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(Wake::Timeout);
                    }
                    // Rounded up: a sub-millisecond remainder must not become a busy loop.
                    PollTimeout::try_from(left.as_micros().div_ceil(1000))
                        .unwrap_or(PollTimeout::MAX)
                }
            };
            let stop = PollFd::new(self.stop.as_fd(), PollFlags::POLLIN);
            let mut fds = match fd {
                Some((fd, events)) => vec![stop, PollFd::new(fd, events)],
                None => vec![stop],
            };
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let fired = |p: &PollFd<'_>| p.revents().is_some_and(|r| !r.is_empty());
            match fds.as_slice() {
                [stop, ..] if fired(stop) => return Ok(Wake::Stop),
                [_, fd] if fired(fd) => return Ok(Wake::Ready),
                _ => {}
            }
        }
    }
}

/// Reads and drops what the client sent beyond its request (the rest of a too-large one, a
/// newline after the JSON), at most `DRAIN_LIMIT` bytes and never waiting: closing a UNIX
/// socket with unread data makes the client's read end in ECONNRESET instead of EOF, and
/// clients that read to EOF (rootlesskit) would take that as a failure.
fn drain(conn: &UnixStream) {
    let mut buf = [0u8; MAX_REQUEST];
    let mut left = DRAIN_LIMIT;
    while left > 0 {
        match (&mut &*conn).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => left = left.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// An error and its sources, "a: b: c", for one log field.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests;
