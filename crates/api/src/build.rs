//! `POST /build`: the classic builder's endpoint (what the docker CLI uses without buildx,
//! and what docker-py and compose call) over berth's builder. The context comes as a tar
//! stream and is unpacked for the build's length; progress goes out as Docker's JSON
//! `stream` messages (BuildKit-style `#N` step lines), then `aux` with the image ID and the
//! classic `Successfully built`/`Successfully tagged` lines that clients look for.

use std::{collections::BTreeMap, io::Write, sync::Arc};

use berth_build::{BaseFetcher, BuildOptions, Progress};
use berth_distribution::{PullOptions, Registries, Silent};
use berth_reference::Reference;
use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use crate::{
    ApiError,
    http::{Api, Body, Call, channel_body, json_line, with_body},
    images::registries,
};

/// A JSON map parameter (`buildargs`, `labels`); a `null` value is left out.
pub(crate) fn map_param(call: &Call, key: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(text) = call.param(key).filter(|t| !t.trim().is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let map: BTreeMap<String, Option<String>> = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("invalid {key}: {e}")))?;
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect())
}

/// `POST /build?t=&dockerfile=&buildargs=&target=&nocache=&labels=&pull=&q=&networkmode=`.
pub async fn build(api: &Api, mut call: Call) -> Result<Response<Body>, ApiError> {
    if call.param("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(
            "remote build contexts are not supported: send the context as a tar archive",
        ));
    }
    let mut tags = Vec::new();
    for t in call.params("t") {
        tags.push(
            Reference::parse_with_default_tag(&t)
                .map_err(|e| ApiError::bad_request(format!("invalid tag \"{t}\": {e}")))?,
        );
    }
    let dockerfile_name = call
        .param("dockerfile")
        .filter(|d| !d.is_empty())
        .unwrap_or("Dockerfile")
        .to_string();
    let network = call
        .param("networkmode")
        .filter(|n| !n.is_empty() && *n != "default")
        .map(String::from);
    let quiet = call.flag("q");
    let registries = registries(&call, None)?;
    let mut opts = BuildOptions {
        dockerfile_name: dockerfile_name.clone(),
        build_args: map_param(&call, "buildargs")?,
        labels: map_param(&call, "labels")?,
        target: call
            .param("target")
            .filter(|t| !t.is_empty())
            .map(String::from),
        no_cache: call.flag("nocache"),
        pull: call.flag("pull"),
        platform: call
            .param("platform")
            .filter(|p| !p.is_empty())
            .map(String::from),
        network,
        tags,
        ..Default::default()
    };
    let root = api.root.clone();
    opts.fetch_base = Some(base_fetcher(root.clone(), registries));
    let reader = call.body_reader();
    let (tx, body) = channel_body();
    tokio::task::spawn_blocking(move || {
        let out = StreamLines {
            tx: tx.clone(),
            partial: Vec::new(),
        };
        let send = |value: serde_json::Value| {
            let _ = tx.blocking_send(json_line(&value));
        };
        let fail = |message: String| {
            send(json!({ "errorDetail": { "message": message }, "error": message }));
        };
        let context = match berth_build::receive_context(&root, reader) {
            Ok(c) => c,
            Err(e) => return fail(format!("unable to prepare context: {e}")),
        };
        opts.dockerfile = match context.read_dockerfile(&dockerfile_name) {
            Ok(text) => text,
            Err(e) => return fail(e),
        };
        opts.context = context.path().to_path_buf();
        opts.dockerignore = context.dockerignore();
        let mut progress = Progress::new(if quiet {
            None
        } else {
            Some(Box::new(out) as Box<dyn Write + Send>)
        });
        let built = berth_engine::Engine::open(&root)
            .map_err(|e| e.to_string())
            .and_then(|mut engine| {
                berth_build::build(&mut engine, &opts, &mut progress).map_err(|e| e.solve_message())
            });
        drop(context);
        match built {
            Ok(id) => {
                send(json!({ "aux": { "ID": id.to_string() } }));
                // `q`: the ID alone, which the docker CLI prints.
                if quiet {
                    return send(json!({ "stream": format!("{id}\n") }));
                }
                send(json!({ "stream": format!("Successfully built {}\n", id.short()) }));
                for t in &opts.tags {
                    send(json!({
                        "stream": format!("Successfully tagged {}\n", t.familiar_string())
                    }));
                }
            }
            Err(message) => fail(message),
        }
    });
    Ok(with_body(StatusCode::OK, "application/json", body))
}

/// Pulls missing base images quietly, with the registries (and the credentials) the
/// request came with.
fn base_fetcher(root: std::path::PathBuf, registries: Registries) -> BaseFetcher {
    let registries = Arc::new(registries);
    BaseFetcher(Arc::new(move |name: &str| {
        let reference = Reference::parse_with_default_tag(name)
            .map_err(|e| format!("invalid base image reference {name:?}: {e}"))?;
        let mut store = berth_store::Store::open(&root).map_err(|e| e.to_string())?;
        registries
            .pull(&mut store, &reference, &PullOptions::default(), &Silent)
            .map(|_| ())
            .map_err(|e| format!("pulling {}: {e}", reference.familiar_string()))
    }))
}

/// Progress text, one `{"stream": "LINE\n"}` message per line.
struct StreamLines {
    tx: mpsc::Sender<Bytes>,
    partial: Vec<u8>,
}

impl Write for StreamLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(pos) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line).into_owned();
            // A client that went away stops reading; the build goes on and is kept.
            let _ = self.tx.blocking_send(json_line(&json!({ "stream": text })));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
