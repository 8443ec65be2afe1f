//! Fault injection for the crash-safety tests: with `BERTH_CRASH_AT=POINT` (or `POINT@N`,
//! the Nth time) the process kills itself with SIGKILL when it reaches that named point, so a
//! test can stop a pull, load, build, commit or removal exactly between two durable steps
//! and then check that the state root is still consistent. Without the variable a point
//! costs one load of a cached value.
//!
//! Points are named `<operation>.<step>`; `crates/cli/tests/crash_points.rs` kills at each.

use std::sync::{
    OnceLock,
    atomic::{AtomicUsize, Ordering},
};

/// The environment variable naming the point to die at.
pub const CRASH_AT_ENV: &str = "BERTH_CRASH_AT";

struct Target {
    point: String,
    /// Which arrival kills (1 = the first).
    nth: usize,
    arrivals: AtomicUsize,
}

fn target() -> Option<&'static Target> {
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let value = std::env::var(CRASH_AT_ENV).ok()?;
            let (point, nth) = match value.rsplit_once('@') {
                Some((point, n)) => (point.to_string(), n.parse().ok()?),
                None => (value, 1),
            };
            Some(Target {
                point,
                nth,
                arrivals: AtomicUsize::new(0),
            })
        })
        .as_ref()
}

/// Dies here, by SIGKILL (no destructors, no flushing: as a power cut or `kill -9` would
/// leave things), when `BERTH_CRASH_AT` names this point.
pub fn point(name: &str) {
    let Some(target) = target() else { return };
    if target.point == name && target.arrivals.fetch_add(1, Ordering::SeqCst) + 1 == target.nth {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; this is only reached if sending it failed.
        std::process::abort();
    }
}
