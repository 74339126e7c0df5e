//! The egress policy options of `rootless-run` (docs/egress.md): their clap definitions
//! (`PolicyArgs`, flattened into `cli::Args` under their own help heading) and their
//! validation into `config::PolicyConfig`.
//! Called by `cli::parse` (to record the order of `--allow` and `--deny`) and `cli::validate`.
//! Its one piece of I/O is reading the `--policy` file, so a bad line is a usage error.
//!
//! Rule order, first match wins: `--allow`/`--deny` in command-line order, then the
//! `--policy` file's rules, then the presets (`--no-lan`, `--no-host`), so a command-line rule
//! can open a hole in a file or a preset. The default is `--egress`, else the file's `egress`
//! line, else allow.

use std::path::PathBuf;
use std::time::Duration;

use clap::ArgMatches;
use netstack::policy::{file, Action, Rule, TtlBounds, MAX_TTL};

use super::{usage, UsageError};
use crate::config::PolicyConfig;

/// Longest `--policy` file read: far beyond 100,000 rules of typical length.
const MAX_POLICY_FILE: u64 = 64 << 20;

/// Help heading of the options below.
const HEADING: &str = "Egress policy options";

/// The egress policy options.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// Allow flows matching RULE = [tcp:|udp:|icmp:]TARGET[:PORT[-END]], TARGET an IPv4/IPv6
    /// address or CIDR (IPv6 in brackets with a port), a host name, or *.domain (names below
    /// it); names are enforced through the DNS forwarder; repeatable
    #[arg(help_heading = HEADING, long, value_name = "RULE")]
    allow: Vec<String>,
    /// Deny flows matching RULE (grammar as --allow): TCP gets a reset, UDP and ICMP an ICMP
    /// administratively prohibited, DNS queries for a denied name REFUSED; repeatable
    #[arg(help_heading = HEADING, long, value_name = "RULE")]
    deny: Vec<String>,
    /// What happens to flows no rule matches [default: allow, or the --policy file's]
    #[arg(help_heading = HEADING, long, value_name = "allow|deny", value_parser = ["allow", "deny"])]
    egress: Option<String>,
    /// Read rules from FILE: lines 'allow RULE', 'deny RULE', 'egress allow|deny', '#' comments
    #[arg(help_heading = HEADING, long = "policy", value_name = "FILE")]
    policy_file: Option<PathBuf>,
    /// Deny private, link-local, CGNAT, unique-local and multicast ranges, cloud metadata
    /// addresses and the host's own addresses; the gateway stays reachable
    #[arg(help_heading = HEADING, long)]
    no_lan: bool,
    /// Deny the host: implies --disable-host-loopback and denies the host's own addresses
    #[arg(help_heading = HEADING, long)]
    no_host: bool,
    /// Print the policy these options make (rules in order, presets expanded) and exit
    #[arg(help_heading = HEADING, long)]
    print_policy: bool,
    /// Write one JSON line per flow opened or denied to FILE (appended)
    #[arg(help_heading = HEADING, long, value_name = "FILE")]
    log_egress: Option<PathBuf>,
    /// Shortest time an allowed DNS answer keeps its addresses open, whatever its TTL (at most
    /// a week)
    #[arg(help_heading = HEADING, long, value_name = "SECONDS", default_value_t = TtlBounds::default().min.as_secs(),
          value_parser = clap::value_parser!(u64).range(..=MAX_TTL.as_secs()))]
    egress_ttl_min: u64,
    /// Longest time an allowed DNS answer keeps its addresses open, whatever its TTL
    #[arg(help_heading = HEADING, long, value_name = "SECONDS", default_value_t = TtlBounds::default().max.as_secs(),
          value_parser = clap::value_parser!(u64).range(..=MAX_TTL.as_secs()))]
    egress_ttl_max: u64,
    /// `--allow` and `--deny` values in command-line order.
    #[arg(skip)]
    ordered: Vec<(Action, String)>,
    /// The options above that the command line gave, as `--name`.
    #[arg(skip)]
    given: Vec<String>,
}

impl PolicyArgs {
    /// Records the command-line order of `--allow` and `--deny`, and which options were
    /// given, from clap's matches (the derive keeps each list apart).
    pub fn note_order(&mut self, matches: &ArgMatches) {
        let mut all: Vec<(usize, Action, String)> = Vec::new();
        for (id, action, values) in [
            ("allow", Action::Allow, &self.allow),
            ("deny", Action::Deny, &self.deny),
        ] {
            let indices = matches.indices_of(id).into_iter().flatten();
            for (i, v) in indices.zip(values.iter()) {
                all.push((i, action, v.clone()));
            }
        }
        all.sort_by_key(|(i, _, _)| *i);
        self.ordered = all.into_iter().map(|(_, a, v)| (a, v)).collect();
        self.given = super::net::given::<Self>(matches);
    }

    /// The first policy option the command line gave, if any (kernel mode and `--join`
    /// cannot carry a policy).
    pub fn first_given(&self) -> Option<&str> {
        self.given.first().map(String::as_str)
    }

    /// Whether `--print-policy` was given.
    pub fn print(&self) -> bool {
        self.print_policy
    }
}

/// Checks the policy options; `None` when none asks for a policy.
pub fn validate(a: &PolicyArgs) -> Result<Option<PolicyConfig>, UsageError> {
    let mut rules = Vec::with_capacity(a.ordered.len());
    for (action, text) in &a.ordered {
        let rule = Rule::parse(*action, text)
            .map_err(|e| usage(format!("--{} {text}", action.name()), e.to_string()))?;
        rules.push(rule);
    }
    let mut default = None;
    if let Some(path) = &a.policy_file {
        let flag = || format!("--policy {}", path.display());
        let text = read_limited(path).map_err(|e| usage(flag(), e))?;
        let parsed = file::parse(&text).map_err(|e| usage(flag(), e.to_string()))?;
        rules.extend(parsed.rules);
        default = parsed.default;
    }
    if let Some(e) = &a.egress {
        default = Action::parse(e);
    }
    if a.egress_ttl_max < a.egress_ttl_min {
        return Err(usage(
            format!("--egress-ttl-max {}", a.egress_ttl_max),
            format!("below --egress-ttl-min ({})", a.egress_ttl_min),
        ));
    }
    let wanted = !rules.is_empty()
        || default.is_some()
        || a.no_lan
        || a.no_host
        || a.log_egress.is_some()
        || a.print_policy;
    if !wanted {
        return Ok(None);
    }
    Ok(Some(PolicyConfig {
        rules,
        default: default.unwrap_or(Action::Allow),
        no_lan: a.no_lan,
        no_host: a.no_host,
        ttl: TtlBounds {
            min: Duration::from_secs(a.egress_ttl_min),
            max: Duration::from_secs(a.egress_ttl_max),
        },
        log: a.log_egress.clone(),
    }))
}

/// The policy file's text; the reason in words when it cannot be read.
fn read_limited(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    f.take(MAX_POLICY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_POLICY_FILE {
        return Err(format!("larger than {MAX_POLICY_FILE} bytes"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use netstack::policy::Action;

    #[test]
    fn allow_and_deny_keep_their_command_line_order() {
        let c = run(&[
            "--deny",
            "10.0.0.0/8",
            "--allow",
            "pypi.org:443",
            "--deny",
            "x.org",
            "true",
        ])
        .expect("valid");
        let p = c.net.policy.expect("a policy");
        let text: Vec<String> = p
            .rules
            .iter()
            .map(|r| format!("{} {r}", r.action.name()))
            .collect();
        assert_eq!(
            text,
            ["deny 10.0.0.0/8", "allow pypi.org:443", "deny x.org"]
        );
        assert_eq!(p.default, Action::Allow);
    }

    #[test]
    fn a_malformed_rule_is_one_line_naming_it() {
        assert_eq!(
            run(&["--allow", "pypi.org:http", "true"]).expect_err("bad port"),
            "--allow pypi.org:http: port must be a number from 1 to 65535"
        );
        assert_eq!(
            run(&["--deny", "10.0.0.1/8", "true"]).expect_err("host bits"),
            "--deny 10.0.0.1/8: host bits are set past the prefix length (give the network address)"
        );
        assert_eq!(
            run(&["--egress-ttl-min", "10", "--egress-ttl-max", "5", "true"]).expect_err("ttl"),
            "--egress-ttl-max 5: below --egress-ttl-min (10)"
        );
    }

    #[test]
    fn no_policy_flag_means_no_policy_and_no_host_turns_host_loopback_off() {
        assert_eq!(run(&["true"]).expect("valid").net.policy, None);
        let c = run(&["--no-host", "true"]).expect("valid");
        assert!(!c.net.host_loopback);
        assert!(c.net.policy.expect("policy").no_host);
        let c = run(&["--egress", "deny", "true"]).expect("valid");
        assert_eq!(c.net.policy.expect("policy").default, Action::Deny);
    }

    #[test]
    fn policy_file_rules_follow_the_command_lines_and_its_errors_name_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p");
        std::fs::write(&path, "egress deny\nallow *.debian.org:443\n").expect("write");
        let p = path.to_str().unwrap();
        let c = run(&["--policy", p, "--allow", "pypi.org", "true"]).expect("valid");
        let pol = c.net.policy.expect("policy");
        assert_eq!(pol.default, Action::Deny);
        assert_eq!(pol.rules[0].to_string(), "pypi.org");
        assert_eq!(pol.rules[1].to_string(), "*.debian.org:443");
        let c = run(&["--policy", p, "--egress", "allow", "true"]).expect("valid");
        assert_eq!(
            c.net.policy.expect("policy").default,
            Action::Allow,
            "--egress wins"
        );
        std::fs::write(&path, "allow x.org\nallow y.org:0\n").expect("write");
        assert_eq!(
            run(&["--policy", p, "true"]).expect_err("bad line"),
            format!("--policy {p}: line 2: y.org:0: port must be a number from 1 to 65535")
        );
        assert!(run(&["--policy", "/nonexistent/p", "true"])
            .expect_err("missing")
            .starts_with("--policy /nonexistent/p: No such file"));
    }
}

#[cfg(test)]
mod kernel_mode_tests {
    use std::ffi::OsString;

    use super::super::{parse, validate, Caller};
    use crate::config::Mode;

    fn as_root(s: &[&str]) -> Result<Mode, String> {
        let argv: Vec<OsString> = std::iter::once("rootless-run")
            .chain(s.iter().copied())
            .map(OsString::from)
            .collect();
        let args = parse(&argv).map_err(|e| e.to_string())?;
        let root = Caller::fixed(0, 0, "root", Some("/bin/sh"));
        validate(&argv, args, &root, Default::default).map_err(|e| e.to_string())
    }

    #[test]
    fn policy_flags_pick_userspace_under_auto_and_are_refused_with_kernel() {
        let Ok(Mode::Run(c)) = as_root(&["--no-lan", "true"]) else {
            panic!("valid");
        };
        assert!(!c.net.kernel, "auto picks the userspace stack for a policy");
        let Ok(Mode::Run(c)) = as_root(&["true"]) else {
            panic!("valid");
        };
        assert!(c.net.kernel, "auto is kernel for root without policy flags");
        assert_eq!(
            as_root(&["--net-mode=kernel", "--allow", "x.org", "true"]).expect_err("kernel"),
            "--allow: not with --net-mode=kernel: the egress policy is enforced by the userspace \
             stack, which sees every flow and DNS answer, and in kernel mode the kernel routes; \
             use --net-mode=userspace"
        );
        assert!(matches!(
            as_root(&["--print-policy", "--no-host"]),
            Ok(Mode::PrintPolicy(_))
        ));
    }
}
