//! berth-compose: multi-container applications from compose files.
//!
//! - [`yaml`]: the YAML tree (saphyr) with compose's tags and merge keys.
//! - [`interpolate`]: `${VAR:-default}` and the other forms.
//! - [`model`]: the Compose Specification's model, short forms made long.
//! - [`load`]: files, `.env`, merging, the checks; gives a [`load::Project`].
//! - [`plan`]: a service as the engine's create options, with Docker Compose's labels.
//! - [`ops`]: up, down, start, stop and the rest, on the engine.

pub mod interpolate;
pub mod load;
pub mod model;
pub mod ops;
pub mod plan;
pub mod yaml;

pub use load::{LoadOptions, Project, load};

/// An error of compose.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The files or the command line are wrong.
    #[error("{0}")]
    Invalid(String),
    /// From the engine.
    #[error(transparent)]
    Engine(#[from] berth_engine::EngineError),
    /// Something failed while running the project.
    #[error("{0}")]
    Failed(String),
}
