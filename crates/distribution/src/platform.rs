//! Platforms (`linux/amd64`, `linux/arm/v7`) as `--platform` takes them, normalized as
//! containerd's `platforms` package does, and matched against index entries.

use std::fmt;

use crate::error::{DistributionError, Result};

/// An OS, architecture and optional variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, `windows`, ...
    pub os: String,
    /// GOARCH spelling: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`.
    pub architecture: String,
    /// `v7`, `v8`, ... (empty when none).
    pub variant: String,
}

impl Platform {
    /// This host's platform (the default of pulls).
    pub fn host() -> Platform {
        let architecture = berth_store::host_architecture().to_string();
        let variant = if architecture == "arm64" {
            "v8".into()
        } else {
            String::new()
        };
        Platform {
            os: "linux".into(),
            architecture,
            variant,
        }
    }

    /// Parses `os[/arch[/variant]]` or just an architecture (`arm64`), normalizing the
    /// common aliases (`x86_64`, `aarch64`, `armhf`).
    pub fn parse(s: &str) -> Result<Platform> {
        let bad = || {
            DistributionError::Usage(format!(
                "invalid platform {s:?}: expected os/arch[/variant], such as linux/amd64"
            ))
        };
        let parts: Vec<&str> = s.trim().split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
        {
            return Err(bad());
        }
        let (os, arch, variant) = match parts.as_slice() {
            [one] if is_known_os(one) => (one.to_string(), None, None),
            [one] => ("linux".to_string(), Some(*one), None),
            [os, arch] => (os.to_string(), Some(*arch), None),
            [os, arch, variant] => (os.to_string(), Some(*arch), Some(*variant)),
            _ => return Err(bad()),
        };
        let os = os.to_ascii_lowercase();
        let (architecture, variant) = match arch {
            None => (berth_store::host_architecture().to_string(), String::new()),
            Some(a) => normalize_arch(&a.to_ascii_lowercase(), variant.unwrap_or("")),
        };
        Ok(Platform {
            os,
            architecture,
            variant,
        })
    }

    /// Whether an index entry's platform is this one. An entry without a variant matches
    /// any variant asked for only where the variant is the architecture's default.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        let (arch, var) = normalize_arch(&architecture.to_ascii_lowercase(), variant.unwrap_or(""));
        os.eq_ignore_ascii_case(&self.os)
            && arch == self.architecture
            && (var == self.variant || var.is_empty() || self.variant.is_empty())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

fn is_known_os(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "linux" | "windows" | "darwin" | "freebsd"
    )
}

/// containerd's normalization: aliases to GOARCH names, default variants made explicit
/// (arm64 is v8, arm is v7).
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let variant = variant.to_ascii_lowercase();
    match arch {
        "i386" => ("386".into(), String::new()),
        "x86_64" | "x86-64" | "amd64" => (
            "amd64".into(),
            if variant == "v1" {
                String::new()
            } else {
                variant
            },
        ),
        "aarch64" | "arm64" => (
            "arm64".into(),
            match variant.as_str() {
                "8" | "v8" | "" => "v8".into(),
                _ => variant,
            },
        ),
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => (
            "arm".into(),
            match variant.as_str() {
                "" | "7" => "v7".into(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            },
        ),
        other => (other.to_string(), variant),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let p = Platform::parse("linux/amd64").unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        assert_eq!(
            Platform::parse("linux/aarch64").unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(Platform::parse("arm").unwrap().to_string(), "linux/arm/v7");
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().architecture,
            "amd64"
        );
        for bad in ["", "/", "linux/", "a/b/c/d", "linux/ amd64"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching_index_entries() {
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert!(arm64.matches("linux", "arm64", None));
        assert!(arm64.matches("linux", "arm64", Some("v8")));
        assert!(!arm64.matches("linux", "amd64", None));
        let armv6 = Platform::parse("linux/arm/v6").unwrap();
        assert!(!armv6.matches("linux", "arm", Some("v7")));
        assert!(armv6.matches("linux", "arm", Some("v6")));
        let amd64 = Platform::parse("linux/amd64").unwrap();
        assert!(!amd64.matches("windows", "amd64", None));
    }
}
