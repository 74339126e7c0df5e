//! `rr-docgen`: the man page and shell completions of rr-slirp4netns, whose command line is
//! slirp4netns's (getopt, not clap, and no option of ours may be added to it):
//! - `rr-docgen man PAGE.1.md` prints the page as roff (`rr_docgen::page`);
//! - `rr-docgen completions NAME SHELL` reads NAME's `--help` on stdin, turns each option line
//!   (`-c, --configure   text`, `--cidr=CIDR   text`) into a clap argument, and prints
//!   clap_complete's script for SHELL (bash, zsh, fish, elvish, powershell).
//!
//! rootless-run needs neither: its `--man-page` and `--completions` come from its own clap
//! definitions. Called by scripts/setup and scripts/package at install and packaging time.

use std::io::Read;

use anyhow::{bail, Context};
use clap::{Arg, ArgAction, Command, ValueHint};
use clap_complete::Shell;

const USAGE: &str = "usage: rr-docgen man PAGE.1.md | rr-docgen completions NAME SHELL < HELP";

fn main() {
    if let Err(e) = run(&std::env::args().skip(1).collect::<Vec<_>>()) {
        eprintln!("rr-docgen: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    match args {
        [cmd, md] if cmd == "man" => {
            let text = std::fs::read_to_string(md).with_context(|| format!("cannot read {md}"))?;
            let roff = rr_docgen::page(&text, env!("CARGO_PKG_VERSION")).context(md.clone())?;
            print!("{roff}");
            Ok(())
        }
        [cmd, name, shell] if cmd == "completions" => {
            let shell: Shell = shell.parse().map_err(|e| anyhow::anyhow!("{shell}: {e}"))?;
            let mut help = String::new();
            std::io::stdin()
                .read_to_string(&mut help)
                .context("cannot read the --help text on stdin")?;
            let mut cmd = command_from_help(name, &help)?;
            clap_complete::generate(shell, &mut cmd, name.clone(), &mut std::io::stdout());
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

/// One option line of a getopt-style `--help`.
#[derive(Debug, PartialEq, Eq)]
struct OptLine {
    short: Option<char>,
    long: String,
    value: Option<String>,
    help: String,
}

/// Reads `-c, --configure   text` or `--cidr=CIDR   text`; None for any other line.
fn parse_opt_line(line: &str) -> Option<OptLine> {
    let line = line.trim_end();
    if !line.starts_with('-') {
        return None;
    }
    let (spec, help) = match line.split_once("  ") {
        Some((s, h)) => (s, h.trim()),
        None => (line, ""),
    };
    let mut short = None;
    let mut long = None;
    for part in spec.split(", ") {
        if let Some(l) = part.strip_prefix("--") {
            long = Some(l);
        } else if let Some(s) = part.strip_prefix('-') {
            let mut chars = s.chars();
            short = chars.next().filter(|_| chars.next().is_none());
        }
    }
    let (long, value) = match long?.split_once('=') {
        Some((l, v)) => (l, Some(v.to_owned())),
        None => (long?, None),
    };
    Some(OptLine {
        short,
        long: long.to_owned(),
        value,
        help: help.to_owned(),
    })
}

/// A clap command with the options of `help`, for completion only.
fn command_from_help(name: &str, help: &str) -> anyhow::Result<Command> {
    let opts: Vec<OptLine> = help.lines().filter_map(parse_opt_line).collect();
    if opts.is_empty() {
        bail!("no option lines in the --help text of {name}");
    }
    let mut cmd = Command::new(name.to_owned())
        .disable_help_flag(true)
        .disable_version_flag(true);
    for o in opts {
        let mut arg = Arg::new(o.long.clone()).long(o.long).help(o.help);
        if let Some(c) = o.short {
            arg = arg.short(c);
        }
        arg = match o.value.as_deref() {
            None => arg.action(ArgAction::SetTrue),
            Some(v) => {
                let hint = if v.contains("PATH") {
                    ValueHint::AnyPath
                } else {
                    ValueHint::Other
                };
                arg.value_name(v.to_owned()).num_args(1).value_hint(hint)
            }
        };
        cmd = cmd.arg(arg);
    }
    Ok(cmd.arg(
        Arg::new("operands")
            .num_args(0..=2)
            .value_name("PID|PATH|FD [TAPNAME]"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_lines_of_a_getopt_help_become_arguments() {
        assert_eq!(
            parse_opt_line("-e, --exit-fd=FD         exit 0 when the other end of FD closes"),
            Some(OptLine {
                short: Some('e'),
                long: "exit-fd".into(),
                value: Some("FD".into()),
                help: "exit 0 when the other end of FD closes".into(),
            })
        );
        assert_eq!(
            parse_opt_line("--disable-dns            do not forward DNS"),
            Some(OptLine {
                short: None,
                long: "disable-dns".into(),
                value: None,
                help: "do not forward DNS".into(),
            })
        );
        assert_eq!(
            parse_opt_line("                         (default: none)"),
            None
        );
        assert_eq!(parse_opt_line("Usage: x [OPTION]..."), None);
    }

    #[test]
    fn bash_completion_lists_every_option_of_the_help() {
        let help = "Usage: x [OPTION]...\n-c, --configure   c\n--cidr=CIDR   n\n";
        let mut cmd = command_from_help("x", help).expect("options");
        let mut out = Vec::new();
        clap_complete::generate(Shell::Bash, &mut cmd, "x", &mut out);
        let script = String::from_utf8(out).expect("utf-8");
        for flag in ["--configure", "-c", "--cidr"] {
            assert!(script.contains(flag), "{flag} missing");
        }
        assert!(command_from_help("x", "no options here").is_err());
    }
}
