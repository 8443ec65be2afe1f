//! Docker's credential store: `~/.docker/config.json` and its credential helpers.
//!
//! berth reads and writes the same file as the Docker CLI, so credentials from `docker login`
//! work for berth and `berth login` works for docker. Credentials live either in the file
//! (`auths`, base64 `user:password`) or in a `docker-credential-<name>` helper program named by
//! `credHelpers` (per registry) or `credsStore` (for all registries).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The key Docker files Docker Hub's credentials under (its v1 index, for history's sake).
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The user name a helper answers with when its secret is an identity token.
const TOKEN_USERNAME: &str = "<token>";

/// What helpers print (on stdout) when they hold nothing for a server.
const NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";

/// A credential for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A user name and password (or a personal access token used as one).
    Basic { username: String, password: String },
    /// An identity token (OAuth2 refresh token) that a token server takes instead of a password.
    IdentityToken { username: String, token: String },
}

// By hand so that secrets never reach logs through `{:?}`.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken { username, .. } => f
                .debug_struct("IdentityToken")
                .field("username", username)
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// Why the configuration or a credential helper failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Reading or writing the configuration file (or its directory) failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The configuration file is not JSON.
    #[error("{}: invalid JSON at line {line} column {column}: {message}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// The configuration file is JSON but not in Docker's shape (e.g. a bad `auth` value).
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// No `docker-credential-<name>` program on PATH.
    #[error("credential helper {program} not found in PATH")]
    HelperNotFound { program: String },
    /// The helper could not be started or talked to.
    #[error("{program} {action}: {source}")]
    HelperIo {
        program: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// The helper exited unsuccessfully; `output` is what it printed (helpers report on stdout).
    #[error("{program} {action}: {status}{}", colon_prefixed(output))]
    HelperFailed {
        program: String,
        action: &'static str,
        status: String,
        output: String,
    },
    /// The helper's answer to `get` is not the JSON of the protocol.
    #[error("{program} get: invalid answer: {source}")]
    HelperAnswer {
        program: String,
        #[source]
        source: serde_json::Error,
    },
}

/// `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`).
///
/// The file is kept as a JSON object, not a fixed struct, so that the many fields berth does not
/// know (`psFormat`, `proxies`, `plugins`, ...) come back unchanged when it is written.
pub struct DockerConfig {
    path: PathBuf,
    json: Map<String, Value>,
    /// The PATH to find helpers in; `None` is the process's `PATH` (tests pass their own so
    /// that they need not change the environment of the whole test process).
    search_path: Option<OsString>,
    /// A helper found on PATH when the file names none, as docker picks one (`pass`,
    /// `secretservice`, ...); written into the file as `credsStore` on the next save, as docker
    /// does.
    detected_store: Option<String>,
}

// By hand: the JSON holds secrets.
impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .field("creds_store", &self.creds_store())
            .finish_non_exhaustive()
    }
}

/// The JSON of the helper protocol, both `store`'s input and `get`'s output.
#[derive(Serialize, Deserialize)]
struct HelperCredential {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

impl DockerConfig {
    /// The directory Docker uses: `$DOCKER_CONFIG`, else `$HOME/.docker`.
    pub fn default_dir() -> PathBuf {
        match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            // home_dir looks at $HOME first, then the password database.
            _ => std::env::home_dir()
                .unwrap_or_else(|| PathBuf::from("/"))
                .join(".docker"),
        }
    }

    /// Reads `dir/config.json`; a missing file is an empty config.
    pub fn load(dir: &Path) -> Result<DockerConfig, CredentialsError> {
        Self::load_with_search_path(dir, None)
    }

    /// Reads the config in [`DockerConfig::default_dir`]. When it names no `credsStore`, a
    /// platform helper on PATH is used as docker does (`pass` or `secretservice` on Linux), so
    /// that berth and docker keep credentials in the same place.
    pub fn load_default() -> Result<DockerConfig, CredentialsError> {
        let mut config = Self::load(&Self::default_dir())?;
        if config.creds_store().is_none() {
            config.detected_store = detect_default_store(config.search_path.as_deref());
        }
        Ok(config)
    }

    fn load_with_search_path(
        dir: &Path,
        search_path: Option<OsString>,
    ) -> Result<DockerConfig, CredentialsError> {
        let path = dir.join("config.json");
        let json = match fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Map::new(),
            Err(source) => return Err(CredentialsError::Io { path, source }),
        };
        Ok(DockerConfig {
            path,
            json,
            search_path,
            detected_store: None,
        })
    }

    /// The credential for a registry host (`127.0.0.1:5000`, `ghcr.io`; `docker.io` is looked
    /// up under Docker's key `https://index.docker.io/v1/`).
    ///
    /// As docker: when a helper applies (`credHelpers[host]`, else `credsStore`) its answer is
    /// the answer, and `auths` is not consulted; otherwise `auths[host]` (its `identitytoken`,
    /// else its `auth` or `username`/`password`). Keys of `auths` written as URLs
    /// (`https://host/v1/`) match their host. A helper that holds nothing gives `None`.
    pub fn get(&self, host: &str) -> Result<Option<Credential>, CredentialsError> {
        let key = config_key(host);
        if let Some(helper) = self.helper_for(&key) {
            return self.helper_get(helper, &key);
        }
        let Some((entry_key, entry)) = self.find_auth(&key) else {
            return Ok(None);
        };
        self.entry_credential(entry_key, entry)
    }

    /// Stores a credential as `docker login` does: through the helper when one applies (and an
    /// empty `auths[host]` entry in the file, which docker uses to list logins), else as base64
    /// `auth` in `auths`. Other fields of the file are kept; the file is replaced atomically.
    pub fn store(&mut self, host: &str, credential: &Credential) -> Result<(), CredentialsError> {
        let key = config_key(host);
        let mut entry = Map::new();
        if let Some(helper) = self.helper_for(&key) {
            let (username, secret) = match credential {
                Credential::Basic { username, password } => (username.clone(), password.clone()),
                Credential::IdentityToken { token, .. } => {
                    (TOKEN_USERNAME.to_owned(), token.clone())
                }
            };
            let input = HelperCredential {
                server_url: key.clone(),
                username,
                secret,
            };
            // Serializing three strings cannot fail.
            let input = serde_json::to_vec(&input).expect("helper credential serializes");
            self.run_helper(helper, "store", &input)?;
        } else {
            match credential {
                Credential::Basic { username, password } => {
                    entry.insert("auth".into(), encode_auth(username, password).into());
                }
                Credential::IdentityToken { username, token } => {
                    // As docker: the user name rides in `auth` with an empty password.
                    if !username.is_empty() {
                        entry.insert("auth".into(), encode_auth(username, "").into());
                    }
                    entry.insert("identitytoken".into(), token.clone().into());
                }
            }
        }
        self.auths_mut()?.insert(key, Value::Object(entry));
        self.save()
    }

    /// Removes a registry's credential: its `auths` entries (URL-form keys too) and what the
    /// helper that applies holds. Returns whether there was one: an entry in the file, or a
    /// helper `erase` that succeeded (helpers answer "not found" when they hold nothing).
    pub fn erase(&mut self, host: &str) -> Result<bool, CredentialsError> {
        let key = config_key(host);
        let matched: Vec<String> = self
            .auths()
            .map(|auths| {
                auths
                    .keys()
                    .filter(|k| **k == key || config_key(k) == key)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();

        // Helpers first: should one fail, the file still lists the login, as with docker.
        let mut existed = !matched.is_empty();
        let mut helper_keys = vec![key.clone()];
        helper_keys.extend(matched.iter().filter(|k| **k != key).cloned());
        for k in &helper_keys {
            if let Some(helper) = self.helper_for(k) {
                match self.run_helper(helper, "erase", k.as_bytes()) {
                    Ok(_) => existed = true,
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }

        if !matched.is_empty() {
            let auths = self.auths_mut()?;
            for k in &matched {
                auths.remove(k);
            }
            self.save()?;
        }
        Ok(existed)
    }

    /// Where the file is (for messages like Docker's warning about unencrypted storage).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether credentials for `host` would be stored unencrypted in the file (no helper
    /// applies).
    pub fn stores_in_file(&self, host: &str) -> bool {
        self.helper_for(&config_key(host)).is_none()
    }

    /// The helper for a key, as docker chooses it: `credHelpers[key]` when present (an empty
    /// name there means the file, even with a `credsStore`), else `credsStore`.
    fn helper_for(&self, key: &str) -> Option<&str> {
        if let Some(helper) = self.json.get("credHelpers").and_then(|h| h.get(key)) {
            return helper.as_str().filter(|h| !h.is_empty());
        }
        self.creds_store()
    }

    fn creds_store(&self) -> Option<&str> {
        match self.json.get("credsStore").and_then(Value::as_str) {
            Some(store) if !store.is_empty() => Some(store),
            _ => self.detected_store.as_deref(),
        }
    }

    fn auths(&self) -> Option<&Map<String, Value>> {
        self.json.get("auths").and_then(Value::as_object)
    }

    fn auths_mut(&mut self) -> Result<&mut Map<String, Value>, CredentialsError> {
        let auths = self
            .json
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if auths.is_null() {
            *auths = Value::Object(Map::new());
        }
        auths
            .as_object_mut()
            .ok_or_else(|| CredentialsError::Invalid {
                path: self.path.clone(),
                message: "\"auths\" is not an object".into(),
            })
    }

    /// The `auths` entry for a key: the key itself, else the first whose host matches (older
    /// docker wrote `https://host/v1/` or `http://host`).
    fn find_auth(&self, key: &str) -> Option<(&str, &Value)> {
        let auths = self.auths()?;
        if let Some((k, entry)) = auths.get_key_value(key) {
            return Some((k.as_str(), entry));
        }
        auths
            .iter()
            .find(|(k, _)| config_key(k) == key)
            .map(|(k, v)| (k.as_str(), v))
    }

    fn entry_credential(
        &self,
        entry_key: &str,
        entry: &Value,
    ) -> Result<Option<Credential>, CredentialsError> {
        let invalid = |message: String| CredentialsError::Invalid {
            path: self.path.clone(),
            message: format!("auths[{entry_key:?}]: {message}"),
        };
        let Some(entry) = entry.as_object() else {
            return Err(invalid("not an object".into()));
        };
        auth_entry_credential(entry).map_err(invalid)
    }

    fn helper_get(&self, helper: &str, key: &str) -> Result<Option<Credential>, CredentialsError> {
        let output = match self.run_helper(helper, "get", key.as_bytes()) {
            Ok(output) => output,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let answer: HelperCredential =
            serde_json::from_slice(&output).map_err(|source| CredentialsError::HelperAnswer {
                program: helper_program(helper),
                source,
            })?;
        Ok(match answer {
            HelperCredential {
                username, secret, ..
            } if username == TOKEN_USERNAME => Some(Credential::IdentityToken {
                username: String::new(),
                token: secret,
            }),
            HelperCredential {
                username, secret, ..
            } if username.is_empty() && secret.is_empty() => None,
            HelperCredential {
                username, secret, ..
            } => Some(Credential::Basic {
                username,
                password: secret,
            }),
        })
    }

    /// Runs `docker-credential-<helper> <action>` with `input` on stdin; returns its stdout.
    fn run_helper(
        &self,
        helper: &str,
        action: &'static str,
        input: &[u8],
    ) -> Result<Vec<u8>, CredentialsError> {
        let program = helper_program(helper);
        let search_path = self
            .search_path
            .clone()
            .or_else(|| std::env::var_os("PATH"));
        let Some(exe) = find_in_path(&program, search_path.as_deref()) else {
            return Err(CredentialsError::HelperNotFound { program });
        };
        let io_err = |source| CredentialsError::HelperIo {
            program: program.clone(),
            action,
            source,
        };

        let mut attempts = 0;
        let mut child = loop {
            let spawned = Command::new(&exe)
                .arg(action)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            match spawned {
                // A helper being written (installed) as we start it: try again shortly.
                Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other.map_err(io_err)?,
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            // The input is far smaller than a pipe's buffer, so this cannot block; a helper that
            // exits without reading (on an error) closes the pipe: its status tells why.
            match stdin.write_all(input) {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(io_err(e)),
                _ => {}
            }
        }
        let output = child.wait_with_output().map_err(io_err)?;
        if output.status.success() {
            return Ok(output.stdout);
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let printed: Vec<&str> = [stdout.trim(), stderr.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let status = match (output.status.code(), output.status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => output.status.to_string(),
        };
        Err(CredentialsError::HelperFailed {
            program,
            action,
            status,
            output: printed.join(": "),
        })
    }

    /// Writes the file as docker does (tab-indented JSON), atomically: a temporary file in the
    /// same directory renamed over it, so a crash never leaves half a config. A symlinked
    /// config.json is written through (its target replaced), as docker does.
    fn save(&mut self) -> Result<(), CredentialsError> {
        // Only while the file names no store (an empty name is none, to docker too).
        if let Some(store) = &self.detected_store
            && self
                .json
                .get("credsStore")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        {
            self.json
                .insert("credsStore".into(), Value::String(store.clone()));
        }
        self.json
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));

        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CredentialsError::Io { path, source }
        };
        let target = resolve_symlink(&self.path);
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(&dir))?;

        let mut bytes = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut bytes, formatter);
        // A map of JSON values always serializes.
        self.json.serialize(&mut ser).expect("JSON map serializes");

        let mut temp = tempfile::Builder::new()
            .prefix(".config.json")
            .tempfile_in(&dir)
            .map_err(io_err(&dir))?;
        let temp_path = temp.path().to_path_buf();
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err(&temp_path))?;
        temp.write_all(&bytes).map_err(io_err(&temp_path))?;
        temp.as_file().sync_all().map_err(io_err(&temp_path))?;
        temp.persist(&target)
            .map_err(|e| io_err(&target)(e.error))?;
        tracing::debug!(path = %target.display(), "wrote docker config");
        Ok(())
    }
}

/// The key Docker files a registry under: `https://index.docker.io/v1/` for docker.io (and
/// index.docker.io, registry-1.docker.io), the host itself otherwise. URL forms
/// (`https://host/v1/`) give their host.
pub fn config_key(host: &str) -> String {
    match registry_host(host).as_str() {
        "docker.io" => DOCKER_HUB_KEY.to_owned(),
        other => other.to_owned(),
    }
}

/// The registry a `login`/`logout` argument names, as references name it: URL forms give
/// their host (`https://host:5000/v1/` -> `host:5000`), Docker Hub's aliases `docker.io`.
pub fn registry_host(address: &str) -> String {
    match convert_to_hostname(address.trim()) {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        other => other.to_owned(),
    }
}

/// The host part of a registry address that may be written as a URL: the scheme, user info
/// and path go, the port stays (what docker's `ConvertToHostname` does).
fn convert_to_hostname(address: &str) -> &str {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

fn helper_program(helper: &str) -> String {
    format!("docker-credential-{helper}")
}

fn is_not_found(err: &CredentialsError) -> bool {
    matches!(err, CredentialsError::HelperFailed { output, .. }
        if output.contains(NOT_FOUND_MESSAGE))
}

/// `": text"`, or nothing for no text (so an error without output ends with its status).
fn colon_prefixed(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

fn encode_auth(username: &str, password: &str) -> String {
    STANDARD.encode(format!("{username}:{password}"))
}

/// The credential of Docker's `AuthConfig` shape, as `config.json`'s `auths` entries and the
/// Engine API's `X-Registry-Auth` carry it: `auth` (base64 `user:password`) or `username`
/// and `password`, with `identitytoken` winning. `None` when it holds nothing (the docker CLI
/// sends `{}` when it has no login).
pub fn auth_entry_credential(entry: &Map<String, Value>) -> Result<Option<Credential>, String> {
    let field = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or("");
    let (username, password) = match field("auth") {
        "" => (field("username").to_owned(), field("password").to_owned()),
        auth => decode_auth(auth)?,
    };
    let token = field("identitytoken");
    if !token.is_empty() {
        return Ok(Some(Credential::IdentityToken {
            username,
            token: token.to_owned(),
        }));
    }
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential::Basic { username, password }))
}

/// `auth` is base64 of `user:password`; docker trims NULs some old tools left at the end.
fn decode_auth(auth: &str) -> Result<(String, String), String> {
    let bytes = STANDARD_PAD_INDIFFERENT
        .decode(auth.trim())
        .map_err(|e| format!("\"auth\" is not base64: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "\"auth\" is not UTF-8".to_owned())?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| "\"auth\" is not of the form user:password".to_owned())?;
    Ok((username.to_owned(), password.trim_matches('\0').to_owned()))
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Map<String, Value>, CredentialsError> {
    // Docker takes an empty file for an empty config.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        let full = e.to_string();
        let message = full
            .strip_suffix(&format!(" at line {line} column {column}"))
            .unwrap_or(&full)
            .to_owned();
        CredentialsError::Json {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    })?;
    let invalid = |message: &str| CredentialsError::Invalid {
        path: path.to_path_buf(),
        message: message.to_owned(),
    };
    let Value::Object(map) = value else {
        return Err(invalid("not a JSON object"));
    };
    for (field, what) in [("auths", "an object"), ("credHelpers", "an object")] {
        if map
            .get(field)
            .is_some_and(|v| !v.is_object() && !v.is_null())
        {
            return Err(invalid(&format!("{field:?} is not {what}")));
        }
    }
    if map
        .get("credsStore")
        .is_some_and(|v| !v.is_string() && !v.is_null())
    {
        return Err(invalid("\"credsStore\" is not a string"));
    }
    Ok(map)
}

/// The file a symlinked config.json points at (dangling links too: docker creates the target).
fn resolve_symlink(path: &Path) -> PathBuf {
    if let Ok(real) = fs::canonicalize(path) {
        return real;
    }
    match fs::read_link(path) {
        Ok(target) => path.parent().unwrap_or(Path::new("")).join(target),
        Err(_) => path.to_path_buf(),
    }
}

/// An executable `program` in a PATH-like list of directories.
fn find_in_path(program: &str, search_path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(search_path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The helper docker uses when the config names none, if it is installed.
fn detect_default_store(search_path: Option<&OsStr>) -> Option<String> {
    let path = search_path
        .map(OsStr::to_os_string)
        .or_else(|| std::env::var_os("PATH"));
    let platform = if cfg!(target_os = "macos") {
        "osxkeychain"
    } else if cfg!(windows) {
        "wincred"
    } else if find_in_path("pass", path.as_deref()).is_some() {
        "pass"
    } else {
        "secretservice"
    };
    find_in_path(&helper_program(platform), path.as_deref()).map(|_| platform.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(dir: &Path, json: &str) {
        fs::write(dir.join("config.json"), json).unwrap();
    }

    fn read_config(dir: &Path) -> Value {
        serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap()
    }

    fn basic(username: &str, password: &str) -> Credential {
        Credential::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    /// A fake helper keeping credentials as files in `<bin>/state`, one per server URL; it
    /// answers as the real ones do, "not found" on stdout with status 1.
    const FAKE_HELPER: &str = r#"#!/bin/sh
state="$(dirname "$0")/state"
mkdir -p "$state"
input=$(cat)
case "$1" in
store)
    url=$(printf '%s' "$input" | sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p')
    printf '%s' "$input" > "$state/$(printf '%s' "$url" | tr '/:' '__')"
    ;;
get|erase)
    file="$state/$(printf '%s' "$input" | tr '/:' '__')"
    if [ ! -f "$file" ]; then
        echo "credentials not found in native keychain"
        exit 1
    fi
    if [ "$1" = get ]; then cat "$file"; else rm "$file"; fi
    ;;
*)
    echo "unknown action $1" >&2
    exit 2
    ;;
esac
"#;

    /// A temp dir with config.json's directory and a `bin` holding helper scripts.
    struct Env {
        _temp: tempfile::TempDir,
        config_dir: PathBuf,
        bin: PathBuf,
    }

    impl Env {
        fn new() -> Env {
            let temp = tempfile::tempdir().unwrap();
            let config_dir = temp.path().join("docker");
            let bin = temp.path().join("bin");
            fs::create_dir(&config_dir).unwrap();
            fs::create_dir(&bin).unwrap();
            Env {
                _temp: temp,
                config_dir,
                bin,
            }
        }

        fn helper(&self, name: &str, script: &str) {
            let path = self.bin.join(format!("docker-credential-{name}"));
            fs::write(&path, script).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }

        fn load(&self) -> DockerConfig {
            DockerConfig::load_with_search_path(&self.config_dir, Some(self.bin.clone().into()))
                .unwrap()
        }

        fn helper_state(&self, key: &str) -> Option<Value> {
            let file = self.bin.join("state").join(key.replace(['/', ':'], "_"));
            fs::read(file)
                .ok()
                .map(|b| serde_json::from_slice(&b).unwrap())
        }
    }

    #[test]
    fn config_keys() {
        for host in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            DOCKER_HUB_KEY,
        ] {
            assert_eq!(config_key(host), DOCKER_HUB_KEY, "{host}");
        }
        assert_eq!(config_key("ghcr.io"), "ghcr.io");
        assert_eq!(config_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(
            config_key("https://registry.example.com/v1/"),
            "registry.example.com"
        );
        assert_eq!(config_key("http://localhost:5000"), "localhost:5000");
        assert_eq!(
            config_key("registry.example.com/v2/"),
            "registry.example.com"
        );
    }

    #[test]
    fn missing_and_empty_files_are_empty_configs() {
        let env = Env::new();
        let config = env.load();
        assert_eq!(config.get("ghcr.io").unwrap(), None);
        assert_eq!(config.path(), env.config_dir.join("config.json"));
        write_config(&env.config_dir, "\n");
        assert_eq!(env.load().get("ghcr.io").unwrap(), None);
    }

    #[test]
    fn reads_auth_username_password_and_identity_token() {
        let env = Env::new();
        let auth = STANDARD.encode("alice:s3cr:et");
        write_config(
            &env.config_dir,
            &format!(
                r#"{{
                "auths": {{
                    "ghcr.io": {{ "auth": "{auth}" }},
                    "quay.io": {{ "username": "bob", "password": "pw" }},
                    "registry.example.com": {{ "auth": "{}", "identitytoken": "refresh" }},
                    "empty.example.com": {{}}
                }}
            }}"#,
                STANDARD.encode("carol:")
            ),
        );
        let config = env.load();
        assert_eq!(
            config.get("ghcr.io").unwrap(),
            Some(basic("alice", "s3cr:et"))
        );
        assert_eq!(config.get("quay.io").unwrap(), Some(basic("bob", "pw")));
        assert_eq!(
            config.get("registry.example.com").unwrap(),
            Some(Credential::IdentityToken {
                username: "carol".into(),
                token: "refresh".into()
            })
        );
        assert_eq!(config.get("empty.example.com").unwrap(), None);
        assert_eq!(config.get("other.example.com").unwrap(), None);
    }

    #[test]
    fn url_form_keys_and_docker_hub() {
        let env = Env::new();
        write_config(
            &env.config_dir,
            &format!(
                r#"{{ "auths": {{
                    "https://registry.example.com/v1/": {{ "auth": "{}" }},
                    "http://localhost:5000": {{ "auth": "{}" }},
                    "https://index.docker.io/v1/": {{ "auth": "{}" }}
                }} }}"#,
                STANDARD.encode("a:1"),
                STANDARD.encode("b:2"),
                STANDARD.encode("hub:3"),
            ),
        );
        let config = env.load();
        assert_eq!(
            config.get("registry.example.com").unwrap(),
            Some(basic("a", "1"))
        );
        assert_eq!(config.get("localhost:5000").unwrap(), Some(basic("b", "2")));
        assert_eq!(config.get("localhost").unwrap(), None);
        for hub in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert_eq!(config.get(hub).unwrap(), Some(basic("hub", "3")), "{hub}");
        }
    }

    #[test]
    fn invalid_files_name_the_file() {
        let env = Env::new();
        write_config(&env.config_dir, "{\n  \"auths\": {\n    \"x\": ,\n  }\n}");
        let Err(err) = DockerConfig::load(&env.config_dir) else {
            panic!("loaded")
        };
        let message = err.to_string();
        let path = env.config_dir.join("config.json");
        assert!(
            message.starts_with(&format!(
                "{}: invalid JSON at line 3 column 10: ",
                path.display()
            )),
            "{message}"
        );

        write_config(
            &env.config_dir,
            r#"{ "auths": { "ghcr.io": { "auth": "!!!" } } }"#,
        );
        let err = env.load().get("ghcr.io").unwrap_err().to_string();
        assert!(
            err.contains("auths[\"ghcr.io\"]: \"auth\" is not base64"),
            "{err}"
        );

        write_config(&env.config_dir, r#"{ "auths": [] }"#);
        let Err(err) = DockerConfig::load(&env.config_dir) else {
            panic!("loaded")
        };
        assert!(
            err.to_string().ends_with("\"auths\" is not an object"),
            "{err}"
        );
    }

    #[test]
    fn store_and_erase_keep_unknown_fields() {
        let env = Env::new();
        write_config(
            &env.config_dir,
            r#"{
                "psFormat": "table {{.ID}}",
                "proxies": { "default": { "httpProxy": "http://proxy:3128" } },
                "auths": { "quay.io": { "auth": "Ym9iOnB3" } }
            }"#,
        );
        let mut config = env.load();
        config.store("ghcr.io", &basic("alice", "pw")).unwrap();
        config.store("docker.io", &basic("hub", "pw2")).unwrap();

        let json = read_config(&env.config_dir);
        assert_eq!(json["psFormat"], "table {{.ID}}");
        assert_eq!(json["proxies"]["default"]["httpProxy"], "http://proxy:3128");
        assert_eq!(
            json["auths"]["ghcr.io"],
            serde_json::json!({ "auth": "YWxpY2U6cHc=" })
        );
        assert!(json["auths"][DOCKER_HUB_KEY]["auth"].is_string());
        // Docker's layout: tab-indented, fields in their original order.
        let text = fs::read_to_string(env.config_dir.join("config.json")).unwrap();
        assert!(text.starts_with("{\n\t\"psFormat\""), "{text}");

        let mode = fs::metadata(env.config_dir.join("config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let mut config = env.load();
        assert_eq!(config.get("ghcr.io").unwrap(), Some(basic("alice", "pw")));
        assert_eq!(config.get("docker.io").unwrap(), Some(basic("hub", "pw2")));
        assert_eq!(config.get("quay.io").unwrap(), Some(basic("bob", "pw")));

        assert!(config.erase("ghcr.io").unwrap());
        assert!(!config.erase("ghcr.io").unwrap());
        let json = read_config(&env.config_dir);
        assert!(json["auths"].get("ghcr.io").is_none());
        assert_eq!(json["psFormat"], "table {{.ID}}");
        assert_eq!(env.load().get("ghcr.io").unwrap(), None);
        assert_eq!(env.load().get("quay.io").unwrap(), Some(basic("bob", "pw")));
    }

    #[test]
    fn store_creates_the_directory_private() {
        let env = Env::new();
        let dir = env.config_dir.join("nested");
        let mut config = DockerConfig::load(&dir).unwrap();
        assert!(config.stores_in_file("ghcr.io"));
        let token = Credential::IdentityToken {
            username: "alice".into(),
            token: "tok".into(),
        };
        config.store("ghcr.io", &token).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let file_mode = fs::metadata(dir.join("config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(file_mode & 0o777, 0o600);
        assert_eq!(
            DockerConfig::load(&dir).unwrap().get("ghcr.io").unwrap(),
            Some(token)
        );
        // No temporary files left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn erase_removes_url_form_keys() {
        let env = Env::new();
        write_config(
            &env.config_dir,
            r#"{ "auths": { "https://registry.example.com/v1/": { "auth": "YTox" },
                            "registry.example.com": { "auth": "YToy" } } }"#,
        );
        let mut config = env.load();
        assert!(config.erase("registry.example.com").unwrap());
        assert_eq!(read_config(&env.config_dir)["auths"], serde_json::json!({}));
    }

    #[test]
    fn symlinked_config_is_written_through() {
        let env = Env::new();
        let real = env.config_dir.join("real.json");
        fs::write(&real, r#"{ "psFormat": "x" }"#).unwrap();
        std::os::unix::fs::symlink("real.json", env.config_dir.join("config.json")).unwrap();
        env.load().store("ghcr.io", &basic("a", "b")).unwrap();
        assert!(
            fs::symlink_metadata(env.config_dir.join("config.json"))
                .unwrap()
                .is_symlink()
        );
        let json: Value = serde_json::from_slice(&fs::read(&real).unwrap()).unwrap();
        assert_eq!(json["psFormat"], "x");
        assert_eq!(env.load().get("ghcr.io").unwrap(), Some(basic("a", "b")));
    }

    #[test]
    fn creds_store_round_trip() {
        let env = Env::new();
        env.helper("test", FAKE_HELPER);
        write_config(
            &env.config_dir,
            r#"{ "credsStore": "test", "psFormat": "x" }"#,
        );
        let mut config = env.load();
        assert!(!config.stores_in_file("ghcr.io"));
        assert_eq!(config.get("ghcr.io").unwrap(), None);

        config.store("ghcr.io", &basic("alice", "pw")).unwrap();
        assert_eq!(
            env.helper_state("ghcr.io").unwrap(),
            serde_json::json!({ "ServerURL": "ghcr.io", "Username": "alice", "Secret": "pw" })
        );
        // The file lists the login, without the secret, as docker's does.
        let json = read_config(&env.config_dir);
        assert_eq!(json["auths"], serde_json::json!({ "ghcr.io": {} }));
        assert_eq!(json["psFormat"], "x");
        assert_eq!(
            env.load().get("ghcr.io").unwrap(),
            Some(basic("alice", "pw"))
        );

        // Docker Hub goes to the helper under its URL key; identity tokens as "<token>".
        let token = Credential::IdentityToken {
            username: String::new(),
            token: "tok".into(),
        };
        config.store("docker.io", &token).unwrap();
        assert_eq!(
            env.helper_state(DOCKER_HUB_KEY).unwrap()["Username"],
            "<token>"
        );
        assert_eq!(config.get("docker.io").unwrap(), Some(token));

        assert!(config.erase("ghcr.io").unwrap());
        assert!(env.helper_state("ghcr.io").is_none());
        assert_eq!(config.get("ghcr.io").unwrap(), None);
        assert!(!config.erase("ghcr.io").unwrap());
        assert!(
            read_config(&env.config_dir)["auths"]
                .get("ghcr.io")
                .is_none()
        );
    }

    #[test]
    fn cred_helpers_take_precedence() {
        let env = Env::new();
        env.helper("test", FAKE_HELPER);
        write_config(
            &env.config_dir,
            &format!(
                r#"{{ "credsStore": "missing",
                     "credHelpers": {{ "ghcr.io": "test", "quay.io": "" }},
                     "auths": {{ "ghcr.io": {{ "auth": "{}" }},
                                "quay.io": {{ "auth": "{}" }} }} }}"#,
                STANDARD.encode("in:file"),
                STANDARD.encode("bob:pw"),
            ),
        );
        let mut config = env.load();
        // With a helper, docker asks only the helper: the file's credential is not used.
        assert_eq!(config.get("ghcr.io").unwrap(), None);
        config.store("ghcr.io", &basic("alice", "pw")).unwrap();
        assert_eq!(config.get("ghcr.io").unwrap(), Some(basic("alice", "pw")));
        assert_eq!(
            read_config(&env.config_dir)["auths"]["ghcr.io"],
            serde_json::json!({})
        );

        // An empty helper name means the file, whatever credsStore says.
        assert!(config.stores_in_file("quay.io"));
        assert_eq!(config.get("quay.io").unwrap(), Some(basic("bob", "pw")));

        // Every other host goes to credsStore, which is not installed.
        assert!(!config.stores_in_file("other.example.com"));
        let err = config.get("other.example.com").unwrap_err().to_string();
        assert_eq!(
            err,
            "credential helper docker-credential-missing not found in PATH"
        );
    }

    #[test]
    fn helper_failures_are_reported() {
        let env = Env::new();
        env.helper(
            "broken",
            "#!/bin/sh\ncat >/dev/null\necho 'gpg: decryption failed' >&2\nexit 3\n",
        );
        env.helper("garbage", "#!/bin/sh\ncat >/dev/null\necho 'not json'\n");
        write_config(
            &env.config_dir,
            r#"{ "credHelpers": { "ghcr.io": "broken", "quay.io": "garbage" } }"#,
        );
        let mut config = env.load();
        let err = config.get("ghcr.io").unwrap_err().to_string();
        assert_eq!(
            err,
            "docker-credential-broken get: exit status 3: gpg: decryption failed"
        );
        let err = config
            .store("ghcr.io", &basic("a", "b"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("docker-credential-broken store: exit status 3"),
            "{err}"
        );
        // A failed store leaves the file alone.
        assert!(
            !env.config_dir.join("config.json").exists()
                || read_config(&env.config_dir)["auths"]
                    .get("ghcr.io")
                    .is_none()
        );
        let err = config.get("quay.io").unwrap_err().to_string();
        assert!(
            err.starts_with("docker-credential-garbage get: invalid answer: "),
            "{err}"
        );
    }

    #[test]
    fn detects_installed_default_store() {
        let env = Env::new();
        assert_eq!(detect_default_store(Some(env.bin.as_os_str())), None);
        env.helper("secretservice", FAKE_HELPER);
        let detected = detect_default_store(Some(env.bin.as_os_str()));
        assert_eq!(detected.as_deref(), Some("secretservice"));

        // As docker: the detected store is used, and written into the file on the next save.
        let mut config = env.load();
        config.detected_store = detected;
        assert!(!config.stores_in_file("ghcr.io"));
        config.store("ghcr.io", &basic("a", "b")).unwrap();
        assert_eq!(env.helper_state("ghcr.io").unwrap()["Secret"], "b");
        let json = read_config(&env.config_dir);
        assert_eq!(json["credsStore"], "secretservice");
        assert_eq!(json["auths"]["ghcr.io"], serde_json::json!({}));
    }

    #[test]
    fn debug_hides_secrets() {
        let text = format!("{:?}", basic("alice", "hunter2"));
        assert!(
            text.contains("alice") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
