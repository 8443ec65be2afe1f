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

/// Go's `path.Match`: `*` matches any run of non-`/` characters, `?` one, `[...]` a class.
pub fn path_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // Returns (matched, length of the class in the pattern including brackets).
        let mut i = 1;
        let negate = p.get(1) == Some(&'^');
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < p.len() {
            if p[i] == ']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            let lo = if p[i] == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                p[i]
            };
            let mut hi = lo;
            if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&c| c != ']') {
                hi = p[i + 2];
                i += 2;
            }
            if lo <= c && c <= hi {
                matched = true;
            }
            i += 1;
        }
        None
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| go(&p[1..], &n[i..])),
            Some('?') => n.first().is_some_and(|&c| c != '/') && go(&p[1..], &n[1..]),
            Some('[') => match (n.first(), class(p, *n.first().unwrap_or(&'\0'))) {
                (Some(&c), Some((true, len))) if c != '/' => go(&p[len..], &n[1..]),
                _ => false,
            },
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
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
