//! The allowlist's own checks: nothing forbidden slips in, no syscall twice, every one
//! explained in the module header, the programs fit BPF's limits. Real-kernel behaviour is
//! in ns/tests/confine_seccomp.rs.

use std::collections::BTreeSet;

use super::*;

/// What the allowlist must never let through (issue 11 item 5, slirp4netns's denylist).
fn forbidden() -> Vec<(&'static str, i64)> {
    let mut list = vec![
        sc!(SYS_execve),
        sc!(SYS_execveat),
        sc!(SYS_ptrace),
        sc!(SYS_process_vm_readv),
        sc!(SYS_process_vm_writev),
        sc!(SYS_mount),
        sc!(SYS_umount2),
        sc!(SYS_pivot_root),
        sc!(SYS_chroot),
        sc!(SYS_fsopen),
        sc!(SYS_fsconfig),
        sc!(SYS_fsmount),
        sc!(SYS_fspick),
        sc!(SYS_move_mount),
        sc!(SYS_open_tree),
        sc!(SYS_setns),
        sc!(SYS_unshare),
        sc!(SYS_init_module),
        sc!(SYS_finit_module),
        sc!(SYS_delete_module),
        sc!(SYS_kexec_load),
        sc!(SYS_kexec_file_load),
        sc!(SYS_reboot),
        sc!(SYS_bpf),
        sc!(SYS_keyctl),
        sc!(SYS_add_key),
        sc!(SYS_request_key),
        sc!(SYS_perf_event_open),
        sc!(SYS_userfaultfd),
        sc!(SYS_io_uring_setup),
        sc!(SYS_memfd_create),
        sc!(SYS_open_by_handle_at),
        sc!(SYS_name_to_handle_at),
        sc!(SYS_pidfd_open),
        sc!(SYS_pidfd_getfd),
        sc!(SYS_kill),
        sc!(SYS_setuid),
        sc!(SYS_setresuid),
        sc!(SYS_capset),
        sc!(SYS_seccomp),
        sc!(SYS_socketpair),
        sc!(SYS_epoll_create1),
        sc!(SYS_eventfd2),
        sc!(SYS_pipe2),
    ];
    #[cfg(target_arch = "x86_64")]
    list.extend([sc!(SYS_fork), sc!(SYS_vfork)]);
    list
}

fn allowed_numbers() -> BTreeSet<i64> {
    allowlist(1).iter().map(|a| a.nr).collect()
}

#[test]
fn nothing_forbidden_is_allowed() {
    let allowed = allowed_numbers();
    let soft: BTreeSet<i64> = no_filesystem()
        .into_iter()
        .chain(fall_back())
        .map(|(_, nr)| nr)
        .collect();
    for (name, nr) in forbidden() {
        assert!(!allowed.contains(&nr), "{name} is in the allowlist");
        assert!(!soft.contains(&nr), "{name} is among the error filters");
    }
}

#[test]
fn no_syscall_is_listed_twice() {
    let list = allowlist(1);
    let mut seen = BTreeSet::new();
    for a in &list {
        assert!(seen.insert(a.nr), "{} listed twice", a.name);
    }
    for (name, nr) in no_filesystem().into_iter().chain(fall_back()) {
        assert!(!seen.contains(&nr), "{name} both allowed and failed");
    }
}

#[test]
fn every_listed_syscall_has_its_reason_in_the_header() {
    let source = include_str!("../seccomp.rs");
    let header: String = source
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let names = allowlist(1)
        .into_iter()
        .map(|a| a.name)
        .chain(no_filesystem().into_iter().map(|(n, _)| n))
        .chain(fall_back().into_iter().map(|(n, _)| n));
    for name in names {
        assert!(
            header.contains(&format!("`{name}`")),
            "{name} has no reason in the module header"
        );
    }
}

#[test]
fn the_filters_compile_for_this_architecture_within_bpf_limits() {
    for violation in [Violation::KillProcess, Violation::Log] {
        let programs = build(&SeccompOptions { violation }, 4242).expect("compiles");
        assert_eq!(programs.len(), 3);
        for p in &programs {
            // BPF_MAXINSNS (linux/bpf_common.h).
            assert!(!p.is_empty() && p.len() < 4096, "{} instructions", p.len());
        }
    }
}

#[test]
fn tgkill_is_limited_to_our_own_pid() {
    let list = allowlist(4242);
    let tgkill = list.iter().find(|a| a.name == "tgkill").expect("listed");
    assert_eq!(
        tgkill.rules,
        vec![vec![Cond {
            arg: 0,
            qword: false,
            mask: u64::from(u32::MAX),
            value: 4242
        }]]
    );
}
