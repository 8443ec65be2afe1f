//! Docker image references as distribution/reference parses and normalizes them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Digest, DigestError};
use crate::grammar;

/// Docker Hub's canonical domain.
const DEFAULT_DOMAIN: &str = "docker.io";

/// The old Hub domain, which Docker rewrites to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";

/// Namespace of Hub's official images, implied for single-component Hub names.
const OFFICIAL_REPO_PREFIX: &str = "library/";

/// The tag `docker pull python` means.
const DEFAULT_TAG: &str = "latest";

/// Why a string is not an image reference. The messages are Docker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The string does not fit the reference grammar.
    #[error("invalid reference format")]
    InvalidFormat,
    /// The repository name has uppercase letters; carries the offending name.
    ///
    /// Docker words the rarer case, uppercase that is neither in the path nor a valid domain
    /// (`FOO_BAR/x`), as "repository name must be lowercase"; berth uses this one message for
    /// both, naming what it rejected.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    NameContainsUppercase(String),
    /// The path, after normalization, is longer than 255 characters.
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    /// The string was empty.
    #[error("invalid reference format: repository name must have at least one component")]
    NameEmpty,
    /// The whole string is 64 lowercase hex characters, which Docker reserves for image IDs.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexNameNotAllowed(String),
    /// A tag given to [`Reference::with_tag`] does not match `[\w][\w.-]{0,127}`.
    #[error("invalid tag format: {0:?}")]
    InvalidTag(String),
    /// The digest part fits the reference grammar but is not a valid digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A parsed, normalized image reference: domain + path + optional tag + optional digest.
///
/// Values only come from [`Reference::parse_normalized`] and the `with_*` methods, so they
/// always print as a string that parses back to the same value.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Docker's `ParseNormalizedNamed`: "python" is docker.io/library/python, "user/img" is
    /// docker.io/user/img, and "localhost:5000/x" or "example.com/a/b:tag@sha256:..." keep
    /// their registry. Does not add a default tag.
    pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::NameEmpty);
        }
        if grammar::is_identifier(s) {
            return Err(ReferenceError::HexNameNotAllowed(s.to_owned()));
        }
        let (domain, remainder) = split_docker_domain(s);
        // Docker checks case on everything before the first `:`, which may run into an `@`
        // part when there is no tag; its message names exactly that text.
        let remote = remainder.split(':').next().unwrap_or_default();
        if grammar::has_uppercase(remote) {
            return Err(ReferenceError::NameContainsUppercase(remote.to_owned()));
        }
        parse_full(&format!("{domain}/{remainder}"))
    }

    /// [`Reference::parse_normalized`], then Docker's `TagNameOnly`: adds the "latest" tag
    /// when neither a tag nor a digest is present.
    pub fn parse_with_default_tag(s: &str) -> Result<Reference, ReferenceError> {
        let mut reference = Reference::parse_normalized(s)?;
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(reference)
    }

    /// The registry, e.g. "docker.io" or "localhost:5000".
    ///
    /// Empty in the one case Docker also leaves it empty: a first component that looks like a
    /// registry (it has a `.` or `:`) but is not a valid host name, such as `foo_bar.com/x`,
    /// which Docker keeps whole as the path.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. "library/python".
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Domain and path, e.g. "docker.io/library/python".
    pub fn name(&self) -> String {
        join_name(&self.domain, &self.path)
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same name with `tag` and no digest.
    ///
    /// Docker's `WithTag` would keep the digest; berth callers retag by name, so a pinned
    /// digest must not silently ride along to the new tag.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !grammar::is_tag(tag) {
            return Err(ReferenceError::InvalidTag(tag.to_owned()));
        }
        Ok(Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.without_tag_or_digest()
        })
    }

    /// The same name with `digest` and no tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.without_tag_or_digest()
        }
    }

    /// The bare name, without tag or digest (Docker's `TrimNamed`).
    pub fn without_tag_or_digest(&self) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    /// The name as Docker prints it to users (`FamiliarName`): "python", "user/img",
    /// "localhost:5000/x".
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_owned(),
            _ => self.path.clone(),
        }
    }

    /// The whole reference as Docker prints it to users (`FamiliarString`): "python:latest",
    /// "python@sha256:...".
    pub fn familiar_string(&self) -> String {
        let mut s = self.familiar_name();
        self.push_tag_and_digest(&mut s);
        s
    }

    fn push_tag_and_digest(&self, s: &mut String) {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(digest.as_str());
        }
    }
}

/// Prints the full normalized form, `name[:tag][@digest]`, e.g.
/// "docker.io/library/python:latest".
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_tag_and_digest(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    /// Same as [`Reference::parse_normalized`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse_normalized(s)
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Reference::parse_normalized(&s).map_err(serde::de::Error::custom)
    }
}

/// Whether `s` is a repository path as the OCI distribution spec allows it in URLs:
/// `pathComponent(/pathComponent)*`, at most 255 characters, no domain. Such a path never
/// holds `.`, `..` or an empty component, so it is also a safe relative file path.
pub fn is_valid_repository_path(s: &str) -> bool {
    s.len() <= 255 && s.split('/').all(grammar::is_path_component)
}

/// Whether `s` is a valid tag, `[\w][\w.-]{0,127}`.
pub fn is_valid_tag(s: &str) -> bool {
    grammar::is_tag(s)
}

fn join_name(domain: &str, path: &str) -> String {
    if domain.is_empty() {
        path.to_owned()
    } else {
        format!("{domain}/{path}")
    }
}

/// Docker's `splitDockerDomain`: decides whether the first component names a registry.
///
/// It does, when it has a `.` or `:`, is "localhost", or has an uppercase letter (no Hub
/// namespace can). Everything else goes to Docker Hub, whose single-component names live in
/// "library/".
fn split_docker_domain(name: &str) -> (&str, String) {
    let (domain, remainder) = match name.split_once('/') {
        None => (DEFAULT_DOMAIN, name),
        Some(("localhost", rest)) => ("localhost", rest),
        Some((LEGACY_DEFAULT_DOMAIN, rest)) => (DEFAULT_DOMAIN, rest),
        Some((first, rest)) if first.contains(['.', ':']) || grammar::has_uppercase(first) => {
            (first, rest)
        }
        Some(_) => (DEFAULT_DOMAIN, name),
    };
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        (domain, format!("{OFFICIAL_REPO_PREFIX}{remainder}"))
    } else {
        (domain, remainder.to_owned())
    }
}

/// Docker's `Parse`, on a string that always has a domain part in front.
fn parse_full(s: &str) -> Result<Reference, ReferenceError> {
    let Some(parts) = grammar::match_reference(s) else {
        // Docker retries lowercased to tell uppercase apart from garbage.
        let lower = grammar::go_to_lower(s);
        if lower != s && grammar::match_reference(&lower).is_some() {
            let (name, _, _) = grammar::split_reference(s);
            return Err(ReferenceError::NameContainsUppercase(name.to_owned()));
        }
        return Err(ReferenceError::InvalidFormat);
    };
    if parts.path.len() > grammar::PATH_MAX_LEN {
        return Err(ReferenceError::NameTooLong);
    }
    let digest = parts.digest.map(Digest::parse).transpose()?;
    Ok(Reference {
        domain: parts.domain.to_owned(),
        path: parts.path.to_owned(),
        tag: parts.tag.map(str::to_owned),
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths() {
        for ok in [
            "a",
            "library/busybox",
            "a/b/c",
            "my-org/ml_models",
            "x.y__z/0",
        ] {
            assert!(is_valid_repository_path(ok), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in [
            "", "..", "a/..", "../etc", "a//b", "/a", "a/", "A", "a/.b", "a%2f..", &long,
        ] {
            assert!(!is_valid_repository_path(bad), "{bad}");
        }
    }

    /// Renders the outcome of `parse_normalized` as one line for the data-driven table.
    fn render(input: &str) -> String {
        match Reference::parse_normalized(input) {
            Ok(r) => format!(
                "{r} familiar={} domain={} path={}",
                r.familiar_string(),
                r.domain(),
                r.path()
            ),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn table() {
        crate::testdata::check_table(include_str!("../testdata/references.txt"), render);
    }

    #[test]
    fn default_tag() {
        let digest = format!("sha256:{}", "f".repeat(64));
        let cases = [
            ("python", "docker.io/library/python:latest".to_owned()),
            ("python:3.12", "docker.io/library/python:3.12".to_owned()),
            (
                &*format!("python@{digest}"),
                format!("docker.io/library/python@{digest}"),
            ),
            (
                &*format!("python:3@{digest}"),
                format!("docker.io/library/python:3@{digest}"),
            ),
            ("localhost:5000/x", "localhost:5000/x:latest".to_owned()),
        ];
        for (input, expected) in cases {
            let r = Reference::parse_with_default_tag(input).expect(input);
            assert_eq!(r.to_string(), expected, "{input}");
        }
        assert_eq!(
            Reference::parse_with_default_tag("Python"),
            Reference::parse_normalized("Python")
        );
    }

    #[test]
    fn accessors() {
        let digest = Digest::sha256_of(b"");
        let r =
            Reference::parse_normalized(&format!("example.com/a/b:v1@{digest}")).expect("valid");
        assert_eq!(r.domain(), "example.com");
        assert_eq!(r.path(), "a/b");
        assert_eq!(r.name(), "example.com/a/b");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest(), Some(&digest));
        assert_eq!(r.familiar_name(), "example.com/a/b");
        assert_eq!(r.to_string(), format!("example.com/a/b:v1@{digest}"));
        assert_eq!(
            "example.com/a/b:v1".parse::<Reference>(),
            Reference::parse_normalized("example.com/a/b:v1")
        );
    }

    #[test]
    fn with_methods() {
        let digest = Digest::sha256_of(b"x");
        let r = Reference::parse_normalized(&format!("python:3@{digest}")).expect("valid");

        let retagged = r.with_tag("4").expect("valid tag");
        assert_eq!(retagged.to_string(), "docker.io/library/python:4");
        assert_eq!(retagged.digest(), None);
        assert_eq!(
            r.with_tag("-bad"),
            Err(ReferenceError::InvalidTag("-bad".to_owned()))
        );
        assert_eq!(
            r.with_tag(""),
            Err(ReferenceError::InvalidTag(String::new()))
        );

        let pinned = r.with_digest(digest.clone());
        assert_eq!(
            pinned.to_string(),
            format!("docker.io/library/python@{digest}")
        );
        assert_eq!(pinned.familiar_string(), format!("python@{digest}"));
        assert_eq!(pinned.tag(), None);

        let bare = r.without_tag_or_digest();
        assert_eq!(bare.to_string(), "docker.io/library/python");
        assert_eq!((bare.tag(), bare.digest()), (None, None));
    }

    #[test]
    fn length_limit_counts_the_path_only() {
        // distribution/reference v0.6 excludes the domain from the limit (PR "Exclude domain
        // from name length check"); the implied "library/" counts, as it is part of the path.
        let max = "a".repeat(255);
        let long_domain = format!("{}.example.com", "d".repeat(60));
        let r = Reference::parse_normalized(&format!("{long_domain}/{max}:tag"))
            .expect("255 is allowed");
        assert_eq!(r.path().len(), 255);
        let err = Reference::parse_normalized(&format!("example.com/{max}a"));
        assert_eq!(err, Err(ReferenceError::NameTooLong));
        let err = Reference::parse_normalized(&format!("domain/{max}a:tag"));
        assert_eq!(err, Err(ReferenceError::NameTooLong));
        let official = "a".repeat(255 - OFFICIAL_REPO_PREFIX.len());
        assert!(Reference::parse_normalized(&official).is_ok());
        let err = Reference::parse_normalized(&format!("{official}a"));
        assert_eq!(err, Err(ReferenceError::NameTooLong));
        let deep = format!("{}a:tag-puts-this-over-max", "a/".repeat(127));
        assert!(Reference::parse_normalized(&deep).is_ok());
    }

    #[test]
    fn tag_length_limit() {
        assert!(Reference::parse_normalized(&format!("a:{}", "t".repeat(128))).is_ok());
        assert_eq!(
            Reference::parse_normalized(&format!("a:{}", "t".repeat(129))),
            Err(ReferenceError::InvalidFormat)
        );
        assert!(is_valid_tag("latest"));
        assert!(!is_valid_tag(".hidden"));
    }

    #[test]
    fn hex_names() {
        let hex = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
        let err = Reference::parse_normalized(hex).expect_err("image IDs are not names");
        assert_eq!(err, ReferenceError::HexNameNotAllowed(hex.to_owned()));
        // With a registry in front there is no ambiguity, so Docker accepts it; its familiar
        // form is exactly the string Docker refuses, so that one does not round-trip.
        let r = Reference::parse_normalized(&format!("docker.io/{hex}")).expect("valid");
        assert_eq!(r.familiar_string(), hex);
        // A tag also removes the ambiguity.
        assert!(Reference::parse_normalized(&format!("{hex}:tag")).is_ok());
    }

    #[test]
    fn familiar_form_can_be_ambiguous() {
        // Docker has the same blind spot: a Hub path whose first component looks like a
        // registry loses its domain when printed familiarly.
        let r = Reference::parse_normalized("docker.io/foo.com/bar").expect("valid");
        assert_eq!(r.familiar_string(), "foo.com/bar");
        let reparsed = Reference::parse_normalized(&r.familiar_string()).expect("valid");
        assert_eq!(reparsed.domain(), "foo.com");
    }

    #[test]
    fn serde_as_string() {
        let r = Reference::parse_normalized("python:3").expect("valid");
        let json = serde_json::to_string(&r).expect("serialize");
        assert_eq!(json, "\"docker.io/library/python:3\"");
        assert_eq!(
            serde_json::from_str::<Reference>(&json).expect("deserialize"),
            r
        );
        assert_eq!(
            serde_json::from_str::<Reference>("\"python:3\"").expect("deserialize"),
            r
        );
        assert!(serde_json::from_str::<Reference>("\"Python\"").is_err());
    }

    #[test]
    fn error_variants() {
        let digest_err = Reference::parse_normalized(&format!("repo@sha256:{}", "f".repeat(34)));
        assert_eq!(
            digest_err,
            Err(ReferenceError::Digest(DigestError::InvalidLength))
        );
        assert_eq!(
            Reference::parse_normalized(""),
            Err(ReferenceError::NameEmpty)
        );
        assert_eq!(
            Reference::parse_normalized("Python"),
            Err(ReferenceError::NameContainsUppercase(
                "library/Python".to_owned()
            ))
        );
        assert_eq!(
            Reference::parse_normalized("FOO_BAR/x"),
            Err(ReferenceError::NameContainsUppercase(
                "FOO_BAR/x".to_owned()
            ))
        );
    }
}
