//! The hand-written man pages (docs/*.1.md) as roff, for man(1): the markdown subset those files
//! use, and nothing more. Block level: `# NAME(S)` title, `## SECTION` headings, paragraphs,
//! fenced code blocks, `- ` bullet lists, definition lists (a term line, then `: ` and lines
//! indented two spaces) and `|` tables (each body row a tagged paragraph: first cell the tag,
//! the others its text). Inline: `` `code` `` and `**strong**` in bold, `*emphasis*` in
//! italics, `[text](url)` as "text (url)"; roff's special characters escaped.
//! Called by rootless-run's `--man-page` (its hand-written sections, after the part clap
//! generates) and by `rr-docgen man` (rr-slirp4netns's whole page). Pure text to text: no I/O.

#![deny(unsafe_code)]

/// A markdown page that does not start as docs/*.1.md pages do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageError {
    /// The first line is not `# NAME(SECTION)`.
    #[error("the first line must be '# NAME(SECTION)', found {0:?}")]
    Title(String),
}

/// The whole page: a `.TH` line from the `# NAME(SECTION)` title, then every section.
/// `version` goes into the footer.
pub fn page(md: &str, version: &str) -> Result<String, PageError> {
    let first = md.lines().next().unwrap_or_default();
    let (name, section) = first
        .strip_prefix("# ")
        .and_then(|t| t.strip_suffix(')'))
        .and_then(|t| t.split_once('('))
        .ok_or_else(|| PageError::Title(first.to_owned()))?;
    let mut out = format!(
        ".TH {} {section} \"\" \"{name} {version}\" \"User Commands\"\n",
        name.to_ascii_uppercase()
    );
    out.push_str(&blocks(md.lines().skip(1)));
    Ok(out)
}

/// The one-line summary of the NAME section (`tool - does a thing` gives `does a thing`).
pub fn summary(md: &str) -> Option<String> {
    let name = md.split("\n## NAME\n").nth(1)?;
    let para: Vec<&str> = name
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let line = para.join(" ");
    let (_, text) = line.split_once(" - ")?;
    Some(text.to_owned())
}

/// The sections of `md` whose headings are not in `skip`, in their order, as roff.
pub fn sections_except(md: &str, skip: &[&str]) -> String {
    sections(md, |h| !skip.contains(&h))
}

/// The sections of `md` whose headings are in `only`, in their order, as roff.
pub fn sections_only(md: &str, only: &[&str]) -> String {
    sections(md, |h| only.contains(&h))
}

fn sections(md: &str, keep: impl Fn(&str) -> bool) -> String {
    let mut kept = Vec::new();
    let mut on = false;
    for line in md.lines() {
        if line.starts_with("# ") {
            on = false;
            continue;
        }
        if let Some(h) = line.strip_prefix("## ") {
            on = keep(h.trim());
        }
        if on {
            kept.push(line);
        }
    }
    blocks(kept.into_iter())
}

/// Where a line continues what came before.
#[derive(PartialEq)]
enum Open {
    Nothing,
    Paragraph,
    /// A definition's or bullet's text (continued by lines indented two spaces).
    Item,
}

/// Converts block-level markdown to roff. The text of a paragraph or item is converted as
/// one string, so inline markup may span lines.
fn blocks<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    let lines: Vec<&str> = lines.collect();
    let mut out = String::new();
    let mut text: Vec<&str> = Vec::new();
    let mut open = Open::Nothing;
    let mut i = 0;
    while let Some(&line) = lines.get(i) {
        i += 1;
        let continues = match open {
            Open::Item => line.starts_with("  "),
            Open::Paragraph => !starts_block(line, lines.get(i).copied()),
            Open::Nothing => false,
        };
        if continues && !line.trim().is_empty() {
            text.push(line.trim());
            continue;
        }
        flush(&mut text, &mut out);
        open = Open::Nothing;
        if line.trim().is_empty() {
        } else if let Some(h) = line.strip_prefix("## ") {
            out.push_str(&format!(".SH {}\n", escape(h.trim())));
        } else if line.starts_with("```") {
            out.push_str(".PP\n.RS 4\n.nf\n");
            while let Some(&code) = lines.get(i) {
                i += 1;
                if code.starts_with("```") {
                    break;
                }
                out.push_str(&line_start(&escape(code)));
                out.push('\n');
            }
            out.push_str(".fi\n.RE\n");
        } else if line.starts_with('|') {
            if lines.get(i).is_some_and(|n| is_separator(n)) {
                // The header row and the separator under it: the rows speak for themselves.
                i += 1;
            } else {
                table_row(line, &mut out);
            }
        } else if let Some(item) = line.strip_prefix("- ") {
            out.push_str(".IP \\(bu 2\n");
            text.push(item);
            open = Open::Item;
        } else if let Some(def) = lines.get(i).and_then(|n| n.strip_prefix(": ")) {
            out.push_str(".TP\n");
            push_text(line, &mut out);
            text.push(def);
            i += 1;
            open = Open::Item;
        } else {
            out.push_str(".PP\n");
            text.push(line.trim());
            open = Open::Paragraph;
        }
    }
    flush(&mut text, &mut out);
    out
}

/// Whether `line` (followed by `next`) starts a block of its own rather than continuing a
/// paragraph.
fn starts_block(line: &str, next: Option<&str>) -> bool {
    line.starts_with("## ")
        || line.starts_with("```")
        || line.starts_with('|')
        || line.starts_with("- ")
        || next.is_some_and(|n| n.starts_with(": "))
}

/// Converts and writes the pending text of a paragraph or item.
fn flush(text: &mut Vec<&str>, out: &mut String) {
    if !text.is_empty() {
        push_text(&text.join(" "), out);
        text.clear();
    }
}

fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

/// `| --- | :-: |`: the line under a table's header.
fn is_separator(line: &str) -> bool {
    line.starts_with('|')
        && cells(line)
            .iter()
            .all(|c| !c.is_empty() && c.chars().all(|ch| ch == '-' || ch == ':'))
}

/// One `| a | b |` body row, as a tagged paragraph.
fn table_row(line: &str, out: &mut String) {
    let cells = cells(line);
    let (tag, rest) = cells.split_first().unwrap_or((&"", &[]));
    out.push_str(".TP\n");
    push_text(tag, out);
    push_text(&rest.join("; "), out);
}

fn push_text(text: &str, out: &mut String) {
    out.push_str(&line_start(&inline(text)));
    out.push('\n');
}

/// A roff text line may not start with a control character.
fn line_start(s: &str) -> String {
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s.to_owned()
    }
}

/// roff's escapes for literal text: backslash and the hyphen-minus (so options copy as typed).
fn escape(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-")
}

/// Inline markup to roff fonts; everything else escaped.
fn inline(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some((code, after)) = span(rest, "`", "`") {
            out.push_str(&format!("\\fB{}\\fR", escape(code)));
            rest = after;
        } else if let Some((strong, after)) = span(rest, "**", "**") {
            out.push_str(&format!("\\fB{}\\fR", inline(strong)));
            rest = after;
        } else if let Some((em, after)) = span(rest, "*", "*").filter(|(e, _)| !e.starts_with(' '))
        {
            out.push_str(&format!("\\fI{}\\fR", inline(em)));
            rest = after;
        } else if let Some((text, after)) = span(rest, "[", "](") {
            match after.split_once(')') {
                Some((url, after)) if url == text => {
                    out.push_str(&escape(url));
                    rest = after;
                }
                Some((url, after)) => {
                    out.push_str(&format!("{} ({})", inline(text), escape(url)));
                    rest = after;
                }
                None => {
                    out.push_str(&escape("["));
                    rest = &rest[1..];
                }
            }
        } else {
            let ch = rest.chars().next().expect("rest is not empty");
            out.push_str(&escape(&ch.to_string()));
            rest = &rest[ch.len_utf8()..];
        }
    }
    out
}

/// If `s` starts with `open` and contains `close` after it: the text between, and what follows.
fn span<'a>(s: &'a str, open: &str, close: &str) -> Option<(&'a str, &'a str)> {
    let body = s.strip_prefix(open)?;
    let end = body.find(close)?;
    Some((&body[..end], &body[end + close.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD: &str = "# tool(1)

## NAME

tool - does a thing

## OPTIONS

`-x`, `--ex=N`
: Does x, see [the docs](https://example.org/d).
  Default: 3.

- one **bold** and *it*
- .two

## EXAMPLES

```
tool --ex=1 \\
  .x
```

| who | command |
| --- | --- |
| any user | `tool -x` |
";

    #[test]
    fn page_has_a_title_and_every_construct_in_roff() {
        let roff = page(MD, "0.1.0").expect("page");
        let want = ".TH TOOL 1 \"\" \"tool 0.1.0\" \"User Commands\"
.SH NAME
.PP
tool \\- does a thing
.SH OPTIONS
.TP
\\fB\\-x\\fR, \\fB\\-\\-ex=N\\fR
Does x, see the docs (https://example.org/d). Default: 3.
.IP \\(bu 2
one \\fBbold\\fR and \\fIit\\fR
.IP \\(bu 2
\\&.two
.SH EXAMPLES
.PP
.RS 4
.nf
tool \\-\\-ex=1 \\e
  .x
.fi
.RE
.TP
any user
\\fBtool \\-x\\fR
";
        assert_eq!(roff, want);
    }

    #[test]
    fn summary_is_the_name_line_after_the_dash() {
        assert_eq!(summary(MD).as_deref(), Some("does a thing"));
        assert_eq!(summary("# x(1)\n"), None);
    }

    #[test]
    fn sections_are_picked_by_heading() {
        let only = sections_only(MD, &["EXAMPLES"]);
        assert!(only.starts_with(".SH EXAMPLES\n"), "{only}");
        assert!(!only.contains("NAME"));
        let except = sections_except(MD, &["NAME", "EXAMPLES"]);
        assert!(except.starts_with(".SH OPTIONS\n"), "{except}");
        assert!(!except.contains(".SH EXAMPLES"));
    }

    #[test]
    fn a_page_without_a_title_is_refused() {
        assert_eq!(
            page("## NAME\n", "1"),
            Err(PageError::Title("## NAME".into()))
        );
    }
}
