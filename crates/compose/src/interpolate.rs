//! Compose's variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+replacement}`, `${VAR+replacement}` and `$$` for
//! a literal `$`. Defaults and replacements are interpolated themselves (nesting), and only
//! when used. Written by hand: no maintained crate does compose's exact rules (crates.md).

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// `${VAR:?message}` (or `?`) with `VAR` missing.
    #[error("required variable {name} is missing a value: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The file's message.
        message: String,
    },
    /// A `${` that does not close, or what is inside is not a variable form.
    #[error("invalid interpolation format for {0:?}; you may need to escape any $ with another $")]
    Format(String),
    /// Defaults nested deeper than [`MAX_NESTING`] (each level is a recursion).
    #[error("interpolation in {0:?} nests more than {MAX_NESTING} levels deep")]
    TooDeep(String),
}

/// How deep `${A:-${B:-...}}` may nest: far beyond any real file, and a bound on the
/// recursion a crafted one could ask for.
pub const MAX_NESTING: usize = 64;

/// Interpolates `text` with `lookup`; names of variables that were not set and had no
/// default are added to `unset` (compose warns and uses an empty string).
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let (end, nesting) =
                closing_brace(tail).ok_or_else(|| InterpolateError::Format(text.into()))?;
            if nesting > MAX_NESTING {
                return Err(InterpolateError::TooDeep(text.into()));
            }
            out.push_str(&braced(&tail[..end], text, lookup, unset)?);
            rest = &tail[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                // A lone `$` stays as it is.
                out.push('$');
                rest = after;
            } else {
                out.push_str(&value_of(&after[..len], lookup, unset));
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` that closes a `${`, counting nested `${`, and how deep they nest.
fn closing_brace(s: &str) -> Option<(usize, usize)> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                deepest = deepest.max(depth);
                i += 1;
            }
            b'}' if depth == 0 => return Some((i, deepest)),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn name_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return 0,
    }
    chars
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(s.len(), |(i, _)| i)
}

fn value_of(
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> String {
    lookup(name).unwrap_or_else(|| {
        if !unset.iter().any(|n| n == name) {
            unset.push(name.to_string());
        }
        String::new()
    })
}

fn braced(
    inner: &str,
    whole: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, InterpolateError> {
    let len = name_len(inner);
    if len == 0 {
        return Err(InterpolateError::Format(whole.into()));
    }
    let (name, op) = inner.split_at(len);
    let value = lookup(name);
    let (colon, op) = match op.strip_prefix(':') {
        Some(op) => (true, op),
        None => (false, op),
    };
    // With a colon, an empty value counts as missing.
    let present = value.as_deref().is_some_and(|v| !(colon && v.is_empty()));
    let mut nested = |word: &str| interpolate(word, lookup, unset);
    match op.chars().next() {
        None if !colon => Ok(value_of(name, lookup, unset)),
        Some('-') if present => Ok(value.unwrap_or_default()),
        Some('-') => nested(&op[1..]),
        Some('?') if present => Ok(value.unwrap_or_default()),
        Some('?') => Err(InterpolateError::Required {
            name: name.into(),
            message: nested(&op[1..])?,
        }),
        Some('+') if present => nested(&op[1..]),
        Some('+') => Ok(String::new()),
        _ => Err(InterpolateError::Format(whole.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<(String, Vec<String>), InterpolateError> {
        let lookup = |name: &str| match name {
            "SET" => Some("v".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let mut unset = Vec::new();
        interpolate(text, &lookup, &mut unset).map(|s| (s, unset))
    }

    #[test]
    fn forms() {
        let ok = |t: &str| run(t).unwrap().0;
        assert_eq!(ok("a $SET b ${SET}c"), "a v b vc");
        assert_eq!(ok("${NOPE:-d} ${EMPTY:-d} ${EMPTY-d} ${NOPE-d}"), "d d  d");
        assert_eq!(ok("${SET:+r} ${EMPTY:+r} ${EMPTY+r} ${NOPE+r}"), "r  r ");
        assert_eq!(ok("$$SET $$ ${NOPE:-${SET}x}"), "$SET $ vx");
        assert_eq!(ok("cost: 5$ and $1"), "cost: 5$ and $1");
        assert_eq!(ok("${SET:?boom}"), "v");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| format!("{}x{}", "${A:-".repeat(n), "}".repeat(n));
        assert_eq!(run(&deep(MAX_NESTING)).unwrap().0, "x");
        assert!(matches!(
            run(&deep(100_000)),
            Err(InterpolateError::TooDeep(_))
        ));
    }

    #[test]
    fn unset_and_errors() {
        assert_eq!(
            run("${NOPE}$NOPE").unwrap(),
            (String::new(), vec!["NOPE".into()])
        );
        assert_eq!(
            run("${NOPE:?set it please}").unwrap_err().to_string(),
            "required variable NOPE is missing a value: set it please"
        );
        assert!(matches!(run("${EMPTY?x}"), Ok((s, _)) if s.is_empty()));
        assert!(matches!(
            run("${EMPTY:?x}"),
            Err(InterpolateError::Required { .. })
        ));
        assert!(matches!(run("${SET"), Err(InterpolateError::Format(_))));
        assert!(matches!(run("${SET!}"), Err(InterpolateError::Format(_))));
        assert!(matches!(run("${}"), Err(InterpolateError::Format(_))));
    }
}
