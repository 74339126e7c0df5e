//! Shared runner of the `confine_*` integration tests of `rr_ns::confine`: the `Case` table
//! type, libtest's command line and output, and the parent-side `expect_done` check.
//! Called by each test binary's `main` with its own `cases()`; it confines nothing itself
//! (children do, in `spawn`), and holds no test of its own. Keep it to the runner.
//!
//! Every test runs its confined part in a child: the test binary started again with
//! `--child NAME [ARG]`, so the test process itself is never confined; the parent checks how
//! the child ended (exit code or signal) and what it printed. Each binary has its own `main`
//! (harness = false) because `sandbox` needs a single-threaded process and libtest runs each
//! test on a thread of its own; it prints libtest's lines, takes name filters (`--exact`,
//! `--skip`, `--list` too) and exits 101 on a failure.
//!
//! Children that call `sandbox` run inside `unshare -Ur` (root of a fresh user namespace, which
//! is what `sandbox` needs), as the unprivileged user rrtest when the tests run as root (as
//! `scripts/test` runs them), otherwise as the calling user. Seccomp children run as whoever
//! runs the tests. Traffic stays on 127.0.0.1. No sleeps: every wait has a deadline, and a child
//! past it is killed and the test fails.

// Each test binary compiles this module and uses only part of it (cargo's convention for
// shared integration-test code), so what one binary leaves unused is not dead.
#![allow(dead_code)]

pub mod spawn;
pub mod work;

use std::time::{Duration, Instant};

pub use spawn::Env;

/// The unprivileged user `scripts/setup` creates for the tests.
pub const TEST_USER: &str = "rrtest";
/// How long a child may take; debug builds on a busy 2-core machine are slow.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(60);
/// How long a single step inside a child may block (a read, an accept, an epoll wait).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Name of the socket file the remover tests bind.
pub const SOCKET_NAME: &str = "api.sock";

pub type Check = Result<(), String>;

// ---------------------------------------------------------------------------------------------
// The tests: (name, how the child runs, the child's body, the parent's check).

/// How a child is started.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// As the user running the tests, no namespace.
    Direct,
    /// Inside `unshare -Ur`, as rrtest when run as root.
    UserNs,
    /// As rrtest (or the calling user when not root), no namespace: no privilege at all.
    Unprivileged,
    /// As real root (only when the tests run as root).
    RealRoot,
}

pub struct Case {
    pub name: &'static str,
    pub how: How,
    pub child: fn(Option<&str>) -> Check,
    pub parent: fn(&Case, &Env) -> Check,
}

/// Prints a progress line at once (stdout is a pipe; println! flushes at the newline).
pub fn say(line: &str) {
    println!("{line}");
}

pub fn expect_done(case: &Case, env: &Env) -> Check {
    let out = env.run(case, None)?.finish()?;
    if out.status.code() == Some(0) && out.stdout.lines().any(|l| l == "done") {
        Ok(())
    } else {
        Err(format!("want exit 0 after \"done\"\n{out}"))
    }
}

/// An error and its sources on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// main: a child's body, or the runner.

/// The whole of a test binary's `main`: runs the child named on the command line, or the
/// runner over `cases`.
pub fn main(cases: fn() -> Vec<Case>) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child_main(cases, &args[1..]);
    }
    std::process::exit(runner(cases, &args));
}

fn child_main(cases: fn() -> Vec<Case>, args: &[String]) -> ! {
    // A child killed on purpose must not leave a core file behind.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    let all = cases();
    let Some(case) = args.first().and_then(|n| all.iter().find(|c| c.name == n)) else {
        eprintln!("unknown child {args:?}");
        std::process::exit(2);
    };
    match (case.child)(args.get(1).map(String::as_str)) {
        Ok(()) => std::process::exit(0),
        Err(why) => {
            eprintln!("{}: {why}", case.name);
            std::process::exit(1);
        }
    }
}

/// libtest's command line, as far as it matters here.
struct Selection {
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    list: bool,
}

impl Selection {
    fn parse(args: &[String]) -> Selection {
        let mut s = Selection {
            filters: Vec::new(),
            skip: Vec::new(),
            exact: false,
            list: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--exact" => s.exact = true,
                "--list" => s.list = true,
                "--skip" => s.skip.extend(it.next().cloned()),
                // Options with a value that do not matter here.
                "--format" | "--test-threads" | "--color" | "--logfile" | "-Z" => {
                    it.next();
                }
                flag if flag.starts_with('-') => {}
                filter => s.filters.push(filter.to_owned()),
            }
        }
        s
    }

    fn wants(&self, name: &str) -> bool {
        let matches = |f: &String| {
            if self.exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        };
        (self.filters.is_empty() || self.filters.iter().any(matches))
            && !self.skip.iter().any(|s| name.contains(s.as_str()))
    }
}

fn runner(cases: fn() -> Vec<Case>, args: &[String]) -> i32 {
    let selection = Selection::parse(args);
    let all = cases();
    let chosen: Vec<&Case> = all.iter().filter(|c| selection.wants(c.name)).collect();
    if selection.list {
        for c in &chosen {
            println!("{}: test", c.name);
        }
        return 0;
    }
    let filtered = all.len() - chosen.len();
    println!("\nrunning {} tests", chosen.len());
    let started = Instant::now();
    // Orphaned grandchildren (the remover) become our children, so we can wait for them.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        println!("cannot become a child subreaper: {e}");
        return 101;
    }
    let env = Env::new();
    let (mut passed, mut ignored, mut failures) = (0, 0, Vec::new());
    for case in chosen {
        let result = match &env {
            Err(why) => Err(why.clone()),
            Ok(env) if case.how == How::RealRoot && !env.root => {
                println!("test {} ... ignored, needs real root", case.name);
                ignored += 1;
                continue;
            }
            Ok(env) => (case.parent)(case, env),
        };
        match result {
            Ok(()) => {
                println!("test {} ... ok", case.name);
                passed += 1;
            }
            Err(why) => {
                println!("test {} ... FAILED", case.name);
                failures.push((case.name, why));
            }
        }
    }
    if !failures.is_empty() {
        println!("\nfailures:\n");
        for (name, why) in &failures {
            println!("---- {name} ----\n{why}\n");
        }
        println!("failures:");
        for (name, _) in &failures {
            println!("    {name}");
        }
    }
    let verdict = if failures.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {} failed; {ignored} ignored; 0 measured; \
         {filtered} filtered out; finished in {:.2}s\n",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        0
    } else {
        101
    }
}
