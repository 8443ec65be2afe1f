//! Docker's seccomp profiles: the JSON format that `--security-opt seccomp=FILE` reads,
//! Docker's default profile, and the resolution of a profile into the OCI `linux.seccomp` of
//! one container (what moby's `setupSeccomp` does).
//!
//! A Docker profile is an OCI seccomp section with three additions: `archMap` (the host
//! architecture and the compat architectures it runs), and per rule `includes`/`excludes`
//! conditions on the container's capabilities, the host architecture and the host kernel
//! version. [`to_oci`] evaluates those conditions for one container; the result is what
//! `berth_runtime::seccomp::apply` loads.

use std::fmt;
use std::str::FromStr;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A seccomp profile in Docker's JSON format.
///
/// Field names follow Docker's JSON; as in Docker (Go's decoder), keys are matched without
/// regard to case and `null` stands for an empty list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The action for syscalls no rule matches. `None` (or `""`) together with no rules
    /// means "no filter" (see [`Profile::is_unconfined`]).
    #[serde(
        default,
        deserialize_with = "action_or_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_action: Option<LinuxSeccompAction>,
    /// The errno of the default action when it is `SCMP_ACT_ERRNO` (`EPERM` if unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// Architectures to filter, given directly (exclusive with `archMap`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub architectures: Vec<Arch>,
    /// Per host architecture, the architectures to filter.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arch_map: Vec<ArchMapEntry>,
    /// Filter flags (`SECCOMP_FILTER_FLAG_*`). Empty means the runtime's default.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub flags: Vec<LinuxSeccompFilterFlag>,
    /// Socket of a seccomp agent for `SCMP_ACT_NOTIFY` (passed through; berth's runtime does
    /// not support notify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    /// Opaque data for the seccomp agent (passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    /// The rules, in order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub syscalls: Vec<SyscallRule>,
}

/// One `archMap` entry: on a host of `architecture`, filter it and `subArchitectures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMapEntry {
    /// The host (main) architecture.
    pub architecture: Arch,
    /// Compat architectures the host also runs (x86 and x32 on x86_64, ...).
    #[serde(default, deserialize_with = "null_as_default")]
    pub sub_architectures: Vec<Arch>,
}

/// One rule of a Docker profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    /// A single syscall name (Docker's old form; exclusive with `names`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The syscalls the rule is for.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub names: Vec<String>,
    /// What happens when the rule matches.
    pub action: LinuxSeccompAction,
    /// The errno for `SCMP_ACT_ERRNO` (or the value for `SCMP_ACT_TRACE`); `EPERM` if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Argument comparisons (all must hold; see the runtime for comparisons on one index).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<SyscallArg>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The rule applies only if all of these hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Filter>,
    /// The rule does not apply if any of these holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Filter>,
}

/// An argument comparison of a rule. For `SCMP_CMP_MASKED_EQ`, `value` is the mask and
/// `valueTwo` the value the masked argument must equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallArg {
    /// The argument, 0 to 5.
    #[serde(default)]
    pub index: u32,
    /// The value compared with (the mask, for `SCMP_CMP_MASKED_EQ`).
    #[serde(default)]
    pub value: u64,
    /// The second value (for `SCMP_CMP_MASKED_EQ`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value_two: u64,
    /// The comparison.
    pub op: LinuxSeccompOperator,
}

/// A condition on the container and host (`includes` or `excludes` of a rule).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Capability names (`CAP_SYS_ADMIN`). `includes`: all present; `excludes`: any present.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub caps: Vec<String>,
    /// Host architectures in Docker's (Go's) names: `amd64`, `x86`, `x32`, `arm64`, `arm`,
    /// `ppc64le`, `s390x`, `riscv64`, ...
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arches: Vec<String>,
    /// The host kernel is at least this version (`"4.8"`).
    #[serde(
        default,
        deserialize_with = "min_kernel_or_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_kernel: Option<KernelVersion>,
}

/// A kernel version as `<kernel>.<major>` (`"4.8"`); the rest of a release is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    /// The `4` of `4.8.2`.
    pub kernel: u32,
    /// The `8` of `4.8.2`.
    pub major: u32,
}

/// Why a profile could not be read or resolved.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not JSON, or not a profile; serde's message names the field, the line and the column.
    #[error("decoding seccomp profile failed: {0}")]
    Json(#[source] serde_json::Error),
    /// A JSON value that must be an object is something else.
    #[error("decoding seccomp profile failed: {} must be a JSON object", if path.is_empty() { "the profile" } else { path.as_str() })]
    NotAnObject {
        /// Where: `syscalls[3].args[0]`, or empty for the whole profile.
        path: String,
    },
    /// Both ways of naming architectures.
    #[error(
        "seccomp profile: both 'architectures' and 'archMap' are specified; use either 'architectures' or 'archMap'"
    )]
    ArchitecturesAndArchMap,
    /// A rule with both `name` and `names`.
    #[error(
        "seccomp profile: syscalls[{rule}]: both 'name' ({name:?}) and 'names' are specified; use either 'name' or 'names'"
    )]
    NameAndNames {
        /// The rule's position in `syscalls`.
        rule: usize,
        /// Its `name`.
        name: String,
    },
    /// A rule naming the syscall `""`.
    #[error("seccomp profile: syscalls[{rule}]: empty syscall name")]
    EmptyName {
        /// The rule's position in `syscalls`.
        rule: usize,
    },
    /// An argument index past the sixth argument.
    #[error(
        "seccomp profile: syscalls[{rule}] ({syscall}): argument index {index} is out of range (0 to 5)"
    )]
    ArgIndex {
        /// The rule's position in `syscalls`.
        rule: usize,
        /// The rule's first syscall name.
        syscall: String,
        /// The bad index.
        index: u32,
    },
    /// Rules but no `defaultAction`.
    #[error("seccomp profile: 'defaultAction' is missing (the profile has syscall rules)")]
    MissingDefaultAction,
    /// The host kernel's release could not be read as `<kernel>.<major>`.
    #[error("seccomp profile: cannot read the host kernel version from release {release:?}")]
    KernelRelease {
        /// `uname -r`.
        release: String,
    },
}

impl Profile {
    /// Whether the profile asks for no filter at all (no default action and no rules), which
    /// Docker treats as unconfined. [`to_oci`] gives an allow-everything filter for it; a
    /// caller that wants Docker's exact behaviour leaves `linux.seccomp` unset instead.
    pub fn is_unconfined(&self) -> bool {
        self.default_action.is_none() && self.syscalls.is_empty()
    }

    /// Checks what Docker checks when it resolves a profile.
    fn validate(&self) -> Result<(), ProfileError> {
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return Err(ProfileError::ArchitecturesAndArchMap);
        }
        if self.default_action.is_none() && !self.syscalls.is_empty() {
            return Err(ProfileError::MissingDefaultAction);
        }
        for (rule, call) in self.syscalls.iter().enumerate() {
            if let Some(name) = call.name.as_deref().filter(|n| !n.is_empty())
                && !call.names.is_empty()
            {
                return Err(ProfileError::NameAndNames {
                    rule,
                    name: name.to_owned(),
                });
            }
            let names = call.syscall_names();
            if names.iter().any(|n| n.is_empty()) {
                return Err(ProfileError::EmptyName { rule });
            }
            if let Some(arg) = call.args.iter().find(|a| a.index >= 6) {
                return Err(ProfileError::ArgIndex {
                    rule,
                    syscall: names.first().map_or_else(String::new, |n| n.to_string()),
                    index: arg.index,
                });
            }
        }
        Ok(())
    }
}

impl SyscallRule {
    /// `names`, or the old single `name`.
    fn syscall_names(&self) -> Vec<&str> {
        match self.name.as_deref() {
            Some(name) if !name.is_empty() && self.names.is_empty() => vec![name],
            _ => self.names.iter().map(String::as_str).collect(),
        }
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kernel, self.major)
    }
}

impl FromStr for KernelVersion {
    type Err = String;

    /// Docker's `minKernel` syntax: exactly `<kernel>.<major>`, each 0 to 255, not `0.0`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            |why: &str| format!("invalid kernel version {s:?}, expected \"<kernel>.<major>\"{why}");
        let (kernel, major) = s.split_once('.').ok_or_else(|| bad(""))?;
        let number = |part: &str| -> Result<u32, String> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(""));
            }
            part.parse::<u8>()
                .map(u32::from)
                .map_err(|_| bad(": number out of range"))
        };
        let version = KernelVersion {
            kernel: number(kernel)?,
            major: number(major)?,
        };
        if version.kernel == 0 && version.major == 0 {
            return Err(bad(": version cannot be 0.0"));
        }
        Ok(version)
    }
}

impl Serialize for KernelVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KernelVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Docker treats `"minKernel": ""` as no condition.
fn min_kernel_or_empty<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<KernelVersion>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// Go's decoder leaves a list empty for `null`.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Docker reads `"defaultAction": ""` as unset.
fn action_or_empty<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<LinuxSeccompAction>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => LinuxSeccompAction::deserialize(serde::de::value::StringDeserializer::<
            D::Error,
        >::new(text))
        .map(Some),
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Reads a profile file (`--security-opt seccomp=FILE`).
///
/// Errors name the line and column (bad JSON, an unknown action, a wrong type) or the rule
/// (`name` and `names` both set, an argument index past 5, ...).
pub fn parse_profile(json: &[u8]) -> Result<Profile, ProfileError> {
    let mut value: Value = serde_json::from_slice(json).map_err(ProfileError::Json)?;
    let renamed = fold_keys(&mut value, Shape::Profile, "")?;
    let profile = match serde_json::from_value::<Profile>(value) {
        Ok(profile) => profile,
        Err(err) => {
            // Decoding the text again gives the error its line and column.
            if !renamed && let Err(positioned) = serde_json::from_slice::<Profile>(json) {
                return Err(ProfileError::Json(positioned));
            }
            return Err(ProfileError::Json(err));
        }
    };
    profile.validate()?;
    Ok(profile)
}

/// The objects of a profile, for matching keys as Go does.
#[derive(Clone, Copy)]
enum Shape {
    Profile,
    ArchMapEntry,
    Rule,
    Arg,
    Filter,
}

impl Shape {
    fn keys(self) -> &'static [&'static str] {
        match self {
            Shape::Profile => &[
                "defaultAction",
                "defaultErrnoRet",
                "architectures",
                "archMap",
                "flags",
                "listenerPath",
                "listenerMetadata",
                "syscalls",
            ],
            Shape::ArchMapEntry => &["architecture", "subArchitectures"],
            Shape::Rule => &[
                "name", "names", "action", "errnoRet", "args", "comment", "includes", "excludes",
            ],
            Shape::Arg => &["index", "value", "valueTwo", "op"],
            Shape::Filter => &["caps", "arches", "minKernel"],
        }
    }

    /// The shape of the value under `key` (a list of them, or one).
    fn child(self, key: &str) -> Option<Shape> {
        match (self, key) {
            (Shape::Profile, "archMap") => Some(Shape::ArchMapEntry),
            (Shape::Profile, "syscalls") => Some(Shape::Rule),
            (Shape::Rule, "args") => Some(Shape::Arg),
            (Shape::Rule, "includes" | "excludes") => Some(Shape::Filter),
            _ => None,
        }
    }
}

/// Renames keys that match a field only without regard to case (Go's `encoding/json` rule;
/// a later duplicate wins), and checks that objects are objects (serde would also take a
/// list for a struct). `path` names the value for errors. Returns whether anything was
/// renamed.
fn fold_keys(value: &mut Value, shape: Shape, path: &str) -> Result<bool, ProfileError> {
    let Value::Object(object) = value else {
        return Err(ProfileError::NotAnObject {
            path: path.to_owned(),
        });
    };
    let mut renamed = false;
    let mut folded = Map::with_capacity(object.len());
    for (key, mut child) in std::mem::take(object) {
        let canonical = shape
            .keys()
            .iter()
            .find(|k| **k == key)
            .or_else(|| shape.keys().iter().find(|k| k.eq_ignore_ascii_case(&key)));
        let Some(&canonical) = canonical else {
            folded.insert(key, child);
            continue;
        };
        renamed |= canonical != key;
        let child_path = if path.is_empty() {
            canonical.to_owned()
        } else {
            format!("{path}.{canonical}")
        };
        match (shape.child(canonical), &mut child) {
            (None, _) | (Some(_), Value::Null) => {}
            (Some(child_shape), Value::Array(items)) if !matches!(child_shape, Shape::Filter) => {
                for (i, item) in items.iter_mut().enumerate() {
                    renamed |= fold_keys(item, child_shape, &format!("{child_path}[{i}]"))?;
                }
            }
            (Some(Shape::Filter), child) => {
                renamed |= fold_keys(child, Shape::Filter, &child_path)?;
            }
            // Not a list where one belongs: serde says so, with the line and column.
            (Some(_), _) => {}
        }
        folded.insert(canonical.to_owned(), child);
    }
    *object = folded;
    Ok(renamed)
}

/// Resolves `profile` for a container with capabilities `caps` (bounding set, names like
/// `CAP_SYS_ADMIN`) on a host of architecture `arch` (`std::env::consts::ARCH`, or Go's
/// names such as `amd64`), as moby's `setupSeccomp` does: the `archMap` entry of the host
/// gives the architectures, and each rule's `includes`/`excludes` decide whether it is kept
/// (`minKernel` is compared with the running kernel).
///
/// For an unconfined profile ([`Profile::is_unconfined`]) the result allows everything.
pub fn to_oci(
    profile: &Profile,
    caps: &[String],
    arch: &str,
) -> Result<LinuxSeccomp, ProfileError> {
    resolve(profile, caps, arch, &host_kernel)
}

/// [`to_oci`] with the kernel version read by `kernel` (at most once, and only when a rule
/// has `minKernel`).
fn resolve(
    profile: &Profile,
    caps: &[String],
    arch: &str,
    kernel: &dyn Fn() -> Result<KernelVersion, ProfileError>,
) -> Result<LinuxSeccomp, ProfileError> {
    profile.validate()?;
    let mut seccomp = LinuxSeccomp::default();
    let Some(default_action) = profile.default_action else {
        // Docker runs such a container without a filter; allowing everything is the same.
        seccomp.set_default_action(LinuxSeccompAction::ScmpActAllow);
        return Ok(seccomp);
    };
    seccomp.set_default_action(default_action);
    seccomp.set_default_errno_ret(profile.default_errno_ret);

    let native = native_arch_name(arch);
    let mut architectures = profile.architectures.clone();
    if let Some(host) = seccomp_arch(native)
        && let Some(entry) = profile.arch_map.iter().find(|e| e.architecture == host)
    {
        architectures.push(entry.architecture);
        architectures.extend(&entry.sub_architectures);
    }
    seccomp.set_architectures((!architectures.is_empty()).then_some(architectures));
    seccomp.set_flags((!profile.flags.is_empty()).then(|| profile.flags.clone()));
    seccomp.set_listener_path(profile.listener_path.as_ref().map(Into::into));
    seccomp.set_listener_metadata(profile.listener_metadata.clone());

    let caps: Vec<String> = caps.iter().map(|c| normalize_cap(c)).collect();
    let has_cap = |cap: &String| caps.contains(&normalize_cap(cap));
    let mut host_kernel: Option<KernelVersion> = None;
    let mut kernel_at_least = |min: KernelVersion| -> Result<bool, ProfileError> {
        let current = match host_kernel {
            Some(version) => version,
            None => *host_kernel.insert(kernel()?),
        };
        Ok(current >= min)
    };

    let mut syscalls = Vec::new();
    for rule in &profile.syscalls {
        if let Some(excludes) = &rule.excludes {
            if excludes.arches.iter().any(|a| a == native) {
                continue;
            }
            if excludes.caps.iter().any(has_cap) {
                continue;
            }
            if let Some(min) = excludes.min_kernel
                && kernel_at_least(min)?
            {
                continue;
            }
        }
        if let Some(includes) = &rule.includes {
            if !includes.arches.is_empty() && !includes.arches.iter().any(|a| a == native) {
                continue;
            }
            if !includes.caps.iter().all(has_cap) {
                continue;
            }
            if let Some(min) = includes.min_kernel
                && !kernel_at_least(min)?
            {
                continue;
            }
        }
        let names = rule.syscall_names();
        if names.is_empty() {
            continue;
        }
        let mut syscall = LinuxSyscall::default();
        syscall
            .set_names(names.into_iter().map(str::to_owned).collect())
            .set_action(rule.action)
            .set_errno_ret(rule.errno_ret);
        if !rule.args.is_empty() {
            syscall.set_args(Some(rule.args.iter().map(oci_arg).collect()));
        }
        syscalls.push(syscall);
    }
    seccomp.set_syscalls(Some(syscalls));
    Ok(seccomp)
}

fn oci_arg(arg: &SyscallArg) -> LinuxSeccompArg {
    let mut builder = LinuxSeccompArgBuilder::default()
        .index(arg.index as usize)
        .value(arg.value)
        .op(arg.op);
    if arg.value_two != 0 {
        builder = builder.value_two(arg.value_two);
    }
    // Every field of the builder has a default, so building cannot fail.
    builder
        .build()
        .expect("LinuxSeccompArgBuilder with all fields set")
}

/// `SYS_ADMIN`, `cap_sys_admin` and `CAP_SYS_ADMIN` name one capability.
fn normalize_cap(cap: &str) -> String {
    let upper = cap.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The architecture name Docker's profiles use (libseccomp's, as moby maps `GOARCH`) for a
/// Rust (`std::env::consts::ARCH`) or Go architecture name. Endianness, which Rust's names
/// leave out, is the build target's.
fn native_arch_name(arch: &str) -> &str {
    let little = cfg!(target_endian = "little");
    match arch {
        "x86_64" | "amd64" => "amd64",
        "x86" | "386" | "i386" | "i686" => "x86",
        "aarch64" | "arm64" => "arm64",
        "arm" => "arm",
        "loongarch64" | "loong64" => "loongarch64",
        "mips64" if little => "mipsel64",
        "mips64le" => "mipsel64",
        "mips64p32" => "mips64n32",
        "mips64p32le" => "mipsel64n32",
        "mips" if little => "mipsel",
        "mipsle" => "mipsel",
        "powerpc" => "ppc",
        "powerpc64" if little => "ppc64le",
        "powerpc64" => "ppc64",
        other => other,
    }
}

/// The seccomp architecture of a host named as [`native_arch_name`] gives.
fn seccomp_arch(native: &str) -> Option<Arch> {
    Some(match native {
        "x86" => Arch::ScmpArchX86,
        "amd64" => Arch::ScmpArchX86_64,
        "x32" => Arch::ScmpArchX32,
        "arm" => Arch::ScmpArchArm,
        "arm64" => Arch::ScmpArchAarch64,
        "loongarch64" => Arch::ScmpArchLoongarch64,
        "mips" => Arch::ScmpArchMips,
        "mipsel" => Arch::ScmpArchMipsel,
        "mips64" => Arch::ScmpArchMips64,
        "mips64n32" => Arch::ScmpArchMips64n32,
        "mipsel64" => Arch::ScmpArchMipsel64,
        "mipsel64n32" => Arch::ScmpArchMipsel64n32,
        "ppc" => Arch::ScmpArchPpc,
        "ppc64" => Arch::ScmpArchPpc64,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "riscv64" => Arch::ScmpArchRiscv64,
        "s390" => Arch::ScmpArchS390,
        "s390x" => Arch::ScmpArchS390x,
        _ => return None,
    })
}

/// The running kernel's `<kernel>.<major>`.
fn host_kernel() -> Result<KernelVersion, ProfileError> {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    parse_release(&release).ok_or_else(|| ProfileError::KernelRelease {
        release: release.into_owned(),
    })
}

/// `6.1.0-18-amd64` and `3.12-rc5` give `6.1` and `3.12`.
fn parse_release(release: &str) -> Option<KernelVersion> {
    let leading_number = |s: &str| -> Option<(u32, usize)> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        Some((s[..digits].parse().ok()?, digits))
    };
    let (kernel, used) = leading_number(release)?;
    let rest = release[used..].strip_prefix('.')?;
    let (major, _) = leading_number(rest)?;
    Some(KernelVersion { kernel, major })
}

// ---------------------------------------------------------------------------------------
// Docker's default profile (moby `profiles/seccomp`, as shipped with Docker 28).

/// `socket(2)` address family refused by default (`AF_VSOCK`: host-guest sockets).
const AF_VSOCK: u64 = 40;

/// `clone(2)` flags that create namespaces; without `CAP_SYS_ADMIN` a `clone` must set none.
const CLONE_NEWNS: u64 = 0x0002_0000;
const CLONE_NEWCGROUP: u64 = 0x0200_0000;
const CLONE_NEWUTS: u64 = 0x0400_0000;
const CLONE_NEWIPC: u64 = 0x0800_0000;
const CLONE_NEWUSER: u64 = 0x1000_0000;
const CLONE_NEWPID: u64 = 0x2000_0000;
const CLONE_NEWNET: u64 = 0x4000_0000;
const CLONE_NAMESPACES: u64 = CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET;

/// `personality(2)` values allowed: `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
/// `PER_LINUX32 | UNAME26`, and `0xffffffff` (query only).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// `ENOSYS`: what `clone3` returns without `CAP_SYS_ADMIN`, so that libcs fall back to
/// `clone`, whose flags the filter can see.
const ENOSYS: u32 = 38;

/// Syscalls every container may make, on every architecture (names missing on one are
/// skipped by the runtime).
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "_llseek", "_newselect", "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk",
    "cachestat", "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime",
    "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
    "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range", "connect",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old",
    "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2",
    "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
    "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr",
    "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64",
    "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue",
    "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat", "get_robust_list",
    "get_thread_area", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32",
    "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer",
    "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
    "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "getrusage", "getsid",
    "getsockname", "getsockopt", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "getxattrat", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
    "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "io_setup", "io_submit", "ioctl", "ioprio_get", "ioprio_set", "ipc", "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
    "lchown32", "lgetxattr", "link", "linkat", "listen", "listmount", "listxattr", "listxattrat",
    "llistxattr", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise",
    "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
    "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget",
    "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at",
    "nanosleep", "newfstatat", "open", "openat", "openat2", "pause", "pidfd_open",
    "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
    "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
    "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read",
    "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg",
    "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "removexattrat", "rename",
    "renameat", "renameat2", "restart_syscall", "riscv_hwprobe", "rmdir", "rseq", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "set_robust_list",
    "set_thread_area", "set_tid_address", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
    "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority",
    "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid",
    "setreuid32", "setrlimit", "setsid", "setsockopt", "setuid", "setuid32", "setxattr",
    "setxattrat", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd",
    "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat",
    "stat64", "statfs", "statfs64", "statmount", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
    "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev",
];

/// Syscalls allowed only on some host architectures (Docker's names).
const ARCH_ALLOWED: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["swapcontext", "sync_file_range2"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "breakpoint",
            "cacheflush",
            "set_tls",
            "sync_file_range2",
        ],
    ),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (
        &["s390", "s390x"],
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
    (&["riscv64"], &["riscv_flush_icache"]),
];

/// Syscalls allowed with `CAP_SYS_ADMIN` (listed before the `clone` rules below).
const SYS_ADMIN_ALLOWED: &[&str] = &[
    "bpf",
    "clone",
    "clone3",
    "fanotify_init",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "lookup_dcookie",
    "lsm_get_self_attr",
    "lsm_list_modules",
    "lsm_set_self_attr",
    "mount",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "perf_event_open",
    "quotactl",
    "quotactl_fd",
    "setdomainname",
    "sethostname",
    "setns",
    "syslog",
    "umount",
    "umount2",
    "unshare",
];

/// Syscalls allowed with one other capability.
const CAP_ALLOWED: &[(&str, &[&str])] = &[
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "finit_module", "init_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["ioperm", "iopl"]),
    (
        "CAP_SYS_TIME",
        &["clock_settime", "clock_settime64", "settimeofday", "stime"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

fn allow(names: &[&str]) -> SyscallRule {
    SyscallRule {
        name: None,
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        action: LinuxSeccompAction::ScmpActAllow,
        errno_ret: None,
        args: Vec::new(),
        comment: None,
        includes: None,
        excludes: None,
    }
}

fn arg(index: u32, op: LinuxSeccompOperator, value: u64) -> SyscallArg {
    SyscallArg {
        index,
        value,
        value_two: 0,
        op,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn only_with_caps(caps: &[&str]) -> Option<Filter> {
    Some(Filter {
        caps: strings(caps),
        ..Filter::default()
    })
}

/// Docker's default seccomp profile (Docker 28): everything is refused with `EPERM` except
/// a large allowlist; `personality` only with harmless personas; `socket` not for
/// `AF_VSOCK`; `clone` without namespace flags and `clone3` failing with `ENOSYS` unless the
/// container has `CAP_SYS_ADMIN`; `ptrace` and `process_vm_*` from kernel 4.8 on (or with
/// `CAP_SYS_PTRACE`); groups of syscalls that need a capability (`mount`, `unshare`,
/// `setns`, `reboot`, `chroot`, module loading, `acct`, `settimeofday`, ...) allowed only
/// with it; and per-architecture extras. Never allowed: `keyctl`, `add_key`,
/// `request_key`, `kexec_load`, `userfaultfd`, `open_by_handle_at` without
/// `CAP_DAC_READ_SEARCH`, and everything else not listed.
pub fn default_profile() -> Profile {
    use LinuxSeccompOperator::{ScmpCmpEq, ScmpCmpMaskedEq, ScmpCmpNe};

    let mut syscalls = vec![allow(ALLOWED)];

    let mut ptrace = allow(&["process_vm_readv", "process_vm_writev", "ptrace"]);
    ptrace.includes = Some(Filter {
        min_kernel: Some(KernelVersion {
            kernel: 4,
            major: 8,
        }),
        ..Filter::default()
    });
    syscalls.push(ptrace);

    let mut socket = allow(&["socket"]);
    socket.args = vec![arg(0, ScmpCmpNe, AF_VSOCK)];
    syscalls.push(socket);

    for persona in PERSONALITIES {
        let mut personality = allow(&["personality"]);
        personality.args = vec![arg(0, ScmpCmpEq, persona)];
        syscalls.push(personality);
    }

    for (arches, names) in ARCH_ALLOWED {
        let mut rule = allow(names);
        rule.includes = Some(Filter {
            arches: strings(arches),
            ..Filter::default()
        });
        syscalls.push(rule);
    }

    let mut open_by_handle = allow(&["open_by_handle_at"]);
    open_by_handle.includes = only_with_caps(&["CAP_DAC_READ_SEARCH"]);
    syscalls.push(open_by_handle);

    let mut sys_admin = allow(SYS_ADMIN_ALLOWED);
    sys_admin.includes = only_with_caps(&["CAP_SYS_ADMIN"]);
    syscalls.push(sys_admin);

    // Without CAP_SYS_ADMIN: clone without namespace flags. The flags are the first argument,
    // except on s390, where they are the second.
    let mut clone = allow(&["clone"]);
    clone.args = vec![arg(0, ScmpCmpMaskedEq, CLONE_NAMESPACES)];
    clone.excludes = Some(Filter {
        caps: strings(&["CAP_SYS_ADMIN"]),
        arches: strings(&["s390", "s390x"]),
        min_kernel: None,
    });
    syscalls.push(clone);
    let mut clone_s390 = allow(&["clone"]);
    clone_s390.args = vec![arg(1, ScmpCmpMaskedEq, CLONE_NAMESPACES)];
    clone_s390.comment = Some("s390 passes the clone flags as the second argument".to_owned());
    clone_s390.includes = Some(Filter {
        arches: strings(&["s390", "s390x"]),
        ..Filter::default()
    });
    clone_s390.excludes = only_with_caps(&["CAP_SYS_ADMIN"]);
    syscalls.push(clone_s390);

    // clone3 passes its flags in memory, out of the filter's sight: make it look missing.
    let mut clone3 = allow(&["clone3"]);
    clone3.action = LinuxSeccompAction::ScmpActErrno;
    clone3.errno_ret = Some(ENOSYS);
    clone3.excludes = only_with_caps(&["CAP_SYS_ADMIN"]);
    syscalls.push(clone3);

    for (cap, names) in CAP_ALLOWED {
        let mut rule = allow(names);
        rule.includes = only_with_caps(&[cap]);
        syscalls.push(rule);
    }

    Profile {
        default_action: Some(LinuxSeccompAction::ScmpActErrno),
        default_errno_ret: Some(1),
        architectures: Vec::new(),
        arch_map: default_arch_map(),
        flags: Vec::new(),
        listener_path: None,
        listener_metadata: None,
        syscalls,
    }
}

/// Host architecture -> the architectures its containers may use.
fn default_arch_map() -> Vec<ArchMapEntry> {
    let entry = |architecture, subs: &[Arch]| ArchMapEntry {
        architecture,
        sub_architectures: subs.to_vec(),
    };
    vec![
        entry(
            Arch::ScmpArchX86_64,
            &[Arch::ScmpArchX86, Arch::ScmpArchX32],
        ),
        entry(Arch::ScmpArchAarch64, &[Arch::ScmpArchArm]),
        entry(
            Arch::ScmpArchMips64,
            &[Arch::ScmpArchMips, Arch::ScmpArchMips64n32],
        ),
        entry(
            Arch::ScmpArchMips64n32,
            &[Arch::ScmpArchMips, Arch::ScmpArchMips64],
        ),
        entry(
            Arch::ScmpArchMipsel64,
            &[Arch::ScmpArchMipsel, Arch::ScmpArchMipsel64n32],
        ),
        entry(
            Arch::ScmpArchMipsel64n32,
            &[Arch::ScmpArchMipsel, Arch::ScmpArchMipsel64],
        ),
        entry(Arch::ScmpArchS390x, &[Arch::ScmpArchS390]),
        entry(Arch::ScmpArchRiscv64, &[]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::process::{Command, Output};

    /// Docker's default capability set.
    const DOCKER_CAPS: &[&str] = &crate::spec::DEFAULT_CAPABILITIES;

    const NEW_KERNEL: KernelVersion = KernelVersion {
        kernel: 6,
        major: 1,
    };

    fn caps_with(extra: &[&str]) -> Vec<String> {
        DOCKER_CAPS
            .iter()
            .chain(extra)
            .map(|c| (*c).to_owned())
            .collect()
    }

    fn resolve_default(caps: &[String], arch: &str, kernel: KernelVersion) -> LinuxSeccomp {
        resolve(&default_profile(), caps, arch, &|| Ok(kernel)).unwrap()
    }

    fn rules(seccomp: &LinuxSeccomp) -> &[LinuxSyscall] {
        seccomp.syscalls().as_deref().unwrap_or_default()
    }

    /// Syscalls allowed with no condition on their arguments.
    fn allowed(seccomp: &LinuxSeccomp) -> BTreeSet<String> {
        rules(seccomp)
            .iter()
            .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
            .flat_map(|r| r.names().iter().cloned())
            .collect()
    }

    /// The rules for `name` that have argument conditions or another action.
    fn special_rules<'a>(seccomp: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        rules(seccomp)
            .iter()
            .filter(|r| r.names().iter().any(|n| n == name))
            .filter(|r| r.action() != LinuxSeccompAction::ScmpActAllow || r.args().is_some())
            .collect()
    }

    fn arg_triples(rule: &LinuxSyscall) -> Vec<(usize, LinuxSeccompOperator, u64, Option<u64>)> {
        rule.args()
            .iter()
            .flatten()
            .map(|a| (a.index(), a.op(), a.value(), a.value_two()))
            .collect()
    }

    #[test]
    fn default_profile_denies_with_eperm_and_maps_architectures() {
        let profile = default_profile();
        assert_eq!(
            profile.default_action,
            Some(LinuxSeccompAction::ScmpActErrno)
        );
        assert_eq!(profile.default_errno_ret, Some(1));
        assert!(!profile.is_unconfined());
        let seccomp = resolve_default(&caps_with(&[]), "x86_64", NEW_KERNEL);
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(seccomp.default_errno_ret(), Some(1));
        assert_eq!(
            seccomp.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        assert_eq!(seccomp.flags(), &None);
        // Go's name gives the same.
        assert_eq!(
            resolve_default(&caps_with(&[]), "amd64", NEW_KERNEL),
            seccomp
        );

        let arm = resolve_default(&caps_with(&[]), "aarch64", NEW_KERNEL);
        assert_eq!(
            arm.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
        let riscv = resolve_default(&caps_with(&[]), "riscv64", NEW_KERNEL);
        assert_eq!(
            riscv.architectures().as_deref(),
            Some(&[Arch::ScmpArchRiscv64][..])
        );
        // An architecture the profile does not map: the runtime's native one only.
        let sparc = resolve_default(&caps_with(&[]), "sparc64", NEW_KERNEL);
        assert_eq!(sparc.architectures(), &None);
    }

    #[test]
    fn default_profile_allowlist_for_docker_caps() {
        let seccomp = resolve_default(&caps_with(&[]), "x86_64", NEW_KERNEL);
        let allowed = allowed(&seccomp);
        for name in [
            "read",
            "write",
            "openat",
            "execve",
            "exit_group",
            "futex",
            "mmap",
            "getpid",
            "clock_gettime",
            "epoll_wait",
            "rseq",
            "statx",
            "close_range",
            "pidfd_open",
            "landlock_create_ruleset",
            "chroot",
            "arch_prctl",
            "modify_ldt",
            "ptrace",
            "process_vm_readv",
            "socketcall",
            "ipc",
        ] {
            assert!(allowed.contains(name), "{name} should be allowed");
        }
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "settimeofday",
            "clock_settime",
            "stime",
            "reboot",
            "swapon",
            "swapoff",
            "acct",
            "bpf",
            "perf_event_open",
            "syslog",
            "open_by_handle_at",
            "iopl",
            "ioperm",
            "vhangup",
            "mbind",
            "kcmp",
            "pidfd_getfd",
            "sethostname",
            "fsopen",
            "clone",
            "clone3",
            "personality",
            "socket",
            "userfaultfd",
            "io_uring_setup",
            "arm_fadvise64_64",
            "s390_runtime_instr",
            "riscv_flush_icache",
            "swapcontext",
            "lookup_dcookie",
            "quotactl",
            "nfsservctl",
            "uselib",
            "create_module",
        ] {
            assert!(
                !allowed.contains(name),
                "{name} must not be allowed unconditionally"
            );
        }
        assert!(allowed.len() > 350, "{}", allowed.len());
    }

    #[test]
    fn default_profile_argument_rules() {
        let seccomp = resolve_default(&caps_with(&[]), "x86_64", NEW_KERNEL);
        use LinuxSeccompOperator::*;

        let personality: Vec<_> = special_rules(&seccomp, "personality")
            .into_iter()
            .flat_map(arg_triples)
            .collect();
        assert_eq!(
            personality,
            [0u64, 8, 131072, 131080, 4294967295]
                .map(|v| (0, ScmpCmpEq, v, None))
                .to_vec()
        );

        let socket: Vec<_> = special_rules(&seccomp, "socket")
            .into_iter()
            .flat_map(arg_triples)
            .collect();
        assert_eq!(socket, vec![(0, ScmpCmpNe, 40, None)]);

        let clone = special_rules(&seccomp, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(
            arg_triples(clone[0]),
            vec![(0, ScmpCmpMaskedEq, 2114060288, None)]
        );

        let clone3 = special_rules(&seccomp, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));
        assert_eq!(clone3[0].args(), &None);

        // s390 passes the clone flags second.
        let s390 = resolve_default(&caps_with(&[]), "s390x", NEW_KERNEL);
        let clone = special_rules(&s390, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(
            arg_triples(clone[0]),
            vec![(1, ScmpCmpMaskedEq, 2114060288, None)]
        );
        assert!(allowed(&s390).contains("s390_runtime_instr"));
        assert!(!allowed(&s390).contains("arch_prctl"));
        assert_eq!(
            s390.architectures().as_deref(),
            Some(&[Arch::ScmpArchS390x, Arch::ScmpArchS390][..])
        );
    }

    #[test]
    fn sys_admin_unlocks_namespaces_mount_and_clone3() {
        let seccomp = resolve_default(&caps_with(&["CAP_SYS_ADMIN"]), "x86_64", NEW_KERNEL);
        let allowed = allowed(&seccomp);
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "sethostname",
            "fsopen",
            "bpf",
            "perf_event_open",
            "syslog",
            "quotactl",
            "lsm_list_modules",
        ] {
            assert!(
                allowed.contains(name),
                "{name} should be allowed with CAP_SYS_ADMIN"
            );
        }
        assert!(special_rules(&seccomp, "clone").is_empty());
        assert!(special_rules(&seccomp, "clone3").is_empty());
        // Still denied: no capability unlocks these.
        for name in ["keyctl", "add_key", "kexec_load", "init_module", "reboot"] {
            assert!(!allowed.contains(name), "{name}");
        }
        // Capability names are matched without the prefix and case too.
        let short = resolve_default(&[String::from("sys_admin")], "x86_64", NEW_KERNEL);
        assert!(super::tests::allowed(&short).contains("mount"));
    }

    #[test]
    fn each_capability_unlocks_its_group_only() {
        let cases: &[(&str, &[&str])] = &[
            ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
            ("CAP_SYS_BOOT", &["reboot"]),
            ("CAP_SYS_CHROOT", &["chroot"]),
            (
                "CAP_SYS_MODULE",
                &["init_module", "finit_module", "delete_module"],
            ),
            ("CAP_SYS_PACCT", &["acct"]),
            (
                "CAP_SYS_PTRACE",
                &["ptrace", "kcmp", "pidfd_getfd", "process_madvise"],
            ),
            ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
            (
                "CAP_SYS_TIME",
                &["settimeofday", "clock_settime", "clock_settime64", "stime"],
            ),
            ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
            (
                "CAP_SYS_NICE",
                &[
                    "mbind",
                    "set_mempolicy",
                    "get_mempolicy",
                    "set_mempolicy_home_node",
                ],
            ),
            ("CAP_SYSLOG", &["syslog"]),
            ("CAP_BPF", &["bpf"]),
            ("CAP_PERFMON", &["perf_event_open"]),
        ];
        let old_kernel = KernelVersion {
            kernel: 4,
            major: 4,
        };
        let none = allowed(&resolve_default(&[], "x86_64", old_kernel));
        for (cap, names) in cases {
            let with = allowed(&resolve_default(&[(*cap).to_owned()], "x86_64", old_kernel));
            for name in *names {
                assert!(!none.contains(*name), "{name} without {cap}");
                assert!(with.contains(*name), "{name} with {cap}");
            }
            let gained: BTreeSet<_> = with.difference(&none).cloned().collect();
            let want: BTreeSet<_> = names.iter().map(|n| (*n).to_owned()).collect();
            if *cap != "CAP_SYS_PTRACE" {
                assert_eq!(gained, want, "{cap}");
            }
        }
    }

    #[test]
    fn ptrace_needs_kernel_4_8_or_the_capability() {
        for (kernel, major, want) in [(4, 7, false), (4, 8, true), (3, 18, false), (5, 0, true)] {
            let seccomp =
                resolve_default(&caps_with(&[]), "x86_64", KernelVersion { kernel, major });
            let allowed = allowed(&seccomp);
            for name in ["ptrace", "process_vm_readv", "process_vm_writev"] {
                assert_eq!(allowed.contains(name), want, "{name} on {kernel}.{major}");
            }
        }
        // The kernel is only asked for when a rule has minKernel.
        let mut profile = default_profile();
        profile.syscalls.retain(|r| {
            r.includes.as_ref().is_none_or(|f| f.min_kernel.is_none())
                && r.excludes.as_ref().is_none_or(|f| f.min_kernel.is_none())
        });
        let failing = || {
            Err(ProfileError::KernelRelease {
                release: "bogus".to_owned(),
            })
        };
        assert!(resolve(&profile, &caps_with(&[]), "x86_64", &failing).is_ok());
        assert!(matches!(
            resolve(&default_profile(), &caps_with(&[]), "x86_64", &failing),
            Err(ProfileError::KernelRelease { .. })
        ));
        // And the real host kernel can be read.
        assert!(
            host_kernel().unwrap()
                > KernelVersion {
                    kernel: 2,
                    major: 6
                }
        );
        assert!(to_oci(&default_profile(), &caps_with(&[]), std::env::consts::ARCH).is_ok());
    }

    #[test]
    fn kernel_versions_and_releases() {
        assert_eq!(
            "4.8".parse(),
            Ok(KernelVersion {
                kernel: 4,
                major: 8
            })
        );
        assert_eq!(
            "255.0".parse(),
            Ok(KernelVersion {
                kernel: 255,
                major: 0
            })
        );
        for bad in ["4", "4.8.1", "0.0", "4.256", "a.b", "+4.8", "4.", ".8", ""] {
            assert!(bad.parse::<KernelVersion>().is_err(), "{bad:?}");
        }
        assert_eq!(
            KernelVersion {
                kernel: 4,
                major: 8
            }
            .to_string(),
            "4.8"
        );
        assert_eq!(
            parse_release("6.1.0-18-amd64"),
            Some(KernelVersion {
                kernel: 6,
                major: 1
            })
        );
        assert_eq!(
            parse_release("3.12-rc5"),
            Some(KernelVersion {
                kernel: 3,
                major: 12
            })
        );
        assert_eq!(
            parse_release("6.18.44-fc-v657"),
            Some(KernelVersion {
                kernel: 6,
                major: 18
            })
        );
        assert_eq!(parse_release("6"), None);
        assert_eq!(parse_release("x.1"), None);
    }

    #[test]
    fn default_profile_round_trips_through_docker_json() {
        let profile = default_profile();
        let json = serde_json::to_vec_pretty(&profile).unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(
            text.contains(r#""defaultAction": "SCMP_ACT_ERRNO""#),
            "{text}"
        );
        assert!(text.contains(r#""defaultErrnoRet": 1"#));
        assert!(text.contains(r#""architecture": "SCMP_ARCH_X86_64""#));
        assert!(text.contains(r#""subArchitectures": ["#));
        assert!(text.contains(r#""minKernel": "4.8""#));
        assert!(text.contains(r#""op": "SCMP_CMP_MASKED_EQ""#));
        assert!(text.contains(r#""errnoRet": 38"#));
        assert_eq!(parse_profile(&json).unwrap(), profile);
    }

    #[test]
    fn parses_docker_profile_files() {
        let json = br#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}
            ],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"name": "read", "action": "SCMP_ACT_ALLOW", "args": null, "comment": "old form"},
                {"names": ["write", "close"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"minKernel": ""}, "excludes": {"caps": null}},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3,
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}],
                 "includes": {"arches": ["amd64"], "caps": ["CAP_KILL"]}},
                {"names": ["getpid"], "action": "SCMP_ACT_LOG", "excludes": {"arches": ["amd64"]}}
            ]
        }"#;
        let profile = parse_profile(json).unwrap();
        assert_eq!(profile.arch_map[1].sub_architectures, vec![]);
        assert_eq!(
            profile.syscalls[1].includes.as_ref().unwrap().min_kernel,
            None
        );

        let seccomp = resolve(&profile, &caps_with(&[]), "x86_64", &|| Ok(NEW_KERNEL)).unwrap();
        assert_eq!(
            seccomp.flags().as_deref(),
            Some(&[LinuxSeccompFilterFlag::SeccompFilterFlagLog][..])
        );
        assert_eq!(
            seccomp.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86][..])
        );
        let names: Vec<_> = rules(&seccomp).iter().map(|r| r.names().clone()).collect();
        assert_eq!(
            names,
            vec![
                vec!["read".to_owned()],
                vec!["write".to_owned(), "close".to_owned()],
                vec!["kill".to_owned()]
            ]
        );
        assert_eq!(rules(&seccomp)[2].errno_ret(), Some(3));
        assert_eq!(
            arg_triples(&rules(&seccomp)[2]),
            vec![(1, LinuxSeccompOperator::ScmpCmpEq, 9, None)]
        );
        // Without CAP_KILL the kill rule goes; on arm64 the arch rules flip.
        let arm = resolve(&profile, &[], "aarch64", &|| Ok(NEW_KERNEL)).unwrap();
        let names: Vec<_> = rules(&arm).iter().map(|r| r.names()[0].clone()).collect();
        assert_eq!(names, ["read", "write", "getpid"]);
        assert_eq!(arm.architectures(), &None);

        // The resolved spec is what the runtime accepts.
        let oci_json = serde_json::to_string(&seccomp).unwrap();
        let back: LinuxSeccomp = serde_json::from_str(&oci_json).unwrap();
        assert_eq!(back, seccomp);
    }

    #[test]
    fn keys_match_without_regard_to_case() {
        let json = br#"{"DefaultAction": "SCMP_ACT_ALLOW", "SYSCALLS": [
            {"Names": ["ptrace"], "ACTION": "SCMP_ACT_ERRNO", "errnoret": 5,
             "Args": [{"Index": 2, "VALUE": 1, "ValueTwo": 1, "Op": "SCMP_CMP_MASKED_EQ"}],
             "Includes": {"MinKernel": "4.8", "Caps": ["CAP_SYS_PTRACE"]}}]}"#;
        let profile = parse_profile(json).unwrap();
        assert_eq!(
            profile.default_action,
            Some(LinuxSeccompAction::ScmpActAllow)
        );
        let rule = &profile.syscalls[0];
        assert_eq!(rule.names, ["ptrace"]);
        assert_eq!(rule.errno_ret, Some(5));
        assert_eq!(
            rule.args,
            [SyscallArg {
                index: 2,
                value: 1,
                value_two: 1,
                op: LinuxSeccompOperator::ScmpCmpMaskedEq
            }]
        );
        let includes = rule.includes.as_ref().unwrap();
        assert_eq!(
            includes.min_kernel,
            Some(KernelVersion {
                kernel: 4,
                major: 8
            })
        );
        assert_eq!(includes.caps, ["CAP_SYS_PTRACE"]);
        // An exact key wins over a folded one, and a later duplicate over an earlier one.
        let profile = parse_profile(
            br#"{"defaultAction": "SCMP_ACT_LOG", "DEFAULTACTION": "SCMP_ACT_ALLOW"}"#,
        )
        .unwrap();
        assert_eq!(
            profile.default_action,
            Some(LinuxSeccompAction::ScmpActAllow)
        );
    }

    fn parse_error(json: &str) -> String {
        parse_profile(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn bad_profiles_name_the_place_or_field() {
        let err = parse_error("{\n  \"defaultAction\": \"SCMP_ACT_ERRNO\",\n  \"syscalls\": [\n}");
        assert!(err.contains("line 4 column 1"), "{err}");

        let err = parse_error(
            "{\"defaultAction\": \"SCMP_ACT_ERRNO\",\n \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_BOGUS\"}]}",
        );
        assert!(
            err.contains("SCMP_ACT_BOGUS") && err.contains("line 2"),
            "{err}"
        );

        let err = parse_error(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_VAX"]}"#,
        );
        assert!(
            err.contains("SCMP_ARCH_VAX") && err.contains("column"),
            "{err}"
        );

        let err = parse_error(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]}"#,
        );
        assert!(err.contains("SCMP_CMP_ALMOST"), "{err}");

        let err = parse_error(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "one"}"#);
        assert!(
            err.contains("invalid type") && err.contains("column"),
            "{err}"
        );

        let err = parse_error(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}}]}"#,
        );
        assert!(
            err.contains("invalid kernel version \"4\"") && err.contains("column"),
            "{err}"
        );

        let err = parse_error(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}, {"name": "open", "names": ["openat"], "action": "SCMP_ACT_ALLOW"}]}"#,
        );
        assert!(
            err.contains("syscalls[1]") && err.contains("\"open\""),
            "{err}"
        );

        let err = parse_error(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
        );
        assert!(err.contains("'architectures' and 'archMap'"), "{err}");

        let err = parse_error(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        );
        assert!(
            err.contains("syscalls[0] (read)") && err.contains("index 6"),
            "{err}"
        );

        let err = parse_error(r#"{"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#);
        assert!(err.contains("'defaultAction' is missing"), "{err}");

        let err = parse_error(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [""], "action": "SCMP_ACT_ALLOW"}]}"#,
        );
        assert!(err.contains("empty syscall name"), "{err}");

        let err = parse_error(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}"#,
        );
        assert!(err.contains("missing field `action`"), "{err}");

        let err = parse_error("[1, 2]");
        assert!(err.contains("the profile must be a JSON object"), "{err}");
        let err = parse_error(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW", "args": [[0, 1, 0, "SCMP_CMP_EQ"]]}]}"#,
        );
        assert!(
            err.contains("syscalls[0].args[0] must be a JSON object"),
            "{err}"
        );
        let err = parse_error(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW", "includes": []}]}"#,
        );
        assert!(
            err.contains("syscalls[0].includes must be a JSON object"),
            "{err}"
        );
    }

    #[test]
    fn empty_profile_is_unconfined() {
        for json in ["{}", r#"{"defaultAction": "", "syscalls": null}"#] {
            let profile = parse_profile(json.as_bytes()).unwrap();
            assert!(profile.is_unconfined(), "{json}");
            let seccomp = to_oci(&profile, &[], "x86_64").unwrap();
            assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);
            assert_eq!(seccomp.syscalls(), &None);
        }
    }

    // -- The default profile, really loaded ------------------------------------------------

    /// Set (to a scenario name) in a re-spawned test process, which then loads a filter.
    const CHILD_ENV: &str = "BERTH_ENGINE_SECCOMP_CHILD";
    const MISSING: &str = "/nonexistent-berth-seccomp-test";

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

    fn marker(scenario: &str) -> String {
        format!("berth-seccomp-child {scenario}: all checks passed")
    }

    /// In the parent: runs `test` as a child for `scenario` and checks that it passed. In the
    /// child: loads Docker's default profile for `caps` into this thread (never into the
    /// test harness's own process) and returns `true`, so the test goes on with its checks.
    fn in_child_with_default_profile(test: &str, scenario: &str, caps: &[String]) -> bool {
        if std::env::var(CHILD_ENV).is_ok_and(|v| v == scenario) {
            let seccomp = to_oci(&default_profile(), caps, std::env::consts::ARCH).unwrap();
            rustix::thread::set_no_new_privs(true).unwrap();
            berth_runtime::seccomp::apply(&seccomp).unwrap();
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            assert!(status.contains("Seccomp:\t2"), "{status}");
            return true;
        }
        let output = run_child(test, scenario);
        assert!(output.status.success(), "child failed: {:?}", output.status);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(&marker(scenario)), "{stdout}");
        false
    }

    #[test]
    fn default_profile_loads_and_denies_with_eperm() {
        const SCENARIO: &str = "docker-caps";
        let pid = std::process::id();
        if !in_child_with_default_profile(
            "default_profile_loads_and_denies_with_eperm",
            SCENARIO,
            &caps_with(&[]),
        ) {
            return;
        }
        use rustix::io::Errno;
        assert_eq!(rustix::process::getpid().as_raw_nonzero().get() as u32, pid);
        // mount needs CAP_SYS_ADMIN in the profile: EPERM before the kernel looks at the path.
        assert_eq!(
            rustix::mount::mount(
                "none",
                MISSING,
                "tmpfs",
                rustix::mount::MountFlags::empty(),
                None
            ),
            Err(Errno::PERM)
        );
        // chroot is allowed with CAP_SYS_CHROOT: the kernel sees the missing path.
        assert_eq!(rustix::process::chroot(MISSING), Err(Errno::NOENT));
        // clone3 fails with ENOSYS, so the C library falls back to clone (no namespace flags),
        // and running a program works.
        let status = Command::new("true").status().unwrap();
        assert!(status.success());
        // Files still work.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"x");
        println!("{}", marker(SCENARIO));
    }

    #[test]
    fn default_profile_without_chroot_cap_denies_chroot() {
        const SCENARIO: &str = "no-chroot";
        let caps: Vec<String> = caps_with(&[])
            .into_iter()
            .filter(|c| c != "CAP_SYS_CHROOT")
            .collect();
        if !in_child_with_default_profile(
            "default_profile_without_chroot_cap_denies_chroot",
            SCENARIO,
            &caps,
        ) {
            return;
        }
        assert_eq!(
            rustix::process::chroot(MISSING),
            Err(rustix::io::Errno::PERM)
        );
        println!("{}", marker(SCENARIO));
    }

    #[test]
    fn default_profile_with_sys_admin_allows_mount() {
        const SCENARIO: &str = "sys-admin";
        if !in_child_with_default_profile(
            "default_profile_with_sys_admin_allows_mount",
            SCENARIO,
            &caps_with(&["CAP_SYS_ADMIN"]),
        ) {
            return;
        }
        assert_eq!(
            rustix::mount::mount(
                "none",
                MISSING,
                "tmpfs",
                rustix::mount::MountFlags::empty(),
                None
            ),
            Err(rustix::io::Errno::NOENT)
        );
        let status = Command::new("true").status().unwrap();
        assert!(status.success());
        println!("{}", marker(SCENARIO));
    }
}
