//! Content digests as opencontainers/go-digest defines them.

use std::fmt;
use std::io;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

use crate::grammar;

/// The algorithms go-digest registers by default, with the length of their hex encoding.
///
/// Any other algorithm that fits the grammar is refused as unsupported, as Docker does, so a
/// `Digest` can always be verified by berth.
const REGISTERED: &[(&str, usize)] = &[("sha256", 64), ("sha512", 128)];

/// Why a string is not a digest. The messages are go-digest's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DigestError {
    /// No `:`, an empty encoded part, or characters outside the grammar.
    #[error("invalid checksum digest format")]
    InvalidFormat,
    /// A registered algorithm with an encoded part of the wrong length.
    #[error("invalid checksum digest length")]
    InvalidLength,
    /// A well-formed digest whose algorithm is neither sha256 nor sha512.
    #[error("unsupported digest algorithm")]
    Unsupported,
}

/// A content digest "algorithm:encoded", validated.
///
/// Only sha256 and sha512 with lowercase hex are accepted, so two digests of the same content
/// are always equal as strings. Ordering is that of the string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    value: String,
    /// Byte index of the `:`; a function of `value`, so the derived traits agree with it.
    colon: usize,
}

impl Digest {
    /// Parses and validates "algorithm:encoded" as go-digest's `Parse` does.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, encoded)) = s.split_once(':') else {
            return Err(DigestError::InvalidFormat);
        };
        if encoded.is_empty() {
            return Err(DigestError::InvalidFormat);
        }
        match REGISTERED.iter().find(|(name, _)| *name == algorithm) {
            Some(&(_, hex_len)) => {
                if encoded.len() != hex_len {
                    Err(DigestError::InvalidLength)
                } else if grammar::is_lower_hex(encoded, hex_len) {
                    Ok(Digest {
                        value: s.to_owned(),
                        colon: algorithm.len(),
                    })
                } else {
                    Err(DigestError::InvalidFormat)
                }
            }
            None if grammar::is_digest_algorithm(algorithm)
                && grammar::is_digest_encoded(encoded) =>
            {
                Err(DigestError::Unsupported)
            }
            None => Err(DigestError::InvalidFormat),
        }
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        let mut digester = Sha256Digester::new();
        digester.update(data);
        digester.finish()
    }

    /// A sha256 digest from its hex encoding, which must be 64 lowercase hex characters.
    pub fn from_sha256_hex(hex: &str) -> Result<Digest, DigestError> {
        Digest::parse(&format!("sha256:{hex}"))
    }

    /// The algorithm, e.g. "sha256".
    pub fn algorithm(&self) -> &str {
        &self.value[..self.colon]
    }

    /// The encoded part after the `:`, lowercase hex.
    pub fn encoded(&self) -> &str {
        &self.value[self.colon + 1..]
    }

    /// The first 12 characters of the encoded part, Docker's short image and container ID.
    pub fn short(&self) -> &str {
        // Registered encodings are at least 64 characters of ASCII.
        &self.encoded()[..12]
    }

    /// The whole digest, "algorithm:encoded".
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// Prints like `Display`: the quoted struct form would only add noise to logs and assertions.
impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 that yields a [`Digest`].
///
/// It implements [`io::Write`] so it can sit behind `io::copy` or a tee while a blob streams
/// past; it is only a sink and never fails.
#[derive(Clone, Default)]
pub struct Sha256Digester {
    hasher: sha2::Sha256,
}

impl Sha256Digester {
    /// A digester that has seen no data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `data` into the hash.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let hex = hex::encode(self.hasher.finalize());
        Digest {
            value: format!("sha256:{hex}"),
            colon: "sha256".len(),
        }
    }
}

impl fmt::Debug for Sha256Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sha256Digester").finish_non_exhaustive()
    }
}

impl io::Write for Sha256Digester {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// Renders the outcome of `Digest::parse` as one line for the data-driven table.
    fn render(input: &str) -> String {
        match Digest::parse(input) {
            Ok(d) => format!("{d} alg={} short={}", d.algorithm(), d.short()),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn table() {
        crate::testdata::check_table(include_str!("../testdata/digests.txt"), render);
    }

    #[test]
    fn known_vectors() {
        let cases: [(&[u8], &str); 3] = [
            (
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                b"hello world",
                "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
            ),
        ];
        for (data, hex) in cases {
            let d = Digest::sha256_of(data);
            assert_eq!(d.to_string(), format!("sha256:{hex}"));
            assert_eq!(d, Digest::from_sha256_hex(hex).expect("valid hex"));
            assert_eq!(d.algorithm(), "sha256");
            assert_eq!(d.encoded(), hex);
            assert_eq!(d.short(), &hex[..12]);
        }
    }

    #[test]
    fn digester_matches_one_shot() {
        let mut incremental = Sha256Digester::new();
        incremental.update(b"hello ");
        incremental
            .write_all(b"world")
            .expect("a hash sink never fails");
        incremental.flush().expect("a hash sink never fails");
        assert_eq!(incremental.finish(), Digest::sha256_of(b"hello world"));
        assert_eq!(Sha256Digester::default().finish(), Digest::sha256_of(b""));
    }

    #[test]
    fn from_sha256_hex_errors() {
        let upper = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        assert_eq!(
            Digest::from_sha256_hex(upper),
            Err(DigestError::InvalidFormat)
        );
        assert_eq!(
            Digest::from_sha256_hex("abc"),
            Err(DigestError::InvalidLength)
        );
        assert_eq!(Digest::from_sha256_hex(""), Err(DigestError::InvalidFormat));
    }

    #[test]
    fn debug_prints_like_display() {
        let d = Digest::sha256_of(b"");
        assert_eq!(format!("{d:?}"), d.to_string());
        assert_eq!(format!("{:?}", Some(&d)), format!("Some({d})"));
    }

    #[test]
    fn serde_as_string() {
        let d = Digest::sha256_of(b"abc");
        let json = serde_json::to_string(&d).expect("serialize");
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(
            serde_json::from_str::<Digest>(&json).expect("deserialize"),
            d
        );
        let err = serde_json::from_str::<Digest>("\"sha256:abc\"").expect_err("short digest");
        assert!(
            err.to_string()
                .starts_with("invalid checksum digest length"),
            "{err}"
        );
        assert!(serde_json::from_str::<Digest>("42").is_err());
    }

    #[test]
    fn ordering_is_the_string_order() {
        let a = Digest::from_sha256_hex(&"0".repeat(64)).expect("valid");
        let b = Digest::from_sha256_hex(&"f".repeat(64)).expect("valid");
        let c = Digest::parse(&format!("sha512:{}", "0".repeat(128))).expect("valid");
        assert!(a < b && b < c);
    }
}
