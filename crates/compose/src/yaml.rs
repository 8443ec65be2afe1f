//! The YAML layer: a compose file parsed with saphyr into a small tree that keeps the two
//! tags compose gives a meaning (`!reset`, `!override`), with `<<` merge keys applied and
//! anchors resolved. Later stages (interpolation, merging files) work on this tree, and it
//! becomes JSON for the typed model.

use indexmap::IndexMap;
use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::Value;

/// A YAML node as compose sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping with string keys, in the file's order.
    Map(IndexMap<String, Node>),
    /// `!reset` (drop what earlier files said) or `!override` (replace it, no merge).
    Tagged(Tag, Box<Node>),
}

/// The tags of compose's merge rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `!reset`.
    Reset,
    /// `!override`.
    Override,
}

/// Parses the first document of `text` (an empty file is `Null`).
pub fn parse(text: &str) -> Result<Node, String> {
    let docs = Yaml::load_from_str(text).map_err(|e| format!("yaml: {e}"))?;
    match docs.first() {
        None => Ok(Node::Null),
        Some(doc) => convert(doc, ""),
    }
}

fn convert(yaml: &Yaml, path: &str) -> Result<Node, String> {
    Ok(match yaml {
        Yaml::Value(s) => scalar(s),
        Yaml::Representation(text, _, _) => Node::Str(text.to_string()),
        Yaml::Sequence(items) => Node::Seq(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(map) => {
            let mut out = IndexMap::new();
            let mut merged = Vec::new();
            for (k, v) in map {
                let key = key_text(k).ok_or_else(|| {
                    format!("{}: a mapping key must be a string", display_path(path))
                })?;
                let here = join(path, &key);
                if key == "<<" {
                    merged.push(convert(v, &here)?);
                    continue;
                }
                out.insert(key, convert(v, &here)?);
            }
            // Merge keys: the mapping's own keys win, then earlier sources over later ones.
            for source in merged {
                let sources = match source {
                    Node::Seq(items) => items,
                    other => vec![other],
                };
                for s in sources {
                    let Node::Map(entries) = s else {
                        return Err(format!(
                            "{}: a merge key (<<) must name a mapping",
                            display_path(path)
                        ));
                    };
                    for (k, v) in entries {
                        out.entry(k).or_insert(v);
                    }
                }
            }
            Node::Map(out)
        }
        Yaml::Tagged(tag, inner) => {
            let inner = convert(inner, path)?;
            match (tag.handle.as_str(), tag.suffix.as_str()) {
                ("!", "reset") => Node::Tagged(Tag::Reset, Box::new(inner)),
                ("!", "override") => Node::Tagged(Tag::Override, Box::new(inner)),
                _ => inner,
            }
        }
        Yaml::Alias(_) | Yaml::BadValue => Node::Null,
    })
}

fn scalar(s: &Scalar) -> Node {
    match s {
        Scalar::Null => Node::Null,
        Scalar::Boolean(b) => Node::Bool(*b),
        Scalar::Integer(i) => Node::Int(*i),
        Scalar::FloatingPoint(f) => Node::Float(f.into_inner()),
        Scalar::String(s) => Node::Str(s.to_string()),
    }
}

fn key_text(key: &Yaml) -> Option<String> {
    match key {
        Yaml::Value(Scalar::String(s)) => Some(s.to_string()),
        Yaml::Value(Scalar::Integer(i)) => Some(i.to_string()),
        Yaml::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        Yaml::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        Yaml::Value(Scalar::Null) => Some("null".into()),
        Yaml::Representation(text, _, _) => Some(text.to_string()),
        Yaml::Tagged(_, inner) => key_text(inner),
        _ => None,
    }
}

/// `a.b` from `a` and `b` (keys with dots are quoted as compose prints them).
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The path as errors show it: the top level is `(root)`.
pub fn display_path(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}

impl Node {
    /// The tree as JSON, tags dropped (a `!reset` left over is `null`).
    pub fn to_json(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::from(*i),
            Node::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Node::Str(s) => Value::String(s.clone()),
            Node::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Node::Map(map) => Value::Object(
                map.iter()
                    .filter(|(_, v)| !matches!(v, Node::Tagged(Tag::Reset, _)))
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
            Node::Tagged(Tag::Reset, _) => Value::Null,
            Node::Tagged(Tag::Override, inner) => inner.to_json(),
        }
    }

    /// The node without its tags, at every depth.
    pub fn untagged(self) -> Node {
        match self {
            Node::Tagged(_, inner) => inner.untagged(),
            Node::Seq(items) => Node::Seq(items.into_iter().map(Node::untagged).collect()),
            Node::Map(map) => Node::Map(
                map.into_iter()
                    .filter(|(_, v)| !matches!(v, Node::Tagged(Tag::Reset, _)))
                    .map(|(k, v)| (k, v.untagged()))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// JSON as YAML text (`compose config`), keys in the model's order.
pub fn to_yaml_text(value: &Value) -> String {
    fn to_yaml(value: &Value) -> Yaml<'static> {
        match value {
            Value::Null => Yaml::Value(Scalar::Null),
            Value::Bool(b) => Yaml::Value(Scalar::Boolean(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Yaml::Value(Scalar::Integer(i)),
                None => Yaml::Value(Scalar::FloatingPoint(n.as_f64().unwrap_or(0.0).into())),
            },
            Value::String(s) => Yaml::Value(Scalar::String(s.clone().into())),
            Value::Array(items) => Yaml::Sequence(items.iter().map(to_yaml).collect()),
            Value::Object(map) => {
                let mut out = saphyr::Mapping::new();
                for (k, v) in map {
                    out.insert(Yaml::Value(Scalar::String(k.clone().into())), to_yaml(v));
                }
                Yaml::Mapping(out)
            }
        }
    }
    let mut text = String::new();
    let mut emitter = saphyr::YamlEmitter::new(&mut text);
    emitter.multiline(true);
    // Writing into a String cannot fail.
    let _ = emitter.dump(&to_yaml(value));
    let text = text.strip_prefix("---\n").unwrap_or(&text).to_string();
    text + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keys_and_tags() {
        let node = parse(
            "x-base: &base\n  image: a\n  user: u\nservices:\n  web:\n    <<: *base\n    image: b\n    ports: !reset []\n    command: !override [x]\n",
        )
        .unwrap();
        let json = node.to_json();
        assert_eq!(json["services"]["web"]["image"], "b");
        assert_eq!(json["services"]["web"]["user"], "u");
        assert!(json["services"]["web"].get("ports").is_none());
        assert_eq!(json["services"]["web"]["command"][0], "x");
        let Node::Map(top) = &node else { panic!() };
        let Node::Map(services) = &top["services"] else {
            panic!()
        };
        let Node::Map(web) = &services["web"] else {
            panic!()
        };
        assert!(matches!(web["ports"], Node::Tagged(Tag::Reset, _)));
    }

    #[test]
    fn yaml_errors_say_where() {
        let e = parse("services:\n  web: [a\n").unwrap_err();
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn yaml_text_round_trips() {
        let v = serde_json::json!({"services": {"web": {"image": "busybox", "ports": [{"target": 80}]}}});
        let text = to_yaml_text(&v);
        assert_eq!(parse(&text).unwrap().to_json(), v);
    }
}
