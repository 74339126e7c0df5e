//! `rootless-run --man-page`: the man page as roff. NAME, SYNOPSIS and OPTIONS are generated
//! from the clap definitions (`cli::command`, clap_mangen), so they never drift from `--help`;
//! the prose is docs/rootless-run.1.md's (DESCRIPTION and NETWORK before OPTIONS; POLICY,
//! ENTERING A PERSISTED SANDBOX, EXIT STATUS, ENVIRONMENT, FILES, EXAMPLES, SEE ALSO after),
//! compiled in and converted by `rr_docgen`.
//! Called by `main`; scripts/setup and scripts/package write its output to man1/rootless-run.1.

use std::io::{self, Write};

use crate::cli;

/// The hand-written page, whose sections other than NAME, SYNOPSIS and OPTIONS go in.
const HAND_WRITTEN: &str = include_str!("../../docs/rootless-run.1.md");
/// Sections that come from the clap definitions instead.
const GENERATED: [&str; 3] = ["NAME", "SYNOPSIS", "OPTIONS"];
/// Hand-written sections that go before OPTIONS.
const BEFORE_OPTIONS: [&str; 2] = ["DESCRIPTION", "NETWORK"];

/// Writes the whole page to `w`.
pub fn write(w: &mut dyn Write) -> io::Result<()> {
    // NAME's one line is the page's, not `--help`'s paragraph.
    let mut cmd = cli::command();
    if let Some(summary) = rr_docgen::summary(HAND_WRITTEN) {
        cmd = cmd.about(summary);
    }
    let man = clap_mangen::Man::new(cmd)
        .section("1")
        .manual("User Commands")
        .source(format!("rootless-run {}", env!("CARGO_PKG_VERSION")));
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    w.write_all(rr_docgen::sections_only(HAND_WRITTEN, &BEFORE_OPTIONS).as_bytes())?;
    man.render_options_section(w)?;
    let skip: Vec<&str> = GENERATED.iter().chain(&BEFORE_OPTIONS).copied().collect();
    w.write_all(rr_docgen::sections_except(HAND_WRITTEN, &skip).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_the_generated_and_the_hand_written_sections_in_order() {
        let mut out = Vec::new();
        write(&mut out).expect("render");
        let roff = String::from_utf8(out).expect("utf-8");
        let headings: Vec<&str> = roff
            .lines()
            .filter_map(|l| l.strip_prefix(".SH "))
            .collect();
        assert_eq!(
            headings,
            [
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "NETWORK",
                "OPTIONS",
                "\"EGRESS POLICY OPTIONS\"",
                "POLICY",
                "ENTERING A PERSISTED SANDBOX",
                "EXIT STATUS",
                "ENVIRONMENT",
                "FILES",
                "EXAMPLES",
                "SEE ALSO"
            ]
        );
        // Generated from clap: a flag added there appears here without editing the page.
        assert!(
            roff.contains("\\-\\-init"),
            "--init from the clap definitions"
        );
        assert!(roff.contains("\\-\\-mount\\-proc"));
    }
}
