//! The worker's lock-down: resource limits before the library loads, then a seccomp filter
//! (seccompiler, from rust-vmm) that leaves only what a sans-IO step needs.
//!
//! Allowed: `read` on the frames' input, `write` on their output, stdout and stderr (both the
//! host's log by then), memory (`brk`, `mmap` and
//! `mprotect` without `PROT_EXEC`, `munmap`, `mremap`, `madvise`), `futex`, `sched_yield`,
//! `getrandom`, the clocks, signal handlers, returns and masks, `tgkill` on itself (`abort`),
//! and
//! exit. Everything else (`openat`, `socket`, `connect`, `clone`/`clone3`, `execve`, `ioctl`,
//! `ptrace`, ...) kills the whole worker with SIGSYS: a plugin that tries is not refused and
//! left running, it is gone.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

fn exact(bytes: u64) -> rustix::process::Rlimit {
    rustix::process::Rlimit {
        current: Some(bytes),
        maximum: Some(bytes),
    }
}

/// `RLIMIT_CORE` 0: a crashing plugin dumps no memory (which holds its config's secrets).
pub fn forbid_core_dumps() -> Result<(), String> {
    rustix::process::setrlimit(rustix::process::Resource::Core, exact(0))
        .map_err(|error| format!("RLIMIT_CORE: {error}"))
}

/// `RLIMIT_AS` at what the worker maps now (the host binary, the library, the allocator's
/// reservations) plus `budget_bytes`: an allocation past it fails, and Rust aborts. Set
/// after loading and before the lock-down (it reads `/proc/self/statm`).
pub fn limit_address_space(budget_bytes: u64) -> Result<(), String> {
    let statm = std::fs::read_to_string("/proc/self/statm")
        .map_err(|error| format!("/proc/self/statm: {error}"))?;
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|pages| pages.parse().ok())
        .ok_or_else(|| format!("/proc/self/statm reads {statm:?}"))?;
    let page_size = rustix::param::page_size() as u64;
    let limit = pages.saturating_mul(page_size).saturating_add(budget_bytes);
    rustix::process::setrlimit(rustix::process::Resource::As, exact(limit))
        .map_err(|error| format!("RLIMIT_AS: {error}"))
}

/// Dies with its parent (the host): SIGKILL on the parent's death. `parent` is the host's
/// pid as the host passed it: a host that died before this call is noticed here.
pub fn die_with_parent(parent: u32) -> Result<(), String> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|error| format!("PR_SET_PDEATHSIG: {error}"))?;
    let current_parent = rustix::process::getppid().map(|pid| pid.as_raw_nonzero().get());
    if current_parent != i32::try_from(parent).ok() {
        return Err("the host that started this worker is gone".to_owned());
    }
    Ok(())
}

fn condition(argument: u8, operator: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(argument, SeccompCmpArgLen::Dword, operator, value)
        .map_err(|error| error.to_string())
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|error| error.to_string())
}

/// The worker's descriptors for frames from and to the host (stdin reads /dev/null).
#[derive(Debug, Clone, Copy)]
pub struct FrameDescriptors {
    pub input: u64,
    pub output: u64,
}

/// The filter's rules: system call number to the rules of which any one allows it (none:
/// allowed whatever its arguments).
fn allowed_calls(frames: FrameDescriptors) -> Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let prot_exec = u64::try_from(libc::PROT_EXEC).map_err(|error| error.to_string())?;
    let without_exec = || rule(vec![condition(2, SeccompCmpOp::MaskedEq(prot_exec), 0)?]);
    let mut rules = BTreeMap::new();
    rules.insert(
        libc::SYS_read,
        vec![rule(vec![condition(0, SeccompCmpOp::Eq, frames.input)?])?],
    );
    rules.insert(
        libc::SYS_write,
        vec![
            rule(vec![condition(0, SeccompCmpOp::Eq, frames.output)?])?,
            rule(vec![condition(0, SeccompCmpOp::Eq, 1)?])?,
            rule(vec![condition(0, SeccompCmpOp::Eq, 2)?])?,
        ],
    );
    rules.insert(libc::SYS_mmap, vec![without_exec()?]);
    rules.insert(libc::SYS_mprotect, vec![without_exec()?]);
    rules.insert(
        libc::SYS_tgkill,
        vec![rule(vec![condition(
            0,
            SeccompCmpOp::Eq,
            u64::from(std::process::id()),
        )?])?],
    );
    for always in [
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_getrandom,
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_gettimeofday,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        // Rust's SIGSEGV handler restores the default action before the fault repeats.
        libc::SYS_rt_sigaction,
        libc::SYS_sigaltstack,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ] {
        rules.insert(always, Vec::new());
    }
    Ok(rules)
}

/// Installs the filter on every thread of the worker (it has one); from here on the worker
/// can only compute and talk over its pipes.
pub fn lock_down(frames: FrameDescriptors) -> Result<(), String> {
    let architecture = std::env::consts::ARCH
        .try_into()
        .map_err(|_| format!("no seccomp filter for {}", std::env::consts::ARCH))?;
    let filter = SeccompFilter::new(
        allowed_calls(frames)?,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        architecture,
    )
    .map_err(|error| error.to_string())?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|error: seccompiler::BackendError| error.to_string())?;
    seccompiler::apply_filter_all_threads(&program).map_err(|error| format!("seccomp: {error}"))
}
