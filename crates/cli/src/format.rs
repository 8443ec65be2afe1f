//! Docker's `--format` for list and inspect commands.
//!
//! `parse_format` reads the flag (`table`, `table <template>`, `json`, or a Go
//! template); `render_rows` prints a list the way `docker images`/`docker ps` do
//! (a header rendered from column titles, cells aligned like Docker's tabwriter);
//! `render_one` runs an `inspect --format` template. Templates are Go
//! `text/template` (via gotmpl) with Docker's extra functions: `json`, `split`,
//! `join`, `title`, `lower`, `upper`, `pad`, `truncate`.
//!
//! Rows and inspected values are anything `Serialize`; fields are looked up by their
//! serialized names, so row types use `#[serde(rename_all = "PascalCase")]` (or
//! explicit renames such as `ID`) to match Docker's field names. Maps inside them
//! should be `BTreeMap`s so `{{json .Labels}}` prints sorted keys like Go does.
//!
//! Not here: choosing columns or titles per command (the caller passes the default
//! table template and the header titles), and exit codes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::anyhow;
use gotmpl::parse::{Expr, ListNode, Node, Parser, PipeNode, Pos};
use gotmpl::{FuncMap, MissingKey, Template, TemplateError, Value, ValueFunc};
use serde::Serialize;
use tabwriter::TabWriter;

/// Docker's table writer settings: `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`.
const TABLE_MIN_WIDTH: usize = 10;
const TABLE_PADDING: usize = 3;

/// Functions that Go's text/template defines itself.
const GO_BUILTINS: [&str; 19] = [
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
];

/// Docker's template functions (`templates.basicFunctions` in docker/cli).
const DOCKER_FUNCTIONS: [&str; 8] = [
    "json", "split", "join", "title", "lower", "upper", "pad", "truncate",
];

/// What `--format` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns under a header. `None`: the command's default columns.
    Table(Option<String>),
    /// One compact JSON object per line.
    Json,
    /// A Go template rendered once per item, each followed by a newline.
    Template(String),
}

/// Reads a `--format` value the way Docker does: absent, empty or `table` is the
/// default table; a value starting with `table` is a custom table; `json` is JSON
/// lines; anything else is a template.
pub fn parse_format(s: Option<&str>) -> Format {
    let s = s.unwrap_or("");
    if s.is_empty() {
        return Format::Table(None);
    }
    if s == "json" {
        return Format::Json;
    }
    if let Some(rest) = s.strip_prefix("table") {
        let rest = rest.trim_matches(' ');
        if rest.trim().is_empty() {
            return Format::Table(None);
        }
        return Format::Table(Some(rest.to_string()));
    }
    Format::Template(s.to_string())
}

/// Prints `rows` in `format`, like Docker's list commands.
///
/// `default_table` is the command's table template (with or without its leading
/// `table`, e.g. `"table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"`).
/// `headers` maps field names to column titles (`ID` -> `IMAGE ID`); the header line
/// is the table template rendered over it, as Docker does. In every format a
/// literal `\t` or `\n` typed in the flag stands for a tab or newline.
///
/// Rows are rendered strictly: a field a row does not have is an error (Docker's
/// rows are Go structs), so every row should serialize every field.
/// A list command's output: with `quiet`, each row's `id` on a line; else the rows through
/// `--format` (`format`), or `default_table` with Docker's `headers` (template field to
/// column title).
pub fn print_list<T: Serialize>(
    rows: &[T],
    quiet: bool,
    id: impl Fn(&T) -> &str,
    format: Option<&str>,
    default_table: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if quiet {
        for row in rows {
            writeln!(out, "{}", id(row))?;
        }
        return Ok(());
    }
    let headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    render_rows(
        &parse_format(format),
        default_table,
        &headers,
        rows,
        &mut out,
    )
}

pub fn render_rows<T: Serialize>(
    format: &Format,
    default_table: &str,
    headers: &serde_json::Map<String, serde_json::Value>,
    rows: &[T],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (source, table) = match format {
        Format::Table(None) => (strip_table_prefix(default_table), true),
        Format::Table(Some(t)) => (t.as_str(), true),
        Format::Json => ("{{json .}}", false),
        Format::Template(t) => (t.as_str(), false),
    };
    let renderer = Renderer::for_rows(&docker_preformat(source))?;
    let mut body = String::new();
    for row in rows {
        body.push_str(&renderer.render(row)?);
        body.push('\n');
    }
    if table {
        // Go's width rule is max(minwidth, cell + padding); the Rust tabwriter uses
        // max(minwidth, cell) + padding, so subtract the padding from the minimum.
        let mut tw = TabWriter::new(&mut *out)
            .minwidth(TABLE_MIN_WIDTH - TABLE_PADDING)
            .padding(TABLE_PADDING);
        tw.write_all(renderer.render_header(headers).as_bytes())?;
        tw.write_all(b"\n")?;
        tw.write_all(body.as_bytes())?;
        tw.flush()?;
    } else {
        out.write_all(body.as_bytes())?;
    }
    Ok(())
}

/// Renders `inspect --format` style: the template once over `value`, without a
/// trailing newline. Missing fields print `<no value>`, and `{{json .X}}` keeps the
/// serialized field order of structs.
pub fn render_one<T: Serialize + ?Sized>(tmpl: &str, value: &T) -> anyhow::Result<String> {
    Renderer::new(tmpl)?.render(value)
}

/// A parsed Go template with Docker's functions registered.
pub struct Renderer {
    kind: Kind,
    body: Template,
    header: Template,
    json: Arc<Mutex<JsonContext>>,
    /// Held for a whole render, so concurrent renders don't mix their `JsonContext`.
    rendering: Mutex<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Inspect,
    Rows,
}

/// Per-render state the `json` function needs beyond its argument.
#[derive(Default)]
struct JsonContext {
    /// The row being rendered. Docker marshals a whole row (`{{json .}}`) through
    /// `json.Marshal` of a map: keys sorted and `<`, `>`, `&` escaped.
    row: Option<Value>,
    /// Object key order of the value being inspected: sorted keys -> serialized
    /// order, for objects whose order is not already sorted.
    order: KeyOrder,
}

type KeyOrder = HashMap<Vec<String>, Vec<String>>;

impl Renderer {
    /// Parses `source` for inspect-style rendering (see `render_one`).
    pub fn new(source: &str) -> anyhow::Result<Renderer> {
        Renderer::build(source, Kind::Inspect)
    }

    /// Parses `source` for list rows (see `render_rows`): a field missing from a row
    /// is an error, and `{{json .}}` prints the row with sorted keys, HTML-escaped.
    /// The caller does Docker's `\t`/`\n` and `table` handling first.
    pub fn for_rows(source: &str) -> anyhow::Result<Renderer> {
        Renderer::build(source, Kind::Rows)
    }

    fn build(source: &str, kind: Kind) -> anyhow::Result<Renderer> {
        check_functions(source).map_err(|e| anyhow!("template parsing error: {e}"))?;
        let json = Arc::new(Mutex::new(JsonContext::default()));
        let missing = match kind {
            Kind::Inspect => MissingKey::Invalid,
            Kind::Rows => MissingKey::Error,
        };
        let body = Template::new("")
            .funcs(basic_functions(&json))
            .missing_key(missing)
            .parse(source)
            .map_err(|e| anyhow!("template parsing error: {e}"))?;
        let header = Template::new("")
            .funcs(header_functions())
            .parse(source)
            .map_err(|e| anyhow!("template parsing error: {e}"))?;
        Ok(Renderer {
            kind,
            body,
            header,
            json,
            rendering: Mutex::new(()),
        })
    }

    /// Renders the template over `value` (no trailing newline).
    pub fn render<T: Serialize + ?Sized>(&self, value: &T) -> anyhow::Result<String> {
        let (data, order) = match self.kind {
            Kind::Rows => (to_template_value(value)?, KeyOrder::new()),
            Kind::Inspect => {
                let json = serde_json::to_value(value)
                    .map_err(|e| anyhow!("template parsing error: {e}"))?;
                let mut order = KeyOrder::new();
                collect_key_order(&json, &mut order);
                (to_template_value(&json)?, order)
            }
        };
        let _guard = self
            .rendering
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        {
            let mut ctx = self.json.lock().unwrap_or_else(PoisonError::into_inner);
            ctx.row = (self.kind == Kind::Rows).then(|| data.clone());
            ctx.order = order;
        }
        let result = self.body.execute_to_string(&data);
        *self.json.lock().unwrap_or_else(PoisonError::into_inner) = JsonContext::default();
        result.map_err(|e| anyhow!("template parsing error: {}", exec_message(&e)))
    }

    /// Renders the header line: the template over the column titles, with Docker's
    /// header functions (which leave titles alone, except `pad`). Like Docker, an
    /// error is ignored and whatever was rendered before it is kept.
    pub fn render_header(&self, headers: &serde_json::Map<String, serde_json::Value>) -> String {
        let mut out = String::new();
        if let Ok(data) = gotmpl::to_value(headers) {
            let _ = self.header.execute_fmt(&mut out, &data);
        }
        out
    }
}

/// Docker's `preFormat`: trim spaces, and turn a typed `\t` / `\n` into a tab or
/// newline.
fn docker_preformat(source: &str) -> String {
    source
        .trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n")
}

fn strip_table_prefix(source: &str) -> &str {
    source.strip_prefix("table").unwrap_or(source)
}

fn to_template_value<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<Value> {
    gotmpl::to_value(value).map_err(|e| anyhow!("template parsing error: {e}"))
}

fn exec_message(e: &TemplateError) -> String {
    match e {
        TemplateError::MissingKey { key } => format!("can't evaluate field {key}"),
        other => other.to_string(),
    }
}

fn collect_key_order(value: &serde_json::Value, order: &mut KeyOrder) {
    match value {
        serde_json::Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let mut sorted = keys.clone();
            sorted.sort();
            if sorted != keys {
                order.entry(sorted).or_insert(keys);
            }
            for v in map.values() {
                collect_key_order(v, order);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                collect_key_order(v, order);
            }
        }
        _ => {}
    }
}

/// Go reports a call to an unknown function when parsing; gotmpl only when the
/// call runs. Walk the tree so `{{foo .ID}}` fails before anything is printed.
fn check_functions(source: &str) -> Result<(), String> {
    let (tree, defines) = Parser::new(source, "{{", "}}")
        .and_then(Parser::parse)
        .map_err(|e| e.to_string())?;
    let mut unknown = None;
    visit_list(&tree, &mut unknown);
    for define in &defines {
        visit_list(&define.body, &mut unknown);
    }
    match unknown {
        None => Ok(()),
        Some((pos, name)) => Err(format!(
            "template: {}:{}: function \"{name}\" not defined",
            pos.line,
            column(source, pos)
        )),
    }
}

fn column(source: &str, pos: Pos) -> usize {
    let end = pos.offset.min(source.len());
    let before = source.get(..end).unwrap_or(source);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    before[line_start..].chars().count() + 1
}

fn visit_list(list: &ListNode, unknown: &mut Option<(Pos, String)>) {
    for node in &list.nodes {
        visit_node(node, unknown);
    }
}

fn visit_node(node: &Node, unknown: &mut Option<(Pos, String)>) {
    match node {
        Node::List(list) => visit_list(list, unknown),
        Node::Action(action) => visit_pipe(&action.pipe, unknown),
        Node::If(branch) | Node::Range(branch) | Node::With(branch) => {
            visit_pipe(&branch.pipe, unknown);
            visit_list(&branch.body, unknown);
            if let Some(else_body) = &branch.else_body {
                visit_list(else_body, unknown);
            }
        }
        Node::Template(t) => {
            if let Some(pipe) = &t.pipe {
                visit_pipe(pipe, unknown);
            }
        }
        Node::Define(define) => visit_list(&define.body, unknown),
        _ => {}
    }
}

fn visit_pipe(pipe: &PipeNode, unknown: &mut Option<(Pos, String)>) {
    for command in &pipe.commands {
        for arg in &command.args {
            visit_expr(arg, unknown);
        }
    }
}

fn visit_expr(expr: &Expr, unknown: &mut Option<(Pos, String)>) {
    match expr {
        Expr::Identifier(pos, name) => {
            let known =
                GO_BUILTINS.contains(&name.as_str()) || DOCKER_FUNCTIONS.contains(&name.as_str());
            if !known && unknown.is_none() {
                *unknown = Some((*pos, name.to_string()));
            }
        }
        Expr::Pipe(_, pipe) => visit_pipe(pipe, unknown),
        Expr::Chain(_, inner, _) => visit_expr(inner, unknown),
        _ => {}
    }
}

fn func(f: impl Fn(&[Value]) -> gotmpl::Result<Value> + Send + Sync + 'static) -> ValueFunc {
    Arc::new(f)
}

/// Docker's `basicFunctions`.
fn basic_functions(json: &Arc<Mutex<JsonContext>>) -> FuncMap {
    let ctx = Arc::clone(json);
    let mut m = FuncMap::new();
    m.insert(
        "json".into(),
        func(move |args| {
            arity("json", args, 1)?;
            let ctx = ctx.lock().unwrap_or_else(PoisonError::into_inner);
            let whole_row = match (&ctx.row, &args[0]) {
                (Some(Value::Map(row)), Value::Map(arg)) => Arc::ptr_eq(row, arg),
                _ => false,
            };
            let writer = JsonWriter {
                escape_html: whole_row,
                order: &ctx.order,
            };
            let mut out = String::new();
            writer
                .write(&mut out, &args[0])
                .map_err(TemplateError::Exec)?;
            Ok(Value::String(out.into()))
        }),
    );
    m.insert(
        "split".into(),
        func(|args| {
            arity("split", args, 2)?;
            let s = string_arg(&args[0])?;
            let sep = string_arg(&args[1])?;
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars()
                    .map(|c| Value::String(c.to_string().into()))
                    .collect()
            } else {
                s.split(sep.as_str())
                    .map(|p| Value::String(p.into()))
                    .collect()
            };
            Ok(Value::List(parts.into()))
        }),
    );
    m.insert(
        "join".into(),
        func(|args| {
            arity("join", args, 2)?;
            let Value::List(items) = &args[0] else {
                return Err(wrong_type("[]string", &args[0]));
            };
            let sep = string_arg(&args[1])?;
            let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
            Ok(Value::String(parts.join(&sep).into()))
        }),
    );
    m.insert(
        "title".into(),
        func(|args| {
            arity("title", args, 1)?;
            Ok(Value::String(go_title(&string_arg(&args[0])?).into()))
        }),
    );
    m.insert(
        "lower".into(),
        func(|args| {
            arity("lower", args, 1)?;
            let s: String = string_arg(&args[0])?.chars().map(lower_char).collect();
            Ok(Value::String(s.into()))
        }),
    );
    m.insert(
        "upper".into(),
        func(|args| {
            arity("upper", args, 1)?;
            let s: String = string_arg(&args[0])?.chars().map(upper_char).collect();
            Ok(Value::String(s.into()))
        }),
    );
    m.insert("pad".into(), func(pad));
    m.insert(
        "truncate".into(),
        func(|args| {
            arity("truncate", args, 2)?;
            let s = string_arg(&args[0])?;
            let n = usize::try_from(int_arg(&args[1])?)
                .map_err(|_| TemplateError::Exec("truncate: negative length".into()))?;
            Ok(Value::String(s.chars().take(n).collect::<String>().into()))
        }),
    );
    m
}

/// Docker's `HeaderFunctions`: column titles pass through unchanged, except `pad`,
/// which keeps the header aligned with padded cells.
fn header_functions() -> FuncMap {
    let mut m = FuncMap::new();
    for name in [
        "json", "split", "join", "title", "lower", "upper", "truncate",
    ] {
        m.insert(
            name.into(),
            func(|args| Ok(args.first().cloned().unwrap_or(Value::Nil))),
        );
    }
    m.insert("pad".into(), func(pad));
    m
}

/// `pad s left right`: spaces around a non-empty string.
fn pad(args: &[Value]) -> gotmpl::Result<Value> {
    arity("pad", args, 3)?;
    let s = string_arg(&args[0])?;
    if s.is_empty() {
        return Ok(Value::String(s.into()));
    }
    let count = |v: &Value| {
        usize::try_from(int_arg(v)?).map_err(|_| TemplateError::Exec("pad: negative count".into()))
    };
    let (left, right) = (count(&args[1])?, count(&args[2])?);
    Ok(Value::String(
        format!("{}{s}{}", " ".repeat(left), " ".repeat(right)).into(),
    ))
}

fn arity(name: &str, args: &[Value], expected: usize) -> gotmpl::Result<()> {
    if args.len() == expected {
        Ok(())
    } else {
        Err(TemplateError::ArgCount {
            name: name.to_string(),
            expected,
            got: args.len(),
        })
    }
}

fn wrong_type(expected: &str, got: &Value) -> TemplateError {
    TemplateError::Exec(format!(
        "wrong type for value; expected {expected}; got {}",
        got.type_name()
    ))
}

/// A string argument. Numbers and booleans are accepted as their printed form
/// (Go would refuse them); lists, maps and missing values are refused.
fn string_arg(v: &Value) -> gotmpl::Result<String> {
    match v {
        Value::String(s) => Ok(s.to_string()),
        Value::Int(_) | Value::Uint(_) | Value::Float(_) | Value::Bool(_) => Ok(v.to_string()),
        _ => Err(wrong_type("string", v)),
    }
}

fn int_arg(v: &Value) -> gotmpl::Result<i64> {
    match v {
        Value::Int(n) => Ok(*n),
        Value::Uint(n) => i64::try_from(*n).map_err(|_| wrong_type("int", v)),
        _ => Err(wrong_type("int", v)),
    }
}

/// Go's `unicode.ToUpper` maps one rune to one rune; keep characters whose
/// uppercase is longer (`ß`) as they are.
fn upper_char(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

fn lower_char(c: char) -> char {
    let mut low = c.to_lowercase();
    match (low.next(), low.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// Go's `strings.Title`: upper-case every letter that follows a separator.
fn go_title(s: &str) -> String {
    let is_separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphanumeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut prev = ' ';
    s.chars()
        .map(|c| {
            let out = if is_separator(prev) { upper_char(c) } else { c };
            prev = c;
            out
        })
        .collect()
}

/// Go's `encoding/json` output for template values: compact, no trailing newline.
struct JsonWriter<'a> {
    /// `json.Marshal` escapes `<`, `>` and `&`; Docker's `json` function does not.
    escape_html: bool,
    order: &'a KeyOrder,
}

impl JsonWriter<'_> {
    fn write(&self, out: &mut String, value: &Value) -> Result<(), String> {
        match value {
            Value::Nil => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(n) => out.push_str(&n.to_string()),
            Value::Uint(n) => out.push_str(&n.to_string()),
            Value::Float(f) => out.push_str(&go_json_float(*f)?),
            Value::String(s) => self.write_str(out, s),
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.write(out, item)?;
                }
                out.push(']');
            }
            Value::Map(map) => {
                let sorted: Vec<String> = if self.order.is_empty() {
                    Vec::new()
                } else {
                    map.keys().map(|k| k.to_string()).collect()
                };
                let keys: Vec<&str> = match self.order.get(&sorted) {
                    Some(ordered) => ordered.iter().map(String::as_str).collect(),
                    None => map.keys().map(|k| &**k).collect(),
                };
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.write_str(out, key);
                    out.push(':');
                    self.write(out, map.get(key).unwrap_or(&Value::Nil))?;
                }
                out.push('}');
            }
            Value::Function(_) => return Err("json: unsupported type: func".to_string()),
            // Other variants (gotmpl's html feature) are strings.
            #[allow(unreachable_patterns)]
            other => self.write_str(out, &other.to_string()),
        }
        Ok(())
    }

    fn write_str(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\u{2028}' | '\u{2029}' => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                '<' | '>' | '&' if self.escape_html => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c if u32::from(c) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Go's `encoding/json` float format: shortest form, exponent only below 1e-6 or
/// from 1e21 (`1e+21`, `1e-7`); NaN and infinities are errors.
fn go_json_float(f: f64) -> Result<String, String> {
    if !f.is_finite() {
        return Err(format!("json: unsupported value: {f}"));
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        return Ok(match s.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => s,
        });
    }
    Ok(format!("{f}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct ImageRow {
        repository: String,
        tag: String,
        #[serde(rename = "ID")]
        id: String,
        created_since: String,
        size: String,
        digest: String,
        labels: BTreeMap<String, String>,
        names: Vec<String>,
    }

    fn image(repo: &str, tag: &str, id: &str, created: &str, size: &str) -> ImageRow {
        ImageRow {
            repository: repo.into(),
            tag: tag.into(),
            id: id.into(),
            created_since: created.into(),
            size: size.into(),
            digest: "<none>".into(),
            labels: BTreeMap::from([
                ("org.b".to_string(), "2".to_string()),
                ("org.a".to_string(), "<1>&".to_string()),
            ]),
            names: vec![format!("{repo}:{tag}"), format!("{repo}:x")],
        }
    }

    fn image_headers() -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("ID", "IMAGE ID"),
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("Digest", "DIGEST"),
            ("CreatedSince", "CREATED"),
            ("Size", "SIZE"),
            ("Labels", "LABELS"),
        ] {
            m.insert(k.to_string(), json!(v));
        }
        m
    }

    const IMAGES_TABLE: &str =
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

    fn rows() -> Vec<ImageRow> {
        vec![
            image("alpine", "latest", "c059bfaa849c", "2 weeks ago", "5.59MB"),
            image(
                "example.com/app",
                "v1.2.3",
                "0123456789ab",
                "3 hours ago",
                "120MB",
            ),
        ]
    }

    fn render(format: &Format, rows: &[ImageRow]) -> String {
        let mut out = Vec::new();
        render_rows(format, IMAGES_TABLE, &image_headers(), rows, &mut out).expect("renders");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn parse_format_variants() {
        assert_eq!(parse_format(None), Format::Table(None));
        assert_eq!(parse_format(Some("")), Format::Table(None));
        assert_eq!(parse_format(Some("table")), Format::Table(None));
        assert_eq!(
            parse_format(Some("table {{.ID}}\t{{.Size}}")),
            Format::Table(Some("{{.ID}}\t{{.Size}}".into()))
        );
        assert_eq!(parse_format(Some("json")), Format::Json);
        assert_eq!(
            parse_format(Some("{{.ID}}")),
            Format::Template("{{.ID}}".into())
        );
    }

    #[test]
    fn default_table_matches_docker_images_alignment() {
        let got = render(&Format::Table(None), &rows()[..1]);
        assert_eq!(
            got,
            "REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n\
             alpine       latest    c059bfaa849c   2 weeks ago   5.59MB\n"
        );
        let got = render(&Format::Table(None), &rows());
        assert_eq!(
            got,
            "REPOSITORY        TAG       IMAGE ID       CREATED       SIZE\n\
             alpine            latest    c059bfaa849c   2 weeks ago   5.59MB\n\
             example.com/app   v1.2.3    0123456789ab   3 hours ago   120MB\n"
        );
    }

    #[test]
    fn empty_table_prints_header_only() {
        let got = render(&Format::Table(None), &[]);
        assert_eq!(got, "REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n");
    }

    #[test]
    fn custom_table_with_typed_backslash_t_and_functions() {
        let format = parse_format(Some(
            r"table {{.ID}}\t{{upper .Repository}}\t{{pad .Tag 1 1}}",
        ));
        let got = render(&format, &rows());
        assert_eq!(
            got,
            "IMAGE ID       REPOSITORY         TAG \n\
             c059bfaa849c   ALPINE             latest \n\
             0123456789ab   EXAMPLE.COM/APP    v1.2.3 \n"
        );
    }

    #[test]
    fn json_lines_like_docker() {
        let got = render(&Format::Json, &rows()[..1]);
        assert_eq!(
            got,
            "{\"CreatedSince\":\"2 weeks ago\",\"Digest\":\"\\u003cnone\\u003e\",\
             \"ID\":\"c059bfaa849c\",\"Labels\":{\"org.a\":\"\\u003c1\\u003e\\u0026\",\
             \"org.b\":\"2\"},\"Names\":[\"alpine:latest\",\"alpine:x\"],\
             \"Repository\":\"alpine\",\"Size\":\"5.59MB\",\"Tag\":\"latest\"}\n"
        );
        let value: serde_json::Value = serde_json::from_str(got.trim_end()).expect("valid json");
        assert_eq!(value["Digest"], "<none>");
    }

    #[test]
    fn template_functions() {
        let format = parse_format(Some(
            r#"{{json .Labels}} {{join .Names ","}} {{upper .Repository}} {{lower "ABC"}}"#,
        ));
        let got = render(&format, &rows()[..1]);
        assert_eq!(
            got,
            "{\"org.a\":\"<1>&\",\"org.b\":\"2\"} alpine:latest,alpine:x ALPINE abc\n"
        );
        let format = parse_format(Some(
            r#"{{title "hello wide-world_x"}}|{{truncate .ID 4}}|{{split "a:b:c" ":"}}|{{pad "" 2 2}}|{{println .Tag}}"#,
        ));
        let got = render(&format, &rows()[..1]);
        assert_eq!(got, "Hello Wide-World_x|c059|[a b c]||latest\n\n");
    }

    #[test]
    fn template_rows_no_header_and_typed_tab() {
        let format = parse_format(Some(r"{{.Repository}}\t{{.Tag}}"));
        assert_eq!(
            render(&format, &rows()),
            "alpine\tlatest\nexample.com/app\tv1.2.3\n"
        );
    }

    #[test]
    fn unknown_field_in_row_is_an_error() {
        let mut out = Vec::new();
        let err = render_rows(
            &parse_format(Some("{{.Nope}}")),
            IMAGES_TABLE,
            &image_headers(),
            &rows(),
            &mut out,
        )
        .expect_err("unknown field");
        assert_eq!(
            err.to_string(),
            "template parsing error: can't evaluate field Nope"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn parse_errors_are_one_line() {
        let err = render_one("{{.ID", &json!({"ID": "x"})).expect_err("unclosed");
        let msg = err.to_string();
        assert!(msg.starts_with("template parsing error: "), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        let err = render_one("a\n {{nosuch .ID}}", &json!({"ID": "x"})).expect_err("func");
        assert_eq!(
            err.to_string(),
            "template parsing error: template: 2:4: function \"nosuch\" not defined"
        );
        // Undefined functions are found even in branches that never run.
        assert!(render_one("{{if false}}{{nosuch}}{{end}}", &json!({})).is_err());
    }

    #[test]
    fn render_one_keeps_struct_order_in_json() {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Config {
            image: String,
            cmd: Vec<String>,
            env: Vec<String>,
            labels: BTreeMap<String, String>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct State {
            status: String,
            pid: u32,
            exit_code: i32,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Inspect {
            id: String,
            state: State,
            config: Config,
        }
        let value = Inspect {
            id: "abc".into(),
            state: State {
                status: "running".into(),
                pid: 4242,
                exit_code: 0,
            },
            config: Config {
                image: "alpine".into(),
                cmd: vec!["sh".into()],
                env: vec!["A=<b>".into()],
                labels: BTreeMap::from([("z".into(), "1".into()), ("a".into(), "2".into())]),
            },
        };
        assert_eq!(
            render_one("{{json .Config}}", &value).expect("renders"),
            r#"{"Image":"alpine","Cmd":["sh"],"Env":["A=<b>"],"Labels":{"a":"2","z":"1"}}"#
        );
        assert_eq!(
            render_one("{{.State.Pid}} {{.State.Status}} {{.Missing}}", &value).expect("renders"),
            "4242 running <no value>"
        );
        assert_eq!(
            render_one("{{json .State}}", &value).expect("renders"),
            r#"{"Status":"running","Pid":4242,"ExitCode":0}"#
        );
    }

    #[test]
    fn json_function_formats_like_go() {
        let got = render_one(
            "{{json .}}",
            &json!({"f": 1.0, "g": 0.5, "h": 1e21, "i": 1e-7, "j": -3, "s": "a\u{2028}\"\t\u{1}", "n": null}),
        )
        .expect("renders");
        assert_eq!(
            got,
            r#"{"f":1,"g":0.5,"h":1e+21,"i":1e-7,"j":-3,"s":"a\u2028\"\t\u0001","n":null}"#
        );
    }

    #[test]
    fn header_uses_titles_and_keeps_pad() {
        let r =
            Renderer::for_rows("{{json .Labels}}\t{{pad .ID 1 0}}\t{{.Other}}").expect("parses");
        assert_eq!(
            r.render_header(&image_headers()),
            "LABELS\t IMAGE ID\t<no value>"
        );
    }
}
