//! Docker's word processing for the instructions it applies to (`FROM`, `COPY`, `ADD`, `ENV`,
//! `LABEL`, `ARG`, `EXPOSE`, `USER`, `WORKDIR`, `VOLUME`, `STOPSIGNAL`, and flags such as
//! `--chown`): `$name` and `${name}`, the modifiers `${name:-word}`, `${name-word}`,
//! `${name:+word}`, `${name+word}`, `${name:?message}`, `${name?message}`, the patterns
//! `${name#glob}`, `${name##glob}`, `${name%glob}`, `${name%%glob}`, `${name/glob/text}`,
//! `${name//glob/text}`; single quotes (literal), double quotes (variables expanded), and the
//! escape character (`\`, or `` ` `` after `# escape=`), which makes the next character
//! literal. Quotes and escapes are removed, as a shell would. An unset variable expands to
//! nothing. `RUN`, `CMD` and `ENTRYPOINT` are not processed: the shell does that.

/// A word Docker's processing refuses (an unterminated quote, a bad substitution, a `:?`
/// whose variable is unset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExpandError(pub String);

/// How a word is processed.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The escape character.
    pub escape: char,
    /// Here-document rules: quotes are ordinary characters, and the escape character only
    /// escapes `$` and itself (as in a shell's here-document with an unquoted delimiter).
    pub raw: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            escape: '\\',
            raw: false,
        }
    }
}

/// Expands `word` with the variables `lookup` knows.
pub fn expand(
    word: &str,
    options: Options,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let chars: Vec<char> = word.chars().collect();
    let mut lexer = Lexer {
        chars: &chars,
        pos: 0,
        depth: 0,
        options,
        lookup,
    };
    let out = lexer.word(None)?;
    Ok(out)
}

/// How deep `${a:-${b:-...}}` may nest: a bound on the recursion, far beyond real use.
const MAX_DEPTH: usize = 64;

struct Lexer<'a> {
    chars: &'a [char],
    pos: usize,
    depth: usize,
    options: Options,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Processes up to the end, or up to `stop` (consumed) when inside `${...}`.
    fn word(&mut self, stop: Option<char>) -> Result<String, ExpandError> {
        let escape = self.options.escape;
        let mut out = String::new();
        while let Some(c) = self.bump() {
            if Some(c) == stop {
                return Ok(out);
            }
            if self.options.raw {
                match c {
                    '$' => out.push_str(&self.dollar()?),
                    c if c == escape => match self.peek() {
                        Some(next) if next == '$' || next == escape => {
                            self.pos += 1;
                            out.push(next);
                        }
                        _ => out.push(c),
                    },
                    c => out.push(c),
                }
                continue;
            }
            match c {
                '\'' => loop {
                    match self.bump() {
                        Some('\'') => break,
                        Some(c) => out.push(c),
                        None => {
                            return Err(ExpandError(
                                "unexpected end of statement while looking for matching single-quote".into(),
                            ));
                        }
                    }
                },
                '"' => self.double_quoted(&mut out)?,
                '$' => out.push_str(&self.dollar()?),
                c if c == escape => match self.bump() {
                    Some(next) => out.push(next),
                    // A trailing escape character stays.
                    None => out.push(c),
                },
                c => out.push(c),
            }
        }
        match stop {
            Some(_) => Err(ExpandError("missing '}' in a ${...} substitution".into())),
            None => Ok(out),
        }
    }

    /// The inside of `"..."` (the opening quote consumed), its closing quote consumed.
    fn double_quoted(&mut self, out: &mut String) -> Result<(), ExpandError> {
        let escape = self.options.escape;
        loop {
            match self.bump() {
                Some('"') => return Ok(()),
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) if c == escape => match self.bump() {
                    // Inside double quotes the escape character only escapes these.
                    Some(next) if next == '"' || next == '$' || next == escape => out.push(next),
                    Some(next) => {
                        out.push(c);
                        out.push(next);
                    }
                    None => {
                        return Err(ExpandError(
                            "unexpected end of statement while looking for matching double-quote"
                                .into(),
                        ));
                    }
                },
                Some(c) => out.push(c),
                None => {
                    return Err(ExpandError(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    ));
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        name
    }

    /// What follows a `$` (consumed).
    fn dollar(&mut self) -> Result<String, ExpandError> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced()
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                let name = self.name();
                Ok((self.lookup)(&name).unwrap_or_default())
            }
            // `$` before anything else is just a dollar sign.
            _ => Ok("$".into()),
        }
    }

    /// `${...}` after its `{`.
    fn braced(&mut self) -> Result<String, ExpandError> {
        if self.depth >= MAX_DEPTH {
            return Err(ExpandError(format!(
                "substitutions nested more than {MAX_DEPTH} deep"
            )));
        }
        self.depth += 1;
        let out = self.braced_inner();
        self.depth -= 1;
        out
    }

    fn braced_inner(&mut self) -> Result<String, ExpandError> {
        let name = self.name();
        if name.is_empty() {
            return Err(ExpandError(
                "bad substitution: ${} needs a variable name".into(),
            ));
        }
        let value = (self.lookup)(&name);
        let Some(op) = self.bump() else {
            return Err(ExpandError(format!("missing '}}' after ${{{name}")));
        };
        let set = value.is_some();
        let value_or_empty = value.clone().unwrap_or_default();
        let non_empty = !value_or_empty.is_empty();
        match op {
            '}' => Ok(value_or_empty),
            ':' => {
                let modifier = self.bump();
                let word = self.word(Some('}'))?;
                match modifier {
                    Some('-') => Ok(if non_empty { value_or_empty } else { word }),
                    Some('+') => Ok(if non_empty { word } else { String::new() }),
                    Some('?') if non_empty => Ok(value_or_empty),
                    Some('?') => Err(unset_error(&name, &word)),
                    Some(other) => Err(ExpandError(format!(
                        "unsupported modifier (:{other}) in substitution of {name}"
                    ))),
                    None => Err(ExpandError(format!("missing '}}' after ${{{name}:"))),
                }
            }
            '-' => {
                let word = self.word(Some('}'))?;
                Ok(if set { value_or_empty } else { word })
            }
            '+' => {
                let word = self.word(Some('}'))?;
                Ok(if set { word } else { String::new() })
            }
            '?' => {
                let word = self.word(Some('}'))?;
                if set {
                    Ok(value_or_empty)
                } else {
                    Err(unset_error(&name, &word))
                }
            }
            '#' | '%' => {
                let longest = self.peek() == Some(op);
                if longest {
                    self.pos += 1;
                }
                let pattern = self.word(Some('}'))?;
                Ok(trim_match(&value_or_empty, &pattern, op == '#', longest))
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let pattern = self.word(Some('/'))?;
                let replacement = self.word(Some('}'))?;
                Ok(replace_match(&value_or_empty, &pattern, &replacement, all))
            }
            other => Err(ExpandError(format!(
                "unsupported modifier ({other}) in substitution of {name}"
            ))),
        }
    }
}

fn unset_error(name: &str, message: &str) -> ExpandError {
    if message.is_empty() {
        ExpandError(format!("{name}: is not allowed to be unset"))
    } else {
        ExpandError(format!("{name}: {message}"))
    }
}

/// Whether `text` matches the shell glob `pattern` as a whole (`*`, `?`, literal otherwise).
fn glob_matches(pattern: &[char], text: &[char]) -> bool {
    // Iterative with one backtrack point for the last `*`: linear enough, never recursive.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some('?') => {
                p += 1;
                t += 1;
            }
            Some(c) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// `${v#p}`, `${v##p}` (prefix) and `${v%p}`, `${v%%p}` (suffix) removal.
fn trim_match(value: &str, pattern: &str, prefix: bool, longest: bool) -> String {
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let lengths: Box<dyn Iterator<Item = usize>> = if longest {
        Box::new((0..=v.len()).rev())
    } else {
        Box::new(0..=v.len())
    };
    for len in lengths {
        let (part, keep) = if prefix {
            (&v[..len], &v[len..])
        } else {
            (&v[v.len() - len..], &v[..v.len() - len])
        };
        if glob_matches(&p, part) {
            return keep.iter().collect();
        }
    }
    value.to_string()
}

/// `${v/p/r}` (first match, longest at its position) and `${v//p/r}` (every match).
fn replace_match(value: &str, pattern: &str, replacement: &str, all: bool) -> String {
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    if p.is_empty() {
        return value.to_string();
    }
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i < v.len() {
        if !replaced || all {
            let found = (i + 1..=v.len())
                .rev()
                .find(|end| glob_matches(&p, &v[i..*end]));
            if let Some(end) = found {
                out.push_str(replacement);
                i = end;
                replaced = true;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(word: &str) -> Result<String, ExpandError> {
        let vars = |name: &str| match name {
            "HOME" => Some("/root".to_string()),
            "EMPTY" => Some(String::new()),
            "V" => Some("1.2.3".to_string()),
            "PATH_" => Some("/a/b/c.tar.gz".to_string()),
            _ => None,
        };
        expand(word, Options::default(), &vars)
    }

    #[test]
    fn variables_and_modifiers() {
        assert_eq!(env("$HOME/x").unwrap(), "/root/x");
        assert_eq!(env("${HOME}x").unwrap(), "/rootx");
        assert_eq!(env("$NOPE-x").unwrap(), "-x");
        assert_eq!(env("${NOPE:-dflt}").unwrap(), "dflt");
        assert_eq!(env("${EMPTY:-dflt}").unwrap(), "dflt");
        assert_eq!(env("${EMPTY-dflt}").unwrap(), "");
        assert_eq!(env("${NOPE-dflt}").unwrap(), "dflt");
        assert_eq!(env("${HOME:+alt}").unwrap(), "alt");
        assert_eq!(env("${EMPTY:+alt}").unwrap(), "");
        assert_eq!(env("${EMPTY+alt}").unwrap(), "alt");
        assert_eq!(env("${NOPE:+alt}").unwrap(), "");
        assert_eq!(env("${NOPE:-${HOME}/d}").unwrap(), "/root/d");
        assert_eq!(env("${HOME:?}").unwrap(), "/root");
        assert_eq!(
            env("${NOPE:?must be set}").unwrap_err().0,
            "NOPE: must be set"
        );
        assert_eq!(
            env("${NOPE?}").unwrap_err().0,
            "NOPE: is not allowed to be unset"
        );
        assert_eq!(env("cost: $").unwrap(), "cost: $");
        assert_eq!(env("a$-b").unwrap(), "a$-b");
    }

    #[test]
    fn patterns() {
        assert_eq!(env("${V#*.}").unwrap(), "2.3");
        assert_eq!(env("${V##*.}").unwrap(), "3");
        assert_eq!(env("${V%.*}").unwrap(), "1.2");
        assert_eq!(env("${V%%.*}").unwrap(), "1");
        assert_eq!(env("${PATH_##*/}").unwrap(), "c.tar.gz");
        assert_eq!(env("${V/./-}").unwrap(), "1-2.3");
        assert_eq!(env("${V//./-}").unwrap(), "1-2-3");
        assert_eq!(env("${V/x/y}").unwrap(), "1.2.3");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(env("'$HOME'").unwrap(), "$HOME");
        assert_eq!(env("\"$HOME dir\"").unwrap(), "/root dir");
        assert_eq!(env("\\$HOME").unwrap(), "$HOME");
        assert_eq!(env("a\\ b").unwrap(), "a b");
        assert_eq!(env("\"a\\\"b\"").unwrap(), "a\"b");
        assert_eq!(env("\"a\\nb\"").unwrap(), "a\\nb");
        assert_eq!(env("end\\").unwrap(), "end\\");
        assert!(env("'open").is_err());
        assert!(env("\"open").is_err());
        assert!(env("${HOME").is_err());
        assert!(env("${}").is_err());
        assert!(env("${HOME:=x}").is_err());
        let deep = "${a:-".repeat(10_000) + &"}".repeat(10_000);
        assert!(env(&deep).unwrap_err().0.contains("nested"));
        let backtick = Options {
            escape: '`',
            raw: false,
        };
        let none = |_: &str| None;
        assert_eq!(expand("C:\\dir`$x", backtick, &none).unwrap(), "C:\\dir$x");
        let raw = Options {
            escape: '\\',
            raw: true,
        };
        let home = |_: &str| Some("/root".to_string());
        assert_eq!(
            expand("echo \"$HOME\" '$HOME' \\$x \\n", raw, &home).unwrap(),
            "echo \"/root\" '/root' $x \\n"
        );
    }

    #[test]
    fn globs() {
        let g = |p: &str, t: &str| {
            glob_matches(
                &p.chars().collect::<Vec<_>>(),
                &t.chars().collect::<Vec<_>>(),
            )
        };
        assert!(g("*", ""));
        assert!(g("a*c", "abbbc"));
        assert!(g("a?c", "abc"));
        assert!(!g("a?c", "ac"));
        assert!(g("*.gz", "x.tar.gz"));
        assert!(!g("*.gz", "x.tar"));
    }
}
