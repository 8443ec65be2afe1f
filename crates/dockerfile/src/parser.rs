//! The parser: parser directives, then logical lines (continuations joined, comments and
//! blank lines dropped, here-documents collected), then each instruction's arguments in the
//! forms Docker accepts for it (JSON or shell form, `KEY=value` lists, flags).

use crate::ast::*;
use crate::error::ParseError;

/// Parses a Dockerfile. Fails on the first problem, naming its line.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let (syntax, escape, first) = directives(&lines)?;
    let mut file = Dockerfile {
        syntax,
        escape,
        meta_args: Vec::new(),
        stages: Vec::new(),
    };
    let mut reader = Lines {
        lines: &lines,
        next: first,
        escape,
    };
    while let Some(logical) = reader.next_instruction()? {
        let (keyword, rest) = split_keyword(&logical.text);
        let upper = keyword.to_ascii_uppercase();
        let line = logical.line;
        if upper == "FROM" {
            file.stages.push(parse_from(line, rest)?);
            continue;
        }
        let heredocs = if matches!(upper.as_str(), "RUN" | "COPY" | "ADD") {
            reader.heredocs(line, rest)?
        } else {
            Vec::new()
        };
        let kind = parse_instruction(line, &upper, keyword, rest, heredocs, escape)?;
        let instruction = Instruction {
            line,
            source: format!("{upper} {}", rest.trim()).trim_end().to_string(),
            kind,
        };
        match file.stages.last_mut() {
            Some(stage) => stage.instructions.push(instruction),
            None if upper == "ARG" => file.meta_args.push(instruction),
            None => {
                return Err(ParseError::new(
                    line,
                    format!("{upper} before the first FROM: no build stage in current context"),
                ));
            }
        }
    }
    if file.stages.is_empty() {
        let message = if file.meta_args.is_empty() {
            "file with no instructions"
        } else {
            "no FROM instruction: a Dockerfile needs at least one build stage"
        };
        return Err(ParseError::new(0, message));
    }
    Ok(file)
}

/// Reads the parser directives at the top: `# syntax=...`, `# escape=...`, `# check=...`.
/// They end at the first line that is not one (a blank line, another comment, an
/// instruction). Returns them and the index of the first line after them.
fn directives(lines: &[&str]) -> Result<(Option<String>, char, usize), ParseError> {
    let mut syntax = None;
    let mut escape = None;
    let mut check = None;
    let mut index = 0;
    while let Some(line) = lines.get(index) {
        let Some((key, value)) = directive(line) else {
            break;
        };
        let lower = key.to_ascii_lowercase();
        let slot = match lower.as_str() {
            "syntax" => &mut syntax,
            "escape" => &mut escape,
            "check" => &mut check,
            // An unknown directive is a comment, and directives end with it.
            _ => break,
        };
        if slot.is_some() {
            return Err(ParseError::new(
                index + 1,
                format!("only one {lower} parser directive can be used"),
            ));
        }
        *slot = Some(value.to_string());
        index += 1;
    }
    let escape = match escape.as_deref() {
        None | Some("\\") => '\\',
        Some("`") => '`',
        Some(other) => {
            return Err(ParseError::new(
                1,
                format!("invalid escape token '{other}' does not validate: it must be \\ or `"),
            ));
        }
    };
    Ok((syntax, escape, index))
}

/// `# key = value` with a key of letters and digits.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix('#')?.trim_start();
    let key_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    if key_len == 0 || !rest.as_bytes()[0].is_ascii_alphabetic() {
        return None;
    }
    let (key, after) = rest.split_at(key_len);
    let value = after.trim_start().strip_prefix('=')?.trim();
    (!value.is_empty() && !value.contains(char::is_whitespace)).then_some((key, value))
}

/// An instruction as one line, and the line it started on.
struct Logical {
    line: usize,
    text: String,
}

struct Lines<'a> {
    lines: &'a [&'a str],
    next: usize,
    escape: char,
}

impl Lines<'_> {
    /// The next instruction: leading whitespace trimmed, comment and blank lines skipped,
    /// continuation lines (ending in the escape character) joined. Inside a continuation,
    /// comment and blank lines are skipped too, as Docker does.
    fn next_instruction(&mut self) -> Result<Option<Logical>, ParseError> {
        let mut text = String::new();
        let mut start = None;
        while let Some(raw) = self.lines.get(self.next) {
            let number = self.next + 1;
            self.next += 1;
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            start.get_or_insert(number);
            match strip_continuation(trimmed, self.escape) {
                Some(head) => text.push_str(head),
                None => {
                    text.push_str(trimmed);
                    return Ok(Some(Logical {
                        line: start.unwrap_or(number),
                        text,
                    }));
                }
            }
        }
        // The file ended inside a continuation: what was read is the instruction.
        Ok(start.map(|line| Logical { line, text }))
    }

    /// The here-documents that `rest` (an instruction's arguments) opens, read from the lines
    /// after the instruction, in order.
    fn heredocs(&mut self, line: usize, rest: &str) -> Result<Vec<Heredoc>, ParseError> {
        let mut docs = Vec::new();
        for word in name_value_words(rest, self.escape) {
            let Some(marker) = heredoc_marker(&word) else {
                continue;
            };
            let mut content = String::new();
            loop {
                let Some(raw) = self.lines.get(self.next) else {
                    return Err(ParseError::new(
                        line,
                        format!("unterminated heredoc: no line {:?} closes it", marker.name),
                    ));
                };
                self.next += 1;
                let body = if marker.strip_tabs {
                    raw.trim_start_matches('\t')
                } else {
                    raw
                };
                if body == marker.name {
                    break;
                }
                content.push_str(body);
                content.push('\n');
            }
            docs.push(Heredoc {
                name: marker.name,
                content,
                expand: marker.expand,
            });
        }
        Ok(docs)
    }
}

/// The line without its continuation character (the escape character, then only spaces
/// and tabs), or `None` when it does not continue.
fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    let trimmed = line.trim_end_matches([' ', '\t']);
    trimmed.strip_suffix(escape)
}

/// The first word and the rest (leading whitespace of the rest trimmed).
fn split_keyword(text: &str) -> (&str, &str) {
    let text = text.trim();
    match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim_start()),
        None => (text, ""),
    }
}

struct HeredocMarker {
    name: String,
    strip_tabs: bool,
    expand: bool,
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`: a word that opens a here-document.
fn heredoc_marker(word: &str) -> Option<HeredocMarker> {
    let rest = word.strip_prefix("<<")?;
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (name, quoted) = match rest.chars().next()? {
        q @ ('"' | '\'') => (rest.strip_prefix(q)?.strip_suffix(q)?, true),
        _ => (rest, false),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    valid.then(|| HeredocMarker {
        name: name.to_string(),
        strip_tabs,
        expand: !quoted,
    })
}

/// Docker's `parseWords`: words split at whitespace outside quotes, with quotes and escapes
/// kept in the word (they are processed when the word is expanded).
pub(crate) fn name_value_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            word.push(c);
            escaped = false;
            continue;
        }
        if c == escape {
            escaped = true;
            word.push(c);
            continue;
        }
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                word.push(c);
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                word.push(c);
            }
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            None => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Flags (`--name=value`, `--name`) at the start of an instruction's arguments, and the
/// arguments after them.
struct Flags {
    values: Vec<(String, Option<String>)>,
}

fn take_flags(rest: &str) -> (Flags, &str) {
    let mut values = Vec::new();
    let mut rest = rest.trim_start();
    while let Some(after) = rest.strip_prefix("--") {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let flag = &after[..end];
        rest = after[end..].trim_start();
        if flag.is_empty() {
            // A lone `--` ends the flags.
            break;
        }
        match flag.split_once('=') {
            Some((name, value)) => values.push((name.to_string(), Some(value.to_string()))),
            None => values.push((flag.to_string(), None)),
        }
    }
    (Flags { values }, rest)
}

impl Flags {
    /// Fails on a flag not in `allowed` (names without `--`).
    fn check(&self, line: usize, keyword: &str, allowed: &[&str]) -> Result<(), ParseError> {
        for (name, _) in &self.values {
            if !allowed.contains(&name.as_str()) {
                return Err(ParseError::new(
                    line,
                    format!("unknown flag: --{name} (for {keyword})"),
                ));
            }
        }
        Ok(())
    }

    /// The last value of string flag `name`.
    fn string(&self, line: usize, name: &str) -> Result<Option<String>, ParseError> {
        let mut out = None;
        for (n, v) in &self.values {
            if n == name {
                match v {
                    Some(v) => out = Some(v.clone()),
                    None => {
                        return Err(ParseError::new(
                            line,
                            format!("missing a value on flag: --{name}"),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every value of the repeatable string flag `name`.
    fn strings(&self, line: usize, name: &str) -> Result<Vec<String>, ParseError> {
        let mut out = Vec::new();
        for (n, v) in &self.values {
            if n == name {
                out.push(v.clone().ok_or_else(|| {
                    ParseError::new(line, format!("missing a value on flag: --{name}"))
                })?);
            }
        }
        Ok(out)
    }

    /// Boolean flag `name`: `--name`, `--name=true|false`.
    fn bool(&self, line: usize, name: &str) -> Result<bool, ParseError> {
        let mut out = false;
        for (n, v) in &self.values {
            if n == name {
                out = match v.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(other) => {
                        return Err(ParseError::new(
                            line,
                            format!("expecting boolean value for flag --{name}, not: {other}"),
                        ));
                    }
                };
            }
        }
        Ok(out)
    }
}

fn parse_from(line: usize, rest: &str) -> Result<Stage, ParseError> {
    let (flags, rest) = take_flags(rest);
    flags.check(line, "FROM", &["platform"])?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let (base, name) = match words.as_slice() {
        [base] => (*base, None),
        [base, as_word, name] if as_word.eq_ignore_ascii_case("as") => (*base, Some(*name)),
        _ => {
            return Err(ParseError::new(
                line,
                "FROM requires either one argument (FROM image) or three (FROM image AS name)",
            ));
        }
    };
    let name = match name {
        Some(n) => {
            let lower = n.to_ascii_lowercase();
            let valid = lower.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && lower
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                return Err(ParseError::new(
                    line,
                    format!(
                        "invalid name for build stage: {n:?}, name can't start with a number or contain symbols"
                    ),
                ));
            }
            Some(lower)
        }
        None => None,
    };
    Ok(Stage {
        line,
        base: base.to_string(),
        name,
        platform: flags.string(line, "platform")?,
        instructions: Vec::new(),
    })
}

/// `["a", "b"]` as exec form, when it is a JSON array of strings.
fn json_array(rest: &str) -> Option<Vec<String>> {
    let trimmed = rest.trim();
    if !trimmed.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(trimmed).ok()
}

/// Exec form when the arguments are a JSON array of strings, shell form otherwise.
fn command(rest: &str) -> Command {
    match json_array(rest) {
        Some(words) => Command::Exec(words),
        None => Command::Shell(rest.trim().to_string()),
    }
}

fn parse_instruction(
    line: usize,
    upper: &str,
    keyword: &str,
    rest: &str,
    heredocs: Vec<Heredoc>,
    escape: char,
) -> Result<Kind, ParseError> {
    let err = |message: String| ParseError::new(line, message);
    let (flags, args) = match upper {
        "RUN" | "COPY" | "ADD" | "HEALTHCHECK" => take_flags(rest),
        _ => (Flags { values: Vec::new() }, rest),
    };
    let args = args.trim();
    let need_args = || {
        if args.is_empty() {
            Err(err(format!("{upper} requires at least one argument")))
        } else {
            Ok(())
        }
    };
    Ok(match upper {
        "RUN" => {
            flags.check(line, upper, &["mount", "network", "security"])?;
            need_args()?;
            let network = flags.string(line, "network")?;
            if let Some(n) = &network
                && !matches!(n.as_str(), "default" | "none" | "host")
            {
                return Err(err(format!(
                    "unsupported network mode {n:?} for RUN --network (default, none or host)"
                )));
            }
            Kind::Run(Run {
                command: command(args),
                heredocs,
                mounts: flags.strings(line, "mount")?,
                network,
                security: flags.string(line, "security")?,
            })
        }
        "CMD" => {
            need_args()?;
            Kind::Cmd(command(args))
        }
        "ENTRYPOINT" => {
            need_args()?;
            Kind::Entrypoint(command(args))
        }
        "SHELL" => match json_array(args) {
            Some(words) if !words.is_empty() => Kind::Shell(words),
            _ => {
                return Err(err(
                    "SHELL requires the arguments to be in JSON form, as [\"executable\", \"parameters\"]".into(),
                ));
            }
        },
        "ENV" | "LABEL" => {
            let pairs = key_values(line, upper, args, escape)?;
            if upper == "ENV" {
                Kind::Env(pairs)
            } else {
                Kind::Label(pairs)
            }
        }
        "ARG" => {
            let words = name_value_words(args, escape);
            if words.is_empty() {
                return Err(err("ARG requires at least one argument".into()));
            }
            let mut decls = Vec::new();
            for word in words {
                let (name, default) = match word.split_once('=') {
                    Some((n, d)) => (n.to_string(), Some(d.to_string())),
                    None => (word, None),
                };
                if name.is_empty() {
                    return Err(err(format!("ARG names a variable with no name: {args:?}")));
                }
                decls.push(ArgDecl { name, default });
            }
            Kind::Arg(decls)
        }
        "EXPOSE" => {
            need_args()?;
            Kind::Expose(args.split_whitespace().map(str::to_string).collect())
        }
        "VOLUME" => {
            need_args()?;
            let paths = match json_array(args) {
                Some(words) => words,
                None => args.split_whitespace().map(str::to_string).collect(),
            };
            if paths.iter().any(|p| p.trim().is_empty()) || paths.is_empty() {
                return Err(err("VOLUME specified can not be an empty string".into()));
            }
            Kind::Volume(paths)
        }
        "USER" | "WORKDIR" | "STOPSIGNAL" | "MAINTAINER" => {
            if args.is_empty() {
                return Err(err(format!("{upper} requires exactly one argument")));
            }
            let value = args.to_string();
            match upper {
                "USER" => Kind::User(value),
                "WORKDIR" => Kind::Workdir(value),
                "STOPSIGNAL" => Kind::Stopsignal(value),
                _ => Kind::Maintainer(value),
            }
        }
        "COPY" | "ADD" => {
            let allowed: &[&str] = if upper == "COPY" {
                &["from", "chown", "chmod", "link", "parents", "exclude"]
            } else {
                &[
                    "chown",
                    "chmod",
                    "link",
                    "exclude",
                    "keep-git-dir",
                    "checksum",
                ]
            };
            flags.check(line, upper, allowed)?;
            let words = match json_array(args) {
                Some(words) => words,
                None => args.split_whitespace().map(str::to_string).collect(),
            };
            let (heredoc_words, mut paths): (Vec<String>, Vec<String>) = words
                .into_iter()
                .partition(|w| !heredocs.is_empty() && heredoc_marker(w).is_some());
            let enough = paths.len() >= 2 || (!heredoc_words.is_empty() && paths.len() == 1);
            if !enough {
                return Err(err(format!(
                    "{upper} requires at least two arguments, but only {} provided: the destination could not be determined",
                    if paths.is_empty() {
                        "none was".to_string()
                    } else {
                        "one was".to_string()
                    }
                )));
            }
            let dest = paths.pop().unwrap_or_default();
            let copy = Copy {
                sources: paths,
                dest,
                heredocs,
                from: flags.string(line, "from")?,
                chown: flags.string(line, "chown")?,
                chmod: flags.string(line, "chmod")?,
                link: flags.bool(line, "link")?,
                parents: flags.bool(line, "parents")?,
                exclude: flags.strings(line, "exclude")?,
                keep_git_dir: flags.bool(line, "keep-git-dir")?,
                checksum: flags.string(line, "checksum")?,
            };
            if upper == "COPY" {
                Kind::Copy(copy)
            } else {
                Kind::Add(copy)
            }
        }
        "HEALTHCHECK" => Kind::Healthcheck(healthcheck(line, &flags, args)?),
        "ONBUILD" => {
            need_args()?;
            let (trigger, trigger_rest) = split_keyword(args);
            let trigger_upper = trigger.to_ascii_uppercase();
            if matches!(trigger_upper.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(err(format!(
                    "{trigger_upper} isn't allowed as an ONBUILD trigger"
                )));
            }
            // Checked now, so that a broken trigger fails this build, not the next one.
            parse_instruction(
                line,
                &trigger_upper,
                trigger,
                trigger_rest,
                Vec::new(),
                escape,
            )?;
            Kind::Onbuild(args.to_string())
        }
        _ => {
            return Err(err(format!("unknown instruction: {keyword}")));
        }
    })
}

/// `ENV`/`LABEL` arguments: `k=v k2="v 2"`, or the old `KEY value of words` form.
fn key_values(
    line: usize,
    upper: &str,
    args: &str,
    escape: char,
) -> Result<Vec<KeyValue>, ParseError> {
    let words = name_value_words(args, escape);
    let Some(first) = words.first() else {
        return Err(ParseError::new(
            line,
            format!("{upper} requires at least one argument"),
        ));
    };
    if !first.contains('=') {
        // The old form: the first word is the key, everything after it the value.
        let (key, value) = split_keyword(args);
        if value.is_empty() {
            return Err(ParseError::new(
                line,
                format!("{upper} must have two arguments (KEY value) or be of the form KEY=value"),
            ));
        }
        return Ok(vec![KeyValue {
            key: key.to_string(),
            value: value.to_string(),
        }]);
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok(KeyValue {
                key: key.to_string(),
                value: value.to_string(),
            }),
            Some(_) => Err(ParseError::new(
                line,
                format!("{upper} names a key that is empty: {word:?}"),
            )),
            None => Err(ParseError::new(
                line,
                format!("syntax error - can't find = in {word:?}. Must be of the form: name=value"),
            )),
        })
        .collect()
}

fn healthcheck(line: usize, flags: &Flags, args: &str) -> Result<Healthcheck, ParseError> {
    flags.check(
        line,
        "HEALTHCHECK",
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
    )?;
    let (kind, rest) = split_keyword(args);
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !rest.is_empty() || !flags.values.is_empty() {
                return Err(ParseError::new(
                    line,
                    "HEALTHCHECK NONE takes no other arguments",
                ));
            }
            Ok(Healthcheck::None)
        }
        "CMD" => {
            if rest.trim().is_empty() {
                return Err(ParseError::new(
                    line,
                    "missing command after HEALTHCHECK CMD",
                ));
            }
            let duration = |name: &str| -> Result<i64, ParseError> {
                let Some(text) = flags.string(line, name)? else {
                    return Ok(0);
                };
                let ns = parse_duration(&text).ok_or_else(|| {
                    ParseError::new(
                        line,
                        format!("invalid duration for --{name}: {text:?} (as 30s or 1m30s)"),
                    )
                })?;
                if ns != 0 && ns < 1_000_000 {
                    return Err(ParseError::new(
                        line,
                        format!("--{name} cannot be less than 1ms"),
                    ));
                }
                Ok(ns)
            };
            let retries = match flags.string(line, "retries")? {
                None => 0,
                Some(text) => text
                    .parse::<i64>()
                    .ok()
                    .filter(|r| *r >= 0)
                    .ok_or_else(|| {
                        ParseError::new(
                            line,
                            format!("--retries must be a number of zero or more, not {text:?}"),
                        )
                    })?,
            };
            Ok(Healthcheck::Check {
                test: command(rest),
                interval: duration("interval")?,
                timeout: duration("timeout")?,
                start_period: duration("start-period")?,
                start_interval: duration("start-interval")?,
                retries,
            })
        }
        "" => Err(ParseError::new(
            line,
            "HEALTHCHECK requires NONE or CMD and a command",
        )),
        other => Err(ParseError::new(
            line,
            format!("unknown type {other:?} in HEALTHCHECK (try CMD)"),
        )),
    }
}
