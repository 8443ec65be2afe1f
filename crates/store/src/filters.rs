//! Docker's list filters (`--filter key=value` on the command line, `filters=` JSON in the
//! Engine API), validated against the keys a listing accepts. Here, below every listing
//! (images, containers, volumes, networks), so that the CLI and the API filter alike.

use std::collections::BTreeMap;

/// A filter that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Not `key=value`.
    #[error("bad format of filter (expected name=value)")]
    Format,
    /// A key the listing does not know.
    #[error("invalid filter '{0}'")]
    UnknownKey(String),
    /// A value the key does not take.
    #[error("invalid filter '{key}={value}'")]
    Value {
        /// The key.
        key: String,
        /// What was given.
        value: String,
    },
    /// The API's `filters` parameter is not one of its JSON forms.
    #[error("invalid filter: {0}")]
    Json(String),
}

/// Go's `strconv.ParseBool`, as Docker reads boolean filters.
pub fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parsed filters: key -> values (a key may repeat).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses `--filter` arguments, refusing keys not in `allowed`, as Docker does.
    pub fn parse(args: &[String], allowed: &[&str]) -> Result<Filters, FilterError> {
        let mut filters = Filters::default();
        for a in args {
            let (k, v) = a.split_once('=').ok_or(FilterError::Format)?;
            filters.insert(k.trim(), v.trim(), allowed)?;
        }
        Ok(filters)
    }

    /// Parses the Engine API's `filters` query parameter: `{"key":["value",...]}`, or the
    /// older `{"key":{"value":true}}` that docker-py and compose still send. Empty is none.
    pub fn from_json(text: &str, allowed: &[&str]) -> Result<Filters, FilterError> {
        let mut filters = Filters::default();
        if text.trim().is_empty() {
            return Ok(filters);
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| FilterError::Json(e.to_string()))?;
        let serde_json::Value::Object(map) = value else {
            return Err(FilterError::Json(format!("expected an object, got {text}")));
        };
        for (key, values) in map {
            match values {
                serde_json::Value::Array(list) => {
                    for v in list {
                        let serde_json::Value::String(v) = v else {
                            return Err(FilterError::Json(format!("{key}: expected strings")));
                        };
                        filters.insert(&key, &v, allowed)?;
                    }
                }
                serde_json::Value::Object(set) => {
                    for (v, on) in set {
                        if on.as_bool() == Some(true) {
                            filters.insert(&key, &v, allowed)?;
                        }
                    }
                }
                _ => return Err(FilterError::Json(format!("{key}: expected a list"))),
            }
        }
        Ok(filters)
    }

    fn insert(&mut self, key: &str, value: &str, allowed: &[&str]) -> Result<(), FilterError> {
        let key = key.to_ascii_lowercase();
        if !allowed.contains(&key.as_str()) {
            return Err(FilterError::UnknownKey(key));
        }
        self.0.entry(key).or_default().push(value.to_string());
        Ok(())
    }

    /// Adds a value the caller means (not the user's: not checked against a listing's keys),
    /// as the docker CLI turns `--all` into `all=true`.
    pub fn with(mut self, key: &str, value: &str) -> Filters {
        self.0.entry(key.into()).or_default().push(value.into());
        self
    }

    /// The values given for a key.
    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A boolean filter (`dangling=true`, Go's `strconv.ParseBool` forms); errors on other
    /// values.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, FilterError> {
        match self.get(key).last() {
            None => Ok(None),
            Some(v) => go_bool(v).map(Some).ok_or_else(|| FilterError::Value {
                key: key.into(),
                value: v.clone(),
            }),
        }
    }

    /// The `until=` filter as a point in time, read as Docker reads time arguments
    /// ([`crate::parse_time_arg`]: RFC 3339 and its short forms, Unix seconds, or a Go
    /// duration before now), for every listing and prune that takes it.
    pub fn until(&self) -> Result<Option<jiff::Timestamp>, FilterError> {
        let Some(text) = self.get("until").last() else {
            return Ok(None);
        };
        crate::parse_time_arg(text, jiff::Timestamp::now())
            .map(Some)
            .map_err(|_| FilterError::Value {
                key: "until".into(),
                value: text.clone(),
            })
    }

    /// Whether labels satisfy every `label=` filter and no `label!=` filter (each `key` or
    /// `key=value`).
    pub fn labels_match(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let has = |want: &String| match want.split_once('=') {
            Some((k, v)) => labels.and_then(|l| l.get(k)).is_some_and(|have| have == v),
            None => labels.is_some_and(|l| l.contains_key(want)),
        };
        self.get("label").iter().all(has) && !self.get("label!").iter().any(has)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_bools() {
        assert_eq!(go_bool("True"), Some(true));
        assert_eq!(go_bool("0"), Some(false));
        assert_eq!(go_bool("yes"), None);
    }

    #[test]
    fn until_takes_times_and_durations() {
        let until = |v: &str| {
            Filters::parse(&[format!("until={v}")], &["until"])
                .unwrap()
                .until()
        };
        assert_eq!(
            until("2024-01-02T03:04:05Z").unwrap(),
            Some("2024-01-02T03:04:05Z".parse().unwrap())
        );
        assert_eq!(
            until("1700000000").unwrap().unwrap().as_second(),
            1_700_000_000
        );
        let day_ago = until("24h").unwrap().unwrap();
        assert!(jiff::Timestamp::now().as_second() - day_ago.as_second() >= 86_399);
        assert!(until("soon").is_err());
        assert_eq!(Filters::default().until().unwrap(), None);
    }

    #[test]
    fn unknown_filters_are_refused() {
        let ok = Filters::parse(&["dangling=true".into()], &["dangling"]).unwrap();
        assert_eq!(ok.bool("dangling").unwrap(), Some(true));
        assert_eq!(
            Filters::parse(&["nope=1".into()], &["dangling"]),
            Err(FilterError::UnknownKey("nope".into()))
        );
        assert_eq!(
            Filters::parse(&["noequals".into()], &["dangling"]),
            Err(FilterError::Format)
        );
    }

    #[test]
    fn both_json_forms_parse_alike() {
        let allowed = ["label", "status"];
        let list =
            Filters::from_json(r#"{"label":["a=b","c"],"status":["exited"]}"#, &allowed).unwrap();
        let set = Filters::from_json(
            r#"{"label":{"a=b":true,"c":true,"d":false},"status":{"exited":true}}"#,
            &allowed,
        )
        .unwrap();
        assert_eq!(list, set);
        assert_eq!(list.get("label"), ["a=b", "c"]);
        assert_eq!(
            Filters::from_json("", &allowed).unwrap(),
            Filters::default()
        );
        assert!(matches!(
            Filters::from_json(r#"{"nope":["x"]}"#, &allowed),
            Err(FilterError::UnknownKey(_))
        ));
        assert!(matches!(
            Filters::from_json("[1]", &allowed),
            Err(FilterError::Json(_))
        ));
    }
}
