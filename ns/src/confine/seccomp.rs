//! `seccomp`: a seccomp-BPF allowlist for the running stack. Anything not listed kills the
//! whole process (SECCOMP_RET_KILL_PROCESS, so the parent sees SIGSYS). Installed with
//! no_new_privs and SECCOMP_FILTER_FLAG_TSYNC, so it covers every thread that exists when it
//! is installed (the API thread, the DNS-over-TCP relay) and, by inheritance, every thread
//! started later (one per DNS-over-TCP connection). Called once by the binaries, last before
//! the ready byte; after it the process can never widen what it may do.
//!
//! Built with seccompiler (Firecracker / rust-vmm): pure Rust, so nothing to build or ship
//! beside the binary; libseccomp would add its C library at build and run time for features we
//! do not need (it is what slirp4netns links).
//!
//! Derived by tracing real runs (`strace -f -ff` of `rootless-run` under the integration tests
//! for forwards, the API socket, DNS over UDP and TCP, ICMP, bulk TCP echo, UDP echo, TCP
//! half-close/RST/zero-window paths), keeping what the "netstack", "api", "dns-tcp" and
//! "dns-tcp-conn" threads call after the event loop starts, plus what std and glibc do on
//! paths a trace rarely hits (thread exit, a failed accept's back-off, abort, a wait restarted
//! after SIGSTOP). What only start-up needs (opening the tap, epoll_create1, eventfd2, pipe2,
//! socketpair, reading resolv.conf, netlink, setns, signalfd) is left out. Checked the other
//! way round too: rootless-run's stack process runs under it (Kill mode) through the whole
//! integration suite and the bench workloads (issue 14), and strace of those loads shows no
//! call outside it. A syscall the stack starts to make
//! must be added here with its reason, or the stack dies with SIGSYS; a run in Log mode and
//! `dmesg | grep type=1326` finds it.
//!
//! Allowed, each with why:
//!
//! | syscall | why |
//! |---|---|
//! | `read`, `write` | tap frames, eventfd and pipe wake-ups, log lines on stderr |
//! | `readv`, `writev` | std's vectored writes (stderr, sockets): the reach of read/write |
//! | `recvfrom`, `sendto` | host sockets (recv with MSG_PEEK/MSG_TRUNC, send MSG_NOSIGNAL), API replies |
//! | `recvmsg`, `sendmsg` | datagrams with addresses or control data (nix's wrappers) |
//! | `recvmmsg`, `sendmmsg` | batched UDP |
//! | `epoll_wait` (x86_64), `epoll_pwait` | the event loop (mio); aarch64 has only the p-form |
//! | `epoll_ctl` | flows and forwards register and leave the loop |
//! | `poll` (x86_64), `ppoll` | the API thread's waits; `connect_timeout` in the DNS relay |
//! | `close` | a flow, a client or a relay connection ends |
//! | `socket` | host flows, ping sockets, forwards added by the API: AF_INET/AF_INET6, stream/datagram only |
//! | `connect` | outbound flows, DNS upstreams |
//! | `bind` | `--outbound-addr`, forwards added by the API at run time |
//! | `listen` | forwards added by the API at run time |
//! | `accept4` | forwarded connections, API clients, DNS-over-TCP clients |
//! | `getsockname`, `getpeername` | flow addresses |
//! | `setsockopt`, `getsockopt` | TCP_NODELAY, SO_SNDBUF/RCVBUF, SO_PEEK_OFF, SO_LINGER, SO_ERROR, timeouts |
//! | `shutdown` | half-close (FIN) both ways; API connections |
//! | `ioctl` | FIONBIO, SIOCOUTQ, FIONREAD, FIOCLEX, FIONCLEX, SIOCGIFHWADDR (the tap's own MAC) only |
//! | `fcntl` | F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC only |
//! | `clone` | only with CLONE_THREAD and no CLONE_NEW* flag: threads, never processes |
//! | `set_robust_list`, `rseq` | glibc registers both in every new thread |
//! | `prctl` | PR_SET_NAME only: std names its threads |
//! | `sched_getaffinity` | pthread_getattr_np at a thread's start (std's stack guard) |
//! | `sigaltstack`, `rt_sigprocmask` | std's overflow stack per thread; glibc masks signals around clone |
//! | `futex` | WAIT, WAKE, WAIT_BITSET, WAKE_BITSET only (locks, join): no requeue, no PI |
//! | `sched_yield` | std's channels back off with it (the API's commands and replies) |
//! | `gettid`, `getpid` | glibc and std (thread start, abort) |
//! | `exit` | a thread ends |
//! | `mmap`, `mprotect` | thread stacks, allocator arenas: never with PROT_EXEC |
//! | `munmap`, `mremap`, `brk` | the allocator |
//! | `madvise` | MADV_DONTNEED, MADV_FREE (glibc frees stacks, trims heaps), MADV_HUGEPAGE (glibc.malloc.hugetlb) only |
//! | `clock_gettime` | clocks, where the vDSO is not used |
//! | `clock_nanosleep`, `nanosleep` | the API thread's back-off after a failed accept |
//! | `restart_syscall` | the kernel resumes a wait interrupted by SIGSTOP/SIGCONT |
//! | `getrandom` | hash keys (per thread), DNS query ids |
//! | `rt_sigaction`, `rt_sigreturn` | std's crash handlers re-arm and return, so a SIGSEGV stays one |
//! | `tgkill` | this process only (its own pid): abort() raises SIGABRT |
//! | `exit_group` | the process ends |
//!
//! Answered with an error by two small filters installed before the allowlist, nothing done (a
//! kill would turn harmless tries into crashes): `open` and `stat`, `lstat` (x86_64), `openat`, `newfstatat`, `statx` and `unlink`
//! (x86_64), `unlinkat` fail with ENOENT: std's `available_parallelism` reads cgroup files, and
//! the API socket's guard stats and unlinks its path when dropped; a confined stack has no
//! filesystem (`remove_on_exit` removes the socket from outside). `clone3` fails with ENOSYS:
//! its flags sit in memory BPF cannot read, and glibc then falls back to `clone`, which is
//! checked.
//!
//! Not allowed, among everything else: execve, execveat, fork, vfork, a clone without
//! CLONE_THREAD, ptrace, process_vm_readv/writev, mount, umount2, pivot_root, chroot, the new
//! mount API (fsopen, fsmount, move_mount, open_tree), setns, unshare, init/finit/delete_module,
//! kexec_load, kexec_file_load, reboot, bpf, perf_event_open, keyctl, add_key, request_key,
//! userfaultfd, io_uring, memfd_create, kill, the setuid family, capset, sockets other than
//! AF_INET/AF_INET6 (netlink, unix, packet), raw sockets, every other ioctl, prctl and fcntl.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::ConfineError;

/// What happens on a syscall outside the allowlist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Violation {
    /// Kill the whole process (SIGSYS); the only choice for production.
    #[default]
    KillProcess,
    /// Allow it, and have the kernel log it (audit / dmesg `type=1326`): for finding a
    /// syscall missing from the list under a new workload, never for production.
    Log,
}

/// How `seccomp` reacts.
#[derive(Debug, Clone, Default)]
pub struct SeccompOptions {
    /// What a syscall outside the allowlist does.
    pub violation: Violation,
}

/// Installs the allowlist on every thread of the process (see the module header). Sets
/// no_new_privs. Cannot be undone; later filters can only narrow it.
pub fn seccomp(opts: &SeccompOptions) -> Result<(), ConfineError> {
    let filters = build(opts, std::process::id())?;
    // The allowlist goes last: once it is in, seccomp(2) itself is no longer allowed.
    for program in &filters {
        seccompiler::apply_filter_all_threads(program)
            .map_err(|source| ConfineError::InstallFilter { source })?;
    }
    tracing::info!(violation = ?opts.violation, "seccomp allowlist installed on all threads");
    Ok(())
}

/// Compares a syscall's argument: `(arg & mask) == value` over 32 or 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cond {
    arg: u8,
    qword: bool,
    mask: u64,
    value: u64,
}

/// One syscall of the allowlist; allowed if any of `rules` holds (all of its conditions), or
/// always when `rules` is empty.
#[derive(Debug)]
struct Allowed {
    name: &'static str,
    nr: i64,
    rules: Vec<Vec<Cond>>,
}

/// A syscall's name (without `SYS_`) and number on this architecture.
macro_rules! sc {
    ($nr:ident) => {
        (
            stringify!($nr).trim_start_matches("SYS_"),
            i64::from(libc::$nr),
        )
    };
}

fn any((name, nr): (&'static str, i64)) -> Allowed {
    Allowed {
        name,
        nr,
        rules: Vec::new(),
    }
}

fn when((name, nr): (&'static str, i64), rules: Vec<Vec<Cond>>) -> Allowed {
    Allowed { name, nr, rules }
}

/// A 32-bit argument (an int in the kernel's signature) equal to one of `values`; the upper
/// half, which the kernel ignores, is not compared.
fn one_of(arg: u8, values: &[u64]) -> Vec<Vec<Cond>> {
    values
        .iter()
        .map(|&value| {
            vec![Cond {
                arg,
                qword: false,
                mask: u64::from(u32::MAX),
                value,
            }]
        })
        .collect()
}

/// `(arg & mask)` equal to one of `values`.
fn masked(arg: u8, qword: bool, mask: u64, values: &[u64]) -> Vec<Vec<Cond>> {
    values
        .iter()
        .map(|&value| {
            vec![Cond {
                arg,
                qword,
                mask,
                value,
            }]
        })
        .collect()
}

/// SOCK_TYPE_MASK (linux/net.h): the type without SOCK_NONBLOCK and SOCK_CLOEXEC.
const SOCK_TYPE_MASK: u64 = 0xf;

/// socket(2) with one of `domains` and one of `types` (any flags, any protocol): for each
/// pair a rule comparing argument 0 and the type bits of argument 1.
fn internet_sockets(domains: &[libc::c_int], types: &[libc::c_int]) -> Vec<Vec<Cond>> {
    let mut rules = Vec::new();
    for &domain in domains {
        for &ty in types {
            rules.push(vec![
                Cond {
                    arg: 0,
                    qword: false,
                    mask: u64::from(u32::MAX),
                    value: domain as u64,
                },
                Cond {
                    arg: 1,
                    qword: false,
                    mask: SOCK_TYPE_MASK,
                    value: ty as u64,
                },
            ]);
        }
    }
    rules
}

/// Any namespace flag clone(2) accepts (CLONE_NEWTIME is clone3/unshare only).
const CLONE_NEW_ANY: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;
/// FUTEX_CMD_MASK (linux/futex.h): the operation without PRIVATE and CLOCK_REALTIME.
const FUTEX_CMD_MASK: u64 =
    !((libc::FUTEX_PRIVATE_FLAG | libc::FUTEX_CLOCK_REALTIME) as u64) & u32::MAX as u64;

/// The only ioctls: std's set_nonblocking (FIONBIO), unsent bytes of a TCP socket (SIOCOUTQ,
/// = TIOCOUTQ), bytes readable (FIONREAD), close-on-exec (FIOCLEX, FIONCLEX), and the tap's own
/// MAC (SIOCGIFHWADDR: netstack `event_loop::link` re-reads it when frames come from another).
const IOCTLS: [libc::Ioctl; 6] = [
    libc::FIONBIO,
    libc::TIOCOUTQ,
    libc::FIONREAD,
    libc::FIOCLEX,
    libc::FIONCLEX,
    libc::SIOCGIFHWADDR as libc::Ioctl,
];

/// An ioctl request as the filter compares it (`Ioctl` is c_ulong on glibc, c_int on musl).
#[allow(clippy::unnecessary_cast)]
fn ioctl_request(request: libc::Ioctl) -> u64 {
    request as u64
}

/// The allowlist; `pid` is this process's, for tgkill.
fn allowlist(pid: u32) -> Vec<Allowed> {
    let mut list = vec![
        // Data path and the API.
        any(sc!(SYS_read)),
        any(sc!(SYS_write)),
        any(sc!(SYS_readv)),
        any(sc!(SYS_writev)),
        any(sc!(SYS_recvfrom)),
        any(sc!(SYS_sendto)),
        any(sc!(SYS_recvmsg)),
        any(sc!(SYS_sendmsg)),
        any(sc!(SYS_recvmmsg)),
        any(sc!(SYS_sendmmsg)),
        any(sc!(SYS_epoll_pwait)),
        any(sc!(SYS_epoll_ctl)),
        any(sc!(SYS_ppoll)),
        any(sc!(SYS_close)),
        // Sockets.
        when(
            sc!(SYS_socket),
            internet_sockets(
                &[libc::AF_INET, libc::AF_INET6],
                &[libc::SOCK_STREAM, libc::SOCK_DGRAM],
            ),
        ),
        any(sc!(SYS_connect)),
        any(sc!(SYS_bind)),
        any(sc!(SYS_listen)),
        any(sc!(SYS_accept4)),
        any(sc!(SYS_getsockname)),
        any(sc!(SYS_getpeername)),
        any(sc!(SYS_setsockopt)),
        any(sc!(SYS_getsockopt)),
        any(sc!(SYS_shutdown)),
        when(sc!(SYS_ioctl), one_of(1, &IOCTLS.map(ioctl_request))),
        when(
            sc!(SYS_fcntl),
            one_of(
                1,
                &[
                    libc::F_GETFD as u64,
                    libc::F_SETFD as u64,
                    libc::F_GETFL as u64,
                    libc::F_SETFL as u64,
                    libc::F_DUPFD_CLOEXEC as u64,
                ],
            ),
        ),
        // Threads.
        when(
            sc!(SYS_clone),
            masked(
                0,
                true,
                libc::CLONE_THREAD as u64 | CLONE_NEW_ANY,
                &[libc::CLONE_THREAD as u64],
            ),
        ),
        any(sc!(SYS_set_robust_list)),
        any(sc!(SYS_rseq)),
        when(sc!(SYS_prctl), one_of(0, &[libc::PR_SET_NAME as u64])),
        any(sc!(SYS_sched_getaffinity)),
        any(sc!(SYS_sigaltstack)),
        any(sc!(SYS_rt_sigprocmask)),
        when(
            sc!(SYS_futex),
            masked(
                1,
                false,
                FUTEX_CMD_MASK,
                &[
                    libc::FUTEX_WAIT as u64,
                    libc::FUTEX_WAKE as u64,
                    libc::FUTEX_WAIT_BITSET as u64,
                    libc::FUTEX_WAKE_BITSET as u64,
                ],
            ),
        ),
        any(sc!(SYS_sched_yield)),
        any(sc!(SYS_gettid)),
        any(sc!(SYS_getpid)),
        any(sc!(SYS_exit)),
        // Memory.
        when(
            sc!(SYS_mmap),
            masked(2, false, libc::PROT_EXEC as u64, &[0]),
        ),
        when(
            sc!(SYS_mprotect),
            masked(2, false, libc::PROT_EXEC as u64, &[0]),
        ),
        any(sc!(SYS_munmap)),
        any(sc!(SYS_mremap)),
        any(sc!(SYS_brk)),
        when(
            sc!(SYS_madvise),
            one_of(
                2,
                &[
                    libc::MADV_DONTNEED as u64,
                    libc::MADV_FREE as u64,
                    libc::MADV_HUGEPAGE as u64,
                ],
            ),
        ),
        // Time.
        any(sc!(SYS_clock_gettime)),
        any(sc!(SYS_clock_nanosleep)),
        any(sc!(SYS_nanosleep)),
        any(sc!(SYS_restart_syscall)),
        // The process.
        any(sc!(SYS_getrandom)),
        any(sc!(SYS_rt_sigaction)),
        any(sc!(SYS_rt_sigreturn)),
        when(sc!(SYS_tgkill), one_of(0, &[u64::from(pid)])),
        any(sc!(SYS_exit_group)),
    ];
    #[cfg(target_arch = "x86_64")]
    list.extend([any(sc!(SYS_epoll_wait)), any(sc!(SYS_poll))]);
    list
}

/// Syscalls that fail with ENOENT: path lookups in a process that has no filesystem.
fn no_filesystem() -> Vec<(&'static str, i64)> {
    let mut list = vec![
        sc!(SYS_openat),
        sc!(SYS_newfstatat),
        sc!(SYS_statx),
        sc!(SYS_unlinkat),
    ];
    #[cfg(target_arch = "x86_64")]
    list.extend([
        sc!(SYS_open),
        sc!(SYS_stat),
        sc!(SYS_lstat),
        sc!(SYS_unlink),
    ]);
    list
}

/// Syscalls that fail with ENOSYS, so that libc falls back to one the allowlist can check.
fn fall_back() -> Vec<(&'static str, i64)> {
    vec![sc!(SYS_clone3)]
}

/// The programs to install, in order: the two error filters, then the allowlist.
fn build(opts: &SeccompOptions, pid: u32) -> Result<Vec<BpfProgram>, ConfineError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|_| ConfineError::Arch {
        arch: std::env::consts::ARCH,
    })?;
    let errno = |calls: Vec<(&'static str, i64)>, errno: i32| -> Result<BpfProgram, ConfineError> {
        let rules = calls.into_iter().map(|(_, nr)| (nr, Vec::new())).collect();
        // errno values are small positive numbers.
        let errno = errno.unsigned_abs();
        compile(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno),
            arch,
        )
    };
    let mut rules = BTreeMap::new();
    let list = allowlist(pid);
    let names: Vec<&str> = list.iter().map(|a| a.name).collect();
    tracing::debug!(count = names.len(), syscalls = %names.join(" "), "seccomp allowlist");
    for entry in list {
        rules.insert(entry.nr, seccomp_rules(&entry.rules)?);
    }
    // The error filters answer these, but only if the allowlist lets them through.
    for (_, nr) in no_filesystem().into_iter().chain(fall_back()) {
        rules.insert(nr, Vec::new());
    }
    let violation = match opts.violation {
        Violation::KillProcess => SeccompAction::KillProcess,
        Violation::Log => SeccompAction::Log,
    };
    Ok(vec![
        errno(no_filesystem(), libc::ENOENT)?,
        errno(fall_back(), libc::ENOSYS)?,
        compile(rules, violation, SeccompAction::Allow, arch)?,
    ])
}

fn seccomp_rules(rules: &[Vec<Cond>]) -> Result<Vec<SeccompRule>, ConfineError> {
    rules
        .iter()
        .map(|conds| {
            let conds = conds
                .iter()
                .map(|c| {
                    let (len, full) = if c.qword {
                        (SeccompCmpArgLen::Qword, u64::MAX)
                    } else {
                        (SeccompCmpArgLen::Dword, u64::from(u32::MAX))
                    };
                    let op = if c.mask == full {
                        SeccompCmpOp::Eq
                    } else {
                        SeccompCmpOp::MaskedEq(c.mask)
                    };
                    SeccompCondition::new(c.arg, len, op, c.value)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| ConfineError::CompileFilter { source })?;
            SeccompRule::new(conds).map_err(|source| ConfineError::CompileFilter { source })
        })
        .collect()
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, ConfineError> {
    SeccompFilter::new(rules, mismatch, matched, arch)
        .and_then(BpfProgram::try_from)
        .map_err(|source| ConfineError::CompileFilter { source })
}

#[cfg(test)]
mod tests;
