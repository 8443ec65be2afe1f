//! Log lines on stderr, alike in both executables (`berth`, `berth-registry`): berth's own
//! crates at the level asked for; the libraries under them (hyper, h2, tokio, rustls) stay
//! quiet, as their debug output would drown berth's.

use tracing_subscriber::{filter::Targets, prelude::*};

/// The crates whose events are shown.
const BERTH_CRATES: &[&str] = &[
    "berth",
    "berth_registry",
    "berth_api",
    "berth_build",
    "berth_distribution",
    "berth_dockerfile",
    "berth_engine",
    "berth_net",
    "berth_reference",
    "berth_runtime",
    "berth_store",
];

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
    let targets = Targets::new().with_targets(BERTH_CRATES.iter().map(|c| (*c, level)));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .with(targets)
        .init();
}
