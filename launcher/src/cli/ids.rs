//! The id-map options (`-r`, `-c`, `--map-user`, `--map-group`, `--map-users`, `--map-groups`,
//! `--map-auto`, `--setgroups`) and the facts about the caller they need (`Caller`), validated
//! into `idmap::IdMapPlan`.
//! Called by `cli::validate` only. I/O: user and group name lookups, and /etc/subuid and
//! /etc/subgid (through the injected `subids`) for `auto` ranges, so a missing entry is a
//! usage error before anything starts.

use std::cell::OnceCell;
use std::ffi::OsString;

use clap::ValueEnum;

use super::{usage, UsageError};
use crate::idmap::{self, IdMapPlan, RangeSpec, Setgroups};

/// The id-map options.
#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// Map the caller to root in the user namespace (the default)
    #[arg(short = 'r', long, conflicts_with_all = ["map_current_user", "map_user"])]
    map_root_user: bool,
    /// Map the caller to its own uid and gid in the user namespace
    #[arg(short = 'c', long, conflicts_with_all = ["map_user", "map_group"])]
    map_current_user: bool,
    /// Map the caller to UID (number or name) in the user namespace [default: 0]
    #[arg(long, value_name = "UID|NAME")]
    map_user: Option<String>,
    /// Map the caller's group to GID (number or name) [default: 0]; implies --setgroups=deny
    #[arg(long, value_name = "GID|NAME")]
    map_group: Option<String>,
    /// Also map a uid range through newuidmap: INNER:OUTER:COUNT, OUTER,INNER,COUNT or auto
    #[arg(long, value_name = "RANGE")]
    map_users: Vec<String>,
    /// Also map a gid range through newgidmap: INNER:OUTER:COUNT, OUTER,INNER,COUNT or auto
    #[arg(long, value_name = "RANGE")]
    map_groups: Vec<String>,
    /// Same as --map-users=auto --map-groups=auto (first /etc/subuid and /etc/subgid block)
    #[arg(long)]
    map_auto: bool,
    /// Allow or deny setgroups(2) in the sandbox [default: deny; allow needs --map-groups]
    #[arg(long, value_enum, value_name = "allow|deny")]
    setgroups: Option<SetgroupsArg>,
}

impl IdArgs {
    /// Whether any id-map option was given.
    pub fn any_given(&self) -> bool {
        self.map_root_user
            || self.map_current_user
            || self.map_user.is_some()
            || self.map_group.is_some()
            || !self.map_users.is_empty()
            || !self.map_groups.is_empty()
            || self.map_auto
            || self.setgroups.is_some()
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SetgroupsArg {
    Allow,
    Deny,
}

/// Facts about the caller that validation needs (injected so tests need no real user).
/// The names are looked up only when needed (/etc/subuid entries): NSS costs start-up time.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Effective uid outside.
    pub uid: u32,
    /// Effective gid outside.
    pub gid: u32,
    /// User name (for /etc/subuid).
    name: OnceCell<String>,
    /// Group name (for /etc/subgid).
    group: OnceCell<String>,
    /// $SHELL, if set.
    pub shell: Option<OsString>,
}

impl Caller {
    /// The running process's caller.
    pub fn current() -> Caller {
        Caller {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            name: OnceCell::new(),
            group: OnceCell::new(),
            shell: std::env::var_os("SHELL").filter(|s| !s.is_empty()),
        }
    }

    /// A caller with known names (tests).
    #[cfg(test)]
    pub fn fixed(uid: u32, gid: u32, name: &str, shell: Option<&str>) -> Caller {
        Caller {
            uid,
            gid,
            name: OnceCell::from(name.to_string()),
            group: OnceCell::from(name.to_string()),
            shell: shell.map(OsString::from),
        }
    }

    /// The user's name (its uid as text if it has none).
    pub fn name(&self) -> &str {
        self.name.get_or_init(|| {
            let uid = nix::unistd::Uid::from_raw(self.uid);
            nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |u| u.name)
        })
    }

    /// The group's name (its gid as text if it has none).
    pub fn group(&self) -> &str {
        self.group.get_or_init(|| {
            let gid = nix::unistd::Gid::from_raw(self.gid);
            nix::unistd::Group::from_gid(gid)
                .ok()
                .flatten()
                .map_or_else(|| gid.to_string(), |g| g.name)
        })
    }
}

/// The id maps the options ask for, with `auto` ranges checked against the caller's
/// /etc/subuid and /etc/subgid entries.
pub fn id_map_plan(
    args: &IdArgs,
    caller: &Caller,
    subids: impl FnOnce() -> idmap::SubIds,
) -> Result<IdMapPlan, UsageError> {
    let own_uid_inner = if args.map_current_user {
        caller.uid
    } else if let Some(u) = &args.map_user {
        lookup_id(u, true).ok_or_else(|| usage(format!("--map-user={u}"), "no such user"))?
    } else {
        0
    };
    let own_gid_inner = if args.map_current_user {
        caller.gid
    } else if let Some(g) = &args.map_group {
        lookup_id(g, false).ok_or_else(|| usage(format!("--map-group={g}"), "no such group"))?
    } else {
        0
    };
    let ranges = |flag: &str, specs: &[String]| -> Result<Vec<RangeSpec>, UsageError> {
        let mut v = specs
            .iter()
            .map(|s| {
                idmap::parse_range(s).map_err(|e| usage(format!("--{flag}={s}"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if args.map_auto && !v.contains(&RangeSpec::Auto) {
            v.push(RangeSpec::Auto);
        }
        Ok(v)
    };
    let uid_ranges = ranges("map-users", &args.map_users)?;
    let gid_ranges = ranges("map-groups", &args.map_groups)?;
    let setgroups = args.setgroups.map(|s| match s {
        SetgroupsArg::Allow => Setgroups::Allow,
        SetgroupsArg::Deny => Setgroups::Deny,
    });
    if setgroups == Some(Setgroups::Allow) && gid_ranges.is_empty() {
        return Err(usage(
            "--setgroups=allow",
            "an unprivileged gid map needs setgroups denied; add --map-groups or --map-auto",
        ));
    }
    // Resolve now so a missing /etc/subuid entry is a usage error before anything starts.
    let plan = IdMapPlan {
        own_uid_inner,
        own_gid_inner,
        uid_ranges,
        gid_ranges,
        setgroups,
    };
    if plan.uid_ranges.contains(&RangeSpec::Auto) || plan.gid_ranges.contains(&RangeSpec::Auto) {
        let sub = subids();
        let flag = if args.map_auto {
            "--map-auto"
        } else {
            "--map-users/--map-groups=auto"
        };
        idmap::resolve(
            0,
            caller.uid,
            &plan.uid_ranges,
            sub.uid,
            caller.name(),
            idmap::SUBUID_PATH,
        )
        .map_err(|e| usage(flag, e.to_string()))?;
        idmap::resolve(
            0,
            caller.gid,
            &plan.gid_ranges,
            sub.gid,
            caller.name(),
            idmap::SUBGID_PATH,
        )
        .map_err(|e| usage(flag, e.to_string()))?;
    }
    Ok(plan)
}

fn lookup_id(s: &str, user: bool) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    if user {
        nix::unistd::User::from_name(s)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    } else {
        nix::unistd::Group::from_name(s)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::run;

    #[test]
    fn map_options_resolve_to_a_plan() {
        let c = run(&["true"]).expect("valid");
        assert_eq!((c.idmap.own_uid_inner, c.idmap.own_gid_inner), (0, 0));
        let c = run(&["-c", "true"]).expect("valid");
        assert_eq!((c.idmap.own_uid_inner, c.idmap.own_gid_inner), (1000, 1000));
        let c = run(&["--map-user=5", "--map-group=6", "true"]).expect("valid");
        assert_eq!((c.idmap.own_uid_inner, c.idmap.own_gid_inner), (5, 6));
        assert_eq!(
            run(&["--map-users=1:100000:x", "true"]).expect_err("bad count"),
            "--map-users=1:100000:x: count is not a number"
        );
        assert!(run(&["-r", "-c", "true"]).is_err());
    }

    #[test]
    fn map_auto_without_subgid_entry_names_the_file() {
        assert_eq!(
            run(&["--map-auto", "true"]).expect_err("no subgid"),
            "--map-auto: alice has no range in /etc/subgid \
             (add one: usermod --add-subuids/--add-subgids)"
        );
        let c = run(&["--map-users=auto", "true"]).expect("subuid present");
        assert_eq!(c.idmap.uid_ranges, [RangeSpec::Auto]);
    }

    #[test]
    fn setgroups_allow_needs_a_helper_written_gid_map() {
        assert!(run(&["--setgroups=allow", "true"]).is_err());
        let c = run(&["--setgroups=allow", "--map-groups=1:200000:10", "true"]).expect("valid");
        assert_eq!(c.idmap.setgroups, Some(Setgroups::Allow));
    }
}
