//! `rr-slirp4netns`: slirp4netns's command line and process contract over rootless-run's
//! network stack. Parses the command line (`cli`, `config`), takes the fds it names, sets up
//! logging, and hands over to `run`; prints the final one-line error and picks the exit status
//! as slirp4netns does: 0 for help, version and a closed exit fd; 1 for usage errors (usage on
//! stdout), bad values and failures; the namespace child's status when it failed; killed by
//! SIGTERM, SIGINT or SIGHUP when those arrive.
#![deny(unsafe_code)]

mod attach;
mod banner;
mod cli;
mod config;
mod confine;
mod help;
mod inherit;
mod lifecycle;
mod outbound;
mod run;

use std::io::Write;

use cli::Action;

/// Exit status for usage errors and failures (slirp4netns's EXIT_FAILURE).
const EXIT_FAILURE: i32 = 1;

/// Prints to stdout and flushes (help, version, usage: the only stdout besides the banner).
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn main() {
    let rr_getopt::Argv { args, argv0, prog } = rr_getopt::Argv::from_env("slirp4netns")
        .unwrap_or_else(|bad| {
            eprintln!("slirp4netns: argument {bad:?} is not valid UTF-8");
            std::process::exit(EXIT_FAILURE)
        });
    let posixly_correct = std::env::var_os("POSIXLY_CORRECT").is_some();
    let parsed = cli::parse(&args, posixly_correct, &|p| p.exists());
    for line in &parsed.notices {
        print_stdout(&format!("{line}\n"));
    }
    let options = match parsed.action {
        Action::Help => {
            print_stdout(&help::usage(&argv0));
            return;
        }
        Action::Version => {
            print_stdout(&help::version());
            return;
        }
        Action::Usage(message) => {
            if let Some(m) = message {
                eprintln!("{argv0}: {m}");
            }
            print_stdout(&help::usage(&argv0));
            std::process::exit(EXIT_FAILURE)
        }
        Action::Run(options) => options,
    };
    let fail = |e: &dyn std::fmt::Display| -> ! {
        eprintln!("{prog}: {e}");
        std::process::exit(EXIT_FAILURE)
    };
    let cfg = config::Config::from_options(*options).unwrap_or_else(|e| fail(&e));
    // First, before this process opens anything: the fds named on the command line.
    let fds = inherit::take(&cfg.named_fds())
        .unwrap_or_else(|e| fail(&format_args!("{:#}", anyhow::Error::new(e))));
    rr_ns::logging::init(&prog);
    match run::run(&cfg, &prog, fds) {
        Ok(run::Ended::ExitFd) => {}
        Err(e) => {
            eprintln!("{prog}: {e:#}");
            let status = e
                .downcast_ref::<attach::AttachError>()
                .map_or(EXIT_FAILURE, attach::AttachError::exit_status);
            std::process::exit(status)
        }
    }
}
