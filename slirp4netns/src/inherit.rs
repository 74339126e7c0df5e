//! The fds the command line names (`-r`, `-e`, `--netns-type=tapfd`), taken by `main` once,
//! before it opens anything. slirp4netns takes any number >= 0 as it is (main.c: "must be a
//! non-negative integer"), so a client may name a standard stream: `-e 0` ends the run when
//! whoever feeds stdin closes it, `-r 1` signals readiness on stdout.
//!
//! Numbers above 2 are owned through `rr_ns::inherit::take`. A standard stream stays std's
//! (stdout, stderr and logging keep working), and the run uses a duplicate of it, above 2 and
//! close-on-exec:
//! - exit fd and tap fd: that is all; a hang-up is a state of the open file, seen through any
//!   copy of it;
//! - ready fd: the stream itself is pointed at /dev/null at once, so that our duplicate is the
//!   process's only copy: writing the byte and dropping it closes the client's end as
//!   slirp4netns's close(2) does, and nothing we print (banner, logs) lands there first.
//!   With `-r 1` the banner is lost, as slirp4netns's block-buffered one is; with `-r 2` so
//!   are the error messages.
//!
//! A standard stream that was closed at exec is never "not open" here: std reopens it on
//! /dev/null before `main`, so `-e 0` then waits for a hang-up that never comes (slirp4netns
//! would exit at once).
//!
//! Refused, naming the flag and the number: a number named twice, and one with nothing open
//! there. slirp4netns takes both; it exits 0 at once on a closed exit fd (poll says POLLNVAL),
//! runs without ever saying it is ready on a closed ready fd, and with `-r N -e N` exits right
//! after writing the byte: none of them is a run anyone wants.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use crate::run::Inherited;

/// Highest standard stream: 0, 1 and 2 are std's stdin, stdout and stderr.
const LAST_STDIO_FD: RawFd = 2;

/// Which option named an fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `-r`, `--ready-fd`.
    Ready,
    /// `-e`, `--exit-fd`.
    Exit,
    /// The operand of `--netns-type=tapfd`.
    Tap,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Ready => "--ready-fd",
            Role::Exit => "--exit-fd",
            Role::Tap => "--netns-type=tapfd",
        })
    }
}

/// The numbers the command line gave, before anything is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Named {
    /// `--ready-fd`.
    pub ready: Option<RawFd>,
    /// `--exit-fd`.
    pub exit: Option<RawFd>,
    /// `--netns-type=tapfd`'s operand.
    pub tap: Option<RawFd>,
}

impl Named {
    /// Each named number with its option, in the order ready, exit, tap.
    fn roles(&self) -> Vec<(Role, RawFd)> {
        [
            (Role::Ready, self.ready),
            (Role::Exit, self.exit),
            (Role::Tap, self.tap),
        ]
        .into_iter()
        .filter_map(|(role, fd)| fd.map(|fd| (role, fd)))
        .collect()
    }
}

/// Why the named fds could not be taken; the process has not started anything yet.
#[derive(Debug, thiserror::Error)]
pub enum InheritError {
    /// Two options named the same number.
    #[error("{role} {fd}: fd {fd} is also named by {other}")]
    Twice {
        /// The later option.
        role: Role,
        /// The earlier one.
        other: Role,
        /// The number.
        fd: RawFd,
    },
    /// Nothing is open at that number.
    #[error("{role} {fd}: fd {fd} is not open")]
    NotOpen {
        /// The option.
        role: Role,
        /// The number.
        fd: RawFd,
    },
    /// Duplicating a standard stream failed.
    #[error("{role} {fd}: cannot duplicate standard stream {fd}")]
    Duplicate {
        /// The option.
        role: Role,
        /// The number.
        fd: RawFd,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Pointing the ready fd's standard stream at /dev/null failed.
    #[error("{role} {fd}: cannot point standard stream {fd} at /dev/null")]
    Detach {
        /// The option.
        role: Role,
        /// The number.
        fd: RawFd,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `rr_ns::inherit::take` refused for another reason (called twice).
    #[error("cannot take the inherited fds")]
    Take(#[source] rr_ns::inherit::InheritError),
}

/// Where each named number comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    /// Numbers above 2, in role order, for `rr_ns::inherit::take`.
    owned: Vec<(Role, RawFd)>,
    /// Standard streams, in role order.
    stdio: Vec<(Role, RawFd)>,
}

/// Splits the named numbers into inherited fds and standard streams; refuses a number named
/// twice. The CLI only lets non-negative numbers through.
fn plan(named: &Named) -> Result<Plan, InheritError> {
    let roles = named.roles();
    for (i, &(role, fd)) in roles.iter().enumerate() {
        if let Some(&(other, _)) = roles.get(..i).and_then(|b| b.iter().find(|n| n.1 == fd)) {
            return Err(InheritError::Twice { role, other, fd });
        }
    }
    let (stdio, owned) = roles.into_iter().partition(|&(_, fd)| fd <= LAST_STDIO_FD);
    Ok(Plan { owned, stdio })
}

/// Takes the named fds (see the module header). Call once, first thing in `main`.
pub fn take(named: &Named) -> Result<Inherited, InheritError> {
    let plan = plan(named)?;
    let numbers: Vec<RawFd> = plan.owned.iter().map(|&(_, fd)| fd).collect();
    let owned = rr_ns::inherit::take(&numbers).map_err(|e| match e {
        rr_ns::inherit::InheritError::NotOpen { fd } => InheritError::NotOpen {
            role: role_of(&plan.owned, fd),
            fd,
        },
        other => InheritError::Take(other),
    })?;
    let mut taken: Vec<(Role, OwnedFd)> = plan
        .owned
        .iter()
        .map(|&(role, _)| role)
        .zip(owned)
        .collect();
    for &(role, fd) in &plan.stdio {
        taken.push((role, from_stdio(role, fd)?));
    }
    let mut out = Inherited::default();
    for (role, fd) in taken {
        match role {
            Role::Ready => out.ready = Some(fd),
            Role::Exit => out.exit = Some(fd),
            Role::Tap => out.tap = Some(fd),
        }
    }
    Ok(out)
}

fn role_of(roles: &[(Role, RawFd)], fd: RawFd) -> Role {
    roles
        .iter()
        .find(|n| n.1 == fd)
        .map_or(Role::Ready, |n| n.0)
}

/// A duplicate of standard stream `fd` for `role`; for the ready fd the stream then reads
/// and writes /dev/null.
fn from_stdio(role: Role, fd: RawFd) -> Result<OwnedFd, InheritError> {
    // try_clone_to_owned is F_DUPFD_CLOEXEC from 3: the copy is never a standard stream.
    let copy = match fd {
        0 => io::stdin().as_fd().try_clone_to_owned(),
        1 => io::stdout().as_fd().try_clone_to_owned(),
        _ => io::stderr().as_fd().try_clone_to_owned(),
    }
    .map_err(|source| {
        if source.raw_os_error() == Some(nix::errno::Errno::EBADF as i32) {
            InheritError::NotOpen { role, fd }
        } else {
            InheritError::Duplicate { role, fd, source }
        }
    })?;
    if role == Role::Ready {
        let detach = |source| InheritError::Detach { role, fd, source };
        let null = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(detach)?;
        match fd {
            0 => nix::unistd::dup2_stdin(&null),
            1 => nix::unistd::dup2_stdout(&null),
            _ => nix::unistd::dup2_stderr(&null),
        }
        .map_err(|e| detach(e.into()))?;
    }
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(ready: Option<RawFd>, exit: Option<RawFd>, tap: Option<RawFd>) -> Named {
        Named { ready, exit, tap }
    }

    #[test]
    fn standard_streams_are_split_from_inherited_numbers() {
        let p = plan(&named(Some(1), Some(0), Some(5))).unwrap();
        assert_eq!(p.owned, [(Role::Tap, 5)]);
        assert_eq!(p.stdio, [(Role::Ready, 1), (Role::Exit, 0)]);
        let p = plan(&named(Some(3), Some(4), None)).unwrap();
        assert_eq!(p.owned, [(Role::Ready, 3), (Role::Exit, 4)]);
        assert!(p.stdio.is_empty());
        assert_eq!(plan(&Named::default()).unwrap().owned, []);
    }

    #[test]
    fn a_number_named_twice_is_refused_naming_both_options() {
        for (n, fd) in [
            (named(Some(3), Some(3), None), 3),
            (named(None, Some(0), Some(0)), 0),
        ] {
            let e = plan(&n).unwrap_err();
            assert!(
                matches!(e, InheritError::Twice { fd: f, .. } if f == fd),
                "{e}"
            );
        }
        let e = plan(&named(Some(0), None, Some(0))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--netns-type=tapfd 0: fd 0 is also named by --ready-fd"
        );
    }

    #[test]
    fn errors_name_the_option_and_the_number() {
        let e = InheritError::NotOpen {
            role: Role::Exit,
            fd: 10,
        };
        assert_eq!(e.to_string(), "--exit-fd 10: fd 10 is not open");
    }
}
