//! The policy file (`--policy FILE`): one directive a line, `allow RULE`, `deny RULE` or
//! `egress allow|deny`; `#` starts a comment (rules never contain one); blank lines are
//! skipped. Rules keep their order; a later `egress` line overrides an earlier one.
//! Called by the launcher with the file's text and by the `policy_file` fuzz target; pure, no
//! I/O. The first bad line is the error, with its number.

use super::rule::{Action, Rule, RuleError};

/// The directives of a policy file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyText {
    /// `allow`/`deny` lines, in order.
    pub rules: Vec<Rule>,
    /// The last `egress` line, if any.
    pub default: Option<Action>,
}

/// Why a line of a policy file is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The first word is not `allow`, `deny` or `egress`.
    #[error("line {line}: unknown directive '{word}' (expected allow, deny or egress)")]
    Directive {
        /// 1-based line number.
        line: usize,
        /// The word found.
        word: String,
    },
    /// `egress` not followed by exactly `allow` or `deny`.
    #[error("line {line}: egress takes allow or deny")]
    Egress {
        /// 1-based line number.
        line: usize,
    },
    /// A rule that does not parse.
    #[error("line {line}: {rule}: {source}")]
    Rule {
        /// 1-based line number.
        line: usize,
        /// The rule's text.
        rule: String,
        /// Why.
        source: RuleError,
    },
}

/// Parses the text of a policy file.
pub fn parse(text: &str) -> Result<PolicyText, FileError> {
    let mut out = PolicyText::default();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let body = raw.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        let (word, rest) = body
            .split_once(char::is_whitespace)
            .map_or((body, ""), |(w, r)| (w, r.trim()));
        if word == "egress" {
            out.default = Some(Action::parse(rest).ok_or(FileError::Egress { line })?);
            continue;
        }
        let action = Action::parse(word).ok_or_else(|| FileError::Directive {
            line,
            word: word.chars().take(64).collect(),
        })?;
        let rule = Rule::parse(action, rest).map_err(|source| FileError::Rule {
            line,
            rule: rest.chars().take(300).collect(),
            source,
        })?;
        out.rules.push(rule);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_comments_and_blank_lines() {
        let p = parse(
            "# sandbox policy\n\negress deny\nallow *.debian.org:443   # mirrors\n\
             deny  10.0.0.0/8\n\tallow pypi.org:443\n",
        )
        .expect("valid");
        assert_eq!(p.default, Some(Action::Deny));
        let texts: Vec<String> = p
            .rules
            .iter()
            .map(|r| format!("{} {r}", r.action.name()))
            .collect();
        assert_eq!(
            texts,
            [
                "allow *.debian.org:443",
                "deny 10.0.0.0/8",
                "allow pypi.org:443"
            ]
        );
    }

    #[test]
    fn each_bad_line_is_named_with_its_number() {
        assert_eq!(
            parse("allow x.org\npermit y.org\n")
                .unwrap_err()
                .to_string(),
            "line 2: unknown directive 'permit' (expected allow, deny or egress)"
        );
        assert_eq!(
            parse("egress maybe").unwrap_err().to_string(),
            "line 1: egress takes allow or deny"
        );
        assert_eq!(parse("egress").unwrap_err(), FileError::Egress { line: 1 });
        assert_eq!(
            parse("\n\ndeny 10.0.0.1/8").unwrap_err().to_string(),
            "line 3: 10.0.0.1/8: host bits are set past the prefix length (give the network address)"
        );
        assert_eq!(
            parse("allow").unwrap_err(),
            FileError::Rule {
                line: 1,
                rule: String::new(),
                source: RuleError::Empty
            }
        );
    }
}
