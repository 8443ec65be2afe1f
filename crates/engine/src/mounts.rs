//! What `-v`, `--mount` and `--tmpfs` ask for, parsed with Docker's rules (pure; the engine
//! resolves volumes and sources at create).

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
};

use crate::{
    Engine, EngineError, MountPoint,
    volumes::{Volume, VolumeOptions},
};

/// The kinds of mount a container can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A named or anonymous volume.
    Volume,
    /// A tmpfs.
    Tmpfs,
}

impl MountKind {
    /// Docker's name of it (`Mounts[].Type`).
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// One requested mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// What it is.
    pub kind: MountKind,
    /// A host path (bind), a volume name (`None`: anonymous), nothing (tmpfs).
    pub source: Option<String>,
    /// Where in the container (absolute, cleaned).
    pub target: String,
    /// Read-only.
    pub read_only: bool,
    /// Bind propagation (`rprivate` by default).
    pub propagation: String,
    /// Volumes: do not copy the image's content into a new volume.
    pub no_copy: bool,
    /// Volumes: labels for a volume this mount creates.
    pub volume_labels: BTreeMap<String, String>,
    /// Volumes: driver options for a volume this mount creates.
    pub volume_options: BTreeMap<String, String>,
    /// tmpfs: its size in bytes (0: the kernel's default) and mode.
    pub tmpfs_size: i64,
    /// tmpfs: the mode of its root (`None`: 1777).
    pub tmpfs_mode: Option<u32>,
    /// `-v`: a missing bind source is created (Docker's legacy rule; `--mount` refuses).
    pub create_source: bool,
    /// The mode string as given (`ro`, `rw,z`, ...), for `Mounts[].Mode`.
    pub mode: String,
}

impl MountRequest {
    fn new(kind: MountKind, source: Option<String>, target: String) -> MountRequest {
        MountRequest {
            kind,
            source,
            target,
            read_only: false,
            propagation: String::new(),
            no_copy: false,
            volume_labels: BTreeMap::new(),
            volume_options: BTreeMap::new(),
            tmpfs_size: 0,
            tmpfs_mode: None,
            create_source: false,
            mode: String::new(),
        }
    }

    /// A bind mount of the host path `source` (which must exist) at `target`.
    pub fn bind(source: &Path, target: &str, read_only: bool) -> MountRequest {
        let mut m = MountRequest::new(
            MountKind::Bind,
            Some(source.to_string_lossy().into_owned()),
            target.to_string(),
        );
        m.read_only = read_only;
        m
    }

    /// A tmpfs at `target` of `size` bytes (0: the kernel's default).
    pub fn tmpfs(target: &str, size: i64) -> MountRequest {
        let mut m = MountRequest::new(MountKind::Tmpfs, None, target.to_string());
        m.tmpfs_size = size;
        m
    }
}

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// A container path: absolute, cleaned (`/a/./b/` is `/a/b`), not `/` itself.
fn container_path(path: &str, spec: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!(
            "invalid mount config for type \"volume\": invalid mount path: '{path}' mount path must be absolute ({spec})"
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!(
            "invalid specification: destination can't be '/' in '{spec}'"
        ));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// `--tmpfs PATH[:OPTIONS]` flags as `HostConfig.Tmpfs` (path to its mount options; the
/// last of a path wins, as Docker's map does).
pub fn tmpfs_flags(flags: &[String]) -> BTreeMap<String, String> {
    flags
        .iter()
        .map(|t| {
            let (path, opts) = t.split_once(':').unwrap_or((t, ""));
            (path.to_string(), opts.to_string())
        })
        .collect()
}

/// `-v [SOURCE:]TARGET[:MODE]`: SOURCE a host path (absolute) or a volume name; no SOURCE
/// is an anonymous volume. MODE is comma-separated `ro`, `rw`, `nocopy`, a propagation, and
/// SELinux's `z`/`Z` (accepted, without SELinux nothing to do).
pub fn parse_volume_flag(spec: &str) -> Result<MountRequest, String> {
    let invalid = || format!("invalid volume specification: '{spec}'");
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => (None, *target, ""),
        [a, b] if b.starts_with('/') => (Some(*a), *b, ""),
        [target, mode] => (None, *target, *mode),
        [source, target, mode] => (Some(*source), *target, *mode),
        _ => return Err(invalid()),
    };
    if source.is_some_and(str::is_empty) || target.is_empty() {
        return Err(invalid());
    }
    let target = container_path(target, spec)?;
    let kind = match source {
        Some(s) if s.starts_with('/') => MountKind::Bind,
        Some(s) if s.starts_with('.') || s.contains('/') => {
            return Err(format!(
                "invalid volume specification: '{spec}': a bind mount source must be an absolute path"
            ));
        }
        _ => MountKind::Volume,
    };
    let mut m = MountRequest::new(kind, source.map(str::to_string), target);
    m.create_source = kind == MountKind::Bind;
    m.mode = mode.to_string();
    for word in mode.split(',').filter(|w| !w.is_empty()) {
        match word {
            "ro" => m.read_only = true,
            "rw" => m.read_only = false,
            "z" | "Z" => {}
            "nocopy" if kind == MountKind::Volume => m.no_copy = true,
            p if PROPAGATIONS.contains(&p) && kind == MountKind::Bind => {
                m.propagation = p.to_string()
            }
            _ => return Err(format!("invalid mode: {word}")),
        }
    }
    Ok(m)
}

/// `--mount type=bind|volume|tmpfs,source=...,target=...,readonly,...`, Docker's keys.
pub fn parse_mount_flag(spec: &str) -> Result<MountRequest, String> {
    let fields: Vec<(String, Option<String>)> = spec
        .split(',')
        .filter(|f| !f.is_empty())
        .map(|field| match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        })
        .collect();
    mount_from_fields(fields, spec)
}

/// A mount from `--mount`'s keys (lower case) and values, already apart: the Engine API's
/// `Mounts` objects arrive so, and a comma in a path stays in it. `spec` names the mount in
/// errors.
pub fn mount_from_fields(
    fields: Vec<(String, Option<String>)>,
    spec: &str,
) -> Result<MountRequest, String> {
    let mut kind = None;
    let mut source = None;
    let mut target = None;
    let mut rest: Vec<(String, Option<String>)> = Vec::new();
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("type", Some(v)) => {
                kind = Some(match v.as_str() {
                    "bind" => MountKind::Bind,
                    "volume" => MountKind::Volume,
                    "tmpfs" => MountKind::Tmpfs,
                    other => return Err(format!("invalid mount type: \"{other}\"")),
                })
            }
            ("source" | "src", Some(v)) => source = Some(v),
            ("target" | "destination" | "dst", Some(v)) => target = Some(v),
            (k, v) => rest.push((k.to_string(), v)),
        }
    }
    let kind = kind.unwrap_or(MountKind::Volume);
    let target = target.ok_or_else(|| {
        format!("invalid argument \"{spec}\" for \"--mount\" flag: target is required")
    })?;
    let target = container_path(&target, spec)?;
    match (kind, &source) {
        (MountKind::Bind, None) => {
            return Err(format!(
                "invalid mount config for type \"bind\": field Source must not be empty ({spec})"
            ));
        }
        (MountKind::Bind, Some(s)) if !s.starts_with('/') => {
            return Err(format!(
                "invalid mount config for type \"bind\": invalid mount path: '{s}' mount path must be absolute"
            ));
        }
        (MountKind::Tmpfs, Some(_)) => {
            return Err(format!(
                "invalid mount config for type \"tmpfs\": field Source must be empty ({spec})"
            ));
        }
        _ => {}
    }
    let mut m = MountRequest::new(kind, source.filter(|s| !s.is_empty()), target);
    let bool_of = |v: &Option<String>, key: &str| -> Result<bool, String> {
        match v.as_deref() {
            None | Some("1") | Some("true") => Ok(true),
            Some("0") | Some("false") => Ok(false),
            Some(other) => Err(format!("invalid value for {key}: {other}")),
        }
    };
    let pair = |v: &Option<String>, key: &str| -> Result<(String, String), String> {
        let v = v
            .as_deref()
            .ok_or_else(|| format!("invalid field '{key}' must be a key=value pair"))?;
        let (k, val) = v.split_once('=').unwrap_or((v, ""));
        Ok((k.to_string(), val.to_string()))
    };
    for (key, value) in &rest {
        match (key.as_str(), kind) {
            ("readonly" | "ro", _) => m.read_only = bool_of(value, key)?,
            ("bind-propagation", MountKind::Bind) => {
                let p = value.clone().unwrap_or_default();
                if !PROPAGATIONS.contains(&p.as_str()) {
                    return Err(format!("invalid value for bind-propagation: {p}"));
                }
                m.propagation = p;
            }
            ("bind-nonrecursive" | "bind-recursive" | "consistency", _) => {}
            ("volume-nocopy", MountKind::Volume) => m.no_copy = bool_of(value, key)?,
            ("volume-label", MountKind::Volume) => {
                let (k, v) = pair(value, key)?;
                m.volume_labels.insert(k, v);
            }
            ("volume-opt", MountKind::Volume) => {
                let (k, v) = pair(value, key)?;
                m.volume_options.insert(k, v);
            }
            ("volume-driver", MountKind::Volume) => {
                let driver = value.clone().unwrap_or_default();
                if driver != "local" {
                    return Err(format!("plugin \"{driver}\" not found"));
                }
            }
            ("tmpfs-size", MountKind::Tmpfs) => {
                let v = value.clone().unwrap_or_default();
                m.tmpfs_size =
                    parse_size(&v).ok_or_else(|| format!("invalid value for tmpfs-size: {v}"))?;
            }
            ("tmpfs-mode", MountKind::Tmpfs) => {
                let v = value.clone().unwrap_or_default();
                m.tmpfs_mode = Some(
                    u32::from_str_radix(&v, 8)
                        .map_err(|_| format!("invalid value for tmpfs-mode: {v}"))?,
                );
            }
            (key, _) => {
                return Err(format!("unexpected key '{key}' in '{spec}'"));
            }
        }
    }
    if m.read_only {
        m.mode = "ro".into();
    }
    Ok(m)
}

/// `10m`, `1g`, `512k`, plain bytes (Docker's RAMInBytes, binary units).
fn parse_size(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1i64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as i64)
}

// ---------------------------------------------------------------- resolution at create

impl Engine {
    /// Turns a container's mount requests into its `Mounts`: `--volumes-from` (`key[:ro|rw]`)
    /// adds another container's mounts, each of the image's `VOLUME` paths not otherwise
    /// mounted gets an anonymous volume, volumes are created (a new one is filled with the
    /// image's content at its path, unless `nocopy`), missing `-v` bind sources are made.
    /// `layers` are the image's layer directories, top-most first. `tmpfs` receives the
    /// `--mount type=tmpfs` mounts in `--tmpfs` form.
    pub(crate) fn resolve_mounts(
        &mut self,
        requests: &[MountRequest],
        volumes_from: &[String],
        image_volumes: &[String],
        layers: &[PathBuf],
        tmpfs: &mut BTreeMap<String, String>,
    ) -> Result<Vec<MountPoint>, EngineError> {
        let mut all: Vec<MountRequest> = requests.to_vec();
        for from in volumes_from {
            let (key, mode) = match from.rsplit_once(':') {
                Some((k, m @ ("ro" | "rw"))) => (k, Some(m)),
                _ => (from.as_str(), None),
            };
            let other = self.container(key)?;
            for mp in other.mounts {
                if all.iter().any(|r| r.target == mp.destination) {
                    continue;
                }
                let kind = match mp.kind.as_str() {
                    "bind" => MountKind::Bind,
                    "volume" => MountKind::Volume,
                    _ => continue,
                };
                let source = match kind {
                    MountKind::Volume => Some(mp.name.clone()),
                    _ => Some(mp.source.clone()),
                };
                let mut r = MountRequest::new(kind, source, mp.destination.clone());
                r.read_only = match mode {
                    Some(m) => m == "ro",
                    None => !mp.rw,
                };
                r.propagation = mp.propagation.clone();
                r.mode = mp.mode.clone();
                r.no_copy = true;
                all.push(r);
            }
        }
        for path in image_volumes {
            let Ok(target) = container_path(path, path) else {
                continue;
            };
            if !all.iter().any(|r| r.target == target) && !tmpfs.contains_key(&target) {
                all.push(MountRequest::new(MountKind::Volume, None, target));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in &all {
            if !seen.insert(r.target.as_str()) || tmpfs.contains_key(&r.target) {
                return Err(EngineError::Invalid(format!(
                    "Duplicate mount point: {}",
                    r.target
                )));
            }
        }
        let mut mounts = Vec::new();
        let mut created: Vec<String> = Vec::new();
        let result = (|| {
            for r in &all {
                mounts.push(match r.kind {
                    MountKind::Bind => self.bind_mount(r)?,
                    MountKind::Volume => {
                        let (mp, fresh) = self.volume_mount(r, layers)?;
                        if fresh && r.source.is_none() {
                            created.push(mp.name.clone());
                        }
                        mp
                    }
                    MountKind::Tmpfs => {
                        let mut options = Vec::new();
                        if r.tmpfs_size > 0 {
                            options.push(format!("size={}", r.tmpfs_size));
                        }
                        if let Some(mode) = r.tmpfs_mode {
                            options.push(format!("mode={mode:o}"));
                        }
                        if r.read_only {
                            options.push("ro".into());
                        }
                        tmpfs.insert(r.target.clone(), options.join(","));
                        MountPoint {
                            kind: "tmpfs".into(),
                            destination: r.target.clone(),
                            rw: !r.read_only,
                            ..Default::default()
                        }
                    }
                });
            }
            Ok(())
        })();
        if let Err(e) = result {
            // Anonymous volumes made for a container that does not come to be.
            for name in created {
                let _ = self.volume_remove(&name, true);
            }
            return Err(e);
        }
        Ok(mounts)
    }

    fn bind_mount(&self, r: &MountRequest) -> Result<MountPoint, EngineError> {
        let source = r.source.clone().unwrap_or_default();
        if std::fs::symlink_metadata(&source).is_err() {
            if !r.create_source {
                return Err(EngineError::Invalid(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {source}"
                )));
            }
            std::fs::create_dir_all(&source)
                .map_err(crate::io_err(format!("create bind source {source}")))?;
        }
        Ok(MountPoint {
            kind: "bind".into(),
            source,
            destination: r.target.clone(),
            mode: r.mode.clone(),
            rw: !r.read_only,
            propagation: if r.propagation.is_empty() {
                "rprivate".into()
            } else {
                r.propagation.clone()
            },
            ..Default::default()
        })
    }

    /// The volume for `r`, made when missing; `true` when it was empty, in which case the
    /// image's content at the target was copied into it (Docker's copy-up).
    fn volume_mount(
        &mut self,
        r: &MountRequest,
        layers: &[PathBuf],
    ) -> Result<(MountPoint, bool), EngineError> {
        let mut labels = r.volume_labels.clone();
        if r.source.is_none() {
            labels.insert(crate::volumes::ANONYMOUS_LABEL.into(), String::new());
        }
        // An existing volume is used as it is (only a new one takes `--mount`'s options).
        let existing = match &r.source {
            Some(name) => self.volume(name).ok(),
            None => None,
        };
        let volume: Volume = match existing {
            Some(v) => v,
            None => self.volume_create(&VolumeOptions {
                name: r.source.clone(),
                driver: "local".into(),
                labels,
                options: r.volume_options.clone(),
                anonymous: r.source.is_none(),
            })?,
        };
        // A volume with driver options holds what its device holds: that is what is
        // filled (mounted detached for the copy, as Docker's local driver mounts it for
        // one), not its unused `_data`.
        let (data, label) = volume_root(&volume)?;
        let empty = rustix::fs::Dir::read_from(&data)
            .map_err(|e| crate::io_err(format!("read {label}"))(e.into()))?
            .filter_map(Result::ok)
            .all(|e| matches!(e.file_name().to_bytes(), b"." | b".."));
        if empty && !r.no_copy {
            copy_up(layers, &r.target, data, &label)?;
        }
        Ok((
            MountPoint {
                kind: "volume".into(),
                name: volume.name,
                source: volume.mountpoint,
                destination: r.target.clone(),
                driver: "local".into(),
                mode: if r.mode.is_empty() {
                    "z".into()
                } else {
                    r.mode.clone()
                },
                rw: !r.read_only,
                propagation: String::new(),
            },
            empty,
        ))
    }
}

/// The root of what `volume` holds, as a directory fd, and how to name it in messages: its
/// `_data`, or with driver options the directory (`o=bind`) or filesystem they name.
fn volume_root(volume: &Volume) -> Result<(OwnedFd, String), EngineError> {
    let dir_flags =
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
    let open_dir = |path: &str| {
        rustix::fs::open(path, dir_flags, rustix::fs::Mode::empty())
            .map_err(|e| crate::io_err(format!("open {path}"))(e.into()))
    };
    let opts = &volume.options;
    let Some(kind) = opts.get("type") else {
        return Ok((open_dir(&volume.mountpoint)?, volume.mountpoint.clone()));
    };
    let device = opts.get("device").map(String::as_str).unwrap_or_default();
    let o = opts.get("o").map(String::as_str).unwrap_or_default();
    let label = format!("the device {device:?} of volume {}", volume.name);
    if o.split(',').any(|f| f == "bind" || f == "rbind") {
        return Ok((open_dir(device)?, label));
    }
    let mount = berth_runtime::view::device_view(kind, device, o)
        .map_err(crate::io_err(format!("mount {label} (type {kind})")))?;
    let root = rustix::fs::openat(&mount, ".", dir_flags, rustix::fs::Mode::empty())
        .map_err(|e| crate::io_err(format!("open {label}"))(e.into()))?;
    Ok((root, label))
}

/// Copies what the image has at `target` (a directory) into the empty volume directory
/// `dest` (`label` in messages), with its owner and mode, as Docker fills a new volume.
fn copy_up(
    layers: &[PathBuf],
    target: &str,
    dest: OwnedFd,
    label: &str,
) -> Result<(), EngineError> {
    let view = match layers {
        [one] => berth_runtime::view::dir_view(one),
        many => berth_runtime::view::overlay_view(many, None),
    }
    .map_err(crate::io_err("mount the image's layers"))?;
    let target = Path::new(target);
    match berth_store::stat_in_root(view.as_fd(), target, true) {
        Ok(stat) if stat.kind == berth_store::PathKind::Dir => {}
        // Nothing, or not a directory, at that path in the image: nothing to copy.
        _ => return Ok(()),
    }
    let source = berth_store::open_dir_in_root(view.as_fd(), target).map_err(crate::io_err(
        format!("open {} in the image", target.display()),
    ))?;
    let st = rustix::fs::fstat(&source).map_err(|e| crate::io_err("stat")(e.into()))?;
    rustix::fs::fchown(
        &dest,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )
    .and_then(|()| rustix::fs::fchmod(&dest, rustix::fs::Mode::from_raw_mode(st.st_mode & 0o7777)))
    .map_err(|e| crate::io_err(format!("set the owner of {label}"))(e.into()))?;
    let (reader, writer) = std::io::pipe().map_err(crate::io_err("pipe"))?;
    std::thread::scope(|scope| {
        let view = &view;
        let packer = scope.spawn(move || {
            berth_store::pack_path(
                view.as_fd(),
                target,
                &berth_store::PackOptions {
                    name: PathBuf::new(),
                    follow_top: true,
                    owner: None,
                    owner_names: false,
                },
                writer,
            )
        });
        let unpacked = berth_store::unpack_into(
            reader,
            dest.as_fd(),
            Path::new(label),
            &berth_store::UnpackOptions {
                whiteouts: false,
                owner: None,
            },
        );
        let packed = packer.join().expect("the copy-up packer panicked");
        match (packed, unpacked) {
            (Err(e), _) => Err(EngineError::Invalid(format!(
                "copy {} into the new volume: {e}",
                target.display()
            ))),
            (_, Err(e)) => Err(EngineError::Invalid(format!(
                "copy {} into the new volume: {e}",
                target.display()
            ))),
            _ => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flags_parse_like_docker() {
        let m = parse_volume_flag("data:/srv/data:ro").unwrap();
        assert_eq!(m.kind, MountKind::Volume);
        assert_eq!(m.source.as_deref(), Some("data"));
        assert_eq!(m.target, "/srv/data");
        assert!(m.read_only);
        let m = parse_volume_flag("/host/dir:/in/ctr/").unwrap();
        assert_eq!(m.kind, MountKind::Bind);
        assert_eq!(m.target, "/in/ctr");
        assert!(m.create_source && !m.read_only);
        let m = parse_volume_flag("/anon").unwrap();
        assert_eq!((m.kind, m.source.clone()), (MountKind::Volume, None));
        let m = parse_volume_flag("/anon:ro").unwrap();
        assert!(m.read_only && m.source.is_none());
        assert!(parse_volume_flag("v:/x:nocopy").unwrap().no_copy);
        assert_eq!(
            parse_volume_flag("/h:/c:rshared").unwrap().propagation,
            "rshared"
        );
        for bad in [
            "",
            "a:b:c:d",
            "data:relative",
            "./rel:/x",
            "v:/x:bogus",
            "v:/",
        ] {
            assert!(parse_volume_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mount_flags_parse_like_docker() {
        let m = parse_mount_flag("type=bind,source=/h,target=/c,readonly").unwrap();
        assert_eq!(m.kind, MountKind::Bind);
        assert!(m.read_only && !m.create_source);
        let m = parse_mount_flag(
            "type=volume,src=v,dst=/d,volume-label=team=ml,volume-opt=type=tmpfs,volume-nocopy",
        )
        .unwrap();
        assert_eq!(m.volume_labels["team"], "ml");
        assert_eq!(m.volume_options["type"], "tmpfs");
        assert!(m.no_copy);
        let m =
            parse_mount_flag("type=tmpfs,target=/scratch,tmpfs-size=64m,tmpfs-mode=700").unwrap();
        assert_eq!(m.tmpfs_size, 64 << 20);
        assert_eq!(m.tmpfs_mode, Some(0o700));
        let m = parse_mount_flag("target=/anon").unwrap();
        assert_eq!((m.kind, m.source), (MountKind::Volume, None));
        for bad in [
            "type=bind,target=/c",
            "type=bind,source=rel,target=/c",
            "type=tmpfs,source=x,target=/c",
            "type=volume,source=v",
            "type=nfs,target=/x",
            "type=volume,target=/x,bogus=1",
            "type=volume,target=/x,volume-driver=nfs",
        ] {
            assert!(parse_mount_flag(bad).is_err(), "{bad}");
        }
    }
}
