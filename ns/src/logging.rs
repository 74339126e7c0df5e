//! Logging set-up for the binaries (`rootless-run`, `rr-slirp4netns`): tracing to stderr at
//! the levels RUST_LOG names (`LEVEL` and `TARGET=LEVEL`, comma separated), warnings only when
//! it is unset or unreadable. Called once by each `main`, before anything logs.
//! Uses tracing-subscriber's `Targets` rather than `EnvFilter`, whose directive parser compiles
//! regexes at every start (time, heap and ~180 KB of text in the helper).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Installs the global subscriber; `prog` prefixes the one line printed for a bad RUST_LOG.
pub fn init(prog: &str) {
    let default = || Targets::new().with_default(tracing::Level::WARN);
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) => spec.parse::<Targets>().unwrap_or_else(|error| {
            eprintln!("{prog}: RUST_LOG={spec:?} ignored: {error}");
            default()
        }),
        Err(_) => default(),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::stderr),
        )
        .with(filter)
        .init();
}
