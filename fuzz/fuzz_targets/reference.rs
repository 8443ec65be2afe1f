//! Feeds arbitrary text to every public parser of `berth-reference` and checks that whatever
//! parses prints back to itself.

#![no_main]

use berth_reference::{Digest, Reference, is_valid_tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    check_digest(s);
    check_reference(s);
    if is_valid_tag(s) {
        assert!(!s.is_empty() && s.len() <= 128, "tag {s:?}");
    }
});

fn check_digest(s: &str) {
    let Ok(d) = Digest::parse(s) else {
        return;
    };
    assert_eq!(d.to_string(), s, "a valid digest prints as given");
    assert_eq!(Digest::parse(&d.to_string()).as_ref(), Ok(&d));
    assert_eq!(format!("{}:{}", d.algorithm(), d.encoded()), s);
    assert!(d.encoded().starts_with(d.short()) && d.short().len() == 12);
    if d.algorithm() == "sha256" {
        assert_eq!(Digest::from_sha256_hex(d.encoded()).as_ref(), Ok(&d));
    }
}

fn check_reference(s: &str) {
    let parsed = Reference::parse_normalized(s);
    let defaulted = Reference::parse_with_default_tag(s);
    assert_eq!(parsed.is_ok(), defaulted.is_ok(), "{s:?}");
    let Ok(r) = parsed else {
        return;
    };
    let defaulted = defaulted.expect("checked above");
    if r.tag().is_none() && r.digest().is_none() {
        assert_eq!(defaulted.tag(), Some("latest"));
        assert_eq!(defaulted.without_tag_or_digest(), r);
    } else {
        assert_eq!(defaulted, r);
    }

    let printed = r.to_string();
    assert_eq!(
        Reference::parse_normalized(&printed).as_ref(),
        Ok(&r),
        "display {printed:?} of {s:?}"
    );
    assert_eq!(printed.parse::<Reference>().as_ref(), Ok(&r));
    assert!(printed.starts_with(&r.name()));
    assert!(r.path().len() <= 255);
    assert!(r.tag().is_none_or(is_valid_tag));

    // Docker's familiar form is ambiguous for Hub paths whose first component looks like a
    // registry, and for Hub names that are image IDs; everything else must read back.
    let familiar = r.familiar_string();
    let ambiguous = r.domain() == "docker.io"
        && (r
            .familiar_name()
            .split_once('/')
            .is_some_and(|(first, _)| first == "localhost" || first.contains(['.', ':']))
            || (familiar.len() == 64
                && familiar
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))));
    if !ambiguous {
        assert_eq!(
            Reference::parse_normalized(&familiar).as_ref(),
            Ok(&r),
            "familiar {familiar:?} of {s:?}"
        );
    }

    let bare = r.without_tag_or_digest();
    assert_eq!(
        Reference::parse_normalized(&bare.to_string()).as_ref(),
        Ok(&bare)
    );
    let retagged = r.with_tag("fuzz").expect("a valid tag");
    assert_eq!(
        Reference::parse_normalized(&retagged.to_string()).as_ref(),
        Ok(&retagged)
    );
    let pinned = r.with_digest(Digest::sha256_of(s.as_bytes()));
    assert_eq!(
        Reference::parse_normalized(&pinned.to_string()).as_ref(),
        Ok(&pinned)
    );
}
