//! Registry authentication: `WWW-Authenticate` challenges (RFC 7235) and the token answers
//! of Docker's token protocol.
//!
//! A registry answers 401 with a challenge: `Basic realm="…"`, or `Bearer realm="…",
//! service="…",scope="…"`, which names a token server. The client then asks that server for a
//! token covering the scopes it needs (`repository:NAME:pull,push`), anonymously or with the
//! user's credentials, and repeats the request with `Authorization: Bearer TOKEN`.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

/// One authentication scheme a registry offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP Basic: send the credentials with each request.
    Basic,
    /// Docker's token protocol.
    Bearer {
        /// The token server's URL.
        realm: String,
        /// The `service` parameter to send it.
        service: Option<String>,
        /// A scope the registry says the request needed, if it said.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value into the challenges berth understands (others,
/// such as Negotiate, are skipped). Parameters are `key=value` or `key="quoted value"`,
/// separated by commas; a new scheme starts at a token followed by a space.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        let scheme_end = rest.find([' ', ',']).unwrap_or(rest.len());
        let scheme = &rest[..scheme_end];
        rest = rest[scheme_end..].trim_start_matches([' ', ',']);
        let mut params = BTreeMap::new();
        // Parameters follow until a token that is not followed by '=' (the next scheme).
        while let Some(eq) = rest.find('=') {
            let key = rest[..eq].trim();
            if key.is_empty() || key.contains([' ', ',']) {
                break;
            }
            let after = &rest[eq + 1..];
            let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, next)) = chars.next() {
                                value.push(next);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            };
            params.insert(key.to_ascii_lowercase(), value);
            rest = remaining.trim_start_matches([' ', ',']);
        }
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => out.push(Challenge::Basic),
            "bearer" => {
                if let Some(realm) = params.remove("realm") {
                    out.push(Challenge::Bearer {
                        realm,
                        service: params.remove("service"),
                        scope: params.remove("scope"),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// A token server's answer. Docker's servers send `token`, OAuth2 ones `access_token`;
/// either may be there.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token to send, if the answer had one.
    pub(crate) fn token(&self) -> Option<&str> {
        self.token
            .as_deref()
            .filter(|t| !t.is_empty())
            .or(self.access_token.as_deref().filter(|t| !t.is_empty()))
    }

    /// How long the token may be used. The spec's default is 60 seconds; a margin keeps a
    /// token from expiring in flight.
    pub(crate) fn lifetime(&self) -> Duration {
        let secs = self.expires_in.unwrap_or(60).max(60);
        Duration::from_secs(secs.saturating_sub(10))
    }
}

/// The scope a repository operation needs, in the token protocol's form.
pub fn repository_scope(repository: &str, actions: &[&str]) -> String {
    format!("repository:{repository}:{}", actions.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_challenge() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }]
        );
    }

    #[test]
    fn basic_and_several_schemes() {
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic]
        );
        let c = parse_challenges(
            r#"Negotiate, Basic realm="x", Bearer realm="http://t/token", service=reg"#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], Challenge::Basic);
        assert_eq!(
            c[1],
            Challenge::Bearer {
                realm: "http://t/token".into(),
                service: Some("reg".into()),
                scope: None
            }
        );
    }

    #[test]
    fn quoted_values_keep_commas_and_escapes() {
        let c = parse_challenges(
            r#"Bearer realm="http://t/token",scope="repository:a:pull,push repository:b:pull",service="s\"q""#,
        );
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "http://t/token".into(),
                service: Some("s\"q".into()),
                scope: Some("repository:a:pull,push repository:b:pull".into()),
            }]
        );
    }

    #[test]
    fn garbage_is_not_a_challenge() {
        assert!(parse_challenges("").is_empty());
        assert!(parse_challenges("Bearer").is_empty(), "no realm");
        assert!(parse_challenges("=,=\"").is_empty());
    }

    #[test]
    fn token_answers() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(t.token(), Some("a"));
        assert_eq!(t.lifetime(), Duration::from_secs(290));
        let t: TokenResponse = serde_json::from_str(r#"{"token":"","access_token":"b"}"#).unwrap();
        assert_eq!(t.token(), Some("b"));
        assert_eq!(t.lifetime(), Duration::from_secs(50));
    }
}
