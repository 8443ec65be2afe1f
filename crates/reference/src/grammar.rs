//! Hand-written matchers for the regular expressions of distribution/reference (`regexp.go`) and
//! go-digest (`digest.go`, `algorithm.go`).
//!
//! Each function accepts exactly the strings its anchored Go expression accepts. The grammar is
//! small enough that matching by hand is clearer than pulling in a regex engine, and it lets the
//! reference parser split a string once instead of re-running captures.

/// Longest path (the part after the domain) Docker accepts, `RepositoryNameTotalLengthMax`.
pub(crate) const PATH_MAX_LEN: usize = 255;

/// Longest tag, from `[\w][\w.-]{0,127}`.
const TAG_MAX_LEN: usize = 128;

/// Shortest encoded part the reference grammar lets through to digest validation.
const REFERENCE_DIGEST_MIN_HEX: usize = 32;

/// A reference string cut into its pieces, each already checked against the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReferenceParts<'a> {
    /// Empty when the first component is not a valid host (Docker keeps it in the path then).
    pub domain: &'a str,
    pub path: &'a str,
    pub tag: Option<&'a str>,
    /// Only syntactically checked; go-digest validation happens in the caller.
    pub digest: Option<&'a str>,
}

/// Cuts `name[:tag][@digest]` without validating the pieces.
///
/// The cut is unambiguous: names and tags hold no `@`, digests hold one, tags hold neither `:`
/// nor `/`, and a `:` inside a name only ever sits in the domain, which a `/` follows.
pub(crate) fn split_reference(s: &str) -> (&str, Option<&str>, Option<&str>) {
    let (left, digest) = match s.split_once('@') {
        Some((left, digest)) => (left, Some(digest)),
        None => (s, None),
    };
    match left.rfind(':') {
        Some(i) if !left[i..].contains('/') => (&left[..i], Some(&left[i + 1..]), digest),
        _ => (left, None, digest),
    }
}

/// Matches Docker's `ReferenceRegexp` (anchored) and splits the name as `anchoredNameRegexp`
/// does, preferring to read the first component as a domain.
pub(crate) fn match_reference(s: &str) -> Option<ReferenceParts<'_>> {
    let (name, tag, digest) = split_reference(s);
    if !tag.is_none_or(is_tag) || !digest.is_none_or(is_reference_digest) {
        return None;
    }
    let (domain, path) = split_name(name)?;
    Some(ReferenceParts {
        domain,
        path,
        tag,
        digest,
    })
}

/// `^(?:(domainAndPort)/)?(remoteName)$` with Go's leftmost-first preference for the domain.
fn split_name(name: &str) -> Option<(&str, &str)> {
    if let Some((first, rest)) = name.split_once('/')
        && is_domain_and_port(first)
        && is_remote_name(rest)
    {
        return Some((first, rest));
    }
    is_remote_name(name).then_some(("", name))
}

/// `pathComponent(/pathComponent)*`.
fn is_remote_name(s: &str) -> bool {
    s.split('/').all(is_path_component)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
pub(crate) fn is_path_component(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    let mut i = 0;
    loop {
        let run = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == run {
            // Empty component, or a separator at the start, end or next to another separator.
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &bytes[sep_start..i];
        let ok = matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|&b| b == b'-');
        if !ok {
            return false;
        }
    }
}

/// `host(?::[0-9]+)?` where host is a domain name or a bracketed IPv6 literal.
pub(crate) fn is_domain_and_port(s: &str) -> bool {
    let (host_ok, port) = if let Some(inner) = s.strip_prefix('[') {
        // The literal's alphabet holds no `]`, so the first one closes it.
        let Some((addr, port)) = inner.split_once(']') else {
            return false;
        };
        let ok = !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        (ok, port)
    } else {
        let (host, port) = match s.find(':') {
            Some(i) => s.split_at(i),
            None => (s, ""),
        };
        (host.split('.').all(is_domain_component), port)
    };
    host_ok && (port.is_empty() || port.strip_prefix(':').is_some_and(is_digits))
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_domain_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        }
        _ => false,
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `[\w][\w.-]{0,127}`; Go's `\w` is ASCII only.
pub(crate) fn is_tag(s: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = s.as_bytes();
    match bytes.split_first() {
        Some((&first, rest)) => {
            bytes.len() <= TAG_MAX_LEN
                && word(first)
                && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-')
        }
        None => false,
    }
}

/// The reference grammar's own digest pattern, looser in the algorithm and stricter in the
/// encoding than go-digest: `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[[:xdigit:]]{32,}`.
fn is_reference_digest(s: &str) -> bool {
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return false;
    };
    let component_ok = |c: &str| {
        c.as_bytes().split_first().is_some_and(|(first, rest)| {
            first.is_ascii_alphabetic() && rest.iter().all(u8::is_ascii_alphanumeric)
        })
    };
    algorithm.split(['-', '_', '+', '.']).all(component_ok)
        && encoded.len() >= REFERENCE_DIGEST_MIN_HEX
        && encoded.bytes().all(|b| b.is_ascii_hexdigit())
}

/// go-digest's algorithm grammar, `[a-z0-9]+(?:[.+_-][a-z0-9]+)*`.
pub(crate) fn is_digest_algorithm(s: &str) -> bool {
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    s.split(['.', '+', '_', '-']).all(component_ok)
}

/// go-digest's encoded part for algorithms it does not know, `[a-zA-Z0-9=_-]+`.
pub(crate) fn is_digest_encoded(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

/// `[a-f0-9]{n}`, the encoding of every registered algorithm.
pub(crate) fn is_lower_hex(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `^[a-f0-9]{64}$`, Docker's image ID, which may not be used as a repository name.
pub(crate) fn is_identifier(s: &str) -> bool {
    is_lower_hex(s, 64)
}

/// Whether Go's `strings.ToLower` would change `s`.
pub(crate) fn has_uppercase(s: &str) -> bool {
    s.chars().any(|c| go_lower(c) != c)
}

/// Go's `strings.ToLower`: simple, per-character Unicode lowercasing.
///
/// Docker retries a failed parse on the lowercased input to tell "uppercase" apart from
/// "malformed"; non-ASCII letters matter because a few (the Kelvin sign, dotted capital I)
/// lowercase to ASCII.
pub(crate) fn go_to_lower(s: &str) -> String {
    s.chars().map(go_lower).collect()
}

fn go_lower(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    // U+0130 is the only character whose full lowercase mapping has two characters; Go uses
    // the simple mapping, which is plain `i`.
    if c == '\u{130}' {
        return 'i';
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components() {
        for ok in [
            "a",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "a-b.c_d__e",
            "0",
            "192.168.0.1",
        ] {
            assert!(is_path_component(ok), "{ok}");
        }
        for bad in [
            "", "A", "a.", ".a", "a..b", "a___b", "a_.b", "a-.b", "a.-b", "-a", "a-", "a:b", "a/b",
            "é",
        ] {
            assert!(!is_path_component(bad), "{bad}");
        }
    }

    #[test]
    fn domains() {
        for ok in [
            "localhost",
            "localhost:5000",
            "a",
            "A-b.C",
            "xn--n3h.com",
            "127.0.0.1:80",
            "[::1]",
            "[fc00::1]:5000",
            "[2001:DB8::1]",
        ] {
            assert!(is_domain_and_port(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a_b",
            "a:",
            "a:x",
            "a:5:5",
            "[]",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[fe80::1%eth0]",
            "[::ffff:1.2.3.4]",
        ] {
            assert!(!is_domain_and_port(bad), "{bad}");
        }
    }

    #[test]
    fn tags() {
        assert!(is_tag("latest"));
        assert!(is_tag("_"));
        assert!(is_tag("A.b-C_d"));
        assert!(is_tag(&"a".repeat(128)));
        assert!(!is_tag(&"a".repeat(129)));
        assert!(!is_tag(""));
        assert!(!is_tag("-a"));
        assert!(!is_tag(".a"));
        assert!(!is_tag("a/b"));
        assert!(!is_tag("a:b"));
        assert!(!is_tag("é"));
    }

    #[test]
    fn reference_digest_pattern() {
        let hex32 = "0123456789abcdefABCDEF0123456789";
        assert!(is_reference_digest(&format!("sha256:{hex32}")));
        assert!(is_reference_digest(&format!("SHA256:{hex32}")));
        assert!(is_reference_digest(&format!("a+b.c-d_e:{hex32}")));
        assert!(!is_reference_digest(&format!("sha256:{}", &hex32[1..])));
        assert!(!is_reference_digest(&format!("256:{hex32}")));
        assert!(!is_reference_digest(&format!("a++b:{hex32}")));
        assert!(!is_reference_digest(&format!(":{hex32}")));
        assert!(!is_reference_digest(&format!("sha256:{hex32}g")));
    }

    #[test]
    fn splitting() {
        assert_eq!(split_reference("a"), ("a", None, None));
        assert_eq!(split_reference("a:b"), ("a", Some("b"), None));
        assert_eq!(split_reference("h:1/a"), ("h:1/a", None, None));
        assert_eq!(
            split_reference("h:1/a:t@x:y"),
            ("h:1/a", Some("t"), Some("x:y"))
        );
        assert_eq!(split_reference("a@b@c"), ("a", None, Some("b@c")));
        let parts = match_reference("h.io/a/b:t").expect("valid");
        assert_eq!(
            (parts.domain, parts.path, parts.tag),
            ("h.io", "a/b", Some("t"))
        );
        // A first component that is not a valid host stays in the path.
        let parts = match_reference("foo_bar.com/x").expect("valid");
        assert_eq!((parts.domain, parts.path), ("", "foo_bar.com/x"));
    }

    #[test]
    fn go_lowercasing() {
        assert_eq!(go_to_lower("ABC"), "abc");
        assert_eq!(go_to_lower("\u{212A}"), "k");
        assert_eq!(go_to_lower("\u{130}"), "i");
        assert!(has_uppercase("Σ"));
        assert!(!has_uppercase("abc-é:1"));
    }
}
