//! Property tests of the public API: round trips through the printed forms, and no panics on
//! arbitrary input.

use berth_reference::{Digest, Reference, Sha256Digester, is_valid_tag};
use proptest::prelude::*;

/// A path component: `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn path_component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}"
}

/// One to four path components.
fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(path_component(), 1..=4).prop_map(|c| c.join("/"))
}

/// A registry that `splitDockerDomain` recognises as one: it has a `.` or `:`, is
/// "localhost", or has an uppercase letter.
fn registry() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("docker.io".to_owned()),
        Just("index.docker.io".to_owned()),
        Just("localhost".to_owned()),
        "localhost:[0-9]{1,5}",
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,4}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,4}[a-zA-Z0-9])?){1,3}(:[0-9]{1,5})?",
        "[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?:[0-9]{1,5}",
        "\\[[0-9a-fA-F]{0,4}:[0-9a-fA-F:]{0,12}\\](:[0-9]{1,5})?",
        "[A-Z][A-Za-z0-9]{0,5}",
    ]
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}"
}

fn digest() -> impl Strategy<Value = Digest> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|data| Digest::sha256_of(&data)),
        "[0-9a-f]{128}"
            .prop_map(|hex| Digest::parse(&format!("sha512:{hex}")).expect("valid sha512")),
    ]
}

/// A valid reference string, with or without an explicit registry.
fn reference_string() -> impl Strategy<Value = String> {
    (
        prop::option::of(registry()),
        path(),
        prop::option::of(tag()),
        prop::option::of(digest()),
    )
        .prop_map(|(registry, path, tag, digest)| {
            let mut s = match registry {
                Some(registry) => format!("{registry}/{path}"),
                None => path,
            };
            if let Some(tag) = tag {
                s.push(':');
                s.push_str(&tag);
            }
            if let Some(digest) = digest {
                s.push('@');
                s.push_str(digest.as_str());
            }
            s
        })
}

/// Strings over the grammar's alphabet and valid references with one character inserted,
/// replaced or removed: both reach deeper into the parser than random text.
fn grammar_soup() -> impl Strategy<Value = String> {
    let alphabet = "[a-fA-F0-9xyzKL:/@._+\\-\\[\\]\u{130}\u{212A}]";
    let mutated = (
        reference_string(),
        any::<prop::sample::Index>(),
        alphabet,
        0..3u8,
    )
        .prop_map(|(s, at, c, op)| {
            let mut chars: Vec<char> = s.chars().collect();
            let at = at.index(chars.len() + 1);
            let c = c
                .chars()
                .next()
                .expect("the alphabet strategy yields one character");
            match op {
                0 => chars.insert(at, c),
                1 if at < chars.len() => chars[at] = c,
                _ if at < chars.len() => {
                    chars.remove(at);
                }
                _ => {}
            }
            chars.into_iter().collect()
        });
    let soup = proptest::string::string_regex(&format!("{alphabet}{{0,48}}")).expect("valid regex");
    prop_oneof![soup, mutated]
}

fn is_image_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether Docker's familiar form of `r` reads back as something else, as Docker's does: a Hub
/// path whose first component looks like a registry, or a Hub name that is an image ID.
fn familiar_is_ambiguous(r: &Reference) -> bool {
    if r.domain() != "docker.io" {
        return false;
    }
    let familiar = r.familiar_name();
    let looks_like_registry = familiar
        .split_once('/')
        .is_some_and(|(first, _)| first == "localhost" || first.contains(['.', ':']));
    looks_like_registry || is_image_id(&r.familiar_string())
}

/// Everything a successfully parsed reference must satisfy.
fn check_invariants(r: &Reference) -> Result<(), TestCaseError> {
    let printed = r.to_string();
    prop_assert_eq!(
        Reference::parse_normalized(&printed),
        Ok(r.clone()),
        "display: {}",
        printed
    );
    prop_assert_eq!(
        printed.clone(),
        format!(
            "{}{}{}",
            r.name(),
            r.tag().map(|t| format!(":{t}")).unwrap_or_default(),
            r.digest().map(|d| format!("@{d}")).unwrap_or_default()
        )
    );
    prop_assert!(r.path().len() <= 255);
    prop_assert!(r.tag().is_none_or(is_valid_tag));
    if !familiar_is_ambiguous(r) {
        let familiar = r.familiar_string();
        prop_assert_eq!(
            Reference::parse_normalized(&familiar),
            Ok(r.clone()),
            "familiar: {}",
            familiar
        );
    }
    let bare = r.without_tag_or_digest();
    prop_assert_eq!(bare.name(), r.name());
    prop_assert_eq!(
        Reference::parse_normalized(&bare.to_string()),
        Ok(bare.clone())
    );
    let defaulted =
        Reference::parse_with_default_tag(&bare.to_string()).expect("bare name is valid");
    prop_assert_eq!(defaulted.tag(), Some("latest"));
    let json = serde_json::to_string(r).expect("serialize");
    prop_assert_eq!(
        serde_json::from_str::<Reference>(&json).ok(),
        Some(r.clone())
    );
    Ok(())
}

proptest! {
    #[test]
    fn valid_references_parse_and_round_trip(s in reference_string()) {
        let r = Reference::parse_normalized(&s);
        prop_assert!(r.is_ok(), "{s}: {r:?}");
        check_invariants(&r.expect("checked above"))?;
    }

    #[test]
    fn with_tag_and_digest_round_trip(s in reference_string(), t in tag(), d in digest()) {
        let r = Reference::parse_normalized(&s).expect("generated references are valid");
        let tagged = r.with_tag(&t).expect("generated tags are valid");
        prop_assert_eq!(tagged.tag(), Some(t.as_str()));
        prop_assert_eq!(tagged.digest(), None);
        check_invariants(&tagged)?;
        let pinned = r.with_digest(d.clone());
        prop_assert_eq!(pinned.digest(), Some(&d));
        prop_assert_eq!(pinned.tag(), None);
        check_invariants(&pinned)?;
    }

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        if let Ok(r) = Reference::parse_normalized(&s) {
            check_invariants(&r)?;
        }
        if let Ok(d) = Digest::parse(&s) {
            prop_assert_eq!(Digest::parse(&d.to_string()), Ok(d));
        }
        let _ = is_valid_tag(&s);
    }

    #[test]
    fn grammar_soup_is_consistent(s in grammar_soup()) {
        let normalized = Reference::parse_normalized(&s);
        let defaulted = Reference::parse_with_default_tag(&s);
        prop_assert_eq!(normalized.is_ok(), defaulted.is_ok());
        if let Ok(r) = normalized {
            check_invariants(&r)?;
            let defaulted = defaulted.expect("checked above");
            if r.tag().is_none() && r.digest().is_none() {
                prop_assert_eq!(defaulted, r.with_tag("latest").expect("valid tag"));
            } else {
                prop_assert_eq!(defaulted, r);
            }
        }
        if let Ok(d) = Digest::parse(&s) {
            prop_assert_eq!(Digest::parse(&d.to_string()), Ok(d));
        }
    }

    #[test]
    fn digests_round_trip(d in digest()) {
        let printed = d.to_string();
        prop_assert_eq!(Digest::parse(&printed), Ok(d.clone()));
        prop_assert_eq!(printed.clone(), format!("{}:{}", d.algorithm(), d.encoded()));
        prop_assert_eq!(format!("{d:?}"), printed);
        prop_assert_eq!(d.short().len(), 12);
        prop_assert!(d.encoded().starts_with(d.short()));
        let json = serde_json::to_string(&d).expect("serialize");
        prop_assert_eq!(serde_json::from_str::<Digest>(&json).ok(), Some(d.clone()));
        if d.algorithm() == "sha256" {
            prop_assert_eq!(Digest::from_sha256_hex(d.encoded()), Ok(d));
        }
    }

    #[test]
    fn digester_is_chunking_independent(data in prop::collection::vec(any::<u8>(), 0..512), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4)) {
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
        points.sort_unstable();
        let mut digester = Sha256Digester::new();
        let mut start = 0;
        for point in points {
            digester.update(&data[start..point]);
            start = point;
        }
        digester.update(&data[start..]);
        prop_assert_eq!(digester.finish(), Digest::sha256_of(&data));
    }
}
