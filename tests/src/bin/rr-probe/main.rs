//! rr-probe: the integration tests' hands inside the sandbox (and inside namespaces the tests
//! build). One job per subcommand, reported on stdout and through the exit code, so a test checks
//! bytes and codes rather than a shell's say-so. Every blocking step has a timeout.
//!
//! Subcommands:
//!   tcp-echo ADDR:PORT BYTES   send BYTES of the `pattern` stream, read the echo, compare sha256
//!   udp-echo ADDR:PORT [N]     send N (default 4) distinct datagrams, expect each echoed intact
//!   connect ADDR:PORT          print `connected` (0) or `refused` (3)
//!   hold TOKEN                 print `ready`, then block until stdin reaches EOF (TOKEN only
//!                              marks the command line, so a test can find the process)
//!   trap-signals               print `ready`, wait for one of the signals rootless-run forwards,
//!                              print `caught SIG…`, exit 64 + its number (exit 1 if stdin
//!                              reaches EOF first)
//!   serve-tcp-echo ADDR:PORT   print `listening ADDR:PORT`, echo every connection (printing
//!                              `peer ADDR:PORT` first) until stdin reaches EOF
//!
//! TCP path jobs (tests/tests/tcp_paths.rs); DATA and CTRL are two connections to the host, the
//! host's bytes are the `pattern` stream of HOST_SEED, the probe's that of TCP_SEED:
//!   recv-after-go DATA CTRL    connect both, read nothing from DATA until one byte arrives on
//!                              CTRL (print `go`), then read DATA to EOF:
//!                              `received N bytes sha256 H`
//!   send-until-blocked DATA CTRL BYTES
//!                              write BYTES to DATA without blocking until a write would block,
//!                              tell CTRL `blocked B\n` (or `unblocked B\n` if it never did),
//!                              write the rest, shut down writing, read DATA to EOF:
//!                              `blocked at B` or `never blocked`, `sent N bytes sha256 H`
//!   half-close ADDR BYTES      write BYTES, shut down writing, read the reply to EOF: its first
//!                              line as `reply LINE`, the rest as `body N bytes sha256 H`
//!   send-after-eof DATA CTRL BYTES
//!                              read DATA to EOF (`eof after N bytes`), then write BYTES and
//!                              shut down writing: `sent N bytes sha256 H`; then print the
//!                              host's line from CTRL as `host LINE`
//!   reset-close DATA CTRL      wait for a line on DATA, then close it with SO_LINGER 0 (a
//!                              RST): `reset sent`; then print the host's line from CTRL as
//!                              `host LINE`
//!                              (These two wait for the host's word because rootless-run and its
//!                              netstack exit with the probe, and a frame not yet forwarded
//!                              would go with them.)
//!   expect-reset ADDR          write one byte (`connected`), read until the connection ends:
//!                              `reset after N bytes` (0) or `eof after N bytes` (1)
//!   tcp-counters NAME...       `NAME=VALUE` per counter from /proc/net/snmp (Tcp:) and
//!                              /proc/net/netstat (TcpExt:), this network namespace's
//!
//! Forwarding, DNS and leak jobs (tests/tests/forward.rs, api_socket.rs, dns.rs,
//! addressing.rs):
//!   serve SPEC...              SPEC is tcp:ADDR:PORT or udp:ADDR:PORT: bind each, echo, and
//!                              report every caller (`peer_echo`); until stdin reaches EOF
//!   poke TARGET...             TARGET is tcp:ADDR:PORT or udp:ADDR:PORT: all at once, a TCP
//!                              connect (bounded by POKE_TIMEOUT) or one datagram each; prints
//!                              `tcp ADDR:PORT connected|refused|unreachable|timeout|error E`
//!                              or `udp ADDR:PORT sent|error E`, in argument order
//!   craft IFNAME GW4 SRC4 SRC6 TARGET...
//!                              learn GW4's MAC by ARP on IFNAME (`gateway MAC`), then write
//!                              one hand-built TCP SYN or UDP datagram per TARGET from SRC4 or
//!                              SRC6 to that MAC (`sent TARGET`), whatever its destination
//!   forge-macs-then-serve IFNAME COUNT SRC4 GW4 DELAY_MS SPEC...
//!                              switch IPv6 off on IFNAME (no MLD or solicitations of its
//!                              own), after DELAY_MS write COUNT ARP requests for GW4 as SRC4 onto
//!                              IFNAME, each from another made-up source MAC (`forged COUNT`),
//!                              then `serve SPEC...`
//!   sniff PREFIX...            print `ready`, then `seen PROTO SRC -> DST ...` for every IP
//!                              packet to one of the prefixes on any interface; until stdin EOF
//!   dns-query SERVER udp|tcp NAME [a|aaaa] [TIMEOUT_S]
//!                              one query: `rcode N`, `answer ADDR` per A/AAAA, `elapsed_ms T`
//!                              (no reply: `timeout`, exit 4; refused: `refused`, exit 3)
//!   upload ADDR                print `connected`, then write until the connection fails
//!   forge-rst-syn IFNAME GW4 ADDR BYTES
//!                              echo through ADDR, forge RSTs and SYNs with wrong sequence
//!                              numbers on that connection from IFNAME (`forged N around S`),
//!                              echo BYTES more: `echoed N bytes intact` (hostile.rs)
//!   flows-full TCP N UDP DNS   hold N connections to TCP, then the fate of a datagram to UDP,
//!                              a DNS query to DNS and one more connection (hostile.rs)
//!   udp-until-refused UDP COUNT DNS
//!                              datagrams from new sockets until one is refused or lost, then
//!                              a DNS query's fate (hostile.rs)
//!   syn-flood IFNAME GW4 SELF4 SPOOFED4 COUNT FLOOD ECHO BYTES
//!                              COUNT SYNs to FLOOD from SPOOFED4's ports, then a new
//!                              connection's echo of BYTES through ECHO (`echoed N bytes
//!                              intact after T ms`); holds until stdin EOF (hostile.rs)
//!   udp-flood IFNAME GW4 SELF4 SPOOFED4 DATAGRAMS FLOWS TARGET ECHO BASELINE
//!                              a bystander echo through ECHO, DATAGRAMS datagrams to TARGET
//!                              over FLOWS source ports, a new connection halfway; bytes and
//!                              times of each (hostile.rs)
//!   udp-budget IFNAME GW4 SELF4 SPOOFED4 FLOWS FLOOD ECHO BURST_PORT BURST
//!                              a flood of new flows to FLOOD from SPOOFED4 until done; during
//!                              it, one datagram's fate at ECHO, then BURST new flows to ports
//!                              of GW4 from BURST_PORT up and how many were refused (budget.rs)
//!   dns-garbage SERVER udp|tcp malformed queries over UDP (`sent N udp`) or TCP, each on its
//!                              own connection (`sent N tcp`)
//!   connect-many ADDR TOTAL PER_PROC
//!                              TOTAL connections to ADDR from children of PER_PROC each, held;
//!                              then `check` (a byte's echo on each) and `release` on stdin
//!                              (limits.rs); `connect-batch ADDR N` is one such child
//!   flood IFNAME GW4 SRC4 KIND COUNT [ARGS]
//!                              scripts/stress's hostile frames (`flood`): malformed, a SYN
//!                              flood, a UDP flow flood, forged RSTs or SYNs on one flow
//!
//! Exit codes: 0 done, 1 failed (message on stderr), 2 usage, 3 connection refused,
//! 4 timed out, 64 + N caught signal N.
//!
//! This file parses the command line and maps a job's end to its exit code; the jobs live in
//! one module per family (`echo`, `lifetime`, `tcp_paths`, `forward`, `raw`, `dns`, `flood`,
//! `hostile`, `budget`, `limits`) and use the connect and parse helpers here. Nothing here does
//! a job's I/O itself.

mod budget;
mod dns;
mod echo;
mod flood;
mod forward;
mod hostile;
mod lifetime;
mod limits;
mod raw;
mod tcp_paths;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use dns::{dns_garbage, dns_query, DNS_TIMEOUT_S};
use echo::{connect, serve_tcp_echo, tcp_echo, udp_echo};
use forward::{poke, serve};
use lifetime::{hold, trap_signals};
use raw::{craft, sniff};
use tcp_paths::{
    expect_reset, half_close, recv_after_go, reset_close, send_after_eof, send_until_blocked,
    tcp_counters,
};

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_REFUSED: u8 = 3;
pub const EXIT_TIMEOUT: u8 = 4;

/// Bound for connect and for each read or write: liveness only.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// How a job ended when it did not succeed.
pub enum Fail {
    Usage(String),
    Failed(String),
    Refused,
    Timeout(String),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match strs.as_slice() {
        ["tcp-echo", addr, bytes] => tcp_echo(addr, bytes),
        ["udp-echo", addr] => udp_echo(addr, "4"),
        ["udp-echo", addr, count] => udp_echo(addr, count),
        ["connect", addr] => connect(addr),
        ["hold", _token] => hold(),
        ["trap-signals"] => trap_signals(),
        ["serve-tcp-echo", addr] => serve_tcp_echo(addr),
        ["recv-after-go", data, ctrl] => recv_after_go(data, ctrl),
        ["send-until-blocked", data, ctrl, bytes] => send_until_blocked(data, ctrl, bytes),
        ["half-close", addr, bytes] => half_close(addr, bytes),
        ["send-after-eof", data, ctrl, bytes] => send_after_eof(data, ctrl, bytes),
        ["reset-close", data, ctrl] => reset_close(data, ctrl),
        ["expect-reset", addr] => expect_reset(addr),
        ["tcp-counters", names @ ..] if !names.is_empty() => tcp_counters(names),
        ["serve", specs @ ..] if !specs.is_empty() => serve(specs),
        ["forge-macs-then-serve", ifname, count, src, gw, delay_ms, specs @ ..]
            if !specs.is_empty() =>
        {
            raw::forge_macs(ifname, count, src, gw, delay_ms).and_then(|()| serve(specs))
        }
        ["poke", targets @ ..] if !targets.is_empty() => poke(targets),
        ["craft", ifname, gw, src4, src6, targets @ ..] if !targets.is_empty() => {
            craft(ifname, gw, src4, src6, targets)
        }
        ["sniff", prefixes @ ..] if !prefixes.is_empty() => sniff(prefixes),
        ["dns-query", server, proto, name] => dns_query(server, proto, name, "a", DNS_TIMEOUT_S),
        ["dns-query", server, proto, name, qtype] => {
            dns_query(server, proto, name, qtype, DNS_TIMEOUT_S)
        }
        ["dns-query", server, proto, name, qtype, secs] => {
            dns_query(server, proto, name, qtype, secs)
        }
        ["dns-garbage", server, proto] => dns_garbage(server, proto),
        ["upload", addr] => hostile::upload(addr),
        ["forge-rst-syn", ifname, gw, addr, bytes] => {
            hostile::forge_rst_syn(ifname, gw, addr, bytes)
        }
        ["flows-full", tcp, count, udp, dns] => hostile::flows_full(tcp, count, udp, dns),
        ["udp-until-refused", udp, count, dns] => hostile::udp_until_refused(udp, count, dns),
        ["syn-flood", args @ ..] => hostile::syn_flood(args),
        ["udp-flood", args @ ..] => hostile::udp_flood(args),
        ["connect-many", addr, total, per_proc] => limits::connect_many(addr, total, per_proc),
        ["connect-batch", addr, n] => limits::connect_batch(addr, n),
        ["udp-budget", args @ ..] => budget::udp_budget(args),
        ["flood", ifname, gw, src4, kind, rest @ ..] => flood::flood(ifname, gw, src4, kind, rest),
        _ => Err(Fail::Usage(
            "usage: rr-probe tcp-echo|udp-echo|connect|hold|trap-signals|serve-tcp-echo|\
             recv-after-go|send-until-blocked|half-close|send-after-eof|reset-close|\
             expect-reset|tcp-counters|serve|poke|craft|sniff|dns-query|dns-garbage|upload|\
             forge-rst-syn|flows-full|udp-until-refused|syn-flood|udp-flood|udp-budget|\
             connect-many|connect-batch|flood ARGS"
                .to_owned(),
        )),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Fail::Usage(m)) => {
            eprintln!("rr-probe: {m}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Fail::Failed(m)) => {
            eprintln!("rr-probe: {m}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(Fail::Refused) => {
            println!("refused");
            ExitCode::from(EXIT_REFUSED)
        }
        Err(Fail::Timeout(m)) => {
            println!("timeout");
            eprintln!("rr-probe: {m}: timed out");
            ExitCode::from(EXIT_TIMEOUT)
        }
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, Fail> {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Fail::Usage(format!("{addr}: not ADDR:PORT")))
}

/// Maps an I/O error of `what` to refused, timeout or failure.
fn io_fail(what: &str, e: io::Error) -> Fail {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Fail::Refused,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Fail::Timeout(what.to_owned()),
        _ => Fail::Failed(format!("{what}: {e}")),
    }
}

fn connect_tcp(addr: &str) -> Result<TcpStream, Fail> {
    let sa = resolve(addr)?;
    let s = TcpStream::connect_timeout(&sa, IO_TIMEOUT)
        .map_err(|e| io_fail(&format!("connect {addr}"), e))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| Fail::Failed(format!("set timeouts: {e}")))?;
    Ok(s)
}

/// Exits the process when stdin reaches EOF: the test that started us decides our lifetime.
pub fn exit_at_stdin_eof() {
    thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
}

pub fn parse_all<T: std::str::FromStr<Err = String>>(args: &[&str]) -> Result<Vec<T>, Fail> {
    args.iter()
        .map(|a| a.parse::<T>().map_err(Fail::Usage))
        .collect()
}
