//! The registry client: OCI distribution-spec 1.1 (and Docker's registry v2 protocol) over
//! HTTP/1.1 and HTTP/2 with rustls. Pulls images into the store, pushes them out of it, and
//! logs in with the credentials Docker keeps in `~/.docker/config.json`.

pub mod credentials;
