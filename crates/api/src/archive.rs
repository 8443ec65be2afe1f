//! `docker cp`: `HEAD|GET|PUT /containers/{id}/archive?path=`, on the engine's
//! [`Engine::stat_path`](berth_engine::Engine::stat_path), `archive_path` and
//! `extract_archive`. The path's stat travels base64-encoded in the
//! `X-Docker-Container-Path-Stat` header, in Go's `os.FileMode` bits, as the docker CLI
//! reads it.

use std::io::{self, Write};

use base64::Engine as _;
use berth_store::{PathKind, PathStat};
use hyper::{Response, StatusCode, header::HeaderValue};
use serde::Serialize;

use crate::{
    ApiError,
    http::{Api, Body, Call, ChannelWriter, no_content, with_body},
};

/// The header that carries the stat.
const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// Docker's `ContainerPathStat`, as JSON.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PathStatJson {
    name: String,
    size: u64,
    mode: u32,
    mtime: String,
    link_target: String,
}

/// Go's `os.FileMode` of a path: permissions plus type and special bits in Go's positions.
fn go_file_mode(stat: &PathStat) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const STICKY: u32 = 1 << 20;
    // Devices, FIFOs and sockets are not told apart by the stat berth keeps.
    const IRREGULAR: u32 = 1 << 19;
    let mut mode = stat.mode & 0o777;
    for (unix, go) in [(0o4000, SETUID), (0o2000, SETGID), (0o1000, STICKY)] {
        if stat.mode & unix != 0 {
            mode |= go;
        }
    }
    mode | match stat.kind {
        PathKind::File => 0,
        PathKind::Dir => DIR,
        PathKind::Symlink => SYMLINK,
        PathKind::Other => IRREGULAR,
    }
}

fn stat_header(stat: &berth_engine::contents::ContainerPathStat) -> HeaderValue {
    let mtime = jiff::Timestamp::from_second(stat.stat.mtime)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string();
    let value = PathStatJson {
        name: stat.name.clone(),
        size: stat.stat.size,
        mode: go_file_mode(&stat.stat),
        mtime,
        link_target: stat.link_target.clone(),
    };
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&value).expect("JSON values serialize"));
    HeaderValue::from_str(&encoded).expect("base64 is a valid header value")
}

fn path_param(call: &Call) -> Result<String, ApiError> {
    match call.param("path") {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(ApiError::bad_request("path is required")),
    }
}

/// `HEAD /containers/{id}/archive`: the stat alone.
pub async fn stat(api: &Api, call: &Call, id: String) -> Result<Response<Body>, ApiError> {
    let path = path_param(call)?;
    let stat = api
        .engine(move |engine| Ok(engine.stat_path(&id, &path)?))
        .await?;
    let mut response = no_content(StatusCode::OK)?;
    response
        .headers_mut()
        .insert(STAT_HEADER, stat_header(&stat));
    Ok(response)
}

/// `GET /containers/{id}/archive`: the path as a tar stream, its stat in the header.
pub async fn get(api: &Api, call: &Call, id: String) -> Result<Response<Body>, ApiError> {
    let path = path_param(call)?;
    let (header, body) = api
        .stream(
            move |engine| {
                let archive = engine.archive_path(&id, &path)?;
                Ok((stat_header(&archive.stat), archive))
            },
            |_, archive, tx| {
                let mut out = io::BufWriter::with_capacity(64 * 1024, ChannelWriter(tx));
                if let Err(e) = archive.write(&mut out).map(|_| out.flush()) {
                    // The head has gone out: a client sees a cut stream (as with dockerd).
                    tracing::warn!("archive: {e}");
                }
            },
        )
        .await?;
    let mut response = with_body(StatusCode::OK, "application/x-tar", body);
    response.headers_mut().insert(STAT_HEADER, header);
    Ok(response)
}

/// `PUT /containers/{id}/archive`: extracts the request's tar stream into the directory
/// `path` (`copyUIDGID=1` keeps the archive's owners).
pub async fn put(api: &Api, mut call: Call, id: String) -> Result<Response<Body>, ApiError> {
    let path = path_param(&call)?;
    let keep_owners = call.flag("copyUIDGID");
    let reader = call.body_reader();
    let result = api
        .engine(move |engine| Ok(engine.extract_archive(&id, &path, reader, keep_owners)?))
        .await;
    result?;
    no_content(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_modes_take_gos_bits() {
        let stat = |kind, mode| PathStat {
            kind,
            mode,
            size: 0,
            mtime: 0,
            link_target: None,
        };
        // The values dockerd sent for a directory and a symlink.
        assert_eq!(go_file_mode(&stat(PathKind::Dir, 0o755)), 2147484141);
        assert_eq!(go_file_mode(&stat(PathKind::Symlink, 0o777)), 134218239);
        assert_eq!(go_file_mode(&stat(PathKind::File, 0o644)), 420);
        assert_eq!(
            go_file_mode(&stat(PathKind::File, 0o4755)),
            (1 << 23) | 0o755
        );
    }
}
