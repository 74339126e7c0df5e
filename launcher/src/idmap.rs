//! User and group id maps: parses `--map-user(s)`/`--map-group(s)`/`--map-auto` values and
//! /etc/subuid and /etc/subgid, and resolves them into the lines of uid_map/gid_map.
//! Called by `cli` (parsing) and by `sandbox`/`supervise` (writing). Does no I/O except reading
//! the subid files in `SubIds::load`; it never runs newuidmap itself.
//! Small: a parser and a resolver; keep it under ~400 lines.

use std::fmt;
use std::path::Path;

/// Where an unprivileged user's extra id ranges are declared (subuid(5)).
pub const SUBUID_PATH: &str = "/etc/subuid";
/// Where an unprivileged user's extra group ranges are declared (subgid(5)).
pub const SUBGID_PATH: &str = "/etc/subgid";

/// One line of uid_map/gid_map: `count` ids from `inner` inside map to `outer` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First id inside the namespace.
    pub inner: u32,
    /// First id outside.
    pub outer: u32,
    /// Number of ids.
    pub count: u32,
}

/// A `--map-users`/`--map-groups` value before /etc/sub?id is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// An explicit range.
    Explicit(Extent),
    /// `auto`: the caller's first subordinate block, mapped from inner 0.
    Auto,
}

/// Failure to parse a map option's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Neither `INNER:OUTER:COUNT`, `OUTER,INNER,COUNT` nor `auto`.
    #[error("expected INNER:OUTER:COUNT, OUTER,INNER,COUNT or auto")]
    Shape,
    /// One of the three fields is not a number.
    #[error("{field} is not a number")]
    NotANumber {
        /// Which field.
        field: &'static str,
    },
    /// Zero count or a range that wraps past 2^32 - 1.
    #[error("count must be at least 1 and the range must end below 4294967295")]
    Range,
}

/// Parses `--map-users`/`--map-groups`: `INNER:OUTER:COUNT` (util-linux 2.39+),
/// `OUTER,INNER,COUNT` (2.38) or `auto`.
pub fn parse_range(spec: &str) -> Result<RangeSpec, RangeError> {
    if spec == "auto" {
        return Ok(RangeSpec::Auto);
    }
    let (parts, names): (Vec<&str>, [&'static str; 3]) = if spec.contains(':') {
        (spec.split(':').collect(), ["inner", "outer", "count"])
    } else {
        (spec.split(',').collect(), ["outer", "inner", "count"])
    };
    let [a, b, c] = parts[..] else {
        return Err(RangeError::Shape);
    };
    let num = |s: &str, field| {
        s.parse::<u32>()
            .map_err(|_| RangeError::NotANumber { field })
    };
    let (a, b, count) = (num(a, names[0])?, num(b, names[1])?, num(c, "count")?);
    let (inner, outer) = if names[0] == "inner" { (a, b) } else { (b, a) };
    let ext = Extent {
        inner,
        outer,
        count,
    };
    if count == 0 || inner.checked_add(count).is_none() || outer.checked_add(count).is_none() {
        return Err(RangeError::Range);
    }
    Ok(RangeSpec::Explicit(ext))
}

/// Whether the sandbox may call setgroups(2) (`--setgroups`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setgroups {
    /// Write `allow` (only possible when newgidmap writes the gid map).
    Allow,
    /// Write `deny` (required before an unprivileged process writes its own gid_map).
    Deny,
}

impl Setgroups {
    /// The text written to /proc/PID/setgroups.
    pub fn as_str(self) -> &'static str {
        match self {
            Setgroups::Allow => "allow",
            Setgroups::Deny => "deny",
        }
    }
}

/// The requested maps, before subordinate ranges are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMapPlan {
    /// Inner uid the caller becomes (`-r`: 0, `-c`: own uid, `--map-user`).
    pub own_uid_inner: u32,
    /// Inner gid the caller's group becomes.
    pub own_gid_inner: u32,
    /// Extra uid ranges (`--map-users`, `--map-auto`).
    pub uid_ranges: Vec<RangeSpec>,
    /// Extra gid ranges (`--map-groups`, `--map-auto`).
    pub gid_ranges: Vec<RangeSpec>,
    /// Explicit `--setgroups`, if given.
    pub setgroups: Option<Setgroups>,
}

/// The caller's subordinate id blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubIds {
    /// First block from /etc/subuid, as (start, count).
    pub uid: Option<(u32, u32)>,
    /// First block from /etc/subgid.
    pub gid: Option<(u32, u32)>,
}

impl SubIds {
    /// Reads the first block of user `name` (or numeric `uid`) from both files; missing files
    /// count as no entry.
    pub fn load(name: &str, uid: u32, gid: u32, group: &str) -> SubIds {
        let read = |p: &str| std::fs::read_to_string(Path::new(p)).unwrap_or_default();
        SubIds {
            uid: first_block(&read(SUBUID_PATH), name, uid),
            gid: first_block(&read(SUBGID_PATH), name, gid).or_else(|| {
                // shadow's newgidmap matches /etc/subgid by user name (or uid), but accept the
                // group's name as well for hand-written files.
                first_block(&read(SUBGID_PATH), group, gid)
            }),
        }
    }
}

/// First `owner:start:count` line in a subid file whose owner is `name` or `id`.
pub fn first_block(contents: &str, name: &str, id: u32) -> Option<(u32, u32)> {
    let id = id.to_string();
    contents.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let owner = f.next()?;
        if owner != name && owner != id {
            return None;
        }
        let start = f.next()?.parse().ok()?;
        let count: u32 = f.next()?.parse().ok()?;
        (count > 0 && f.next().is_none()).then_some((start, count))
    })
}

/// A map that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// `auto` without a subordinate block.
    #[error("{user} has no range in {file} (add one: usermod --add-subuids/--add-subgids)")]
    NoSubIds {
        /// The user.
        user: String,
        /// /etc/subuid or /etc/subgid.
        file: &'static str,
    },
    /// Two ranges claim the same inner ids.
    #[error("inner ids {inner}..{end} are mapped twice")]
    Overlap {
        /// First overlapping inner id.
        inner: u32,
        /// End of the later range.
        end: u32,
    },
}

/// The final map: the caller's own id at `own_inner`, plus `ranges` with a hole punched at
/// `own_inner` (the own-id entry takes precedence, as in util-linux 2.39).
pub fn resolve(
    own_inner: u32,
    own_outer: u32,
    ranges: &[RangeSpec],
    sub: Option<(u32, u32)>,
    user: &str,
    file: &'static str,
) -> Result<Vec<Extent>, ResolveError> {
    let mut out = vec![Extent {
        inner: own_inner,
        outer: own_outer,
        count: 1,
    }];
    for r in ranges {
        let ext = match *r {
            RangeSpec::Explicit(e) => e,
            RangeSpec::Auto => {
                let (start, count) = sub.ok_or_else(|| ResolveError::NoSubIds {
                    user: user.into(),
                    file,
                })?;
                Extent {
                    inner: 0,
                    outer: start,
                    count,
                }
            }
        };
        for piece in punch(ext, own_inner) {
            let end = piece.inner as u64 + piece.count as u64;
            if let Some(o) = out
                .iter()
                .find(|o| piece.inner < o.inner + o.count && o.inner < end as u32)
            {
                return Err(ResolveError::Overlap {
                    inner: piece.inner.max(o.inner),
                    end: end as u32,
                });
            }
            out.push(piece);
        }
    }
    Ok(out)
}

/// Splits `e` around inner id `hole` (at most two pieces).
fn punch(e: Extent, hole: u32) -> Vec<Extent> {
    if hole < e.inner || hole - e.inner >= e.count {
        return vec![e];
    }
    let before = hole - e.inner;
    let after = e.count - before - 1;
    let mut v = Vec::new();
    if before > 0 {
        v.push(Extent {
            inner: e.inner,
            outer: e.outer,
            count: before,
        });
    }
    if after > 0 {
        v.push(Extent {
            inner: hole + 1,
            outer: e.outer + before + 1,
            count: after,
        });
    }
    v
}

/// True when the map is the one line an unprivileged process may write for itself.
pub fn is_self_map(map: &[Extent], own_outer: u32) -> bool {
    matches!(map, [e] if e.outer == own_outer && e.count == 1)
}

/// The uid_map/gid_map file contents.
pub struct MapText<'a>(pub &'a [Extent]);

impl fmt::Display for MapText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in self.0 {
            writeln!(f, "{} {} {}", e.inner, e.outer, e.count)?;
        }
        Ok(())
    }
}

/// Arguments for newuidmap/newgidmap after the pid: `inner outer count` triples.
pub fn helper_args(map: &[Extent]) -> Vec<String> {
    map.iter()
        .flat_map(|e| [e.inner, e.outer, e.count])
        .map(|n| n.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(inner: u32, outer: u32, count: u32) -> Extent {
        Extent {
            inner,
            outer,
            count,
        }
    }

    #[test]
    fn range_accepts_new_and_old_order_and_auto() {
        assert_eq!(
            parse_range("1:100000:65536"),
            Ok(RangeSpec::Explicit(ext(1, 100000, 65536)))
        );
        assert_eq!(
            parse_range("100000,1,65536"),
            Ok(RangeSpec::Explicit(ext(1, 100000, 65536)))
        );
        assert_eq!(parse_range("auto"), Ok(RangeSpec::Auto));
    }

    #[test]
    fn range_rejects_bad_values_naming_the_field() {
        assert_eq!(
            parse_range("0:100000:x"),
            Err(RangeError::NotANumber { field: "count" })
        );
        assert_eq!(
            parse_range("a,1,2"),
            Err(RangeError::NotANumber { field: "outer" })
        );
        assert_eq!(parse_range("1:2"), Err(RangeError::Shape));
        assert_eq!(parse_range("1:2:0"), Err(RangeError::Range));
        assert_eq!(parse_range("4294967295:0:2"), Err(RangeError::Range));
    }

    #[test]
    fn subid_first_matching_block_by_name_or_uid() {
        let f = "alice:100000:65536\n1001:200000:1000\nrrtest:300000:5\nrrtest:400000:5\n";
        assert_eq!(first_block(f, "rrtest", 1001), Some((200000, 1000)));
        assert_eq!(first_block(f, "alice", 1000), Some((100000, 65536)));
        assert_eq!(first_block(f, "bob", 1002), None);
        assert_eq!(first_block("bob:x:1\nbob:5:0\n", "bob", 7), None);
    }

    #[test]
    fn auto_block_gets_a_hole_at_the_callers_inner_id() {
        let map = resolve(
            0,
            1000,
            &[RangeSpec::Auto],
            Some((100000, 65536)),
            "u",
            SUBUID_PATH,
        )
        .expect("resolvable");
        assert_eq!(map, [ext(0, 1000, 1), ext(1, 100001, 65535)]);
        assert_eq!(MapText(&map).to_string(), "0 1000 1\n1 100001 65535\n");
        assert_eq!(
            helper_args(&map),
            ["0", "1000", "1", "1", "100001", "65535"]
        );
    }

    #[test]
    fn hole_in_the_middle_splits_the_block() {
        let map = resolve(
            5,
            1000,
            &[RangeSpec::Explicit(ext(0, 100000, 10))],
            None,
            "u",
            SUBUID_PATH,
        )
        .expect("resolvable");
        assert_eq!(map, [ext(5, 1000, 1), ext(0, 100000, 5), ext(6, 100006, 4)]);
    }

    #[test]
    fn auto_without_subids_names_user_and_file() {
        let err = resolve(0, 1000, &[RangeSpec::Auto], None, "rrtest", SUBUID_PATH)
            .expect_err("no block");
        assert_eq!(
            err.to_string(),
            "rrtest has no range in /etc/subuid (add one: usermod --add-subuids/--add-subgids)"
        );
    }

    #[test]
    fn overlapping_ranges_are_refused() {
        let r = [
            RangeSpec::Explicit(ext(1, 100000, 10)),
            RangeSpec::Explicit(ext(5, 200000, 10)),
        ];
        assert!(matches!(
            resolve(0, 1000, &r, None, "u", SUBUID_PATH),
            Err(ResolveError::Overlap { inner: 5, .. })
        ));
    }

    #[test]
    fn only_the_single_own_line_is_a_self_map() {
        assert!(is_self_map(&[ext(0, 1000, 1)], 1000));
        assert!(!is_self_map(&[ext(0, 1001, 1)], 1000));
        assert!(!is_self_map(&[ext(0, 1000, 1), ext(1, 100000, 5)], 1000));
    }
}
