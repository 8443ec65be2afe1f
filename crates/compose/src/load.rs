//! From files on disk to a checked project: find the files, read `.env`, parse each file,
//! interpolate it, check it alone against the model (so an error names its file), merge the
//! files in order, and check the whole (references between services, networks, volumes).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use indexmap::IndexMap;
use serde_json::Value;

use crate::{
    ComposeError,
    interpolate::interpolate,
    model::ComposeFile,
    yaml::{self, Node, Tag},
};

/// The file names looked for, in order, when no `-f` is given.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Override files read after the one found.
const OVERRIDE_FILES: &[&str] = &[
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
];

/// What the command line says about the project.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` (several are merged in order); empty: `COMPOSE_FILE`, then the default names.
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--project-directory`.
    pub project_directory: Option<PathBuf>,
    /// `--profile` (and `COMPOSE_PROFILES`).
    pub profiles: Vec<String>,
    /// `--env-file` (`.env` in the project directory otherwise).
    pub env_files: Vec<PathBuf>,
    /// Where relative paths start (the current directory).
    pub working_dir: PathBuf,
    /// The process's environment.
    pub environment: HashMap<String, String>,
}

/// A loaded project.
#[derive(Debug, Clone)]
pub struct Project {
    /// Its name (normalized).
    pub name: String,
    /// Where relative paths in its files start.
    pub dir: PathBuf,
    /// Its files, absolute.
    pub files: Vec<PathBuf>,
    /// The merged model, every service (profiles decide which are active).
    pub model: ComposeFile,
    /// Active profiles.
    pub profiles: Vec<String>,
    /// The environment interpolation saw: the process's over the `.env` file's.
    pub environment: HashMap<String, String>,
    /// Warnings for the user (variables not set, `version` obsolete).
    pub warnings: Vec<String>,
}

/// Loads the project `opts` describes.
pub fn load(opts: &LoadOptions) -> Result<Project, ComposeError> {
    let files = find_files(opts)?;
    let dir = match &opts.project_directory {
        Some(d) => absolute(&opts.working_dir, d),
        None => files[0]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| opts.working_dir.clone()),
    };
    let mut environment = HashMap::new();
    let env_files: Vec<PathBuf> = if opts.env_files.is_empty() {
        let default = dir.join(".env");
        if default.is_file() {
            vec![default]
        } else {
            Vec::new()
        }
    } else {
        opts.env_files
            .iter()
            .map(|f| absolute(&opts.working_dir, f))
            .collect()
    };
    for f in &env_files {
        let text = std::fs::read_to_string(f).map_err(|e| {
            ComposeError::Invalid(format!("couldn't read env file {}: {e}", f.display()))
        })?;
        let lookup = |name: &str| {
            opts.environment
                .get(name)
                .or_else(|| environment.get(name))
                .cloned()
        };
        let parsed = parse_env_file(&text, &lookup)
            .map_err(|e| ComposeError::Invalid(format!("{}: {e}", f.display())))?;
        environment.extend(parsed);
    }
    environment.extend(opts.environment.iter().map(|(k, v)| (k.clone(), v.clone())));

    let mut warnings = Vec::new();
    let mut merged: Option<Node> = None;
    for file in &files {
        let node = read_file(file, &environment, &mut warnings)?;
        merged = Some(match merged {
            None => node.untagged(),
            Some(base) => merge(base, node, ""),
        });
    }
    let merged = merged.unwrap_or(Node::Null).untagged();
    let label = files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let model: ComposeFile = typed(&merged.to_json(), &label)?;
    if model.version.is_some() {
        warnings.push(format!(
            "{}: the attribute `version` is obsolete, it will be ignored",
            files[0].display()
        ));
    }

    let raw_name = opts
        .project_name
        .clone()
        .map(|n| (n, true))
        .or_else(|| {
            environment
                .get("COMPOSE_PROJECT_NAME")
                .filter(|n| !n.is_empty())
                .map(|n| (n.clone(), true))
        })
        .or_else(|| model.name.clone().map(|n| (n, true)))
        .unwrap_or_else(|| {
            (
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                false,
            )
        });
    let name = match raw_name {
        (n, true) => {
            if !valid_project_name(&n) {
                return Err(ComposeError::Invalid(format!(
                    "{n:?} is not a valid project name: it must contain only lowercase letters, digits, dashes and underscores, and start with a letter or digit"
                )));
            }
            n
        }
        (n, false) => normalize_project_name(&n),
    };
    if name.is_empty() {
        return Err(ComposeError::Invalid(
            "project name must not be empty".into(),
        ));
    }
    let mut profiles = opts.profiles.clone();
    if profiles.is_empty()
        && let Some(p) = environment.get("COMPOSE_PROFILES")
    {
        profiles = p
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
    }
    let project = Project {
        name,
        dir,
        files,
        model,
        profiles,
        environment,
        warnings,
    };
    check(&project)?;
    Ok(project)
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn find_files(opts: &LoadOptions) -> Result<Vec<PathBuf>, ComposeError> {
    let mut files: Vec<PathBuf> = opts
        .files
        .iter()
        .map(|f| absolute(&opts.working_dir, f))
        .collect();
    if files.is_empty()
        && let Some(list) = opts
            .environment
            .get("COMPOSE_FILE")
            .filter(|l| !l.is_empty())
    {
        let sep = opts
            .environment
            .get("COMPOSE_PATH_SEPARATOR")
            .map_or(":", String::as_str);
        files = list
            .split(sep)
            .map(|f| absolute(&opts.working_dir, Path::new(f)))
            .collect();
    }
    if files.is_empty() {
        let start = opts
            .project_directory
            .as_deref()
            .map_or(opts.working_dir.clone(), |d| absolute(&opts.working_dir, d));
        let mut dir = Some(start.as_path());
        while let Some(d) = dir {
            if let Some(found) = DEFAULT_FILES
                .iter()
                .map(|n| d.join(n))
                .find(|p| p.is_file())
            {
                files.push(found);
                if let Some(o) = OVERRIDE_FILES
                    .iter()
                    .map(|n| d.join(n))
                    .find(|p| p.is_file())
                {
                    files.push(o);
                }
                break;
            }
            dir = d.parent();
        }
        if files.is_empty() {
            return Err(ComposeError::Invalid(
                "no configuration file provided: not found".into(),
            ));
        }
    }
    for f in &files {
        if !f.is_file() {
            return Err(ComposeError::Invalid(format!(
                "open {}: no such file or directory",
                f.display()
            )));
        }
    }
    Ok(files)
}

/// One file: parsed, interpolated, and checked alone against the model.
fn read_file(
    path: &Path,
    env: &HashMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<Node, ComposeError> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| ComposeError::Invalid(format!("{name}: {e}")))?;
    parse_document(&text, &name, env, warnings)
}

/// One compose document's text (named `name` in errors): parsed, interpolated with `env`,
/// and checked alone against the model. No I/O: the fuzz target's entry.
pub fn parse_document(
    text: &str,
    name: &str,
    env: &HashMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<Node, ComposeError> {
    let node = yaml::parse(text).map_err(|e| ComposeError::Invalid(format!("{name}: {e}")))?;
    let node = match node {
        Node::Map(m) => Node::Map(m),
        Node::Null => Node::Map(IndexMap::new()),
        _ => {
            return Err(ComposeError::Invalid(format!(
                "{name}: (root): expected a mapping at the top level"
            )));
        }
    };
    let mut unset = Vec::new();
    let lookup = |v: &str| env.get(v).cloned();
    let node = interpolate_node(node, "", &lookup, &mut unset)
        .map_err(|e| ComposeError::Invalid(format!("{name}: {e}")))?;
    for v in unset {
        let w = format!("The {v:?} variable is not set. Defaulting to a blank string.");
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
    let node = strip_extensions(node);
    let node = unsupported(node, name, warnings)?;
    typed(&node.clone().untagged().to_json(), name)?;
    Ok(node)
}

fn interpolate_node(
    node: Node,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<Node, String> {
    Ok(match node {
        Node::Str(s) => Node::Str(
            interpolate(&s, lookup, unset)
                .map_err(|e| format!("{}: {e}", yaml::display_path(path)))?,
        ),
        Node::Seq(items) => Node::Seq(
            items
                .into_iter()
                .enumerate()
                .map(|(i, n)| interpolate_node(n, &format!("{path}[{i}]"), lookup, unset))
                .collect::<Result<_, _>>()?,
        ),
        Node::Map(map) => Node::Map(
            map.into_iter()
                .map(|(k, v)| {
                    let here = yaml::join(path, &k);
                    Ok((k, interpolate_node(v, &here, lookup, unset)?))
                })
                .collect::<Result<_, String>>()?,
        ),
        Node::Tagged(t, inner) => {
            Node::Tagged(t, Box::new(interpolate_node(*inner, path, lookup, unset)?))
        }
        other => other,
    })
}

/// `x-*` keys (extensions) anywhere in the top level and in services, networks and volumes
/// are the user's own: left out of the model.
fn strip_extensions(node: Node) -> Node {
    fn without_x(map: IndexMap<String, Node>) -> IndexMap<String, Node> {
        map.into_iter()
            .filter(|(k, _)| !k.starts_with("x-"))
            .collect()
    }
    let Node::Map(top) = node else { return node };
    let top = without_x(top)
        .into_iter()
        .map(|(k, v)| {
            let v = match (k.as_str(), v) {
                ("services" | "networks" | "volumes", Node::Map(entries)) => Node::Map(
                    entries
                        .into_iter()
                        .map(|(name, def)| match def {
                            Node::Map(m) => (name, Node::Map(without_x(m))),
                            other => (name, other),
                        })
                        .collect(),
                ),
                (_, v) => v,
            };
            (k, v)
        })
        .collect();
    Node::Map(top)
}

/// Top-level keys of the specification berth does not act on: refused by name rather than
/// run without.
const UNSUPPORTED_TOP: &[&str] = &["secrets", "configs", "include", "models"];
/// Service keys berth does not act on and that change what runs: refused.
const UNSUPPORTED_SERVICE: &[&str] = &[
    "secrets",
    "configs",
    "extends",
    "sysctls",
    "devices",
    "device_cgroup_rules",
    "ipc",
    "pid",
    "userns_mode",
    "cgroup_parent",
    "links",
    "external_links",
    "volumes_from",
    "runtime",
    "isolation",
    "storage_opt",
    "blkio_config",
    "oom_kill_disable",
    "domainname",
    "mac_address",
    "dns_search",
    "dns_opt",
    "cpu_quota",
    "cpu_period",
    "develop",
    "post_start",
    "pre_stop",
];
/// Service keys that are hints a single engine may skip: a warning.
const IGNORED_SERVICE: &[&str] = &[
    "mem_reservation",
    "mem_swappiness",
    "oom_score_adj",
    "cpu_count",
    "cpu_percent",
    "cpu_rt_runtime",
    "cpu_rt_period",
    "stop_signal_timeout",
    "attach",
    "annotations",
    "credential_spec",
    "label_file",
    "use_api_socket",
];

/// Refuses what berth cannot do (`file: path: not supported by berth`), drops with a
/// warning what it may skip.
fn unsupported(node: Node, file: &str, warnings: &mut Vec<String>) -> Result<Node, ComposeError> {
    let Node::Map(mut top) = node else {
        return Ok(node);
    };
    for key in UNSUPPORTED_TOP {
        if top.get(*key).is_some_and(|v| !matches!(v, Node::Null)) {
            return Err(ComposeError::Invalid(format!(
                "{file}: {key}: not supported by berth"
            )));
        }
        top.shift_remove(*key);
    }
    if let Some(Node::Map(services)) = top.get_mut("services") {
        for (name, service) in services.iter_mut() {
            let Node::Map(keys) = service else { continue };
            if let Some(key) = UNSUPPORTED_SERVICE.iter().find(|k| keys.contains_key(**k)) {
                return Err(ComposeError::Invalid(format!(
                    "{file}: services.{name}.{key}: not supported by berth"
                )));
            }
            for key in IGNORED_SERVICE {
                if keys.shift_remove(*key).is_some() {
                    warnings.push(format!("{file}: services.{name}.{key}: ignored by berth"));
                }
            }
        }
    }
    Ok(Node::Map(top))
}

/// JSON into the typed model; an error names `file`, the path in the document and what
/// was expected there.
fn typed(json: &Value, file: &str) -> Result<ComposeFile, ComposeError> {
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "(root)".to_string()
        } else {
            path
        };
        ComposeError::Invalid(format!("{file}: {path}: {}", e.inner()))
    })
}

/// Service keys that take one string or a list of them (`dns_search` is refused before).
const ONE_OR_MANY: &[&str] = &["env_file", "dns", "tmpfs"];
/// Service keys a later file replaces whole.
const REPLACED: &[&str] = &["command", "entrypoint", "test"];
/// Service keys given as lists or mappings: merged by key.
const KEYED: &[&str] = &["environment", "labels", "args", "depends_on", "networks"];

/// A short form in its long one, so that both sides of a merge have the same shape:
/// `build: DIR` as `{context: DIR}`, one string of a [`ONE_OR_MANY`] key as a list of it.
fn long_form(key: &str, node: Node) -> Node {
    match node {
        Node::Str(context) if key == "build" => Node::Map(IndexMap::from([(
            "context".to_string(),
            Node::Str(context),
        )])),
        Node::Str(one) => Node::Seq(vec![Node::Str(one)]),
        other => other,
    }
}

/// Compose's merge of a later file `over` into `base` at `path`.
fn merge(base: Node, over: Node, path: &str) -> Node {
    let key = path.rsplit('.').next().unwrap_or(path);
    match (base, over) {
        (_, Node::Tagged(Tag::Override, inner)) => inner.untagged(),
        // Short forms as their long ones, so that both sides merge.
        (base, over)
            if (key == "build" || ONE_OR_MANY.contains(&key))
                && (is_str(&base) || is_str(&over)) =>
        {
            merge(long_form(key, base), long_form(key, over), path)
        }
        (base, over) if KEYED.contains(&key) && (is_list(&base) || is_list(&over)) => {
            merge(keyed(base, key), keyed(over, key), &format!("{path}#"))
        }
        (Node::Map(mut base), Node::Map(over)) => {
            for (k, v) in over {
                if matches!(v, Node::Tagged(Tag::Reset, _)) {
                    base.shift_remove(&k);
                    continue;
                }
                let here = yaml::join(path, &k);
                // In place: the first file's order of keys (services) stands.
                match base.get_mut(&k) {
                    Some(b) => *b = merge(std::mem::replace(b, Node::Null), v, &here),
                    None => {
                        base.insert(k, v.untagged());
                    }
                }
            }
            Node::Map(base)
        }
        (Node::Seq(base), Node::Seq(over)) if key == "volumes" && path.starts_with("services.") => {
            // Mounts merge by their target.
            let target = |n: &Node| -> Option<String> {
                match n {
                    Node::Str(s) => {
                        let parts: Vec<&str> = s.split(':').collect();
                        Some(parts.get(1).unwrap_or(&parts[0]).to_string())
                    }
                    Node::Map(m) => match m.get("target") {
                        Some(Node::Str(t)) => Some(t.clone()),
                        _ => None,
                    },
                    _ => None,
                }
            };
            let mut out: Vec<Node> = base;
            for v in over {
                let v = v.untagged();
                match out
                    .iter()
                    .position(|b| target(b).is_some() && target(b) == target(&v))
                {
                    Some(i) => out[i] = v,
                    None => out.push(v),
                }
            }
            Node::Seq(out)
        }
        // Other sequences: a later file's entries are added (compose's merge rules).
        (Node::Seq(base), Node::Seq(over)) if !REPLACED.contains(&key) => {
            let mut out = base;
            for v in over {
                let v = v.untagged();
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Node::Seq(out)
        }
        (_, over) => over.untagged(),
    }
}

fn is_str(n: &Node) -> bool {
    matches!(n, Node::Str(_))
}

fn is_list(n: &Node) -> bool {
    matches!(n, Node::Seq(_))
}

/// A list form of a keyed field as its mapping form.
fn keyed(node: Node, key: &str) -> Node {
    let Node::Seq(items) = node else { return node };
    let mut map = IndexMap::new();
    for item in items {
        let Node::Str(s) = item.untagged() else {
            continue;
        };
        match key {
            "depends_on" => {
                let mut dep = IndexMap::new();
                dep.insert("condition".to_string(), Node::Str("service_started".into()));
                map.insert(s, Node::Map(dep));
            }
            "networks" => {
                map.insert(s, Node::Null);
            }
            _ => match s.split_once('=') {
                Some((k, v)) => {
                    map.insert(k.to_string(), Node::Str(v.to_string()));
                }
                None => {
                    map.insert(s, Node::Null);
                }
            },
        }
    }
    Node::Map(map)
}

/// Compose's checks across the model: what every service needs, and that what it names
/// exists.
fn check(project: &Project) -> Result<(), ComposeError> {
    let invalid = |m: String| {
        Err(ComposeError::Invalid(format!(
            "{m}: invalid compose project"
        )))
    };
    let model = &project.model;
    for (name, s) in &model.services {
        if s.image.is_none() && s.build.is_none() {
            return invalid(format!(
                "service {name:?} has neither an image nor a build context specified"
            ));
        }
        let replicas = s.replicas();
        if s.container_name.is_some() && replicas > 1 {
            return invalid(format!(
                "service {name:?} has a container_name and {replicas} replicas: a name can be given to one container only"
            ));
        }
        for dep in s.depends_on.keys() {
            if !model.services.contains_key(dep) {
                return invalid(format!(
                    "service {name:?} depends on undefined service {dep:?}"
                ));
            }
        }
        for net in s.networks.keys() {
            if net != "default" && !model.networks.contains_key(net) {
                return invalid(format!(
                    "service {name:?} refers to undefined network {net}"
                ));
            }
        }
        if s.network_mode.is_some() && !s.networks.is_empty() {
            return invalid(format!(
                "service {name:?} declares mutually exclusive `network_mode` and `networks`"
            ));
        }
        if let Some(other) = s
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("service:"))
            && !model.services.contains_key(other)
        {
            return invalid(format!(
                "service {name:?} uses the network stack of undefined service {other:?}"
            ));
        }
        for v in &s.volumes {
            if v.kind == "volume"
                && let Some(src) = &v.source
                && !model.volumes.contains_key(src)
            {
                return invalid(format!("service {name:?} refers to undefined volume {src}"));
            }
        }
    }
    // A cycle in depends_on.
    fn visit<'a>(
        model: &'a ComposeFile,
        name: &'a str,
        stack: &mut Vec<&'a str>,
        done: &mut Vec<&'a str>,
    ) -> Result<(), String> {
        if done.contains(&name) {
            return Ok(());
        }
        if let Some(at) = stack.iter().position(|n| *n == name) {
            let mut cycle: Vec<&str> = stack[at..].to_vec();
            cycle.push(name);
            return Err(format!("dependency cycle detected: {}", cycle.join(" -> ")));
        }
        stack.push(name);
        if let Some(s) = model.services.get(name) {
            for dep in s.dependencies() {
                visit(model, dep, stack, done)?;
            }
        }
        stack.pop();
        done.push(name);
        Ok(())
    }
    let mut done = Vec::new();
    for name in model.services.keys() {
        visit(model, name, &mut Vec::new(), &mut done).map_err(ComposeError::Invalid)?;
    }
    Ok(())
}

/// Docker Compose's rule for a name it derives (from a directory): lower case, only
/// `[a-z0-9_-]`, starting with a letter or digit.
pub fn normalize_project_name(name: &str) -> String {
    let lower: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    lower.trim_start_matches(['_', '-']).to_string()
}

fn valid_project_name(name: &str) -> bool {
    !name.is_empty() && normalize_project_name(name) == name
}

/// A `.env` (or `env_file:`) file: `KEY=VALUE` lines, `#` comments, `export ` allowed,
/// single quotes literal, double quotes with `\n` escapes; unquoted and double-quoted values
/// are interpolated with the variables set so far. A line with only `KEY` takes it from
/// `lookup` and is left out when that has none.
pub fn parse_env_file(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, String>, String> {
    let mut out: IndexMap<String, String> = IndexMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, raw)) = line.split_once('=') else {
            let key = line.trim();
            if let Some(v) = lookup(key) {
                out.insert(key.to_string(), v);
            }
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!(
                "line {}: unexpected character in variable name {key:?}",
                n + 1
            ));
        }
        let raw = raw.trim_start();
        let (value, interpolated) = if let Some(rest) = raw.strip_prefix('\'') {
            let end = rest
                .find('\'')
                .ok_or_else(|| format!("line {}: unterminated quoted value", n + 1))?;
            (rest[..end].to_string(), false)
        } else if let Some(rest) = raw.strip_prefix('"') {
            // A double-quoted value may span lines.
            let mut text = rest.to_string();
            let mut end = closing_quote(&text);
            while end.is_none() {
                let Some((_, more)) = lines.next() else {
                    return Err(format!("line {}: unterminated quoted value", n + 1));
                };
                text.push('\n');
                text.push_str(more);
                end = closing_quote(&text);
            }
            let body = &text[..end.unwrap_or(text.len())];
            (unescape(body), true)
        } else {
            let value = match raw.find(" #") {
                Some(at) => &raw[..at],
                None => raw,
            };
            (value.trim_end().to_string(), true)
        };
        let value = if interpolated {
            let known = |name: &str| out.get(name).cloned().or_else(|| lookup(name));
            interpolate(&value, &known, &mut Vec::new())
                .map_err(|e| format!("line {}: {e}", n + 1))?
        } else {
            value
        };
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// A double-quoted value's escapes, in one pass: `\n`, `\r`, `\t`, `\"`, `\\`; any other
/// backslash stays.
fn unescape(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn closing_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// A service's `environment:` and `env_file:` as the container gets them.
pub fn service_environment(
    project: &Project,
    service: &crate::model::Service,
) -> Result<Vec<String>, ComposeError> {
    let mut env: IndexMap<String, String> = IndexMap::new();
    let lookup = |name: &str| project.environment.get(name).cloned();
    for f in &service.env_file {
        let path = project.dir.join(&f.path);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(_) if !f.required => continue,
            Err(e) => {
                return Err(ComposeError::Invalid(format!(
                    "env file {} not found: {e}",
                    path.display()
                )));
            }
        };
        let parsed = parse_env_file(&text, &lookup)
            .map_err(|e| ComposeError::Invalid(format!("{}: {e}", path.display())))?;
        env.extend(parsed);
    }
    for (k, v) in &service.environment {
        match v.clone().or_else(|| lookup(k)) {
            Some(v) => {
                env.insert(k.clone(), v);
            }
            None => {
                env.shift_remove(k);
            }
        }
    }
    Ok(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn opts(dir: &Path) -> LoadOptions {
        LoadOptions {
            working_dir: dir.to_path_buf(),
            ..Default::default()
        }
    }

    #[test]
    fn files_merge_in_order() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "compose.yaml",
            "services:\n  web:\n    image: busybox\n    environment: [A=1, B=2]\n    ports: ['80:80']\n    command: [a, b]\n    volumes: ['data:/data']\nvolumes:\n  data:\n",
        );
        write(
            d.path(),
            "compose.override.yaml",
            "services:\n  web:\n    environment:\n      B: '3'\n    ports: ['81:81']\n    command: [c]\n    volumes: ['./x:/data']\n    user: !reset null\n",
        );
        let p = load(&opts(d.path())).unwrap();
        let web = &p.model.services["web"];
        assert_eq!(web.environment["A"].as_deref(), Some("1"));
        assert_eq!(web.environment["B"].as_deref(), Some("3"));
        assert_eq!(web.ports.len(), 2);
        assert_eq!(web.command.as_deref().unwrap(), ["c"]);
        assert_eq!(web.volumes.len(), 1);
        assert_eq!(web.volumes[0].kind, "bind");
        assert_eq!(
            p.name,
            normalize_project_name(&d.path().file_name().unwrap().to_string_lossy())
        );
    }

    #[test]
    fn short_forms_merge_with_long_ones() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "compose.yaml",
            "services:\n  app:\n    build: ./app\n    env_file: a.env\n    cap_add: [NET_ADMIN]\n",
        );
        write(
            d.path(),
            "compose.override.yaml",
            "services:\n  app:\n    build:\n      args: {X: '1'}\n    env_file: [b.env]\n    cap_add: [SYS_TIME]\n",
        );
        let p = load(&opts(d.path())).unwrap();
        let app = &p.model.services["app"];
        let build = app.build.as_ref().unwrap();
        assert_eq!(
            (build.context.as_str(), build.args["X"].as_deref()),
            ("./app", Some("1"))
        );
        let files: Vec<&str> = app.env_file.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(files, ["a.env", "b.env"]);
        assert_eq!(app.cap_add, ["NET_ADMIN", "SYS_TIME"]);
    }

    #[test]
    fn env_file_and_interpolation() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            ".env",
            "# comment\nTAG=1.36\nexport NAME='my proj'\nPORT=8080 # inline\nQ=\"a\\nb\"\nWIN=\"C:\\\\new\"\n",
        );
        write(
            d.path(),
            "compose.yaml",
            "name: p1\nservices:\n  web:\n    image: busybox:${TAG}\n    ports: ['${PORT:-1}:80']\n    environment:\n      N: ${NAME}\n      Q: $Q\n      U: ${UNSET}\n",
        );
        let mut o = opts(d.path());
        o.environment.insert("TAG".into(), "latest".into());
        let p = load(&o).unwrap();
        let web = &p.model.services["web"];
        assert_eq!(web.image.as_deref(), Some("busybox:latest"));
        assert_eq!(web.ports[0].published.as_deref(), Some("8080"));
        assert_eq!(web.environment["N"].as_deref(), Some("my proj"));
        assert_eq!(web.environment["Q"].as_deref(), Some("a\nb"));
        assert_eq!(p.environment["WIN"], "C:\\new");
        assert_eq!(p.name, "p1");
        assert!(
            p.warnings.iter().any(|w| w.contains("\"UNSET\"")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn errors_name_file_and_path() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "compose.yaml",
            "services:\n  web:\n    image: busybox\n    ports: 80\n",
        );
        let e = load(&opts(d.path())).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}: services.web.ports: expected a list",
                f.display()
            )),
            "{e}"
        );
        write(
            d.path(),
            "compose.yaml",
            "services:\n  web:\n    image: ${X:?X must be set}\n",
        );
        let e = load(&opts(d.path())).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "services.web.image: required variable X is missing a value: X must be set"
            ),
            "{e}"
        );
        write(
            d.path(),
            "compose.yaml",
            "services:\n  web:\n    build: .\n    depends_on: [db]\n",
        );
        let e = load(&opts(d.path())).unwrap_err().to_string();
        assert_eq!(
            e,
            "service \"web\" depends on undefined service \"db\": invalid compose project"
        );
        write(
            d.path(),
            "compose.yaml",
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
        );
        let e = load(&opts(d.path())).unwrap_err().to_string();
        assert!(
            e.starts_with("dependency cycle detected: a -> b -> a"),
            "{e}"
        );
        write(
            d.path(),
            "compose.yaml",
            "services:\n  a:\n    image: x\n    volumes: ['v:/v']\n",
        );
        let e = load(&opts(d.path())).unwrap_err().to_string();
        assert!(e.contains("undefined volume v"), "{e}");
        let mut o = opts(d.path());
        o.project_name = Some("Bad Name".into());
        write(d.path(), "compose.yaml", "services:\n  a:\n    image: x\n");
        assert!(
            load(&o)
                .unwrap_err()
                .to_string()
                .contains("not a valid project name")
        );
    }

    proptest::proptest! {
        /// Any text: an error or a model, never a panic; what is accepted serializes back
        /// into the same model.
        #[test]
        fn any_document_loads_or_errs(text in "(services|image|ports|volumes|build|\\$\\{A:-x\\}|<<|&a|\\*a|!reset|!override|[ :\\-\\[\\]{},'\"\n]|[a-z0-9]){0,60}") {
            let env = HashMap::from([("A".to_string(), "1".to_string())]);
            if let Ok(node) = parse_document(&text, "f", &env, &mut Vec::new()) {
                let model: ComposeFile = serde_json::from_value(node.untagged().to_json()).unwrap();
                let again: ComposeFile = serde_json::from_value(serde_json::to_value(&model).unwrap()).unwrap();
                proptest::prop_assert_eq!(model.services.len(), again.services.len());
            }
        }
    }

    #[test]
    fn names() {
        assert_eq!(normalize_project_name("My.App_1"), "myapp_1");
        assert_eq!(normalize_project_name("_x"), "x");
    }
}
