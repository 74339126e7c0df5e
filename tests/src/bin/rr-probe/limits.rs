//! rr-probe's fd-limit jobs (tests/tests/limits.rs): more connections than the helper's flow
//! table holds, spread over child processes, since the sandbox's own fd limit is the
//! launcher's (a hard limit of 1,024 lets one process hold ~1,000 sockets).
//!   `connect-many ADDR TOTAL PER_PROC`: raise this process's soft fd limit to the hard one,
//!   then run `connect-batch ADDR N` children one after the other, PER_PROC connections each
//!   (TOTAL in all), each holding what it opened; print their sum, `connected C refused R
//!   other O slowest_refusal_ms T` (T: the longest a refused connect took), and `holding`.
//!   Then one command per stdin line: `check`: every held connection echoes one byte through
//!   ADDR (an echo server): `carried K of C`; `release`: the children close theirs and exit,
//!   then a new connection echoes one byte, retried while it is refused for at most
//!   `RELEASE_TIMEOUT`: `after release connected in T ms` (or `after release refused`);
//!   stdin EOF ends it: exit 0.
//!   `connect-batch ADDR N`: one child: open N connections (`batch C R O T`, as above), then
//!   `check` on stdin: `carried K`; stdin EOF: close them all and exit.
//! Called by `main`'s dispatch; every wait has a timeout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::{resolve, Fail};

/// Bound on one connect: a refusal is an RST, so far below this; a timeout is "other".
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one byte's echo through a held connection.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection may be refused after the release, while the helper sees the
/// closed connections' FINs and frees their slots.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the connects of one batch went.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    connected: usize,
    refused: usize,
    other: usize,
    slowest_refusal: Duration,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.connected += other.connected;
        self.refused += other.refused;
        self.other += other.other;
        self.slowest_refusal = self.slowest_refusal.max(other.slowest_refusal);
    }
}

fn count(arg: &str) -> Result<usize, Fail> {
    arg.parse()
        .map_err(|_| Fail::Usage(format!("{arg}: not a number")))
}

/// Raises this process's soft fd limit to its hard one (the sandbox's root may not go past it).
fn raise_own_limit() -> Result<(), Fail> {
    let (_, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| Fail::Failed(format!("getrlimit: {e}")))?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
        .map_err(|e| Fail::Failed(format!("setrlimit NOFILE {hard}: {e}")))
}

pub fn connect_many(addr: &str, total: &str, per_proc: &str) -> Result<u8, Fail> {
    let (total, per_proc) = (count(total)?, count(per_proc)?.max(1));
    raise_own_limit()?;
    let me = std::env::args()
        .next()
        .ok_or_else(|| Fail::Failed("no argv[0]".to_owned()))?;
    let mut batches = Vec::new();
    let mut sum = Tally::default();
    let mut left = total;
    while left > 0 {
        let n = left.min(per_proc);
        left -= n;
        let mut batch = Batch::spawn(&me, addr, n)?;
        sum.add(batch.tally()?);
        batches.push(batch);
    }
    println!(
        "connected {} refused {} other {} slowest_refusal_ms {}",
        sum.connected,
        sum.refused,
        sum.other,
        sum.slowest_refusal.as_millis()
    );
    println!("holding");
    for line in io::stdin().lock().lines() {
        let line = line.map_err(|e| Fail::Failed(format!("read stdin: {e}")))?;
        match line.trim() {
            "check" => {
                let mut carried = 0;
                for b in &mut batches {
                    carried += b.check()?;
                }
                println!("carried {carried} of {}", sum.connected);
            }
            "release" => {
                for b in batches.drain(..) {
                    b.release()?;
                }
                after_release(addr)?;
            }
            other => return Err(Fail::Usage(format!("{other}: not check or release"))),
        }
    }
    Ok(0)
}

/// One `connect-batch` child and its pipes.
struct Batch {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: io::Lines<BufReader<ChildStdout>>,
}

impl Batch {
    fn spawn(me: &str, addr: &str, n: usize) -> Result<Batch, Fail> {
        let mut child = Command::new(me)
            .args(["connect-batch", addr, &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Fail::Failed(format!("spawn connect-batch: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout was piped");
        Ok(Batch {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    fn next_line(&mut self) -> Result<String, Fail> {
        match self.lines.next() {
            Some(Ok(line)) => Ok(line),
            _ => Err(Fail::Failed("connect-batch ended early".to_owned())),
        }
    }

    /// Its `batch C R O T` line.
    fn tally(&mut self) -> Result<Tally, Fail> {
        let line = self.next_line()?;
        let nums: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.parse().ok())
            .collect();
        match nums.as_slice() {
            [c, r, o, t] => Ok(Tally {
                connected: *c as usize,
                refused: *r as usize,
                other: *o as usize,
                slowest_refusal: Duration::from_millis(*t),
            }),
            _ => Err(Fail::Failed(format!("connect-batch said {line:?}"))),
        }
    }

    /// Asks it to echo a byte on each connection: how many carried it.
    fn check(&mut self) -> Result<usize, Fail> {
        let stdin = self.stdin.as_mut().expect("stdin open until release");
        stdin
            .write_all(b"check\n")
            .and_then(|()| stdin.flush())
            .map_err(|e| Fail::Failed(format!("tell connect-batch: {e}")))?;
        let line = self.next_line()?;
        line.strip_prefix("carried ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Fail::Failed(format!("connect-batch said {line:?}")))
    }

    /// Closes its stdin and waits for it to close its connections and exit.
    fn release(mut self) -> Result<(), Fail> {
        self.stdin = None;
        let status = self
            .child
            .wait()
            .map_err(|e| Fail::Failed(format!("wait connect-batch: {e}")))?;
        match status.success() {
            true => Ok(()),
            false => Err(Fail::Failed(format!("connect-batch: {status}"))),
        }
    }
}

/// A new connection once the others are closed, retried while refused.
fn after_release(addr: &str) -> Result<(), Fail> {
    let sa = resolve(addr)?;
    let start = Instant::now();
    loop {
        match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
            Ok(mut s) => {
                echo_byte(&mut s).map_err(|e| Fail::Failed(format!("echo after release: {e}")))?;
                println!(
                    "after release connected in {} ms",
                    start.elapsed().as_millis()
                );
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                if start.elapsed() >= RELEASE_TIMEOUT {
                    println!("after release refused");
                    return Ok(());
                }
            }
            Err(e) => return Err(Fail::Failed(format!("connect after release: {e}"))),
        }
    }
}

pub fn connect_batch(addr: &str, n: &str) -> Result<u8, Fail> {
    let (sa, n) = (resolve(addr)?, count(n)?);
    let mut held = Vec::with_capacity(n);
    let mut tally = Tally::default();
    for _ in 0..n {
        let start = Instant::now();
        match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
            Ok(s) => {
                held.push(s);
                tally.connected += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tally.refused += 1;
                tally.slowest_refusal = tally.slowest_refusal.max(start.elapsed());
            }
            Err(e) => {
                eprintln!("rr-probe: connect {addr}: {e}");
                tally.other += 1;
            }
        }
    }
    println!(
        "batch {} {} {} {}",
        tally.connected,
        tally.refused,
        tally.other,
        tally.slowest_refusal.as_millis()
    );
    io::stdout()
        .flush()
        .map_err(|e| Fail::Failed(format!("stdout: {e}")))?;
    for line in io::stdin().lock().lines() {
        let line = line.map_err(|e| Fail::Failed(format!("read stdin: {e}")))?;
        if line.trim() == "check" {
            let carried = held.iter_mut().map(echo_byte).filter(Result::is_ok).count();
            println!("carried {carried}");
            io::stdout()
                .flush()
                .map_err(|e| Fail::Failed(format!("stdout: {e}")))?;
        }
    }
    Ok(0)
}

/// One byte out and the same byte back.
fn echo_byte(s: &mut TcpStream) -> io::Result<()> {
    s.set_read_timeout(Some(ECHO_TIMEOUT))?;
    s.set_write_timeout(Some(ECHO_TIMEOUT))?;
    s.write_all(b"x")?;
    let mut got = [0u8; 1];
    s.read_exact(&mut got)?;
    match &got {
        b"x" => Ok(()),
        _ => Err(io::Error::other("echoed another byte")),
    }
}
