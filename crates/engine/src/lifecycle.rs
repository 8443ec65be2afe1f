//! What happens to a container after it was created, from any berth process: who is alive
//! (the monitor's lock), signals, `stop`, `wait`, and the truth about containers whose
//! monitor died.
//!
//! A container that runs has a monitor (or a foreground `berth run`) that holds an exclusive
//! `flock` on the container's directory for as long as it looks after the container. The
//! kernel drops the lock when that process dies, however it dies, so a free lock on a
//! container recorded as running means nobody will ever record its end: [`Engine::reconcile`]
//! kills what is left of it and records it as exited.

use std::{
    fs,
    os::fd::{AsFd, OwnedFd},
    time::{Duration, Instant},
};

use rustix::{
    fs::{FlockOperation, Mode, OFlags},
    io::Errno,
    process::{Pid, PidfdFlags, Signal},
};

use crate::{ContainerRecord, ContainerState, Engine, EngineError, RuntimeError, io_err};

/// The exit code recorded for a container whose end nobody saw (Docker's, after a crash).
pub const EXIT_UNKNOWN: i32 = 255;

/// Holding this means being the one process that looks after a container's processes.
#[derive(Debug)]
pub struct ContainerLock {
    _dir: OwnedFd,
}

impl Engine {
    /// Takes a container's lock unless another process holds it (`None` then).
    pub fn try_lock(&self, id: &str) -> Result<Option<ContainerLock>, EngineError> {
        let dir = self.container_dir(id);
        let fd = match rustix::fs::open(
            &dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) => {
                return Err(io_err(format!("open {}", dir.display()))(e.into()));
            }
        };
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(ContainerLock { _dir: fd })),
            Err(Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(io_err(format!("lock {}", dir.display()))(e.into())),
        }
    }

    /// Checks a record that says the container runs against its monitor's lock. When no
    /// process holds the lock, the monitor died (`kill -9`, a crash, a reboot): what is left
    /// of the container is killed and it is recorded as exited with code 255, or removed if
    /// it was started with `--rm`. Returns `None` when the container is gone.
    pub fn reconcile(
        &mut self,
        rec: ContainerRecord,
    ) -> Result<Option<ContainerRecord>, EngineError> {
        if !is_active(&rec.state) {
            return Ok(Some(rec));
        }
        let lock = match self.try_lock(&rec.id) {
            Ok(Some(lock)) => Some(lock),
            Ok(None) => return Ok(Some(rec)),
            // Its directory is gone: no process can hold its lock any more.
            Err(EngineError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        // Read again under the lock: the monitor may have recorded the end just before it
        // let go.
        let Some(mut rec) = self.db.get(&rec.id)? else {
            return Ok(None);
        };
        if !is_active(&rec.state) {
            return Ok(Some(rec));
        }
        tracing::debug!("container {} lost its monitor", &rec.id[..12]);
        if let Ok(cgroup) = berth_runtime::cgroups::Cgroup::open(&cgroup_path(&rec.id)) {
            cgroup.destroy().map_err(RuntimeError::from)?;
        }
        self.detach_networks(&rec.id, crate::networks::Links::Delete);
        if rec.host_config.auto_remove {
            self.discard(&rec.id, false)?;
            self.remove_anonymous_volumes(&crate::volume_names(&rec));
            drop(lock);
            return Ok(None);
        }
        rec.state = ContainerState {
            status: "exited".into(),
            exit_code: EXIT_UNKNOWN,
            started_at: rec.state.started_at.clone(),
            finished_at: jiff::Timestamp::now().to_string(),
            ..Default::default()
        };
        self.set_state(&rec.id, &rec.state)?;
        self.clear_network_settings(&rec.id)?;
        drop(lock);
        Ok(Some(rec))
    }

    /// Sends `signal` to the container's init (`kill`). The container's stop signal, and
    /// SIGKILL, also keep its restart policy from starting it again, as in Docker.
    pub fn kill(&mut self, key: &str, signal: Signal) -> Result<ContainerRecord, EngineError> {
        let mut rec = self.container(key)?;
        if !rec.state.running {
            // dockerd's words, with the name the user gave.
            return Err(EngineError::Conflict(format!(
                "cannot kill container: {key}: container {} is not running",
                rec.id
            )));
        }
        let stop_signal = stop_signal(&rec)?;
        if signal == stop_signal || signal == Signal::KILL {
            rec.has_been_manually_stopped = true;
            self.set_manually_stopped(&rec.id, true)?;
        }
        if rec.state.restarting {
            // Nothing runs between two restarts; the monitor sees the flag and stops.
            return Ok(rec);
        }
        signal_init(&rec, signal)?;
        self.container_event(&rec, "kill", &[("signal", signal.as_raw().to_string())]);
        Ok(rec)
    }

    /// `stop`: the stop signal, then SIGKILL after `timeout` seconds (the container's
    /// `--stop-timeout`, else 10; negative waits for ever), and waits until the container's
    /// end is recorded. Stopping a container that does not run does nothing.
    pub fn stop(
        &mut self,
        key: &str,
        timeout: Option<i64>,
        signal: Option<Signal>,
    ) -> Result<ContainerRecord, EngineError> {
        let rec = self.container(key)?;
        if !is_active(&rec.state) {
            return Ok(rec);
        }
        let id = rec.id.clone();
        self.set_manually_stopped(&id, true)?;
        let signal = match signal {
            Some(s) => s,
            None => stop_signal(&rec)?,
        };
        let timeout = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let mut first = true;
        loop {
            let rec = self.container(&id)?;
            if !is_active(&rec.state) {
                self.container_event(&rec, "stop", &[]);
                return Ok(rec);
            }
            if rec.state.restarting {
                // Between two runs: the monitor sees the flag and gives up.
                self.wait_until_stopped(&id, Some(Duration::from_secs(1)))?;
                continue;
            }
            if let Some(pidfd) = open_init(&rec)? {
                // A paused container cannot act on the signal until it is thawed.
                if rec.state.paused
                    && let Ok(cgroup) = berth_runtime::cgroups::Cgroup::open(&cgroup_path(&rec.id))
                {
                    let _ = cgroup.thaw();
                }
                // Only the run that was asked to stop gets the grace period; one the
                // monitor started before it saw the request is killed.
                let graceful = first && signal != Signal::KILL;
                if graceful {
                    let _ = rustix::process::pidfd_send_signal(&pidfd, signal);
                    self.container_event(&rec, "kill", &[("signal", signal.as_raw().to_string())]);
                }
                let grace = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
                if !graceful || !wait_for_exit(&pidfd, grace) {
                    let _ = rustix::process::pidfd_send_signal(&pidfd, Signal::KILL);
                    self.container_event(&rec, "kill", &[("signal", "9".into())]);
                    wait_for_exit(&pidfd, None);
                }
            }
            first = false;
            // The monitor records the end; a new run it started meanwhile goes round again.
            self.wait_until_stopped(&id, Some(Duration::from_secs(5)))?;
        }
    }

    /// `pause`: freezes every process of a running container.
    pub fn pause(&mut self, key: &str) -> Result<ContainerRecord, EngineError> {
        let mut rec = self.container(key)?;
        if !rec.state.running || rec.state.restarting {
            return Err(EngineError::NotRunning(rec.id));
        }
        if rec.state.paused {
            // 409, as dockerd answers it.
            return Err(EngineError::Conflict(format!(
                "container {} is already paused",
                rec.id
            )));
        }
        let cgroup = berth_runtime::cgroups::Cgroup::open(&cgroup_path(&rec.id))
            .map_err(RuntimeError::from)?;
        cgroup.freeze().map_err(RuntimeError::from)?;
        rec.state.paused = true;
        rec.state.status = "paused".into();
        self.set_state(&rec.id, &rec.state)?;
        self.container_event(&rec, "pause", &[]);
        Ok(rec)
    }

    /// `unpause`: thaws a paused container.
    pub fn unpause(&mut self, key: &str) -> Result<ContainerRecord, EngineError> {
        let mut rec = self.container(key)?;
        if !rec.state.paused {
            return Err(EngineError::Conflict(format!(
                "container {} is not paused",
                rec.id
            )));
        }
        let cgroup = berth_runtime::cgroups::Cgroup::open(&cgroup_path(&rec.id))
            .map_err(RuntimeError::from)?;
        cgroup.thaw().map_err(RuntimeError::from)?;
        rec.state.paused = false;
        rec.state.status = "running".into();
        self.set_state(&rec.id, &rec.state)?;
        self.container_event(&rec, "unpause", &[]);
        Ok(rec)
    }

    /// `container prune`: removes every container that does not run and that the filters
    /// (`until`, `label`, `label!`) let through. Returns the IDs removed and the space
    /// their writable layers took; a container that started meanwhile is left alone, and one
    /// that fails to go is logged and skipped.
    pub fn prune_containers(
        &mut self,
        filters: &berth_store::Filters,
    ) -> Result<(Vec<String>, u64), EngineError> {
        let until = filters.until()?;
        // What crashed creates and removals left goes first (it is no container any more).
        self.sweep_orphans()?;
        let mut deleted = Vec::new();
        let mut reclaimed = 0u64;
        for rec in self.containers()? {
            if is_active(&rec.state) || !filters.labels_match(Some(&rec.config.labels)) {
                continue;
            }
            if let Some(u) = until
                && rec.created.parse::<jiff::Timestamp>().is_ok_and(|c| c >= u)
            {
                continue;
            }
            let size = self.container_size(&rec.id);
            match self.remove(&rec.id, false) {
                Ok(_) => {
                    reclaimed += size;
                    deleted.push(rec.id);
                }
                Err(EngineError::Running(_) | EngineError::NoSuchContainer(_)) => {}
                // As dockerd: one container that cannot go does not keep the rest.
                Err(e) => tracing::warn!("container prune: removing {}: {e}", rec.id),
            }
        }
        Ok((deleted, reclaimed))
    }

    /// `rename`: a new unique name for a container.
    pub fn rename(&mut self, key: &str, new_name: &str) -> Result<ContainerRecord, EngineError> {
        let mut rec = self.container(key)?;
        let name = crate::names::validate_name(new_name)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        if name == rec.name {
            return Err(EngineError::Invalid(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        self.db.rename(&rec.id, &name)?;
        let old_name = std::mem::replace(&mut rec.name, name);
        self.container_event(&rec, "rename", &[("oldName", format!("/{old_name}"))]);
        Ok(rec)
    }

    /// Waits until the container neither runs nor waits to restart, and returns its record
    /// (`None` when it was removed meanwhile, as `--rm` does). Gives up after `timeout`.
    pub fn wait_until_stopped(
        &mut self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<ContainerRecord, EngineError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let rec = match self.db.get(id)? {
                Some(rec) => rec,
                None => return Err(EngineError::NoSuchContainer(id.to_string())),
            };
            let Some(rec) = self.reconcile(rec)? else {
                return Err(EngineError::NoSuchContainer(id.to_string()));
            };
            if !is_active(&rec.state) {
                return Ok(rec);
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Ok(rec);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// Whether the container keeps a log `logs` can read (not with the `none` driver); Docker's
/// message when not.
pub fn log_readable(rec: &ContainerRecord) -> Result<(), String> {
    match rec.host_config.log_config.kind.as_str() {
        "none" => Err("configured logging driver does not support reading: none".into()),
        _ => Ok(()),
    }
}

impl Engine {
    /// `logs`: a container's json-file log from `opts`, each entry to `emit`; with `follow`,
    /// then entries as they are written until the container stops. `emit`'s error (a reader
    /// gone: `BrokenPipe`) ends it and is returned; a container logging to `none` has no log
    /// to read (`Unsupported`, Docker's message).
    pub fn read_log(
        &mut self,
        rec: &ContainerRecord,
        opts: &crate::logfile::ReadOptions,
        follow: bool,
        reader_gone: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(&crate::logfile::LogEntry) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        log_readable(rec).map_err(|e| std::io::Error::new(std::io::ErrorKind::Unsupported, e))?;
        let path = std::path::Path::new(&rec.log_path);
        if !follow {
            return crate::logfile::read(path, opts)
                .and_then(|entries| entries.iter().try_for_each(&mut *emit));
        }
        let id = rec.id.clone();
        // Following ends with the container, or when the reader left (a quiet container
        // would otherwise keep the poll going as long as it runs).
        let mut stopped = || {
            reader_gone()
                || match self.container(&id) {
                    Ok(rec) => !is_active(&rec.state),
                    Err(_) => true,
                }
        };
        crate::logfile::follow(path, opts, emit, &mut stopped)
    }
}

/// Whether the record says someone looks after the container's processes.
pub fn is_active(state: &ContainerState) -> bool {
    state.running || state.restarting
}

/// The cgroup berth gives a container.
pub fn cgroup_path(id: &str) -> String {
    format!("berth/{id}")
}

/// The signal `stop` sends: `--stop-signal`, the image's `STOPSIGNAL`, or SIGTERM.
pub fn stop_signal(rec: &ContainerRecord) -> Result<Signal, EngineError> {
    match rec.config.stop_signal.as_deref() {
        Some(s) if !s.is_empty() => parse_signal(s).map_err(EngineError::Invalid),
        _ => Ok(Signal::TERM),
    }
}

/// Docker's signal names: `SIGTERM`, `TERM`, `term` or a number.
pub fn parse_signal(value: &str) -> Result<Signal, String> {
    let invalid = || format!("Invalid signal: {value}");
    if let Ok(n) = value.parse::<i32>() {
        return Signal::from_named_raw(n).ok_or_else(invalid);
    }
    let upper = value.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let signal = match name {
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "ILL" => Signal::ILL,
        "TRAP" => Signal::TRAP,
        "ABRT" | "IOT" => Signal::ABORT,
        "BUS" => Signal::BUS,
        "FPE" => Signal::FPE,
        "KILL" => Signal::KILL,
        "USR1" => Signal::USR1,
        "SEGV" => Signal::SEGV,
        "USR2" => Signal::USR2,
        "PIPE" => Signal::PIPE,
        "ALRM" => Signal::ALARM,
        "TERM" => Signal::TERM,
        "STKFLT" => Signal::STKFLT,
        "CHLD" | "CLD" => Signal::CHILD,
        "CONT" => Signal::CONT,
        "STOP" => Signal::STOP,
        "TSTP" => Signal::TSTP,
        "TTIN" => Signal::TTIN,
        "TTOU" => Signal::TTOU,
        "URG" => Signal::URG,
        "XCPU" => Signal::XCPU,
        "XFSZ" => Signal::XFSZ,
        "VTALRM" => Signal::VTALARM,
        "PROF" => Signal::PROF,
        "WINCH" => Signal::WINCH,
        "IO" | "POLL" => Signal::IO,
        "PWR" => Signal::POWER,
        "SYS" => Signal::SYS,
        _ => return Err(invalid()),
    };
    Ok(signal)
}

/// A pidfd for the container's init, checked to be the container's own process (its pid
/// in the container's cgroup), so a reused pid is never signalled. `None` when it has
/// exited.
pub(crate) fn open_init(rec: &ContainerRecord) -> Result<Option<OwnedFd>, EngineError> {
    let Some(pid) = Pid::from_raw(rec.state.pid) else {
        return Ok(None);
    };
    let pidfd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(Errno::SRCH) => return Ok(None),
        Err(e) => return Err(io_err("pidfd_open")(e.into())),
    };
    // Checked after the pidfd is open: from here on the pid cannot be reused.
    let cgroups = fs::read_to_string(format!("/proc/{}/cgroup", rec.state.pid)).unwrap_or_default();
    let ours = format!("/{}", cgroup_path(&rec.id));
    if !cgroups.lines().any(|l| l.ends_with(&ours)) {
        return Ok(None);
    }
    Ok(Some(pidfd))
}

fn signal_init(rec: &ContainerRecord, signal: Signal) -> Result<(), EngineError> {
    match open_init(rec)? {
        Some(pidfd) => match rustix::process::pidfd_send_signal(&pidfd, signal) {
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(io_err(format!("send {signal:?}"))(e.into())),
        },
        None => Err(EngineError::NotRunning(rec.id.clone())),
    }
}

/// Whether the process behind `pidfd` has exited (its pidfd polls readable).
pub(crate) fn has_exited(pidfd: impl AsFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    !matches!(poll(&mut fds, Some(&now)), Ok(0))
}

/// Waits until the process behind `pidfd` exits; `false` when `timeout` passed first.
fn wait_for_exit(pidfd: impl AsFd, timeout: Option<Duration>) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let left = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return false;
                }
                Some(d - now)
            }
            None => None,
        };
        let ts = left.map(|d| rustix::event::Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, ts.as_ref()) {
            Ok(n) if n > 0 => return true,
            Ok(_) => continue,
            Err(Errno::INTR) => continue,
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_as_docker_names_them() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::TERM);
        assert_eq!(parse_signal("kill").unwrap(), Signal::KILL);
        assert_eq!(parse_signal("9").unwrap(), Signal::KILL);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), Signal::USR1);
        assert_eq!(
            parse_signal("SIGFOO").unwrap_err(),
            "Invalid signal: SIGFOO"
        );
        assert!(parse_signal("0").is_err());
    }
}
