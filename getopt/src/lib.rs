//! A getopt_long(3) work-alike (GNU semantics) for the drop-ins' command lines (slirp4netns's
//! and pasta's): every form a client may send parses as glibc parses it, and every mistake
//! gets glibc's message.
//! Called by each drop-in's `cli` with its option table; knows no option by name and prints
//! nothing. Moved here from rr-slirp4netns when rr-pasta needed the same parser.
//!
//! Why not clap (STYLE.md asks for it): slirp4netns's parser acts on each option where it
//! stands, so `--help` after a bad `--mtu` is an error and before it is help, and deprecated
//! aliases warn in order; an option given twice keeps the last value; a required argument may
//! start with '-' (`-e -1` is the value "-1", then a range error); long options may be
//! abbreviated to any unambiguous prefix (`--conf`, `--mt=1500`) with an exact name winning
//! (`--outbound-addr` against `--outbound-addr6`); and each failure has a fixed message on
//! stderr followed by the usage on stdout and exit 1. clap covers some of this with settings
//! (`infer_long_args`, `args_override_self`, `allow_hyphen_values`) but not the in-order
//! processing or the messages, so its output would differ exactly where clients look.
//!
//! What it does, as glibc without POSIXLY_CORRECT: scans all of argv, collecting non-options
//! as operands in order (permutation); `--` ends options; a lone `-` is an operand. Short
//! options cluster (`-c6`, `-cm1500`); a short option taking an argument takes the rest of its
//! word or else the next word. `--name=value` or `--name value` for long ones. With
//! `posixly_correct` the first operand ends the options, as glibc does when POSIXLY_CORRECT is
//! set, or as pasta's optstring asks with its leading '+'. Under 200 lines; `W;` and optional
//! arguments are not supported (neither drop-in uses them).

#![deny(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

/// Whether an option takes an argument (`no_argument`, `required_argument`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HasArg {
    /// A flag.
    No,
    /// Takes a value.
    Required,
}

/// One option: its short letter (if any), long name (if any), and what the caller calls it.
#[derive(Debug, Clone, Copy)]
pub struct OptSpec<Id> {
    /// The letter after `-`.
    pub short: Option<char>,
    /// The name after `--`.
    pub long: Option<&'static str>,
    /// Whether it takes a value.
    pub has_arg: HasArg,
    /// The caller's name for it.
    pub id: Id,
}

impl<Id> OptSpec<Id> {
    /// An option with a long name and, if `short` is given, a letter: one row of a drop-in's
    /// option table, usable in a `const` table.
    pub const fn long(short: Option<char>, long: &'static str, has_arg: HasArg, id: Id) -> Self {
        OptSpec {
            short,
            long: Some(long),
            has_arg,
            id,
        }
    }
}

/// The command line as `main` needs it: the words after the program name, argv[0] as given
/// (getopt-style messages and usage lines use it) and its file name (our own messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    /// argv without argv[0].
    pub args: Vec<String>,
    /// argv[0] as given (`default` when there is none).
    pub argv0: String,
    /// argv[0]'s file name.
    pub prog: String,
}

impl Argv {
    /// This process's argv; the word that is not UTF-8 as the error.
    pub fn from_env(default: &str) -> Result<Argv, std::ffi::OsString> {
        let mut words = std::env::args_os()
            .map(|a| a.into_string())
            .collect::<Result<Vec<String>, _>>()?
            .into_iter();
        let argv0 = words.next().unwrap_or_else(|| default.to_owned());
        let prog = std::path::Path::new(&argv0)
            .file_name()
            .map_or_else(|| argv0.clone(), |n| n.to_string_lossy().into_owned());
        Ok(Argv {
            args: words.collect(),
            argv0,
            prog,
        })
    }
}

/// A parse failure, displayed as glibc's message after "PROG: ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetoptError {
    /// `--name` matches no option (the word as given, without the dashes).
    Unrecognized(String),
    /// `--name` is a prefix of several options.
    Ambiguous {
        /// The word as given, without the dashes.
        given: String,
        /// Every matching long name.
        candidates: Vec<&'static str>,
    },
    /// `--flag=value` for an option that takes none.
    NoArgAllowed(&'static str),
    /// A long option that needs a value came last.
    LongNeedsArg(&'static str),
    /// `-x` is no option.
    InvalidShort(char),
    /// A short option that needs a value came last.
    ShortNeedsArg(char),
}

impl fmt::Display for GetoptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetoptError::Unrecognized(w) => write!(f, "unrecognized option '--{w}'"),
            GetoptError::Ambiguous { given, candidates } => {
                write!(f, "option '--{given}' is ambiguous; possibilities:")?;
                candidates.iter().try_for_each(|c| write!(f, " '--{c}'"))
            }
            GetoptError::NoArgAllowed(n) => write!(f, "option '--{n}' doesn't allow an argument"),
            GetoptError::LongNeedsArg(n) => write!(f, "option '--{n}' requires an argument"),
            GetoptError::InvalidShort(c) => write!(f, "invalid option -- '{c}'"),
            GetoptError::ShortNeedsArg(c) => write!(f, "option requires an argument -- '{c}'"),
        }
    }
}

impl std::error::Error for GetoptError {}

/// An iterator over the options of `args` (argv without argv[0]), in order; each item is an
/// option's id with its value. Operands are collected for `operands` once it is exhausted.
pub struct Getopt<'a, Id> {
    specs: &'a [OptSpec<Id>],
    args: &'a [String],
    /// Index of the next word.
    next: usize,
    /// Inside a short-option cluster: the word's index and the byte offset of the next letter.
    cluster: Option<(usize, usize)>,
    operands: Vec<&'a str>,
    posixly_correct: bool,
}

impl<'a, Id: Copy> Getopt<'a, Id> {
    /// Parses `args` (without the program name) against `specs`.
    pub fn new(specs: &'a [OptSpec<Id>], args: &'a [String], posixly_correct: bool) -> Self {
        Getopt {
            specs,
            args,
            next: 0,
            cluster: None,
            operands: Vec::new(),
            posixly_correct,
        }
    }

    /// The operands (non-option words) in order, once every option has been read.
    pub fn operands(&self) -> &[&'a str] {
        &self.operands
    }

    fn take_next_word(&mut self) -> Option<&'a str> {
        let w = self.args.get(self.next)?;
        self.next += 1;
        Some(w.as_str())
    }

    fn short(&mut self, word: usize, at: usize) -> Result<(Id, Option<&'a str>), GetoptError> {
        let text = self.args[word].as_str();
        let c = text[at..]
            .chars()
            .next()
            .expect("cluster offsets point at a letter");
        let after = at + c.len_utf8();
        self.cluster = (after < text.len()).then_some((word, after));
        let spec = self
            .specs
            .iter()
            .find(|s| s.short == Some(c))
            .ok_or(GetoptError::InvalidShort(c))?;
        match spec.has_arg {
            HasArg::No => Ok((spec.id, None)),
            HasArg::Required => {
                let value = match self.cluster.take() {
                    Some((_, rest)) => &text[rest..],
                    None => self.take_next_word().ok_or(GetoptError::ShortNeedsArg(c))?,
                };
                Ok((spec.id, Some(value)))
            }
        }
    }

    fn long(&mut self, body: &'a str) -> Result<(Id, Option<&'a str>), GetoptError> {
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let specs: &'a [OptSpec<Id>] = self.specs;
        let exact = specs.iter().find(|s| s.long == Some(name));
        let spec: &'a OptSpec<Id> = match exact {
            Some(s) => s,
            None => {
                let matches: Vec<&'a OptSpec<Id>> = specs
                    .iter()
                    .filter(|s| s.long.is_some_and(|l| l.starts_with(name)))
                    .collect();
                match matches.as_slice() {
                    [] => return Err(GetoptError::Unrecognized(body.to_owned())),
                    [one] => one,
                    many => {
                        return Err(GetoptError::Ambiguous {
                            given: body.to_owned(),
                            candidates: many.iter().filter_map(|s| s.long).collect(),
                        })
                    }
                }
            }
        };
        let full = spec.long.expect("matched by its long name");
        match (spec.has_arg, inline) {
            (HasArg::No, Some(_)) => Err(GetoptError::NoArgAllowed(full)),
            (HasArg::No, None) => Ok((spec.id, None)),
            (HasArg::Required, Some(v)) => Ok((spec.id, Some(v))),
            (HasArg::Required, None) => {
                let v = self
                    .take_next_word()
                    .ok_or(GetoptError::LongNeedsArg(full))?;
                Ok((spec.id, Some(v)))
            }
        }
    }
}

impl<'a, Id: Copy> Iterator for Getopt<'a, Id> {
    type Item = Result<(Id, Option<&'a str>), GetoptError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some((word, at)) = self.cluster {
            return Some(self.short(word, at));
        }
        loop {
            let index = self.next;
            let word = self.take_next_word()?;
            if word == "--" {
                self.operands
                    .extend(self.args[self.next..].iter().map(String::as_str));
                self.next = self.args.len();
                return None;
            }
            if let Some(body) = word.strip_prefix("--") {
                return Some(self.long(body));
            }
            if word.len() > 1 && word.starts_with('-') {
                return Some(self.short(index, 1));
            }
            self.operands.push(word);
            if self.posixly_correct {
                self.operands
                    .extend(self.args[self.next..].iter().map(String::as_str));
                self.next = self.args.len();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum T {
        C,
        M,
        Six,
        Outbound,
        Outbound6,
        DisableHost,
        DisableDns,
    }

    const SPECS: &[OptSpec<T>] = &[
        OptSpec {
            short: Some('c'),
            long: Some("configure"),
            has_arg: HasArg::No,
            id: T::C,
        },
        OptSpec {
            short: Some('m'),
            long: Some("mtu"),
            has_arg: HasArg::Required,
            id: T::M,
        },
        OptSpec {
            short: Some('6'),
            long: Some("enable-ipv6"),
            has_arg: HasArg::No,
            id: T::Six,
        },
        OptSpec {
            short: None,
            long: Some("outbound-addr"),
            has_arg: HasArg::Required,
            id: T::Outbound,
        },
        OptSpec {
            short: None,
            long: Some("outbound-addr6"),
            has_arg: HasArg::Required,
            id: T::Outbound6,
        },
        OptSpec {
            short: None,
            long: Some("disable-host-loopback"),
            has_arg: HasArg::No,
            id: T::DisableHost,
        },
        OptSpec {
            short: None,
            long: Some("disable-dns"),
            has_arg: HasArg::No,
            id: T::DisableDns,
        },
    ];

    type Parsed = (Vec<(T, Option<String>)>, Result<Vec<String>, GetoptError>);

    /// Every option until the first error, and the operands (or that error).
    fn parse_with(words: &[&str], posix: bool) -> Parsed {
        let args: Vec<String> = words.iter().map(|s| (*s).to_owned()).collect();
        let mut g = Getopt::new(SPECS, &args, posix);
        let mut opts = Vec::new();
        for item in g.by_ref() {
            match item {
                Ok((id, v)) => opts.push((id, v.map(str::to_owned))),
                Err(e) => return (opts, Err(e)),
            }
        }
        let ops = g.operands().iter().map(|s| (*s).to_owned()).collect();
        (opts, Ok(ops))
    }

    fn parse(words: &[&str]) -> Parsed {
        parse_with(words, false)
    }

    fn mtu(v: &str) -> (T, Option<String>) {
        (T::M, Some(v.to_owned()))
    }

    #[test]
    fn every_spelling_of_a_value_gives_the_same_value() {
        for words in [
            &["--mtu=1500", "7"][..],
            &["--mtu", "1500", "7"],
            &["-m", "1500", "7"],
            &["-m1500", "7"],
            &["--mt=1500", "7"],
            &["--m", "1500", "7"],
        ] {
            let (opts, ops) = parse(words);
            assert_eq!(opts, [mtu("1500")], "{words:?}");
            assert_eq!(ops.unwrap(), ["7"], "{words:?}");
        }
    }

    #[test]
    fn short_flags_cluster_and_a_value_ends_the_cluster() {
        let (opts, _) = parse(&["-c6"]);
        assert_eq!(opts, [(T::C, None), (T::Six, None)]);
        let (opts, _) = parse(&["-6cm65520"]);
        assert_eq!(opts, [(T::Six, None), (T::C, None), mtu("65520")]);
        let (opts, ops) = parse(&["-cm", "9000", "x"]);
        assert_eq!(opts, [(T::C, None), mtu("9000")]);
        assert_eq!(ops.unwrap(), ["x"]);
    }

    #[test]
    fn options_after_operands_are_options_and_double_dash_ends_them() {
        let (opts, ops) = parse(&["123", "-c", "tap0", "--mtu", "9000"]);
        assert_eq!(opts, [(T::C, None), mtu("9000")]);
        assert_eq!(ops.unwrap(), ["123", "tap0"]);
        let (opts, ops) = parse(&["-c", "--", "-m", "tap0"]);
        assert_eq!(opts, [(T::C, None)]);
        assert_eq!(ops.unwrap(), ["-m", "tap0"]);
        let (_, ops) = parse(&["-", "x"]);
        assert_eq!(ops.unwrap(), ["-", "x"]);
    }

    #[test]
    fn posixly_correct_stops_at_the_first_operand() {
        let (opts, ops) = parse_with(&["-c", "123", "-6", "tap0"], true);
        assert_eq!(opts, [(T::C, None)]);
        assert_eq!(ops.unwrap(), ["123", "-6", "tap0"]);
    }

    #[test]
    fn a_required_value_may_start_with_a_dash() {
        assert_eq!(parse(&["-m", "-1"]).0, [mtu("-1")]);
        assert_eq!(parse(&["--mtu", "--configure"]).0, [mtu("--configure")]);
        assert_eq!(parse(&["--mtu="]).0, [mtu("")]);
    }

    #[test]
    fn an_exact_name_beats_a_longer_one_it_prefixes() {
        let (opts, _) = parse(&["--outbound-addr=eth0", "--outbound-addr6", "eth1"]);
        assert_eq!(
            opts,
            [
                (T::Outbound, Some("eth0".into())),
                (T::Outbound6, Some("eth1".into()))
            ]
        );
    }

    #[test]
    fn errors_carry_glibcs_messages() {
        let err = |w: &[&str]| parse(w).1.unwrap_err().to_string();
        assert_eq!(err(&["--bogus=1"]), "unrecognized option '--bogus=1'");
        assert_eq!(
            err(&["--disable"]),
            "option '--disable' is ambiguous; possibilities: '--disable-host-loopback' \
             '--disable-dns'"
        );
        assert_eq!(
            err(&["--outbound=x"]),
            "option '--outbound=x' is ambiguous; possibilities: '--outbound-addr' \
             '--outbound-addr6'"
        );
        assert_eq!(
            err(&["--conf=yes"]),
            "option '--configure' doesn't allow an argument"
        );
        assert_eq!(err(&["--mtu"]), "option '--mtu' requires an argument");
        assert_eq!(err(&["-x"]), "invalid option -- 'x'");
        assert_eq!(err(&["-cx"]), "invalid option -- 'x'");
        assert_eq!(err(&["-c", "-m"]), "option requires an argument -- 'm'");
    }

    #[test]
    fn options_before_an_error_are_returned_in_order() {
        let (opts, res) = parse(&["-6", "--mtu=1", "-q", "-c"]);
        assert_eq!(opts, [(T::Six, None), mtu("1")]);
        assert_eq!(res.unwrap_err(), GetoptError::InvalidShort('q'));
    }
}
