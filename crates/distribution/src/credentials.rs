//! Placeholder until the credential store lands (same API).
use std::path::{Path, PathBuf};

/// A credential for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A user name and password.
    Basic {
        /// User.
        username: String,
        /// Password.
        password: String,
    },
    /// An identity token.
    IdentityToken {
        /// User.
        username: String,
        /// Token.
        token: String,
    },
}

/// Errors.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Any.
    #[error("{0}")]
    Other(String),
}

/// config.json.
pub struct DockerConfig {
    path: PathBuf,
}

impl DockerConfig {
    /// Default dir.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root/.docker"))
    }
    /// Load.
    pub fn load(dir: &Path) -> Result<DockerConfig, CredentialsError> {
        Ok(DockerConfig {
            path: dir.join("config.json"),
        })
    }
    /// Load default.
    pub fn load_default() -> Result<DockerConfig, CredentialsError> {
        Self::load(&Self::default_dir())
    }
    /// Get.
    pub fn get(&self, _host: &str) -> Result<Option<Credential>, CredentialsError> {
        Ok(None)
    }
    /// Store.
    pub fn store(&mut self, _host: &str, _c: &Credential) -> Result<(), CredentialsError> {
        Ok(())
    }
    /// Erase.
    pub fn erase(&mut self, _host: &str) -> Result<bool, CredentialsError> {
        Ok(false)
    }
    /// Path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Whether in file.
    pub fn stores_in_file(&self, _host: &str) -> bool {
        true
    }
}

/// Key.
pub fn config_key(host: &str) -> String {
    if host == "docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        host.into()
    }
}
