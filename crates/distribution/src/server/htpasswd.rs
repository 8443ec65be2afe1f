//! htpasswd files with bcrypt hashes (`htpasswd -B`), as Docker's registry accepts them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

/// Users and their bcrypt hashes.
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// sha256 of "user:password" for credentials bcrypt already accepted, so that a client
    /// sending Basic auth on every request pays bcrypt's cost once, not per request.
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: no users")]
    Empty { path: String },
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: shown.clone(),
            source,
        })?;
        let htpasswd = Htpasswd::parse(&text).map_err(|(line, message)| HtpasswdError::Line {
            path: shown.clone(),
            line,
            message,
        })?;
        if htpasswd.users.is_empty() {
            return Err(HtpasswdError::Empty { path: shown });
        }
        Ok(htpasswd)
    }

    /// Parses `user:hash` lines; blank lines and `#` comments are skipped. Only bcrypt
    /// hashes are accepted: the others htpasswd can write (MD5, SHA-1, crypt) are weak.
    pub fn parse(text: &str) -> Result<Htpasswd, (usize, String)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((i + 1, "expected user:hash".to_owned()));
            };
            if !["$2y$", "$2a$", "$2b$", "$2x$"]
                .iter()
                .any(|p| hash.starts_with(p))
            {
                return Err((
                    i + 1,
                    format!("user {user:?}: only bcrypt hashes are supported (htpasswd -B)"),
                ));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashMap::new()),
        })
    }

    fn fingerprint(user: &str, password: &str) -> [u8; 32] {
        Sha256::digest(format!("{user}:{password}")).into()
    }

    /// Whether these credentials were verified before: cheap, no bcrypt.
    pub fn verified_before(&self, user: &str, password: &str) -> bool {
        let known = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .copied();
        known == Some(Self::fingerprint(user, password))
    }

    /// Whether the password is the user's. Blocking: bcrypt is slow by design. An unknown
    /// user costs one bcrypt too, so timing does not tell which users exist.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        if self.verified_before(user, password) {
            return true;
        }
        let Some(hash) = self.users.get(user) else {
            if let Some(any) = self.users.values().next() {
                let _ = bcrypt::verify(password, any);
            }
            return false;
        };
        let fingerprint = Self::fingerprint(user, password);
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(user.to_owned(), fingerprint);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_only() {
        // htpasswd -nbB alice secret (cost 5 keeps the test fast)
        let hash = bcrypt::hash_with_salt("secret", 5, [7u8; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let file = Htpasswd::parse(&format!("# team\nalice:{hash}\n\n")).unwrap();
        assert!(file.verify("alice", "secret"));
        assert!(file.verify("alice", "secret"), "second time from the cache");
        assert!(!file.verify("alice", "wrong"));
        assert!(!file.verify("bob", "secret"));
        let err = Htpasswd::parse("bob:$apr1$abc$def").err().unwrap();
        assert_eq!(err.0, 1);
        assert!(err.1.contains("bcrypt"), "{}", err.1);
        assert!(Htpasswd::parse("nocolon").is_err());
    }
}
