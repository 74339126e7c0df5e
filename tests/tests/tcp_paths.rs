//! The TCP translator's edge paths (issue 4, item 2), end to end as the unprivileged test user:
//! loss, duplication and reordering on the tap (the netstack's test-only fault injection, on
//! because this crate enables netstack's `fault-injection` feature), a zero window, the
//! sandbox's writes blocked by a full host socket, half-close each way, RST each way.
//! Each test runs `rr-probe` in the sandbox against a server in this (root, sealed-netns)
//! process on 127.0.0.1, reached as 10.0.2.2, and checks byte counts, sha256 digests and
//! errno kinds on both sides. Nothing sleeps: the sandbox and the host step each other on a
//! second (control) connection where a test needs an order.

use std::io::ErrorKind;
use std::time::Duration;

use rr_tests::child::{run, Outcome, TIMEOUT};
use rr_tests::pattern::{sha256_hex, HOST_SEED, TCP_SEED};
use rr_tests::sandbox::Harness;
use rr_tests::scripted::{Script, Scripted, GREETING};
use rr_tests::servers::{TcpEcho, GATEWAY};

/// Bound for the multi-megabyte transfers: liveness for a debug build, not a speed requirement.
const BULK_TIMEOUT: Duration = Duration::from_secs(300);

/// Faults for the echo under loss: moderate rates, a fixed seed so a failure can be replayed.
const FAULTS: &str = "drop=1,dup=1,reorder=2,seed=4242";

/// What the netstack logs when RR_FAULT_INJECT took effect.
const FAULTS_ON: &str = "fault injection on the tap path";

fn gateway(port: u16) -> String {
    format!("{GATEWAY}:{port}")
}

/// Runs `sh -c SCRIPT` in the sandbox with `env` added; `$P` in the script is rr-probe.
fn sandbox_sh(h: &Harness, what: &str, env: &[(&str, &str)], script: &str) -> Outcome {
    let probe = &h.probe(&[])[0];
    let sh = ["/bin/sh", "-c", &format!("P={probe}; {script}")].map(String::from);
    run(what, &mut h.rootless_run_env(env, &sh), BULK_TIMEOUT)
}

/// The value of `NAME=VALUE` on its own line of stdout (or after a space on one).
fn counter(out: &Outcome, name: &str) -> u64 {
    let key = format!("{name}=");
    out.stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the probe's output\n{out}"))
}

fn assert_line(out: &Outcome, want: &str, why: &str) {
    assert!(
        out.stdout.lines().any(|l| l == want),
        "{why}: expected the line {want:?}\n{out}"
    );
}

#[test]
fn tcp_echo_keeps_every_byte_under_loss_duplication_and_reordering() {
    // 24 MiB each way: with 64 KiB GSO frames, 8 MiB was ~130 frames toward the sandbox, and a
    // busy CI run once saw no fault land on them (TCPOFOQueue 0); three times the frames make
    // that vanishingly rare.
    const BYTES: u64 = 24 << 20;
    let h = Harness::new();
    let server = TcpEcho::start();
    let script = format!(
        "$P tcp-echo {} {BYTES} && $P tcp-counters RetransSegs TCPOFOQueue",
        gateway(server.port())
    );
    let env = [("RR_FAULT_INJECT", FAULTS), ("RUST_LOG", "warn")];
    let out = sandbox_sh(
        &h,
        "rootless-run -- rr-probe tcp-echo (faults)",
        &env,
        &script,
    );
    assert_eq!(
        out.shell_status(),
        0,
        "TCP echo under {FAULTS} failed\n{out}"
    );
    assert!(
        out.stderr.contains(FAULTS_ON),
        "the launcher did not apply RR_FAULT_INJECT (built without netstack's \
         fault-injection feature?)\n{out}"
    );
    let expected = sha256_hex(TCP_SEED, BYTES);
    assert_line(
        &out,
        &format!("received {BYTES} bytes sha256 {expected}"),
        "host -> sandbox: the echo came back altered",
    );
    let rec = server.next_record(TIMEOUT);
    assert_eq!(rec.error, None, "the host side saw an error: {rec:?}");
    assert_eq!(
        (rec.bytes, rec.sha256.as_str()),
        (BYTES, expected.as_str()),
        "sandbox -> host: the host received other bytes"
    );
    // The faults hit the TCP data both ways, or this test proves nothing: the sandbox resent
    // segments (its data or our ACKs were lost) and queued segments that came out of order
    // (ours were lost, duplicated or swapped).
    assert!(
        counter(&out, "RetransSegs") > 0,
        "the sandbox never retransmitted: the faults missed the sandbox -> host data\n{out}"
    );
    assert!(
        counter(&out, "TCPOFOQueue") > 0,
        "the sandbox never saw a segment out of order: the faults missed host -> sandbox\n{out}"
    );
}

#[test]
fn zero_window_holds_host_data_until_sandbox_reads_then_delivers_all() {
    const BYTES: u64 = 24 << 20;
    let h = Harness::new();
    let server = Scripted::start(Script::FillThenGo { bytes: BYTES });
    let probe = h.probe(&[
        "recv-after-go",
        &gateway(server.port()),
        &gateway(server.ctrl_port()),
    ]);
    let script = format!("{} && $P tcp-counters TCPZeroWindowDrop", probe.join(" "));
    let out = sandbox_sh(&h, "rootless-run -- rr-probe recv-after-go", &[], &script);
    let rep = server.report(TIMEOUT);
    assert_eq!(
        out.shell_status(),
        0,
        "recv-after-go failed\n{out}\n{rep:?}"
    );
    assert_eq!(rep.error, None, "the host side failed: {rep:?}");
    let blocked = rep.blocked_at.unwrap_or_else(|| {
        panic!("the host sent all {BYTES} bytes without blocking: raise BYTES\n{rep:?}")
    });
    assert!(
        blocked > 0,
        "the host blocked before sending a byte: {rep:?}"
    );
    // The sandbox read nothing until the host blocked; it had closed its window by then.
    assert!(
        counter(&out, "TCPToZeroWindowAdv") > 0,
        "the sandbox never advertised a zero window before it read (host blocked after \
         {blocked} bytes)\n{out}\n{rep:?}"
    );
    // Over the whole transfer (the last count printed, after the go line's).
    let dropped = out
        .stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("TCPZeroWindowDrop="));
    assert_eq!(
        dropped,
        Some("0"),
        "the netstack sent data into the sandbox's closed window\n{out}"
    );
    assert_eq!(rep.sent, BYTES, "the host did not send everything: {rep:?}");
    assert_line(
        &out,
        &format!(
            "received {BYTES} bytes sha256 {}",
            sha256_hex(HOST_SEED, BYTES)
        ),
        "the bytes held behind the zero window did not all arrive intact",
    );
    assert_eq!(
        rep.read_end,
        Ok(()),
        "the host expected a clean close: {rep:?}"
    );
}

#[test]
fn writes_blocked_by_full_host_buffer_all_arrive_in_order_after_drain() {
    const BYTES: u64 = 24 << 20;
    let h = Harness::new();
    let server = Scripted::start(Script::DrainAfterBlocked);
    let probe = h.probe(&[
        "send-until-blocked",
        &gateway(server.port()),
        &gateway(server.ctrl_port()),
        &BYTES.to_string(),
    ]);
    let script = format!(
        "{} && $P tcp-counters RetransSegs TCPWinProbe",
        probe.join(" ")
    );
    let out = sandbox_sh(
        &h,
        "rootless-run -- rr-probe send-until-blocked",
        &[],
        &script,
    );
    let rep = server.report(TIMEOUT);
    assert_eq!(
        out.shell_status(),
        0,
        "send-until-blocked failed\n{out}\n{rep:?}"
    );
    let blocked = rep.blocked_at;
    assert!(
        rep.ctrl_line.starts_with("blocked ") && blocked.is_some_and(|b| b > 0 && b < BYTES),
        "the sandbox's writes never blocked while the host was not reading: raise BYTES\n\
         {rep:?}\n{out}"
    );
    let expected = sha256_hex(TCP_SEED, BYTES);
    assert_line(
        &out,
        &format!("sent {BYTES} bytes sha256 {expected}"),
        "the probe did not send the whole stream",
    );
    assert_eq!(rep.error, None, "the host side failed: {rep:?}");
    assert_eq!(rep.read_end, Ok(()), "the host's read ended early: {rep:?}");
    assert_eq!(
        (rep.received, rep.received_sha256.as_str()),
        (BYTES, expected.as_str()),
        "bytes written while the host buffer was full were lost, duplicated or reordered \
         (blocked at {blocked:?})"
    );
}

#[test]
fn half_close_by_sandbox_still_gets_the_hosts_reply_to_eof() {
    const SENT: u64 = 1 << 20;
    const REPLY: u64 = 2 << 20;
    let h = Harness::new();
    let server = Scripted::start(Script::ReplyAfterEof { bytes: REPLY });
    let probe = h.probe(&["half-close", &gateway(server.port()), &SENT.to_string()]);
    let out = run(
        "rootless-run -- rr-probe half-close",
        &mut h.rootless_run(&probe),
        BULK_TIMEOUT,
    );
    let rep = server.report(TIMEOUT);
    assert_eq!(out.shell_status(), 0, "half-close failed\n{out}\n{rep:?}");
    let sent_sha = sha256_hex(TCP_SEED, SENT);
    assert_eq!(
        (
            rep.read_end,
            rep.received,
            rep.received_sha256.as_str(),
            rep.error.as_deref()
        ),
        (Ok(()), SENT, sent_sha.as_str(), None),
        "the host did not read the sandbox's bytes and then EOF: {rep:?}"
    );
    assert_line(
        &out,
        &format!("reply got {SENT} {sent_sha}"),
        "the sandbox did not get the reply the host wrote after EOF",
    );
    assert_line(
        &out,
        &format!("body {REPLY} bytes sha256 {}", sha256_hex(HOST_SEED, REPLY)),
        "the data after the sandbox's FIN did not all arrive intact",
    );
}

#[test]
fn half_close_by_host_still_receives_the_sandboxs_data() {
    const SENT: u64 = 2 << 20;
    let h = Harness::new();
    let server = Scripted::start(Script::ShutWriteFirst);
    let probe = h.probe(&[
        "send-after-eof",
        &gateway(server.port()),
        &gateway(server.ctrl_port()),
        &SENT.to_string(),
    ]);
    let out = run(
        "rootless-run -- rr-probe send-after-eof",
        &mut h.rootless_run(&probe),
        BULK_TIMEOUT,
    );
    let rep = server.report(TIMEOUT);
    assert_eq!(
        out.shell_status(),
        0,
        "send-after-eof failed\n{out}\n{rep:?}"
    );
    assert_line(
        &out,
        &format!("eof after {} bytes", GREETING.len()),
        "the sandbox did not read the greeting and then the host's FIN",
    );
    let sent_sha = sha256_hex(TCP_SEED, SENT);
    assert_eq!(
        (
            rep.read_end,
            rep.received,
            rep.received_sha256.as_str(),
            rep.error.as_deref()
        ),
        (Ok(()), SENT, sent_sha.as_str(), None),
        "after its own FIN the host did not receive the sandbox's bytes and EOF: {rep:?}"
    );
    assert_line(
        &out,
        &format!("host {}", rep.summary()),
        "the sandbox did not hear back from the host on the control connection",
    );
}

#[test]
fn rst_from_sandbox_resets_the_host_connection() {
    let h = Harness::new();
    let server = Scripted::start(Script::AwaitReset);
    let probe = h.probe(&[
        "reset-close",
        &gateway(server.port()),
        &gateway(server.ctrl_port()),
    ]);
    let out = run(
        "rootless-run -- rr-probe reset-close",
        &mut h.rootless_run(&probe),
        TIMEOUT,
    );
    let rep = server.report(TIMEOUT);
    assert_eq!(rep.error, None, "the host side failed: {rep:?}\n{out}");
    assert_eq!(
        (rep.read_end, rep.received),
        (Err(ErrorKind::ConnectionReset), 0),
        "the sandbox's RST must reach the host as ECONNRESET, not EOF: {rep:?}\n{out}"
    );
    assert_eq!(
        (out.shell_status(), out.stdout.lines().collect::<Vec<_>>()),
        (0, vec!["reset sent", &format!("host {}", rep.summary())]),
        "reset-close failed\n{out}"
    );
}

#[test]
fn rst_from_host_resets_the_sandbox_connection() {
    let h = Harness::new();
    let server = Scripted::start(Script::ResetAfterByte);
    let probe = h.probe(&["expect-reset", &gateway(server.port())]);
    let out = run(
        "rootless-run -- rr-probe expect-reset",
        &mut h.rootless_run(&probe),
        TIMEOUT,
    );
    let rep = server.report(TIMEOUT);
    assert_eq!(
        (rep.error.as_deref(), rep.received),
        (None, 1),
        "the host did not get the probe's byte: {rep:?}"
    );
    assert_eq!(
        (out.shell_status(), out.stdout.trim()),
        (0, "connected\nreset after 0 bytes"),
        "the host's RST must reach the sandbox as ECONNRESET, not EOF\n{out}"
    );
}
