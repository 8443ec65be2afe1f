//! Loads an OCI seccomp filter (`linux.seccomp` of a runtime spec) with libseccomp.
//!
//! This runs in the container's init process, a fresh single-threaded process, as the last
//! step before `execve` of the user's command. The translation follows runc's
//! (`libcontainer/seccomp`), so that a profile behaves as it does under Docker:
//!
//! - `SCMP_ACT_ERRNO` without `errnoRet` (or `defaultErrnoRet`) returns `EPERM`, and so does
//!   `SCMP_ACT_TRACE`; `SCMP_ACT_KILL` kills the thread.
//! - A rule whose action equals the default action is redundant and skipped (libseccomp would
//!   refuse it).
//! - A syscall name this libseccomp does not know is skipped (logged at debug level): profiles
//!   name syscalls newer than the library.
//! - Argument comparisons of one rule are ANDed; but when two comparisons test the *same*
//!   argument index, each comparison becomes a rule of its own (so they are ORed), as in runc.
//! - `flags` absent means `SECCOMP_FILTER_FLAG_SPEC_ALLOW` where the kernel and libseccomp
//!   support it (runc's default); an explicit list is applied as given and an unsupported flag
//!   is an error.
//! - libseccomp does not set `no_new_privs` itself (`CtlNnp` off): the caller sets it before
//!   (unless the container runs privileged without it, in which case loading needs
//!   `CAP_SYS_ADMIN`).
//! - `SCMP_ACT_NOTIFY` is not supported (berth has no seccomp agent) and is an error.

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

/// A syscall has at most six arguments (indexes 0 to 5).
const MAX_SYSCALL_ARGS: usize = 6;

/// Rules beyond this count make libseccomp build a binary tree (as runc does; libseccomp
/// 2.5.4 and older misbehave with the tree and no rules at all).
const OPTIMIZE_ABOVE_RULES: usize = 32;

/// Why a seccomp filter could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// Reading the compiled program back failed.
    #[error("seccomp: export the compiled filter: {0}")]
    Export(std::io::Error),
    /// `SCMP_ACT_NOTIFY` needs a seccomp agent, which berth does not have.
    #[error("seccomp: action SCMP_ACT_NOTIFY is not supported ({context})")]
    NotifyUnsupported {
        /// `default action` or `syscall "name"`.
        context: String,
    },
    /// An `errnoRet` that does not fit the 16 bits the kernel keeps.
    #[error("seccomp: errnoRet {value} for {context} is out of range (0 to 65535)")]
    ErrnoRetRange {
        /// `default action` or `syscall "name"`.
        context: String,
        /// The value given.
        value: u32,
    },
    /// A rule with an empty syscall name.
    #[error("seccomp: a rule has an empty syscall name")]
    EmptySyscallName,
    /// An argument comparison on an index past the sixth argument.
    #[error(
        "seccomp: syscall {syscall:?}: argument index {index} is out of range (a syscall has 6 arguments, 0 to 5)"
    )]
    ArgIndex {
        /// The syscall of the rule.
        syscall: String,
        /// The bad index.
        index: usize,
    },
    /// libseccomp could not create a filter.
    #[error("seccomp: creating the filter (default action {action:?}): {source}")]
    Init {
        /// The default action.
        action: LinuxSeccompAction,
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// An architecture this libseccomp (or the kernel) does not support.
    #[error("seccomp: adding architecture {arch:?} to the filter: {source}")]
    Arch {
        /// The architecture, as in the spec.
        arch: Arch,
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// A filter flag this libseccomp or kernel cannot set.
    #[error("seccomp: flag {flag} is not supported by this libseccomp or kernel: {source}")]
    Flag {
        /// The flag, as in the spec.
        flag: LinuxSeccompFilterFlag,
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// A filter attribute that could not be set.
    #[error("seccomp: setting filter attribute {attr}: {source}")]
    Attr {
        /// The attribute.
        attr: &'static str,
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// libseccomp refused a rule.
    #[error("seccomp: adding the rule for syscall {syscall:?} (action {action:?}): {source}")]
    Rule {
        /// The syscall of the rule.
        syscall: String,
        /// The rule's action.
        action: LinuxSeccompAction,
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// The kernel refused the filter (without `no_new_privs`, loading needs `CAP_SYS_ADMIN`).
    #[error("seccomp: loading the filter into the kernel: {source}")]
    Load {
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
}

/// Loads `seccomp` into the calling thread with libseccomp.
///
/// Call it last before `execve`: after capabilities are dropped and `no_new_privs` is set
/// (without `no_new_privs` the caller needs `CAP_SYS_ADMIN`). The filter is inherited by
/// children and kept across `execve`; only the calling thread gets it unless the spec has
/// `SECCOMP_FILTER_FLAG_TSYNC`.
pub fn apply(seccomp: &LinuxSeccomp) -> Result<(), SeccompError> {
    let filter = build_filter(seccomp)?;
    filter
        .load()
        .map_err(|source| SeccompError::Load { source })
}

/// A filter compiled to classic BPF: made once by the host side (and cached by the engine),
/// loaded by init with one system call, without libseccomp's compile step on every start.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CompiledFilter {
    /// `struct sock_filter` instructions, 8 bytes each, in host byte order. Hex in JSON: it
    /// crosses to init on every start, and a number per byte is three times the size.
    #[serde(with = "hex_bytes")]
    pub program: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*` to load it with.
    pub flags: u32,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <&str>::deserialize(d)?;
        hex::decode(text).map_err(D::Error::custom)
    }
}

const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
const SECCOMP_FILTER_FLAG_LOG: u32 = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 4;

/// Compiles `seccomp` for this host's architecture(s) with libseccomp.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    let filter = build_filter(seccomp)?;
    let program = export(&filter)?;
    let mut flags = 0;
    match seccomp.flags() {
        None => flags |= SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        Some(list) => {
            for flag in list {
                flags |= match flag {
                    LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
                    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                        SECCOMP_FILTER_FLAG_SPEC_ALLOW
                    }
                    LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
                    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
                };
            }
        }
    }
    Ok(CompiledFilter { program, flags })
}

/// The BPF program of `filter` (libseccomp 2.5 exports only to an fd).
fn export(filter: &ScmpFilterContext) -> Result<Vec<u8>, SeccompError> {
    use std::io::{Read, Seek};
    let memfd = rustix::fs::memfd_create("berth-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| SeccompError::Export(e.into()))?;
    let mut file = std::fs::File::from(memfd);
    filter
        .export_bpf(&file)
        .map_err(|source| SeccompError::Load { source })?;
    let mut program = Vec::new();
    file.seek(std::io::SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut program))
        .map_err(SeccompError::Export)?;
    Ok(program)
}

/// Loads a compiled filter into the calling thread. `SPEC_ALLOW` is dropped on kernels that
/// refuse it, as libseccomp does.
#[allow(unsafe_code)]
pub fn load_compiled(filter: &CompiledFilter) -> std::io::Result<()> {
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const u8,
    }
    if !filter.program.len().is_multiple_of(8) || filter.program.len() / 8 > u16::MAX as usize {
        return Err(std::io::Error::other("malformed seccomp program"));
    }
    let prog = SockFprog {
        len: (filter.program.len() / 8) as u16,
        filter: filter.program.as_ptr(),
    };
    let load = |flags: u32| {
        // SAFETY: `prog` points at `filter.program`, which outlives the call and holds `len`
        // 8-byte instructions; the kernel copies the program before returning.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                1, // SECCOMP_SET_MODE_FILTER
                flags,
                &prog as *const SockFprog,
            )
        };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    match load(filter.flags) {
        Err(e)
            if e.raw_os_error() == Some(libc::EINVAL)
                && filter.flags & SECCOMP_FILTER_FLAG_SPEC_ALLOW != 0 =>
        {
            load(filter.flags & !SECCOMP_FILTER_FLAG_SPEC_ALLOW)
        }
        other => other,
    }
}

/// Builds the libseccomp filter for `seccomp` without loading it.
fn build_filter(seccomp: &LinuxSeccomp) -> Result<ScmpFilterContext, SeccompError> {
    let default_action = to_action(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        &|| "default action".to_owned(),
    )?;
    let mut filter =
        ScmpFilterContext::new(default_action).map_err(|source| SeccompError::Init {
            action: seccomp.default_action(),
            source,
        })?;

    for &arch in seccomp.architectures().iter().flatten() {
        filter
            .add_arch(to_arch(arch))
            .map_err(|source| SeccompError::Arch { arch, source })?;
    }

    // The caller sets no_new_privs (or keeps it off for a privileged container and loads the
    // filter with CAP_SYS_ADMIN); libseccomp must not set it behind our back.
    filter
        .set_ctl_nnp(false)
        .map_err(|source| SeccompError::Attr {
            attr: "CtlNnp",
            source,
        })?;

    match seccomp.flags() {
        // runc's default when the spec names no flags: allow speculative store bypass, where
        // the kernel and libseccomp can.
        None => {
            if let Err(err) = filter.set_ctl_ssb(true) {
                tracing::debug!("seccomp: SECCOMP_FILTER_FLAG_SPEC_ALLOW not available: {err}");
            }
        }
        Some(flags) => {
            for &flag in flags {
                set_flag(&mut filter, flag)?;
            }
        }
    }

    let rule_count: usize = seccomp
        .syscalls()
        .iter()
        .flatten()
        .map(|rule| rule.names().len())
        .sum();
    if rule_count > OPTIMIZE_ABOVE_RULES
        && let Err(err) = filter.set_ctl_optimize(2)
    {
        tracing::debug!("seccomp: binary tree optimization not available: {err}");
    }

    for rule in seccomp.syscalls().iter().flatten() {
        for name in rule.names() {
            add_rule(
                &mut filter,
                default_action,
                name,
                rule.action(),
                rule.errno_ret(),
                rule.args().as_deref().unwrap_or_default(),
            )?;
        }
    }
    Ok(filter)
}

/// Adds the rule(s) for one syscall name.
fn add_rule(
    filter: &mut ScmpFilterContext,
    default_action: ScmpAction,
    name: &str,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: &[LinuxSeccompArg],
) -> Result<(), SeccompError> {
    if name.is_empty() {
        return Err(SeccompError::EmptySyscallName);
    }
    let scmp_action = to_action(action, errno_ret, &|| format!("syscall {name:?}"))?;
    if scmp_action == default_action {
        // Redundant, and libseccomp refuses a rule with the default action.
        return Ok(());
    }
    let Ok(syscall) = ScmpSyscall::from_name(name) else {
        tracing::debug!("seccomp: unknown syscall {name:?} ignored");
        return Ok(());
    };

    let mut per_index = [0usize; MAX_SYSCALL_ARGS];
    let mut conditions = Vec::with_capacity(args.len());
    for arg in args {
        let index = arg.index();
        if index >= MAX_SYSCALL_ARGS {
            return Err(SeccompError::ArgIndex {
                syscall: name.to_owned(),
                index,
            });
        }
        per_index[index] += 1;
        conditions.push(to_condition(arg));
    }

    let rule_error = |source| SeccompError::Rule {
        syscall: name.to_owned(),
        action,
        source,
    };
    if per_index.iter().any(|&n| n > 1) {
        // Several comparisons on one argument: one rule each, so that any of them matches
        // (runc's rule; ANDing them would mostly never match).
        for condition in &conditions {
            filter
                .add_rule_conditional(scmp_action, syscall, std::slice::from_ref(condition))
                .map_err(rule_error)?;
        }
    } else {
        filter
            .add_rule_conditional(scmp_action, syscall, &conditions)
            .map_err(rule_error)?;
    }
    Ok(())
}

/// Sets one filter flag of the spec.
fn set_flag(
    filter: &mut ScmpFilterContext,
    flag: LinuxSeccompFilterFlag,
) -> Result<(), SeccompError> {
    let result = match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => filter.set_ctl_log(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => filter.set_ctl_ssb(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => filter.set_ctl_tsync(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => filter.set_ctl_waitkill(true),
    };
    result
        .map(|_| ())
        .map_err(|source| SeccompError::Flag { flag, source })
}

/// The libseccomp action for a spec action, with runc's defaults for `errnoRet` (`EPERM`).
/// `context` names the rule for error messages.
fn to_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    context: &dyn Fn() -> String,
) -> Result<ScmpAction, SeccompError> {
    let ret = || match errno_ret {
        None => Ok(libc::EPERM as u16),
        Some(value) => u16::try_from(value).map_err(|_| SeccompError::ErrnoRetRange {
            context: context(),
            value,
        }),
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(ret()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret()?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::NotifyUnsupported { context: context() });
        }
    })
}

/// The libseccomp comparison for a spec argument. For `SCMP_CMP_MASKED_EQ`, `value` is the
/// mask and `valueTwo` the value the masked argument must equal (runc's reading).
fn to_condition(arg: &LinuxSeccompArg) -> ScmpArgCompare {
    let index = arg.index() as u32;
    let value = arg.value();
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(
                index,
                ScmpCompareOp::MaskedEqual(value),
                arg.value_two().unwrap_or(0),
            );
        }
    };
    ScmpArgCompare::new(index, op, value)
}

/// The libseccomp architecture token for a spec architecture.
fn to_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Output};

    use nix::errno::Errno;
    use nix::unistd::Pid;

    /// Set (to a scenario name) in a re-spawned test process, which then loads a filter.
    const CHILD_ENV: &str = "BERTH_RUNTIME_SECCOMP_CHILD";

    /// The host's architecture and its compat architectures, as a JSON list.
    fn host_arches_json() -> &'static str {
        if cfg!(target_arch = "x86_64") {
            r#"["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]"#
        } else if cfg!(target_arch = "aarch64") {
            r#"["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]"#
        } else {
            r#"["SCMP_ARCH_NATIVE"]"#
        }
    }

    fn spec(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).expect("test spec parses")
    }

    /// The pseudo filter code libseccomp generates for `filter`.
    fn pfc(filter: &ScmpFilterContext) -> String {
        let mut file = tempfile::tempfile().unwrap();
        filter.export_pfc(&file).unwrap();
        file.rewind().unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        text
    }

    /// Runs this module's test `test` again in a new process with `CHILD_ENV=scenario`.
    fn run_child(test: &str, scenario: &str) -> Output {
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, rest)| rest);
        let output = Command::new(std::env::current_exe().unwrap())
            .arg(format!("{module}::{test}"))
            .args(["--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, scenario)
            .output()
            .unwrap();
        eprintln!(
            "child {scenario}: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Whether this process is the re-spawned child for `scenario`.
    fn is_child(scenario: &str) -> bool {
        std::env::var(CHILD_ENV).is_ok_and(|v| v == scenario)
    }

    fn marker(scenario: &str, what: &str) -> String {
        format!("berth-seccomp-child {scenario}: {what}")
    }

    fn say(scenario: &str, what: &str) {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", marker(scenario, what)).unwrap();
        out.flush().unwrap();
    }

    #[test]
    fn actions_follow_runc() {
        let ctx = &|| "ctx".to_owned();
        let cases = [
            (LinuxSeccompAction::ScmpActErrno, None, ScmpAction::Errno(1)),
            (
                LinuxSeccompAction::ScmpActErrno,
                Some(38),
                ScmpAction::Errno(38),
            ),
            (LinuxSeccompAction::ScmpActTrace, None, ScmpAction::Trace(1)),
            (
                LinuxSeccompAction::ScmpActTrace,
                Some(7),
                ScmpAction::Trace(7),
            ),
            (
                LinuxSeccompAction::ScmpActKill,
                None,
                ScmpAction::KillThread,
            ),
            (
                LinuxSeccompAction::ScmpActKillThread,
                None,
                ScmpAction::KillThread,
            ),
            (
                LinuxSeccompAction::ScmpActKillProcess,
                None,
                ScmpAction::KillProcess,
            ),
            (LinuxSeccompAction::ScmpActTrap, None, ScmpAction::Trap),
            (LinuxSeccompAction::ScmpActLog, None, ScmpAction::Log),
            (LinuxSeccompAction::ScmpActAllow, Some(3), ScmpAction::Allow),
        ];
        for (action, ret, want) in cases {
            assert_eq!(
                to_action(action, ret, ctx).unwrap(),
                want,
                "{action:?} {ret:?}"
            );
        }
        let err = to_action(LinuxSeccompAction::ScmpActErrno, Some(70_000), &|| {
            "syscall \"open\"".to_owned()
        })
        .unwrap_err();
        assert!(matches!(
            err,
            SeccompError::ErrnoRetRange { value: 70_000, .. }
        ));
        assert!(err.to_string().contains("\"open\""), "{err}");
    }

    #[test]
    fn masked_eq_uses_value_as_mask_and_value_two_as_datum() {
        let arg: LinuxSeccompArg = serde_json::from_str(
            r#"{"index": 1, "value": 2048, "valueTwo": 16, "op": "SCMP_CMP_MASKED_EQ"}"#,
        )
        .unwrap();
        assert_eq!(
            to_condition(&arg),
            ScmpArgCompare::new(1, ScmpCompareOp::MaskedEqual(2048), 16)
        );
        let arg: LinuxSeccompArg = serde_json::from_str(
            r#"{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}"#,
        )
        .unwrap();
        assert_eq!(
            to_condition(&arg),
            ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(2114060288), 0)
        );
        for (op, want) in [
            ("SCMP_CMP_NE", ScmpCompareOp::NotEqual),
            ("SCMP_CMP_LT", ScmpCompareOp::Less),
            ("SCMP_CMP_LE", ScmpCompareOp::LessOrEqual),
            ("SCMP_CMP_EQ", ScmpCompareOp::Equal),
            ("SCMP_CMP_GE", ScmpCompareOp::GreaterEqual),
            ("SCMP_CMP_GT", ScmpCompareOp::Greater),
        ] {
            let arg: LinuxSeccompArg =
                serde_json::from_str(&format!(r#"{{"index": 5, "value": 9, "op": "{op}"}}"#))
                    .unwrap();
            assert_eq!(to_condition(&arg), ScmpArgCompare::new(5, want, 9), "{op}");
        }
    }

    #[test]
    fn notify_is_refused_with_its_context() {
        let err = build_filter(&spec(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#)).unwrap_err();
        assert!(matches!(err, SeccompError::NotifyUnsupported { .. }));
        assert!(err.to_string().contains("default action"), "{err}");

        let err = build_filter(&spec(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("\"getcwd\""), "{err}");
    }

    #[test]
    fn bad_rules_are_named() {
        let err = build_filter(&spec(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        ))
        .unwrap_err();
        assert!(
            matches!(err, SeccompError::ArgIndex { index: 6, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("\"read\""), "{err}");

        let err = build_filter(&spec(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": [""], "action": "SCMP_ACT_ERRNO"}]}"#,
        ))
        .unwrap_err();
        assert!(matches!(err, SeccompError::EmptySyscallName), "{err:?}");

        let err = build_filter(&spec(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536}"#,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("default action"), "{err}");
    }

    #[test]
    fn unknown_syscalls_and_default_action_rules_are_skipped() {
        // libseccomp itself refuses both: the skips are what makes the spec load.
        let mut raw = ScmpFilterContext::new(ScmpAction::Errno(1)).unwrap();
        assert!(
            raw.add_rule(
                ScmpAction::Errno(1),
                ScmpSyscall::from_name("getpid").unwrap()
            )
            .is_err()
        );
        assert!(ScmpSyscall::from_name("berth_no_such_syscall").is_err());

        let filter = build_filter(&spec(
            r#"{"defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [
                  {"names": ["berth_no_such_syscall", "getpid"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                  {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
        ))
        .unwrap();
        let text = pfc(&filter);
        assert!(text.contains("\"getpid\""), "{text}");
        assert!(text.contains("\"getuid\""), "{text}");
        assert!(text.contains("ERRNO(13)"), "{text}");
        // getppid with errno 1 is the default action: no rule of its own.
        assert!(!text.contains("\"getppid\""), "{text}");
    }

    #[test]
    fn architectures_attributes_and_flags() {
        let filter = build_filter(&spec(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                 "architectures": {},
                 "syscalls": [{{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}}]}}"#,
            host_arches_json()
        )))
        .unwrap();
        assert_eq!(filter.get_act_default().unwrap(), ScmpAction::Errno(1));
        assert!(
            !filter.get_ctl_nnp().unwrap(),
            "libseccomp must not set no_new_privs"
        );
        // No flags in the spec: runc's default, SPEC_ALLOW.
        assert!(filter.get_ctl_ssb().unwrap());
        assert!(!filter.get_ctl_log().unwrap());
        if cfg!(target_arch = "x86_64") {
            for arch in [ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32] {
                assert!(filter.is_arch_present(arch).unwrap(), "{arch:?}");
            }
            let text = pfc(&filter);
            assert_eq!(text.matches("# filter for arch").count(), 3, "{text}");
        }

        // An explicit (even empty) list replaces the default.
        let filter =
            build_filter(&spec(r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": []}"#)).unwrap();
        assert!(!filter.get_ctl_ssb().unwrap());
        let filter = build_filter(&spec(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"]}"#,
        ))
        .unwrap();
        assert!(filter.get_ctl_log().unwrap());
        assert!(filter.get_ctl_tsync().unwrap());
        assert!(!filter.get_ctl_ssb().unwrap());

        // WAIT_KILLABLE_RECV needs libseccomp 2.6.
        let result = build_filter(&spec(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#,
        ));
        let version = libseccomp::ScmpVersion::current().unwrap();
        if (version.major, version.minor) < (2, 6) {
            let Err(err) = result else {
                panic!("libseccomp < 2.6 cannot set WAIT_KILLABLE_RECV");
            };
            assert!(matches!(err, SeccompError::Flag { .. }), "{err:?}");
            assert!(
                err.to_string()
                    .contains("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"),
                "{err}"
            );
        } else {
            assert!(result.is_ok());
        }
    }

    #[test]
    fn many_rules_turn_on_the_binary_tree() {
        let names: Vec<String> = ["read", "write", "close", "getpid", "getppid", "getuid"]
            .iter()
            .cycle()
            .take(40)
            .map(|s| format!("\"{s}\""))
            .collect();
        let filter = build_filter(&spec(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ERRNO",
                 "syscalls": [{{"names": [{}], "action": "SCMP_ACT_ALLOW"}}]}}"#,
            names.join(",")
        )))
        .unwrap();
        assert_eq!(filter.get_ctl_optimize().unwrap(), 2);
        let filter = build_filter(&spec(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#)).unwrap();
        assert_ne!(filter.get_ctl_optimize().unwrap(), 2);
    }

    /// The filter really works: loaded into a re-spawned test process, rules with errno,
    /// trace, AND and OR comparisons and a masked compare change what syscalls return.
    #[test]
    fn filter_changes_syscall_results_in_a_child() {
        const SCENARIO: &str = "rules";
        if !is_child(SCENARIO) {
            let output = run_child("filter_changes_syscall_results_in_a_child", SCENARIO);
            assert!(output.status.success(), "child failed: {:?}", output.status);
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                stdout.contains(&marker(SCENARIO, "all checks passed")),
                "{stdout}"
            );
            return;
        }

        let mut file = tempfile::tempfile().unwrap();
        let mut other = tempfile::tempfile().unwrap();
        let fd = file.as_raw_fd();
        let pid = std::process::id();
        let seccomp = spec(&format!(
            r#"{{
              "defaultAction": "SCMP_ACT_ALLOW",
              "architectures": {arches},
              "syscalls": [
                {{"names": ["getpid", "berth_no_such_syscall"], "action": "SCMP_ACT_ALLOW"}},
                {{"names": ["unshare"], "action": "SCMP_ACT_ERRNO"}},
                {{"names": ["getsid"], "action": "SCMP_ACT_TRACE"}},
                {{"names": ["getuid"], "action": "SCMP_ACT_LOG"}},
                {{"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 79,
                  "args": [{{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}},
                           {{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}}]}},
                {{"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 80,
                  "args": [{{"index": 0, "value": {fd}, "op": "SCMP_CMP_EQ"}},
                           {{"index": 2, "value": {seek_end}, "op": "SCMP_CMP_EQ"}}]}},
                {{"names": ["fchmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 81,
                  "args": [{{"index": 1, "value": 2048, "valueTwo": 2048,
                             "op": "SCMP_CMP_MASKED_EQ"}}]}}
              ]
            }}"#,
            arches = host_arches_json(),
            seek_end = libc::SEEK_END,
        ));
        let uid = nix::unistd::getuid();
        nix::sys::prctl::set_no_new_privs().unwrap();
        apply(&seccomp).unwrap();

        // Rules that equal the default and unknown names are skipped without harm.
        assert_eq!(nix::unistd::getpid().as_raw() as u32, pid);
        // ERRNO without errnoRet is EPERM (root could unshare without the filter).
        assert_eq!(
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS),
            Err(Errno::EPERM)
        );
        // TRACE without a tracer: the kernel fails the call with ENOSYS.
        assert_eq!(nix::unistd::getsid(None), Err(Errno::ENOSYS));
        // LOG allows.
        assert_eq!(nix::unistd::getuid(), uid);
        // Two comparisons on one argument: either matches.
        assert_eq!(
            nix::unistd::getpgid(Some(Pid::from_raw(1))),
            Err(Errno::from_raw(79))
        );
        assert_eq!(
            nix::unistd::getpgid(Some(Pid::from_raw(2))),
            Err(Errno::from_raw(79))
        );
        assert!(nix::unistd::getpgid(None).is_ok());
        // Comparisons on different arguments: both must match.
        assert_eq!(
            file.seek(SeekFrom::End(0)).unwrap_err().raw_os_error(),
            Some(80)
        );
        assert_eq!(file.seek(SeekFrom::Start(0)).unwrap(), 0);
        assert_eq!(other.seek(SeekFrom::End(0)).unwrap(), 0);
        // Masked compare: only modes with the set-user-ID bit are refused.
        let err = file
            .set_permissions(std::fs::Permissions::from_mode(0o4644))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(81));
        file.set_permissions(std::fs::Permissions::from_mode(0o640))
            .unwrap();
        say(SCENARIO, "all checks passed");
    }

    /// In the parent: runs `test` as a child for `scenario` and checks that SIGSYS ended it
    /// between "armed" and "survived". In the child: makes `getppid` take `action`.
    fn getppid_ends_with_sigsys(test: &str, scenario: &str, action: &str) {
        if !is_child(scenario) {
            let output = run_child(test, scenario);
            assert_eq!(
                output.status.signal(),
                Some(libc::SIGSYS),
                "{:?}",
                output.status
            );
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(stdout.contains(&marker(scenario, "armed")), "{stdout}");
            assert!(!stdout.contains(&marker(scenario, "survived")), "{stdout}");
            return;
        }
        nix::sys::prctl::set_no_new_privs().unwrap();
        apply(&spec(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{{"names": ["getppid"], "action": "{action}"}}]}}"#
        )))
        .unwrap();
        say(scenario, "armed");
        let _ = nix::unistd::getppid();
        say(scenario, "survived");
    }

    /// SCMP_ACT_KILL_PROCESS kills the whole process with SIGSYS.
    #[test]
    fn kill_process_action_kills_the_child() {
        getppid_ends_with_sigsys(
            "kill_process_action_kills_the_child",
            "kill",
            "SCMP_ACT_KILL_PROCESS",
        );
    }

    /// SCMP_ACT_TRAP sends SIGSYS, which (not handled) ends the process.
    #[test]
    fn trap_action_sends_sigsys() {
        getppid_ends_with_sigsys("trap_action_sends_sigsys", "trap", "SCMP_ACT_TRAP");
    }
}
