//! Container names: Docker's `--name` rule and its random "adjective_surname" names.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// The characters Docker allows in a container name, as its error message spells them.
pub const NAME_CHARS: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]";

/// A `--name` that Docker would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name as given (with any leading "/").
    #[error("Invalid container name ({0}), only {NAME_CHARS} are allowed")]
    Invalid(String),
}

/// Docker's rule for `--name`: `^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`, with Docker's error text
/// (`Invalid container name (NAME), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`).
///
/// Returns the name without its leading "/". Names are at least two characters long.
/// Docker strips one "/" before matching a pattern that itself allows one, so it accepts
/// "//name" (and stores it as "//name"); berth refuses that.
pub fn validate_name(name: &str) -> Result<String, NameError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let mut bytes = bare.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bare.len() >= 2
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok {
        Ok(bare.to_owned())
    } else {
        Err(NameError::Invalid(name.to_owned()))
    }
}

/// A random name in Docker's style, "adjective_surname" (e.g. "steady_hopper"), from
/// berth's own lists of adjectives and surnames of notable scientists and engineers.
/// `retry` > 0 appends a random digit, as Docker does. Every name passes [`validate_name`].
///
/// Callers try `retry` 0, 1, 2, ... while the name is taken; Docker gives up after six tries
/// and uses the first 12 hex digits of the container id instead.
pub fn random_name(retry: u32) -> String {
    let mut name = format!(
        "{}_{}",
        ADJECTIVES[random_below(ADJECTIVES.len())],
        SURNAMES[random_below(SURNAMES.len())]
    );
    if retry > 0 {
        name.push(char::from(b'0' + random_below(10) as u8));
    }
    name
}

/// A uniformly random number in `0..n` (`n` > 0).
fn random_below(n: usize) -> usize {
    let n = n as u64;
    // Reject the top partial block of u64 values so that every remainder is equally likely.
    let limit = u64::MAX - u64::MAX % n;
    loop {
        let r = random_u64();
        if r < limit {
            return (r % n) as usize;
        }
    }
}

/// 64 bits from the kernel's random source; if that fails (it should not), from std's
/// randomly keyed hasher mixed with the clock.
fn random_u64() -> u64 {
    let mut buf = [0_u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    if filled == buf.len() {
        return u64::from_ne_bytes(buf);
    }
    let mut hasher = RandomState::new().build_hasher();
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.write_u32(std::process::id());
    hasher.finish()
}

const ADJECTIVES: &[&str] = &[
    "admiring",
    "agile",
    "amused",
    "ardent",
    "bold",
    "brave",
    "bright",
    "calm",
    "careful",
    "cheerful",
    "clever",
    "cool",
    "curious",
    "daring",
    "dazzling",
    "determined",
    "diligent",
    "eager",
    "earnest",
    "elated",
    "elegant",
    "epic",
    "fearless",
    "fervent",
    "gallant",
    "gentle",
    "gifted",
    "glad",
    "graceful",
    "happy",
    "hopeful",
    "humble",
    "inspired",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "lively",
    "loyal",
    "lucid",
    "merry",
    "mindful",
    "modest",
    "nimble",
    "noble",
    "patient",
    "peaceful",
    "placid",
    "plucky",
    "poised",
    "quiet",
    "quirky",
    "radiant",
    "resolute",
    "serene",
    "sharp",
    "sincere",
    "spirited",
    "steady",
    "stoic",
    "sunny",
    "swift",
    "tender",
    "thoughtful",
    "upbeat",
    "valiant",
    "vibrant",
    "vigilant",
    "witty",
    "zealous",
];

const SURNAMES: &[&str] = &[
    "abel",
    "adleman",
    "agnesi",
    "alhazen",
    "allen",
    "ampere",
    "archimedes",
    "avogadro",
    "babbage",
    "backus",
    "bardeen",
    "bartik",
    "bernoulli",
    "bohr",
    "boltzmann",
    "boole",
    "born",
    "bose",
    "boyle",
    "brahe",
    "brattain",
    "cantor",
    "carnot",
    "carson",
    "cauchy",
    "cavendish",
    "cerf",
    "chandrasekhar",
    "clausius",
    "copernicus",
    "coulomb",
    "cray",
    "crick",
    "curie",
    "dalton",
    "darwin",
    "descartes",
    "diffie",
    "dijkstra",
    "dirac",
    "doppler",
    "edison",
    "ehrenfest",
    "einstein",
    "engelbart",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "fibonacci",
    "fleming",
    "floyd",
    "fourier",
    "franklin",
    "fresnel",
    "galileo",
    "galois",
    "gauss",
    "gibbs",
    "godel",
    "goldberg",
    "goodall",
    "hamilton",
    "hamming",
    "hawking",
    "heisenberg",
    "hellman",
    "helmholtz",
    "hertz",
    "hilbert",
    "hoare",
    "hodgkin",
    "hollerith",
    "hooke",
    "hopper",
    "hubble",
    "huygens",
    "hypatia",
    "jacobi",
    "johnson",
    "joule",
    "kahn",
    "kay",
    "kelvin",
    "kepler",
    "kernighan",
    "kilby",
    "knuth",
    "kolmogorov",
    "kovalevskaya",
    "lagrange",
    "lamarr",
    "lamport",
    "laplace",
    "lavoisier",
    "leavitt",
    "leibniz",
    "liskov",
    "lorentz",
    "lovelace",
    "mach",
    "maxwell",
    "mccarthy",
    "mcclintock",
    "meitner",
    "mendel",
    "mendeleev",
    "merkle",
    "michelson",
    "milner",
    "minsky",
    "mirzakhani",
    "morse",
    "napier",
    "newton",
    "noether",
    "noyce",
    "ohm",
    "pascal",
    "pasteur",
    "pauli",
    "pauling",
    "perlman",
    "pike",
    "planck",
    "poincare",
    "raman",
    "ramanujan",
    "riemann",
    "ritchie",
    "rivest",
    "roentgen",
    "rutherford",
    "sagan",
    "salk",
    "sammet",
    "schrodinger",
    "shamir",
    "shannon",
    "snell",
    "somerville",
    "stokes",
    "stroustrup",
    "tarjan",
    "tesla",
    "thompson",
    "thomson",
    "torvalds",
    "turing",
    "volta",
    "watt",
    "wiener",
    "wirth",
    "wozniak",
    "wu",
    "yalow",
    "yukawa",
    "zuse",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn validate() {
        let cases: &[(&str, Option<&str>)] = &[
            ("web", Some("web")),
            ("/web", Some("web")),
            ("ab", Some("ab")),
            ("a1", Some("a1")),
            ("1a", Some("1a")),
            ("My_Container.v1-2", Some("My_Container.v1-2")),
            ("x--", Some("x--")),
            ("0.", Some("0.")),
            ("a", None),
            ("/a", None),
            ("", None),
            ("/", None),
            ("//web", None),
            ("_web", None),
            (".web", None),
            ("-web", None),
            ("web/1", None),
            ("web 1", None),
            ("web\n", None),
            ("web:1", None),
            ("wéb", None),
            ("web!", None),
        ];
        for (name, want) in cases {
            let got = validate_name(name);
            match want {
                Some(bare) => assert_eq!(got, Ok((*bare).to_owned()), "{name:?}"),
                None => assert_eq!(got, Err(NameError::Invalid((*name).to_owned())), "{name:?}"),
            }
        }
    }

    #[test]
    fn message() {
        assert_eq!(
            validate_name("/bad name").unwrap_err().to_string(),
            "Invalid container name (/bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        );
    }

    #[test]
    fn word_lists() {
        assert!(ADJECTIVES.len() >= 60, "{}", ADJECTIVES.len());
        assert!(SURNAMES.len() >= 150, "{}", SURNAMES.len());
        for list in [ADJECTIVES, SURNAMES] {
            let unique: HashSet<_> = list.iter().collect();
            assert_eq!(unique.len(), list.len(), "duplicates");
            for w in list {
                assert!(
                    !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()),
                    "{w:?}"
                );
            }
        }
    }

    #[test]
    fn random_names() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let name = random_name(0);
            let (adjective, surname) = name.split_once('_').expect("an underscore");
            assert!(ADJECTIVES.contains(&adjective), "{name}");
            assert!(SURNAMES.contains(&surname), "{name}");
            assert_eq!(validate_name(&name).as_deref(), Ok(name.as_str()));
            seen.insert(name);
        }
        // 200 draws from over 10,000 names: collisions are possible, but not many.
        assert!(seen.len() > 150, "{}", seen.len());

        let mut digits = HashSet::new();
        for retry in 1..200 {
            let name = random_name(retry);
            let last = name.chars().last().expect("not empty");
            assert!(last.is_ascii_digit(), "{name}");
            let (adjective, surname) = name[..name.len() - 1].split_once('_').expect("_");
            assert!(
                ADJECTIVES.contains(&adjective) && SURNAMES.contains(&surname),
                "{name}"
            );
            assert_eq!(validate_name(&name).as_deref(), Ok(name.as_str()));
            digits.insert(last);
        }
        assert!(digits.len() > 5, "{digits:?}");
    }

    #[test]
    fn below() {
        for n in [1, 2, 7, 10] {
            for _ in 0..100 {
                assert!(random_below(n) < n);
            }
        }
    }
}
