//! Health checks (`HEALTHCHECK`, `--health-cmd`, the Engine API's `Healthcheck`): while a
//! container runs, its check runs in it as an exec at the configured interval, and the
//! outcome (`starting`, `healthy`, `unhealthy`, the failing streak, the last five results)
//! goes into its record's `State.Health`, as dockerd keeps it. `ps` shows it in the status
//! (`Up 3 minutes (healthy)`), and a change of status is an event (`health_status: healthy`).
//!
//! The checker is a thread beside whatever waits for the container (its monitor, or a
//! foreground `berth run`), with an engine handle of its own; it stops when the run ends.

use std::{
    io::Read,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{ContainerRecord, Engine, EngineError, exec::ExecOptions};

/// Docker's defaults for the fields a check leaves at zero.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
/// How many results `State.Health.Log` keeps, and how much of each one's output.
const KEPT_RESULTS: usize = 5;
const KEPT_OUTPUT: usize = 4096;
/// How often a waiting checker looks whether the run has ended.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Docker's `HealthConfig` (durations in nanoseconds; zero means the default, or the
/// image's when merged).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    /// `["CMD", arg...]`, `["CMD-SHELL", command]`, `["NONE"]` (no check), or empty (the
    /// image's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// Time between two checks.
    #[serde(skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// How long a check may take.
    #[serde(skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// A time after the start when failures do not count.
    #[serde(skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// Time between two checks during the start period.
    #[serde(skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    /// Failures in a row that make the container unhealthy.
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl HealthConfig {
    /// dockerd's checks, with its messages.
    pub fn validate(&self) -> Result<(), EngineError> {
        for (name, value) in [
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
            ("StartInterval", self.start_interval),
        ] {
            if value != 0 && value < 1_000_000 {
                return Err(EngineError::Invalid(format!(
                    "{name} in Healthcheck cannot be less than 1ms"
                )));
            }
        }
        if self.retries < 0 {
            return Err(EngineError::Invalid(
                "Retries in Healthcheck cannot be negative".into(),
            ));
        }
        Ok(())
    }

    /// The container's check over its image's, as dockerd merges them: the container's
    /// fields win where set, the image's fill the rest.
    pub fn merged(container: Option<&HealthConfig>, image: Option<&HealthConfig>) -> Option<Self> {
        let Some(image) = image else {
            return container.cloned();
        };
        let Some(c) = container else {
            return Some(image.clone());
        };
        let pick = |mine: i64, theirs: i64| if mine == 0 { theirs } else { mine };
        Some(HealthConfig {
            test: if c.test.is_empty() {
                image.test.clone()
            } else {
                c.test.clone()
            },
            interval: pick(c.interval, image.interval),
            timeout: pick(c.timeout, image.timeout),
            start_period: pick(c.start_period, image.start_period),
            start_interval: pick(c.start_interval, image.start_interval),
            retries: pick(c.retries, image.retries),
        })
    }

    /// The command a check runs; `None` when there is no check (`NONE`, or no test).
    pub fn probe_command(&self) -> Option<Vec<String>> {
        match self.test.split_first() {
            Some((kind, args)) if kind == "CMD" && !args.is_empty() => Some(args.to_vec()),
            Some((kind, [command])) if kind == "CMD-SHELL" => {
                Some(vec!["/bin/sh".into(), "-c".into(), command.clone()])
            }
            _ => None,
        }
    }

    fn duration(nanos: i64, default: Duration) -> Duration {
        u64::try_from(nanos)
            .ok()
            .filter(|n| *n > 0)
            .map_or(default, Duration::from_nanos)
    }
}

/// Docker's `State.Health`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Failed checks in a row.
    pub failing_streak: i64,
    /// The last results, oldest first.
    pub log: Vec<HealthResult>,
}

/// One check's result.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub end: String,
    /// 0 healthy, 1 unhealthy; -1 when it could not run or ran out of time.
    pub exit_code: i64,
    /// The start of what it printed.
    pub output: String,
}

impl Health {
    /// What a run with a check starts with.
    pub fn starting() -> Health {
        Health {
            status: "starting".into(),
            ..Health::default()
        }
    }

    /// How `ps` shows it: `health: starting`, `healthy`, `unhealthy`.
    pub fn shown(&self) -> String {
        if self.status == "starting" {
            "health: starting".into()
        } else {
            self.status.clone()
        }
    }

    /// Takes one result in, as dockerd does: a success makes it healthy; a failure counts
    /// towards `retries` unless the container is still in its start period and has never
    /// been healthy.
    fn record(&mut self, result: HealthResult, retries: i64, in_start_period: bool) {
        if result.exit_code == 0 {
            self.failing_streak = 0;
            self.status = "healthy".into();
        } else if !(in_start_period && self.status == "starting") {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(result);
        if self.log.len() > KEPT_RESULTS {
            self.log.remove(0);
        }
    }
}

/// The checker of one run; dropping it stops the checks.
pub struct HealthMonitor {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl HealthMonitor {
    /// Starts checking `rec` (just started) if it has a check; `None` if it has none.
    pub fn start(root: &Path, rec: &ContainerRecord) -> Option<HealthMonitor> {
        let config = rec.config.healthcheck.clone()?;
        let command = config.probe_command()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::Builder::new()
            .name("health".into())
            .spawn({
                let (root, id, stop) = (root.to_path_buf(), rec.id.clone(), stop.clone());
                move || {
                    if let Err(e) = check_until_stopped(&root, &id, &config, &command, &stop) {
                        tracing::warn!("health checks of {id} stopped: {e}");
                    }
                }
            })
            .ok()?;
        Some(HealthMonitor {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for HealthMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sleeps `d` unless the run ends first; whether it is still on.
fn pause(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        thread::sleep(STOP_POLL.min(until.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::Relaxed)
}

fn check_until_stopped(
    root: &Path,
    id: &str,
    config: &HealthConfig,
    command: &[String],
    stop: &AtomicBool,
) -> Result<(), EngineError> {
    let mut engine = Engine::open(root)?;
    let started = Instant::now();
    let start_period = HealthConfig::duration(config.start_period, Duration::ZERO);
    let interval = HealthConfig::duration(config.interval, DEFAULT_INTERVAL);
    let start_interval = HealthConfig::duration(config.start_interval, DEFAULT_START_INTERVAL);
    let timeout = HealthConfig::duration(config.timeout, DEFAULT_TIMEOUT);
    let retries = if config.retries > 0 {
        config.retries
    } else {
        DEFAULT_RETRIES
    };
    let mut health = Health::starting();
    loop {
        let in_start_period = started.elapsed() < start_period;
        let wait = if in_start_period && health.status == "starting" {
            start_interval
        } else {
            interval
        };
        if !pause(wait, stop) {
            return Ok(());
        }
        let rec = engine.container(id)?;
        // A paused container is not checked (its processes cannot run).
        if !rec.state.running || rec.state.paused {
            continue;
        }
        let result = probe(&mut engine, id, command, timeout);
        if stop.load(Ordering::Relaxed) {
            // The run ended during the check: its failure says nothing about the container.
            return Ok(());
        }
        let before = health.status.clone();
        health.record(result, retries, started.elapsed() < start_period);
        engine.set_health(id, &health)?;
        if health.status != before {
            engine.container_event(&rec, &format!("health_status: {}", health.status), &[]);
        }
    }
}

/// Runs one check: its exit code and output, or -1 with dockerd's words when it cannot run
/// or takes longer than `timeout` (then it is killed).
fn probe(engine: &mut Engine, id: &str, command: &[String], timeout: Duration) -> HealthResult {
    let start = jiff::Timestamp::now();
    let (exit_code, output) = match run_probe(engine, id, command, timeout) {
        Ok(Some((code, output))) => (i64::from(code), output),
        Ok(None) => (
            -1,
            format!(
                "Health check exceeded timeout ({})",
                berth_store::format_go_duration(
                    i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX)
                )
            ),
        ),
        Err(e) => (-1, e.to_string()),
    };
    HealthResult {
        start: start.to_string(),
        end: jiff::Timestamp::now().to_string(),
        exit_code,
        output,
    }
}

/// The check's exit code and output; `None` when it ran out of time.
fn run_probe(
    engine: &mut Engine,
    id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<Option<(i32, String)>, EngineError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| EngineError::Io { what, source: e }
    };
    let (read, write) = rustix::pipe::pipe().map_err(|e| io("health check pipe")(e.into()))?;
    let null = std::fs::File::open("/dev/null").map_err(io("open /dev/null"))?;
    let stdio = berth_runtime::Stdio {
        stdin: null.into(),
        stdout: write.try_clone().map_err(io("health check pipe"))?,
        stderr: write,
    };
    let opts = ExecOptions {
        cmd: command.to_vec(),
        ..ExecOptions::default()
    };
    let mut process = engine.exec(id, &opts, stdio, None)?;
    let pid = process.pid();
    // The output is read to its end (the check must not block on a full pipe), the first
    // KEPT_OUTPUT bytes kept.
    let reader = thread::spawn(move || {
        let mut kept = Vec::new();
        let mut file = std::fs::File::from(read);
        let mut buf = [0u8; 4096];
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = KEPT_OUTPUT.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        String::from_utf8_lossy(&kept).into_owned()
    });
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = tx.send(process.wait());
    });
    let exit = match rx.recv_timeout(timeout) {
        Ok(exit) => Some(exit?),
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            None
        }
    };
    let _ = waiter.join();
    let output = reader.join().unwrap_or_default();
    Ok(exit.map(|e| (e.code, output)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i64) -> HealthResult {
        HealthResult {
            exit_code: code,
            ..HealthResult::default()
        }
    }

    #[test]
    fn results_move_the_status_as_dockers_do() {
        let mut h = Health::starting();
        // Failures in the start period do not count while it has never been healthy.
        h.record(result(1), 2, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        h.record(result(0), 2, true);
        assert_eq!(h.status, "healthy");
        h.record(result(1), 2, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 1));
        h.record(result(-1), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 2));
        for _ in 0..5 {
            h.record(result(0), 2, false);
        }
        assert_eq!(h.log.len(), KEPT_RESULTS);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        assert_eq!(Health::starting().shown(), "health: starting");
    }

    #[test]
    fn checks_merge_and_read_like_dockers() {
        let image = HealthConfig {
            test: vec!["CMD-SHELL".into(), "curl -f localhost".into()],
            interval: 5_000_000_000,
            retries: 5,
            ..HealthConfig::default()
        };
        let mine = HealthConfig {
            interval: 1_000_000_000,
            ..HealthConfig::default()
        };
        let merged = HealthConfig::merged(Some(&mine), Some(&image)).unwrap();
        assert_eq!(merged.test, image.test);
        assert_eq!((merged.interval, merged.retries), (1_000_000_000, 5));
        assert_eq!(
            merged.probe_command().unwrap(),
            ["/bin/sh", "-c", "curl -f localhost"]
        );
        let none = HealthConfig {
            test: vec!["NONE".into()],
            ..HealthConfig::default()
        };
        assert_eq!(
            HealthConfig::merged(Some(&none), Some(&image))
                .unwrap()
                .probe_command(),
            None
        );
        let exec_form = HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            ..HealthConfig::default()
        };
        assert_eq!(exec_form.probe_command().unwrap(), ["true"]);
        let bad = HealthConfig {
            interval: 10,
            ..HealthConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "Interval in Healthcheck cannot be less than 1ms"
        );
    }
}
