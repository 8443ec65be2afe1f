//! `--filter key=value` arguments, validated against the keys a command accepts.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

/// Parsed filters: key -> values (a key may repeat).
#[derive(Debug, Default, Clone)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses `--filter` arguments, refusing keys not in `allowed`, as Docker does.
    pub fn parse(args: &[String], allowed: &[&str]) -> Result<Filters> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in args {
            let Some((k, v)) = a.split_once('=') else {
                bail!("bad format of filter (expected name=value)");
            };
            let k = k.trim().to_ascii_lowercase();
            if !allowed.contains(&k.as_str()) {
                bail!("invalid filter '{k}'");
            }
            map.entry(k).or_default().push(v.trim().to_string());
        }
        Ok(Filters(map))
    }

    /// The values given for a key.
    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A boolean filter (`dangling=true`); errors on other values.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key).last().map(String::as_str) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(v) => bail!("invalid filter '{key}={v}'"),
        }
    }

    /// Whether labels satisfy every `label=` filter and no `label!=` filter (each `key` or
    /// `key=value`).
    pub fn labels_match(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let has = |want: &String| match want.split_once('=') {
            Some((k, v)) => labels.and_then(|l| l.get(k)).is_some_and(|have| have == v),
            None => labels.is_some_and(|l| l.contains_key(want)),
        };
        self.get("label").iter().all(has) && !self.get("label!").iter().any(has)
    }
}

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

    #[test]
    fn unknown_filters_are_refused() {
        let ok = Filters::parse(&["dangling=true".into()], &["dangling"]).unwrap();
        assert_eq!(ok.bool("dangling").unwrap(), Some(true));
        assert!(Filters::parse(&["nope=1".into()], &["dangling"]).is_err());
        assert!(Filters::parse(&["noequals".into()], &["dangling"]).is_err());
    }
}
