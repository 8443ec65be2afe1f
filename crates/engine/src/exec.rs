//! `exec`: one more process in a running container, in its namespaces and cgroup, with its
//! environment, identity, capabilities and seccomp filter (see `berth_runtime::exec`).

use std::{os::fd::OwnedFd, sync::Arc};

use berth_runtime::{ExecConfig, ExecProcess, Exit, Stdio};

use crate::{
    ContainerRecord, Engine, EngineError, lifecycle,
    monitor::{Hub, Plumbing, Session},
    spec,
};

/// What `exec` takes, with Docker's flag names in the docs.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// `-e`: variables added to the container's environment.
    pub env: Vec<String>,
    /// `-u`: the user (name or uid, with an optional group); the container's by default.
    pub user: Option<String>,
    /// `-w`: the working directory; the container's by default.
    pub workdir: Option<String>,
    /// `-t`: a pty.
    pub tty: bool,
    /// `--privileged`: every capability.
    pub privileged: bool,
}

impl ExecOptions {
    /// dockerd's checks of an exec's settings, made before anything runs.
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.cmd.is_empty() {
            return Err(EngineError::Invalid("No exec command specified".into()));
        }
        if let Some(dir) = self.workdir.as_deref()
            && !dir.is_empty()
            && !dir.starts_with('/')
        {
            return Err(EngineError::Invalid(format!(
                "the working directory '{dir}' is invalid, it needs to be an absolute path"
            )));
        }
        Ok(())
    }
}

/// Whether a process can be started in the container: it runs, and is neither paused nor
/// restarting (dockerd's conflicts, checked when an exec is created and when it starts).
pub fn check_can_exec(rec: &ContainerRecord) -> Result<(), EngineError> {
    if rec.state.restarting {
        return Err(EngineError::Conflict(format!(
            "container {} is restarting, wait until the container is running",
            rec.id
        )));
    }
    if !rec.state.running {
        return Err(EngineError::NotRunning(rec.id.clone()));
    }
    if rec.state.paused {
        return Err(EngineError::Conflict(format!(
            "container {} is paused, unpause the container before exec",
            rec.id
        )));
    }
    Ok(())
}

impl Engine {
    /// Starts `opts.cmd` in the running container `key` with `stdio` (or a pty with
    /// `opts.tty`). Returns once the command runs.
    pub fn exec(
        &mut self,
        key: &str,
        opts: &ExecOptions,
        stdio: Stdio,
        console_size: Option<(u16, u16)>,
    ) -> Result<ExecProcess, EngineError> {
        opts.validate()?;
        let rec = self.container(key)?;
        check_can_exec(&rec)?;
        let Some(target) = lifecycle::open_init(&rec)? else {
            return Err(EngineError::NotRunning(rec.id));
        };
        let config = self.exec_config(&rec, opts)?;
        Ok(berth_runtime::exec(berth_runtime::ExecOptions {
            config,
            target,
            cgroup_path: Some(lifecycle::cgroup_path(&rec.id)),
            stdio,
            console_size,
        })?)
    }

    /// The container's own process settings with the exec's command, environment, user,
    /// working directory and terminal.
    fn exec_config(
        &self,
        rec: &ContainerRecord,
        opts: &ExecOptions,
    ) -> Result<ExecConfig, EngineError> {
        let etc = Self::etc_files(&self.container_dir(&rec.id));
        let container = self.init_config(rec, &etc)?;
        let spec = container.spec;
        let mut process = spec
            .process()
            .clone()
            .ok_or_else(|| EngineError::Invalid("container spec has no process".into()))?;
        process.set_args(Some(opts.cmd.clone()));
        process.set_env(Some(spec::environment(
            &rec.config.env,
            &opts.env,
            &rec.config.hostname,
            opts.tty,
        )));
        process.set_terminal(Some(opts.tty));
        if let Some(dir) = opts.workdir.as_deref().filter(|d| !d.is_empty()) {
            process.set_cwd(dir.into());
        }
        if opts.privileged {
            let all = spec::capabilities(true, &[], &[])?;
            let caps = serde_json::from_value(serde_json::json!({
                "bounding": all, "effective": all, "permitted": all,
            }))
            .map_err(|e| EngineError::Invalid(format!("capabilities: {e}")))?;
            process.set_capabilities(Some(caps));
        }
        let namespaces = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
            .iter()
            .map(|ns| ns.typ())
            .collect();
        let user = opts
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .or(container.user);
        Ok(ExecConfig {
            process,
            namespaces,
            user,
            group_add: container.group_add,
            seccomp: container.seccomp,
        })
    }
}

impl Session<ExecProcess> {
    /// Starts an exec'd process whose output goes to `hub`; `stdin` as for
    /// [`Session::start`], with `open_stdin` for `-i`.
    pub fn exec(
        engine: &mut Engine,
        key: &str,
        opts: &ExecOptions,
        hub: &Arc<Hub>,
        stdin: Option<OwnedFd>,
        open_stdin: bool,
        console_size: Option<(u16, u16)>,
    ) -> Result<Session<ExecProcess>, EngineError> {
        let (plumbing, stdio) = Plumbing::new(opts.tty, stdin, open_stdin)?;
        let mut process = engine.exec(key, opts, stdio, console_size)?;
        let pumps = plumbing.connect(hub, process.take_console(), open_stdin)?;
        Ok(Session {
            process,
            hub: hub.clone(),
            pumps,
        })
    }

    /// The process's host pid.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Waits for the process to exit and its output to be delivered.
    pub fn wait(mut self) -> Result<Exit, EngineError> {
        let exit = self.process.wait();
        self.drain();
        Ok(exit?)
    }
}
