//! `rr-pasta`: pasta's command line and process contract (as podman 5/6 and rootlesskit use
//! them) over rootless-run's network stack. Parses the command line (`cli`, `ports`), sets up
//! logging and hands over to `run`; prints the final one-line error ("PROG: what: why") and
//! exits 1 on any failure, 0 for help and version (both on stdout, even on a pipe).
#![deny(unsafe_code)]

mod attach;
mod cli;
mod daemon;
mod help;
mod hostnet;
mod nsfwd;
mod plan;
mod ports;
mod publish;
mod relay;
mod run;
mod stackcfg;
mod watch;

use std::io::Write;

/// Exit status of every failure (pasta's EXIT_FAILURE; podman looks for 1 to retry without
/// `--map-guest-addr`).
const EXIT_FAILURE: i32 = 1;

fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn main() {
    let rr_getopt::Argv { args, argv0, prog } =
        rr_getopt::Argv::from_env("pasta").unwrap_or_else(|bad| {
            eprintln!("pasta: argument {bad:?} is not valid UTF-8");
            std::process::exit(EXIT_FAILURE)
        });
    let options = match cli::parse(&args) {
        Ok(cli::Action::Help) => return print_stdout(&help::usage(&argv0)),
        Ok(cli::Action::Version) => return print_stdout(&help::version()),
        Ok(cli::Action::Run(o)) => o,
        Err(e) => {
            eprintln!("{prog}: {e}");
            std::process::exit(EXIT_FAILURE)
        }
    };
    init_logging(&prog, options.debug);
    if let Err(e) = run::run(&options, &prog) {
        eprintln!("{prog}: {e:#}");
        std::process::exit(EXIT_FAILURE)
    }
}

/// `-d` and `--trace` raise the level when RUST_LOG does not say otherwise.
fn init_logging(prog: &str, debug: u8) {
    if std::env::var_os("RUST_LOG").is_none() && debug > 0 {
        let level = if debug > 1 { "trace" } else { "debug" };
        std::env::set_var("RUST_LOG", level);
    }
    rr_ns::logging::init(prog);
}
