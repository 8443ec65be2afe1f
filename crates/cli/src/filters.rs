//! `--filter key=value` arguments, validated against the keys a command accepts.

pub use berth_store::Filters;

/// Go's `path.Match`, as Docker's `reference` filter uses it (`images` refuses a malformed
/// pattern before matching; here it matches nothing).
pub fn path_match(pattern: &str, name: &str) -> bool {
    berth_dockerfile::path_match(pattern, name).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_path_match() {
        for (p, n, want) in [
            ("busy*", "busybox", true),
            ("*", "library/busybox", false),
            ("*/*", "library/busybox", true),
            ("busybox:1.?", "busybox:1.3", true),
            ("b[a-u]sybox", "busybox", true),
            ("b[^u]sybox", "busybox", false),
            ("abc", "abcd", false),
        ] {
            assert_eq!(path_match(p, n), want, "{p} vs {n}");
        }
    }
}
