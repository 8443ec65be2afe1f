//! Log lines on stderr, alike in both executables (`berth`, `berth-registry`): berth's own
//! crates at the level asked for; the libraries under them (hyper, h2, tokio, rustls) stay
//! quiet, as their debug output would drown berth's.

use tracing_subscriber::{filter::Targets, prelude::*};

/// The events shown: every berth crate's (`Targets` matches a target by prefix, so
/// `berth` covers `berth_engine`, `berth_store`, ... and any crate added later).
const BERTH_TARGET: &str = "berth";

/// Docker's level names (`fatal` is `error` here).
pub fn parse_level(name: &str) -> Result<tracing::Level, String> {
    match name {
        "fatal" => Ok(tracing::Level::ERROR),
        other => other
            .parse()
            .map_err(|_| format!("invalid log level {other:?} (debug, info, warn, error, fatal)")),
    }
}

/// Starts logging at `level`.
pub fn init(level: tracing::Level) {
    let targets = Targets::new().with_target(BERTH_TARGET, level);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .with(targets)
        .init();
}
