//! The registry client: OCI distribution-spec 1.1 (and Docker's registry v2 protocol) over
//! HTTP/1.1 and HTTP/2 with rustls. Pulls images into the store, pushes them out of it, and
//! logs in with the credentials Docker keeps in `~/.docker/config.json`. And the registry
//! server ([`server`], `berth registry serve`), which has its own storage and no store.
//!
//! Blocking I/O on threads: a pull or push is a handful of concurrent blob transfers, each
//! fed to or from the store's synchronous writers; reqwest's blocking client runs its own
//! small runtime underneath.

pub mod auth;
pub mod client;
pub mod config;
pub mod credentials;
mod error;
pub mod platform;
pub mod progress;
mod pull;
mod push;
pub mod server;

pub use client::{Access, Repository};
pub use config::{DOCKER_HUB_HOST, RegistryConfig};
pub use credentials::{Credential, DockerConfig};
pub use error::{DistributionError, Result};
pub use platform::Platform;
pub use progress::{LayerState, Progress, Silent};
pub use pull::{PullOptions, Pulled, pull_status};
pub use push::Pushed;

/// How berth reaches registries, and as whom: the registry configuration and the user's
/// Docker credentials.
pub struct Registries {
    /// Insecure registries, mirrors, certificates.
    pub config: RegistryConfig,
    /// `~/.docker/config.json`.
    pub credentials: DockerConfig,
    /// Credentials handed over with one request (the Engine API's `X-Registry-Auth`), by
    /// registry host ([`Registries::give`]): they win over stored ones.
    given: std::collections::BTreeMap<String, Credential>,
}

impl Registries {
    /// The system's registry configuration and the user's credentials.
    pub fn load() -> Result<Registries> {
        Ok(Registries {
            config: RegistryConfig::load()?,
            credentials: DockerConfig::load_default()?,
            given: Default::default(),
        })
    }

    /// Hands over a credential for a registry (a host, or a server address as clients
    /// name it: `https://index.docker.io/v1/` is Docker Hub) that wins over the stored one.
    pub fn give(&mut self, server: &str, credential: Credential) {
        self.given
            .insert(credentials::registry_host(server), credential);
    }

    /// The credential for a registry host: one given, or else the stored one.
    pub fn credential(&self, registry: &str) -> Result<Option<Credential>> {
        if let Some(given) = self.given.get(&credentials::registry_host(registry)) {
            return Ok(Some(given.clone()));
        }
        Ok(self.credentials.get(registry)?)
    }

    /// Opens a session with a repository, with its credential.
    pub fn open(
        &self,
        registry: &str,
        name: &str,
        access: Access,
        extra_pull: &[String],
    ) -> Result<Repository> {
        let credential = self.credential(registry)?;
        Repository::open(&self.config, registry, name, access, extra_pull, credential)
    }

    /// Checks a credential against a registry (`login`): the registry must accept it.
    pub fn check_login(&self, registry: &str, credential: &Credential) -> Result<()> {
        // The ping and a token for no particular repository: what `docker login` does.
        let repo = Repository::open(
            &self.config,
            registry,
            "",
            Access::Pull,
            &[],
            Some(credential.clone()),
        )?;
        repo.check_login()
    }
}
