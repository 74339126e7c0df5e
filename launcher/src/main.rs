//! `rootless-run`: parses the command line, sets up logging, and hands over to `launch` (or
//! `persist::stop`, or prints completions or the man page). Prints the final one-line error and picks the
//! exit status (1 setup failed, 2 usage, 126/127 exec, else the command's).
//! Nothing else lives here.
#![deny(unsafe_code)]

mod child;
mod cli;
mod config;
mod descendants;
mod detach;
mod egress;
mod exec;
mod fsview;
mod handshake;
mod helper;
mod holder;
mod idmap;
mod kernel;
mod kernelnet;
mod launch;
mod manpage;
mod monitor;
mod network;
mod persist;
mod pidns;
mod plan;
mod preflight;
mod resolv;
mod sandbox;
mod supervise;
#[allow(unsafe_code)]
mod sys;

use std::ffi::OsString;

use anyhow::Context;

use config::Mode;
use supervise::Status;

/// Exit status for a failed setup (STYLE.md).
const EXIT_SETUP: i32 = 1;
/// Exit status for a usage error (clap's and ours).
const EXIT_USAGE: i32 = 2;

/// Prints a child-side setup error (once, as the child's final word) and returns its status.
pub(crate) fn report_child_error(e: &anyhow::Error) -> i32 {
    if e.is::<sandbox::ParentGone>() {
        return EXIT_SETUP;
    }
    eprintln!("rootless-run: {e:#}");
    match e.downcast_ref::<sys::process::ExecError>() {
        Some(x) => x.status,
        None => EXIT_SETUP,
    }
}

/// Prints a clap error as our one line (`rootless-run: what: why`) and exits 2; help and
/// version output go through clap unchanged (exit 0).
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    let text = e.render().to_string();
    let first = text
        .lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ");
    eprintln!("rootless-run: {first}; try 'rootless-run --help'");
    std::process::exit(EXIT_USAGE);
}

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let args = match cli::parse(&argv) {
        Ok(a) => a,
        Err(e) => usage_error(e),
    };
    rr_ns::logging::init("rootless-run");
    let caller = cli::Caller::current();
    let mode = match cli::validate(&argv, args, &caller, || {
        idmap::SubIds::load(caller.name(), caller.uid, caller.gid, caller.group())
    }) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("rootless-run: {e}");
            std::process::exit(EXIT_USAGE);
        }
    };
    let result = match mode {
        Mode::Completions(shell) => {
            clap_complete::generate(
                shell,
                &mut cli::command(),
                "rootless-run",
                &mut std::io::stdout(),
            );
            Ok(Status::Exited(0))
        }
        Mode::ManPage => manpage::write(&mut std::io::stdout())
            .context("cannot write the man page")
            .map(|()| Status::Exited(0)),
        Mode::Stop(dir) => persist::stop(&dir).map(|()| Status::Exited(0)),
        Mode::Cleanup => kernelnet::cleanup().map(|()| Status::Exited(0)),
        Mode::Run(cfg) => launch::run(&cfg, &caller),
        Mode::PrintPolicy(cfg) => egress::print(&cfg.net).map(|()| Status::Exited(0)),
    };
    match result {
        Ok(Status::Exited(n)) => std::process::exit(n),
        Ok(Status::Signaled(sig)) => {
            // Die the way the command died, as util-linux unshare does, so the shell reports
            // the signal; fall back to 128+N if we survive it.
            sys::process::reraise(sig);
            std::process::exit(Status::Signaled(sig).code())
        }
        Err(e) => {
            eprintln!("rootless-run: {e:#}");
            std::process::exit(EXIT_SETUP)
        }
    }
}
