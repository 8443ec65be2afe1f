//! `.dockerignore` files, read and matched as Docker does.
//!
//! Docker reads the file with moby/patternmatcher's `ignorefile.ReadAll` and matches paths with
//! its `PatternMatcher` (`MatchesOrParentMatches`). That matcher does not match with Go's
//! `filepath.Match`: it only asks it whether a pattern is well formed, then turns the pattern
//! into a plain string comparison (for the shapes `lit`, `lit**` and `**lit`) or into a Go
//! regular expression. The translation leaks regular-expression syntax into patterns: `[...]`
//! is a regexp class (it can match `/`), `\d` is a digit, a `^` outside a class is an anchor,
//! `|` is an alternation and `{2}` a count. To give the same answers, this module reproduces
//! the translation and carries a small matcher for the part of Go's RE2 syntax it can produce.
//!
//! Where berth is stricter: a pattern whose regular expression Go would refuse (such as
//! `[z-a]`) fails Docker's build only when the pattern is first evaluated; here it is an error
//! when the file is parsed. And Unicode classes such as `\pL`, which would need Unicode tables,
//! are refused though Go accepts them.

use std::fmt;

/// Longest line `ignorefile.ReadAll` accepts, in bytes (a trailing `\r` included): Go's
/// `bufio.Scanner` refuses a line that does not fit its 64 KiB buffer with its newline.
const MAX_LINE_BYTES: usize = 64 * 1024 - 1;

/// Characters that make BuildKit's context walker (fsutil) treat an exception as a wildcard,
/// which stops it from skipping excluded directories.
const WILDCARD_CHARS: &[char] = &['*', '[', ']', '?', '^', '\\'];

/// Rules of one .dockerignore file.
///
/// Paths are relative to the root of the build context and `/`-separated. The last pattern
/// that matches a path, or one of its parent directories, decides whether it is excluded.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

/// Where a refused pattern came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// A line of a .dockerignore file, counting from 1 (comments and blank lines included).
    Line(usize),
    /// An item given to [`IgnoreRules::from_patterns`], counting from 1.
    Item(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(f, ".dockerignore line {line}"),
            Location::Item(item) => write!(f, "pattern {item}"),
        }
    }
}

/// Why a .dockerignore file, or a list of patterns, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// A pattern Docker refuses: a `!` with nothing after it, a malformed glob (an unterminated
    /// `[`, a trailing `\`), or a glob whose regular expression Go cannot compile.
    #[error("{at}: invalid pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// Where the pattern was written.
        at: Location,
        /// The pattern as written, surrounding whitespace trimmed.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A line longer than Docker's reader accepts (it fails with "token too long").
    #[error(".dockerignore line {line}: longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong {
        /// The line, counting from 1.
        line: usize,
    },
}

impl IgnoreRules {
    /// Parses the text of a .dockerignore file: one pattern per line, `#` comments, blank lines
    /// skipped, surrounding whitespace trimmed, `!` for exceptions, patterns cleaned like Go's
    /// filepath.Clean with a leading `/` dropped (Docker's `ReadAll`). A pattern that is not a
    /// valid glob (e.g. an unterminated `[`) is an error naming the line (1-based) and pattern.
    ///
    /// As in Docker, a comment is a line whose first character is `#` (after a byte order mark
    /// on the first line): `  # x` is the pattern `# x`. Lines end at `\n`; a `\r` before it
    /// is dropped.
    pub fn parse(text: &str) -> Result<IgnoreRules, IgnoreError> {
        let mut rules = Vec::new();
        for (index, raw) in lines(text).enumerate() {
            let line = index + 1;
            if raw.len() > MAX_LINE_BYTES {
                return Err(IgnoreError::LineTooLong { line });
            }
            let mut raw = raw.strip_suffix('\r').unwrap_or(raw);
            if index == 0 {
                raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
            }
            if raw.starts_with('#') {
                continue;
            }
            if let Some(rule) = Rule::new(raw, Location::Line(line))? {
                rules.push(rule);
            }
        }
        Ok(IgnoreRules { rules })
    }

    /// Rules from patterns given directly (already one per item), same cleaning.
    ///
    /// Items are not comments, whatever they start with; blank items are skipped. An error
    /// names the item by its position, counting from 1.
    pub fn from_patterns<I: IntoIterator<Item = S>, S: AsRef<str>>(
        patterns: I,
    ) -> Result<IgnoreRules, IgnoreError> {
        let mut rules = Vec::new();
        for (index, pattern) in patterns.into_iter().enumerate() {
            if let Some(rule) = Rule::new(pattern.as_ref(), Location::Item(index + 1))? {
                rules.push(rule);
            }
        }
        Ok(IgnoreRules { rules })
    }

    /// Whether `path` (relative to the context root, `/`-separated, no leading `/`) is excluded:
    /// the last pattern that matches the path or one of its parent directories decides, as
    /// patternmatcher's MatchesOrParentMatches.
    ///
    /// The path is cleaned first (a leading `/` is ignored); the context root itself (`""`,
    /// `.`) is never excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        normalize(path).is_some_and(|path| self.excluded(&path))
    }

    /// Whether a walk may skip the excluded directory `dir` entirely: false when some exception
    /// pattern could match something beneath it (Docker's walk descends then).
    ///
    /// As BuildKit's walker decides, an exception that is a literal path, possibly followed by
    /// `/*` or `/**`, blocks the skip only when it lies in `dir` (or is `dir`); any other
    /// exception with a wildcard (`* ? [ ] ^ \`, and `| { }` in a regexp) blocks every skip.
    /// False as well when `dir` is not excluded.
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        let Some(dir) = normalize(dir) else {
            return false;
        };
        if !self.excluded(&dir) {
            return false;
        }
        let dir_slash = format!("{dir}/");
        self.rules.iter().filter(|rule| rule.exception).all(|rule| {
            literal_stem(rule).is_some_and(|stem| !format!("{stem}/").starts_with(&dir_slash))
        })
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// MatchesOrParentMatches on a cleaned, relative, non-root path.
    fn excluded(&self, path: &str) -> bool {
        let mut excluded = false;
        for rule in &self.rules {
            // Only a rule that could change the answer is looked at, as patternmatcher does.
            if rule.exception != excluded {
                continue;
            }
            if rule.matches_or_parent_matches(path) {
                excluded = !rule.exception;
            }
        }
        excluded
    }
}

/// The lines `bufio.ScanLines` yields: split at `\n`, no empty line after a final `\n`.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    (!text.is_empty())
        .then(|| body.split('\n'))
        .into_iter()
        .flatten()
}

/// A cleaned, relative path, or `None` for the context root.
fn normalize(path: &str) -> Option<String> {
    let cleaned = clean(path);
    let relative = cleaned.trim_start_matches('/');
    (!relative.is_empty() && relative != ".").then(|| relative.to_owned())
}

/// Go's `filepath.Clean` with `/` as the separator.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    // `..` above a relative start is kept; above `/` it is dropped.
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_owned()
    } else {
        joined
    }
}

/// The literal directory an exception is confined to, if it has one: the pattern less a final
/// `/**` or `/*`, when what is left has no wildcard.
fn literal_stem(rule: &Rule) -> Option<&str> {
    let pattern = rule.pattern.as_str();
    // Only one suffix is stripped: BuildKit strips `/**` and then `/*`, which wrongly treats
    // `a/*/**` as confined to `a` itself and skips `a/b`, where it matches `a/b/c`.
    let stem = pattern
        .strip_suffix("/**")
        .or_else(|| pattern.strip_suffix("/*"))
        .unwrap_or(pattern);
    // In a regexp `|`, `{` and `}` are operators (see `translate`): `a|b/*` matches `x/b/c`.
    // A leading byte order mark is dropped from a regexp but kept by the literal shapes.
    let regexp_operators: &[char] = match rule.matcher {
        Matcher::Regex(_) => &['|', '{', '}', '\u{feff}'],
        _ => &['\u{feff}'],
    };
    (!stem.contains(WILDCARD_CHARS) && !stem.contains(regexp_operators)).then_some(stem)
}

/// One cleaned pattern and how it matches.
#[derive(Debug, Clone)]
struct Rule {
    /// Written with a leading `!`: a match re-includes the path.
    exception: bool,
    /// The cleaned pattern, without its `!`.
    pattern: String,
    matcher: Matcher,
}

impl Rule {
    /// Cleans one line or item as `ReadAll` and then `patternmatcher.New` do; `None` when
    /// nothing is left of it.
    fn new(written: &str, at: Location) -> Result<Option<Rule>, IgnoreError> {
        let written = written.trim();
        if written.is_empty() {
            return Ok(None);
        }
        let invalid = |reason: String| IgnoreError::InvalidPattern {
            at,
            pattern: written.to_owned(),
            reason,
        };

        // ReadAll: `!`, then whitespace, clean, drop one leading `/` (not from `/` alone).
        let (invert, rest) = match written.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, written),
        };
        let mut read = String::new();
        if invert {
            read.push('!');
        }
        if !rest.is_empty() {
            let cleaned = clean(rest);
            match cleaned.strip_prefix('/') {
                Some(relative) if !relative.is_empty() => read.push_str(relative),
                _ => read.push_str(&cleaned),
            }
        }

        // New: trim and clean again (cleaning can expose whitespace: `foo /.` is `foo `), then
        // split off the `!`. Cleaning `!/` leaves `!` alone, refused like `!`.
        let read = read.trim();
        if read.is_empty() {
            return Ok(None);
        }
        let cleaned = clean(read);
        let (exception, pattern) = match cleaned.strip_prefix('!') {
            Some("") => {
                return Err(invalid(
                    "illegal exclusion pattern: nothing follows \"!\"".to_owned(),
                ));
            }
            Some(pattern) => (true, pattern),
            None => (false, cleaned.as_str()),
        };
        check_glob(pattern).map_err(|reason| invalid(reason.to_owned()))?;
        let matcher = Matcher::new(pattern).map_err(invalid)?;
        Ok(Some(Rule {
            exception,
            pattern: pattern.to_owned(),
            matcher,
        }))
    }

    /// Whether the pattern matches `path` or one of its parent directories.
    fn matches_or_parent_matches(&self, path: &str) -> bool {
        self.matcher.matches(path)
            || path
                .match_indices('/')
                .any(|(end, _)| self.matcher.matches(&path[..end]))
    }
}

/// Checks a pattern as patternmatcher does: by calling Go's `filepath.Match(pattern, ".")` and
/// keeping its error. Match checks syntax only as far as it gets: it stops at the first piece
/// between `*`s that does not match `.`, so `a*[` passes (and fails later, as a regexp) and
/// `a*\` passes (and ends in a literal `$`, see [`translate`]).
fn check_glob(pattern: &str) -> Result<(), &'static str> {
    glob_match(pattern.as_bytes(), b".").map(|_| ())
}

/// Go's `filepath.Match` (the same as `path.Match` on Unix): whether `name` matches
/// `pattern`, where `*` runs over anything but `/`, `?` is one character but `/`, `[...]` a
/// class (`^` negates), `\` escapes. `Err` names what is malformed in the pattern. For the
/// builder's `COPY` sources and the CLI's `--filter reference=`, as Docker uses it there.
pub fn path_match(pattern: &str, name: &str) -> Result<bool, &'static str> {
    glob_match(pattern.as_bytes(), name.as_bytes())
}

/// Go's `filepath.Match` on Unix, byte for byte: `*` runs over anything but `/`, `?` is one
/// character but `/`, `[...]` a class (`^` negates; `-` and `]` must be escaped unless `-`
/// makes a range), `\` escapes. The error names what is malformed.
fn glob_match(mut pattern: &[u8], mut name: &[u8]) -> Result<bool, &'static str> {
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains(&b'/'));
        }
        if let Some(rest) = match_chunk(chunk, name)?
            && (rest.is_empty() || !pattern.is_empty())
        {
            name = rest;
            continue;
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                if let Some(rest) = match_chunk(chunk, &name[i + 1..])? {
                    if pattern.is_empty() && !rest.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = rest;
                    continue 'pattern;
                }
                i += 1;
            }
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off the leading `*`s and the piece up to the next `*` outside a class.
fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let stars = pattern.iter().take_while(|&&b| b == b'*').count();
    let pattern = &pattern[stars..];
    let mut in_class = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'*' if !in_class => break,
            _ => {}
        }
        i += 1;
    }
    (stars > 0, &pattern[..i], &pattern[i..])
}

/// Matches a piece without `*` against the start of `name`: what is left of `name`, or `None`.
/// After a mismatch it reads on to the end of the piece, to report malformed syntax in it.
fn match_chunk<'a>(mut chunk: &[u8], mut name: &'a [u8]) -> Result<Option<&'a [u8]>, &'static str> {
    let mut failed = false;
    while let Some(&first) = chunk.first() {
        failed = failed || name.is_empty();
        match first {
            b'[' => {
                let mut rune = 0;
                if !failed {
                    let (decoded, width) = decode_rune(name);
                    rune = decoded;
                    name = &name[width..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = class_rune(chunk, ranges == 0)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&b'-') {
                        (hi, chunk) = class_rune(&chunk[1..], false)?;
                    }
                    matched = matched || (lo <= rune && rune <= hi);
                    ranges += 1;
                }
                failed = failed || matched == negated;
            }
            b'?' => {
                if !failed {
                    failed = name[0] == b'/';
                    name = &name[decode_rune(name).1..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if first == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err("trailing backslash");
                    }
                }
                if !failed {
                    failed = chunk[0] != name[0];
                    name = &name[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok((!failed).then_some(name))
}

/// One possibly escaped character of a class (Go's `getEsc`). Like Go, refuses one that ends
/// the piece, since the class can then never be closed.
fn class_rune(chunk: &[u8], first: bool) -> Result<(u32, &[u8]), &'static str> {
    let chunk = match chunk.first() {
        None => return Err("unterminated character class"),
        Some(b'-') => {
            return Err("'-' must be escaped in a character class unless it makes a range");
        }
        Some(b']') if first => return Err("empty character class"),
        Some(b']') => return Err("character range without an end"),
        Some(b'\\') => &chunk[1..],
        Some(_) => chunk,
    };
    if chunk.is_empty() {
        return Err("unterminated character class");
    }
    let (rune, width) = decode_rune(chunk);
    let rest = &chunk[width..];
    if rest.is_empty() {
        return Err("unterminated character class");
    }
    Ok((rune, rest))
}

/// The first UTF-8 character of `bytes` and its width, U+FFFD and 1 for a bad byte (and 0 for
/// nothing), as Go's `utf8.DecodeRune`.
fn decode_rune(bytes: &[u8]) -> (u32, usize) {
    let Some(chunk) = bytes.utf8_chunks().next() else {
        return (0xFFFD, 0);
    };
    match chunk.valid().chars().next() {
        Some(c) => (u32::from(c), c.len_utf8()),
        None => (0xFFFD, 1),
    }
}

/// How patternmatcher matches one pattern.
#[derive(Debug, Clone)]
enum Matcher {
    /// No wildcard: the path must equal the pattern.
    Exact(String),
    /// Literal text then a final `**`: the path must start with the text.
    Prefix(String),
    /// A leading `**` then literal text: the path must end with the bytes after the first two
    /// of the pattern (bytes, as Go slices them), or be them less a leading `/`.
    Suffix(Vec<u8>),
    /// Anything else: the Go regexp the pattern translates to.
    Regex(goregex::Regex),
}

/// Which shape a pattern has, as patternmatcher's `compile` decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

impl Matcher {
    fn new(pattern: &str) -> Result<Matcher, String> {
        let (kind, regex) = translate(pattern);
        Ok(match kind {
            Kind::Exact => Matcher::Exact(pattern.to_owned()),
            Kind::Prefix => {
                Matcher::Prefix(pattern.strip_suffix("**").unwrap_or(pattern).to_owned())
            }
            Kind::Suffix => {
                Matcher::Suffix(pattern.as_bytes().get(2..).unwrap_or_default().to_vec())
            }
            Kind::Regex => Matcher::Regex(goregex::Regex::new(&regex)?),
        })
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(pattern) => path == pattern,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                let path = path.as_bytes();
                path.ends_with(suffix) || (suffix.first() == Some(&b'/') && path == &suffix[1..])
            }
            Matcher::Regex(regex) => regex.is_match(path),
        }
    }
}

/// Translates a cleaned pattern as patternmatcher's `compile` does: its shape, and the regexp
/// text that is used when the shape is [`Kind::Regex`].
///
/// `*` becomes `[^/]*`, `?` becomes `[^/]`, `**` becomes `(.*/)?` (`.*` at the end), `\x` stays
/// `\x`, `. + ( ) $` are escaped, and everything else is copied as is: `[`, `]` and `^`, and
/// also `|`, `{` and `}`, which patternmatcher means to escape but does not (its bitmap of
/// characters to escape is indexed by `c / 8` in a byte, so no character from 64 up is in it).
fn translate(pattern: &str) -> (Kind, String) {
    let mut chars = pattern.chars().peekable();
    // patternmatcher reads the pattern with text/scanner, which skips a leading byte order mark.
    if chars.peek() == Some(&'\u{feff}') {
        chars.next();
    }
    let mut kind = Kind::Exact;
    let mut regex = String::from("^");
    let mut first = true;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        regex.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    regex.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                // A leading `**` makes a suffix match even when more wildcards follow; they
                // then turn it into a regexp again.
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                regex.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                regex.push_str("[^/]");
                kind = Kind::Regex;
            }
            '.' | '+' | '(' | ')' | '$' => {
                regex.push('\\');
                regex.push(c);
            }
            '\\' => match chars.next() {
                Some(escaped) => {
                    regex.push('\\');
                    regex.push(escaped);
                    kind = Kind::Regex;
                }
                None => regex.push('\\'),
            },
            '[' | ']' => {
                regex.push(c);
                kind = Kind::Regex;
            }
            _ => regex.push(c),
        }
        first = false;
    }
    if kind == Kind::Regex {
        regex.push('$');
    }
    (kind, regex)
}

/// The part of Go's `regexp` that patternmatcher's translation can produce, with Go's syntax
/// rules (RE2 with Perl flags: `.` does not match `\n`, `^`/`$` are text anchors, a negated
/// class matches `\n`, `\d \s \w \b` are ASCII) and an automaton matcher, so no pattern can
/// make matching slow.
///
/// Flag groups cannot come from a pattern (`(` comes only from `**`, as `(.*/)?`), so they are
/// refused. Unicode classes (`\pL`) would need Unicode tables: they are refused too, though Go
/// accepts them.
mod goregex {
    /// A compiled expression, searched for anywhere in the text as Go's `MatchString` does.
    #[derive(Debug, Clone)]
    pub(super) struct Regex {
        program: Vec<Inst>,
        /// The classes [`Inst::Class`] refers to, kept apart so that the copies a count such
        /// as `{1000}` makes stay small.
        classes: Vec<Class>,
    }

    #[derive(Debug, Clone)]
    enum Inst {
        Rune(u32),
        Class(usize),
        AnyNotNewline,
        Look(Look),
        Split(usize, usize),
        Jump(usize),
        Match,
    }

    #[derive(Debug, Clone, Copy)]
    enum Look {
        BeginText,
        EndText,
        WordBoundary,
        NotWordBoundary,
    }

    /// Code point ranges; runes are `u32` because Go accepts escapes such as `\x{D800}` that
    /// are no `char`.
    #[derive(Debug, Clone, Default)]
    struct Class {
        ranges: Vec<(u32, u32)>,
        negated: bool,
    }

    #[derive(Debug)]
    enum Node {
        Rune(u32),
        Class(usize),
        AnyNotNewline,
        Look(Look),
        Concat(Vec<Node>),
        Alternate(Vec<Node>),
        Group(Box<Node>),
        Repeat(Box<Node>, Repeat),
    }

    #[derive(Debug, Clone, Copy)]
    enum Repeat {
        Star,
        Plus,
        Quest,
        /// `{min}`, `{min,}` (no max) or `{min,max}`.
        Counted(u32, Option<u32>),
    }

    /// Go's limit on a single count in `{min,max}`.
    const MAX_REPEAT: u32 = 1000;
    /// Go's limit on the size of an expression (128 MiB of 40-byte instructions).
    const MAX_SIZE: u64 = (128 << 20) / 40;

    const MAX_RUNE: u32 = 0x10_FFFF;
    const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
    const PERL_SPACE: &[(u32, u32)] = &[(0x09, 0x0a), (0x0c, 0x0d), (0x20, 0x20)];
    const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)];

    /// Go's POSIX classes, `[:name:]` inside a class.
    fn posix_class(name: &str) -> Option<&'static [(u32, u32)]> {
        Some(match name {
            "alnum" => &[(0x30, 0x39), (0x41, 0x5a), (0x61, 0x7a)],
            "alpha" => &[(0x41, 0x5a), (0x61, 0x7a)],
            "ascii" => &[(0x00, 0x7f)],
            "blank" => &[(0x09, 0x09), (0x20, 0x20)],
            "cntrl" => &[(0x00, 0x1f), (0x7f, 0x7f)],
            "digit" => DIGIT,
            "graph" => &[(0x21, 0x7e)],
            "lower" => &[(0x61, 0x7a)],
            "print" => &[(0x20, 0x7e)],
            "punct" => &[(0x21, 0x2f), (0x3a, 0x40), (0x5b, 0x60), (0x7b, 0x7e)],
            "space" => &[(0x09, 0x0d), (0x20, 0x20)],
            "upper" => &[(0x41, 0x5a)],
            "word" => WORD,
            "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
            _ => return None,
        })
    }

    /// Go's Perl classes `\d \D \s \S \w \W` at `i`, with whether they are negated.
    fn perl_class(s: &[char], i: usize) -> Option<(&'static [(u32, u32)], bool)> {
        if s.get(i) != Some(&'\\') {
            return None;
        }
        Some(match s.get(i + 1)? {
            'd' => (DIGIT, false),
            'D' => (DIGIT, true),
            's' => (PERL_SPACE, false),
            'S' => (PERL_SPACE, true),
            'w' => (WORD, false),
            'W' => (WORD, true),
            _ => return None,
        })
    }

    impl Class {
        fn add(&mut self, group: &[(u32, u32)], negated: bool) {
            if !negated {
                self.ranges.extend_from_slice(group);
                return;
            }
            // `group` is sorted and disjoint.
            let mut next = 0;
            for &(lo, hi) in group {
                if next < lo {
                    self.ranges.push((next, lo - 1));
                }
                next = hi + 1;
            }
            if next <= MAX_RUNE {
                self.ranges.push((next, MAX_RUNE));
            }
        }

        fn contains(&self, rune: u32) -> bool {
            self.ranges.iter().any(|&(lo, hi)| lo <= rune && rune <= hi) != self.negated
        }
    }

    impl Look {
        fn holds(self, input: &[u32], pos: usize) -> bool {
            let word_at = |i: Option<usize>| {
                i.and_then(|i| input.get(i)).is_some_and(|&r| {
                    r == u32::from('_') || u8::try_from(r).is_ok_and(|b| b.is_ascii_alphanumeric())
                })
            };
            let boundary = word_at(pos.checked_sub(1)) != word_at(Some(pos));
            match self {
                Look::BeginText => pos == 0,
                Look::EndText => pos == input.len(),
                Look::WordBoundary => boundary,
                Look::NotWordBoundary => !boundary,
            }
        }
    }

    impl Regex {
        /// Parses `expr` with Go's rules; the error says what Go would object to.
        pub(super) fn new(expr: &str) -> Result<Regex, String> {
            let chars: Vec<char> = expr.chars().collect();
            let mut classes = Vec::new();
            let node = parse(&chars, &mut classes)?;
            let mut program = Vec::new();
            emit(&node, &mut program);
            program.push(Inst::Match);
            Ok(Regex { program, classes })
        }

        /// Whether the expression matches somewhere in `text` (a Pike VM: every position is
        /// a possible start, and each instruction runs at most once per input position).
        pub(super) fn is_match(&self, text: &str) -> bool {
            let input: Vec<u32> = text.chars().map(u32::from).collect();
            let mut seen = vec![usize::MAX; self.program.len()];
            let mut stack = Vec::new();
            let mut current = Vec::new();
            let mut next = Vec::new();
            for pos in 0..=input.len() {
                if self.add(&mut current, &mut seen, &mut stack, &input, pos, 0) {
                    return true;
                }
                let Some(&rune) = input.get(pos) else {
                    break;
                };
                next.clear();
                for &pc in &current {
                    let step = match &self.program[pc] {
                        Inst::Rune(r) => *r == rune,
                        Inst::Class(index) => self.classes[*index].contains(rune),
                        Inst::AnyNotNewline => rune != u32::from('\n'),
                        _ => false,
                    };
                    if step && self.add(&mut next, &mut seen, &mut stack, &input, pos + 1, pc + 1) {
                        return true;
                    }
                }
                std::mem::swap(&mut current, &mut next);
            }
            false
        }

        /// Adds the thread at `pc` and everything reachable from it without reading input to
        /// `list` (the threads at `pos`); true when that reaches the end of the expression.
        fn add(
            &self,
            list: &mut Vec<usize>,
            seen: &mut [usize],
            stack: &mut Vec<usize>,
            input: &[u32],
            pos: usize,
            pc: usize,
        ) -> bool {
            stack.clear();
            stack.push(pc);
            while let Some(pc) = stack.pop() {
                if seen[pc] == pos {
                    continue;
                }
                seen[pc] = pos;
                match &self.program[pc] {
                    Inst::Match => return true,
                    Inst::Jump(to) => stack.push(*to),
                    Inst::Split(first, second) => {
                        stack.push(*second);
                        stack.push(*first);
                    }
                    Inst::Look(look) => {
                        if look.holds(input, pos) {
                            stack.push(pc + 1);
                        }
                    }
                    Inst::Rune(_) | Inst::Class(_) | Inst::AnyNotNewline => list.push(pc),
                }
            }
            false
        }
    }

    fn emit(node: &Node, program: &mut Vec<Inst>) {
        match node {
            Node::Rune(rune) => program.push(Inst::Rune(*rune)),
            Node::Class(index) => program.push(Inst::Class(*index)),
            Node::AnyNotNewline => program.push(Inst::AnyNotNewline),
            Node::Look(look) => program.push(Inst::Look(*look)),
            Node::Concat(nodes) => nodes.iter().for_each(|node| emit(node, program)),
            Node::Group(sub) => emit(sub, program),
            Node::Alternate(alternatives) => {
                // Split to each alternative in turn; each jumps past the others when done.
                let mut jumps = Vec::new();
                for (index, alternative) in alternatives.iter().enumerate() {
                    let split = program.len();
                    let last = index + 1 == alternatives.len();
                    if !last {
                        program.push(Inst::Split(0, 0));
                    }
                    emit(alternative, program);
                    if !last {
                        jumps.push(program.len());
                        program.push(Inst::Jump(0));
                        program[split] = Inst::Split(split + 1, program.len());
                    }
                }
                let end = program.len();
                for jump in jumps {
                    program[jump] = Inst::Jump(end);
                }
            }
            Node::Repeat(sub, repeat) => {
                let (min, max) = match *repeat {
                    Repeat::Star => (0, None),
                    Repeat::Plus => (1, None),
                    Repeat::Quest => (0, Some(1)),
                    Repeat::Counted(min, max) => (min, max),
                };
                for _ in 0..min {
                    emit(sub, program);
                }
                match max {
                    None => {
                        let split = program.len();
                        program.push(Inst::Split(0, 0));
                        emit(sub, program);
                        program.push(Inst::Jump(split));
                        program[split] = Inst::Split(split + 1, program.len());
                    }
                    // `x{2,4}` is `xx` then two optional `x`: the same strings as Go's
                    // `xx(x(x)?)?`.
                    Some(max) => {
                        for _ in min..max {
                            let split = program.len();
                            program.push(Inst::Split(0, 0));
                            emit(sub, program);
                            program[split] = Inst::Split(split + 1, program.len());
                        }
                    }
                }
            }
        }
    }

    /// The size Go's parser gives an expression when it checks it against [`MAX_SIZE`].
    fn size(node: &Node) -> u64 {
        let size = match node {
            Node::Rune(_) | Node::Class(_) | Node::AnyNotNewline | Node::Look(_) => 1,
            Node::Concat(nodes) => nodes.iter().map(size).fold(0, u64::saturating_add),
            Node::Alternate(nodes) => nodes
                .iter()
                .map(size)
                .fold(nodes.len().saturating_sub(1) as u64, u64::saturating_add),
            Node::Group(sub) => size(sub).saturating_add(2),
            Node::Repeat(sub, repeat) => {
                let sub = size(sub);
                match *repeat {
                    Repeat::Star | Repeat::Counted(0, None) => sub.saturating_add(2),
                    Repeat::Plus | Repeat::Quest => sub.saturating_add(1),
                    Repeat::Counted(min, None) => sub.saturating_mul(min.into()).saturating_add(1),
                    Repeat::Counted(min, Some(max)) => sub
                        .saturating_mul(max.into())
                        .saturating_add((max - min).into()),
                }
            }
        };
        size.max(1)
    }

    /// One level of parentheses: the alternatives before the last `|`, and the concatenation
    /// after it.
    #[derive(Default)]
    struct Frame {
        alternatives: Vec<Node>,
        concat: Vec<Node>,
    }

    impl Frame {
        fn finish(mut self) -> Node {
            if self.alternatives.is_empty() {
                return Node::Concat(self.concat);
            }
            self.alternatives.push(Node::Concat(self.concat));
            Node::Alternate(self.alternatives)
        }
    }

    fn parse(s: &[char], classes: &mut Vec<Class>) -> Result<Node, String> {
        let mut frame = Frame::default();
        // The frames of the open groups.
        let mut outer: Vec<Frame> = Vec::new();
        let mut after_repeat = false;
        let mut i = 0;
        while i < s.len() {
            let mut repeated = false;
            match s[i] {
                '(' if s.get(i + 1) == Some(&'?') => {
                    return Err("flag groups are not supported".to_owned());
                }
                '(' => {
                    outer.push(std::mem::take(&mut frame));
                    i += 1;
                }
                ')' => {
                    let Some(parent) = outer.pop() else {
                        return Err("unexpected )".to_owned());
                    };
                    let group = std::mem::replace(&mut frame, parent).finish();
                    frame.concat.push(Node::Group(Box::new(group)));
                    i += 1;
                }
                '|' => {
                    let concat = std::mem::take(&mut frame.concat);
                    frame.alternatives.push(Node::Concat(concat));
                    i += 1;
                }
                '^' => {
                    frame.concat.push(Node::Look(Look::BeginText));
                    i += 1;
                }
                '$' => {
                    frame.concat.push(Node::Look(Look::EndText));
                    i += 1;
                }
                '.' => {
                    frame.concat.push(Node::AnyNotNewline);
                    i += 1;
                }
                '[' => {
                    let (class, next) = parse_class(s, i)?;
                    classes.push(class);
                    frame.concat.push(Node::Class(classes.len() - 1));
                    i = next;
                }
                op @ ('*' | '+' | '?' | '{') => {
                    let (repeat, end) = match op {
                        '*' => (Repeat::Star, i + 1),
                        '+' => (Repeat::Plus, i + 1),
                        '?' => (Repeat::Quest, i + 1),
                        _ => match parse_count(s, i) {
                            Some(counted) => counted,
                            // Not a count: a literal `{`.
                            None => {
                                frame.concat.push(Node::Rune(u32::from('{')));
                                i += 1;
                                after_repeat = false;
                                continue;
                            }
                        },
                    };
                    let mut next = end;
                    // A trailing `?` makes it lazy, which changes no yes/no answer.
                    if s.get(next) == Some(&'?') {
                        next += 1;
                    }
                    let text: String = s[i..next].iter().collect();
                    if let Repeat::Counted(min, max) = repeat
                        && (min > MAX_REPEAT
                            || max.is_some_and(|max| max > MAX_REPEAT || max < min))
                    {
                        let count: String = s[i..end].iter().collect();
                        return Err(format!("invalid repeat count `{count}`"));
                    }
                    if after_repeat {
                        return Err(format!("invalid nested repetition operator `{text}`"));
                    }
                    let Some(sub) = frame.concat.pop() else {
                        return Err(format!("missing argument to repetition operator `{text}`"));
                    };
                    frame.concat.push(Node::Repeat(Box::new(sub), repeat));
                    repeated = true;
                    i = next;
                }
                '\\' => i = parse_backslash(s, i, &mut frame.concat, classes)?,
                c => {
                    frame.concat.push(Node::Rune(u32::from(c)));
                    i += 1;
                }
            }
            after_repeat = repeated;
        }
        if !outer.is_empty() {
            return Err("missing closing )".to_owned());
        }
        let node = frame.finish();
        if size(&node) > MAX_SIZE {
            return Err("expression too large".to_owned());
        }
        Ok(node)
    }

    /// A count `{n}`, `{n,}` or `{n,m}` at `i`, as Go reads it: decimal without leading zeros;
    /// a number too big to read is reported as `u32::MAX`, which fails the range check.
    fn parse_count(s: &[char], i: usize) -> Option<(Repeat, usize)> {
        let number = |mut j: usize| -> Option<(u32, usize)> {
            let start = j;
            while s.get(j).is_some_and(char::is_ascii_digit) {
                j += 1;
            }
            if j == start || (s[start] == '0' && j - start > 1) {
                return None;
            }
            let digits: String = s[start..j].iter().collect();
            Some((digits.parse().unwrap_or(u32::MAX), j))
        };
        let (min, mut j) = number(i + 1)?;
        let max = match s.get(j)? {
            ',' => {
                j += 1;
                if s.get(j)? == &'}' {
                    None
                } else {
                    let (max, after) = number(j)?;
                    j = after;
                    Some(max)
                }
            }
            _ => Some(min),
        };
        (s.get(j)? == &'}').then_some((Repeat::Counted(min, max), j + 1))
    }

    /// A `\` at `i` outside a class; returns the index after what it introduced.
    fn parse_backslash(
        s: &[char],
        i: usize,
        current: &mut Vec<Node>,
        classes: &mut Vec<Class>,
    ) -> Result<usize, String> {
        let look = match s.get(i + 1) {
            Some('A') => Some(Look::BeginText),
            Some('z') => Some(Look::EndText),
            Some('b') => Some(Look::WordBoundary),
            Some('B') => Some(Look::NotWordBoundary),
            Some('C') => return Err("invalid escape sequence `\\C`".to_owned()),
            Some('Q') => {
                // Everything up to `\E`, or to the end, is literal.
                let start = i + 2;
                let end = s[start..]
                    .windows(2)
                    .position(|w| w == ['\\', 'E'])
                    .map_or(s.len(), |at| start + at);
                current.extend(s[start..end].iter().map(|&c| Node::Rune(u32::from(c))));
                return Ok(if end < s.len() { end + 2 } else { end });
            }
            Some(p @ ('p' | 'P')) => return Err(unicode_class(*p, s.get(i + 2))),
            _ => None,
        };
        if let Some(look) = look {
            current.push(Node::Look(look));
            return Ok(i + 2);
        }
        if let Some((group, negated)) = perl_class(s, i) {
            let mut class = Class::default();
            class.add(group, negated);
            classes.push(class);
            current.push(Node::Class(classes.len() - 1));
            return Ok(i + 2);
        }
        let (rune, next) = parse_escape(s, i)?;
        current.push(Node::Rune(rune));
        Ok(next)
    }

    fn unicode_class(p: char, name: Option<&char>) -> String {
        let name = name.map(char::to_string).unwrap_or_default();
        format!("Unicode classes such as `\\{p}{name}` are not supported")
    }

    /// The class whose `[` is at `start`; returns it and the index after its `]`.
    fn parse_class(s: &[char], start: usize) -> Result<(Class, usize), String> {
        let mut class = Class::default();
        let mut i = start + 1;
        if s.get(i) == Some(&'^') {
            class.negated = true;
            i += 1;
        }
        // A `]` right after `[` or `[^` is a literal.
        let mut first = true;
        loop {
            match s.get(i) {
                None => return Err("missing closing ]".to_owned()),
                Some(']') if !first => return Ok((class, i + 1)),
                _ => {}
            }
            first = false;
            if s[i] == '[' && s.get(i + 1) == Some(&':') && i + 2 < s.len() {
                let rest = &s[i + 2..];
                if let Some(end) = rest.windows(2).position(|w| w == [':', ']']) {
                    let name: String = rest[..end].iter().collect();
                    let (negated, base) = match name.strip_prefix('^') {
                        Some(base) => (true, base),
                        None => (false, name.as_str()),
                    };
                    let Some(group) = posix_class(base) else {
                        return Err(format!("invalid character class range `[:{name}:]`"));
                    };
                    class.add(group, negated);
                    i += 2 + end + 2;
                    continue;
                }
            }
            if s[i] == '\\'
                && let Some(p @ ('p' | 'P')) = s.get(i + 1)
            {
                return Err(unicode_class(*p, s.get(i + 2)));
            }
            if let Some((group, negated)) = perl_class(s, i) {
                class.add(group, negated);
                i += 2;
                continue;
            }
            let range_start = i;
            let (lo, next) = parse_class_char(s, i)?;
            i = next;
            let mut hi = lo;
            // `[a-]` is `a` and `-`.
            if s.get(i) == Some(&'-') && s.get(i + 1).is_some_and(|&c| c != ']') {
                let (end, next) = parse_class_char(s, i + 1)?;
                if end < lo {
                    let range: String = s[range_start..next].iter().collect();
                    return Err(format!("invalid character class range `{range}`"));
                }
                hi = end;
                i = next;
            }
            class.ranges.push((lo, hi));
        }
    }

    fn parse_class_char(s: &[char], i: usize) -> Result<(u32, usize), String> {
        match s.get(i) {
            None => Err("missing closing ]".to_owned()),
            Some('\\') => parse_escape(s, i),
            Some(&c) => Ok((u32::from(c), i + 1)),
        }
    }

    /// A single-character escape at `i` (Go's `parseEscape`); returns the rune and the index
    /// after the escape.
    fn parse_escape(s: &[char], i: usize) -> Result<(u32, usize), String> {
        let Some(&c) = s.get(i + 1) else {
            return Err("trailing backslash at end of expression".to_owned());
        };
        let invalid = |end: usize| {
            let text: String = s[i..end.min(s.len())].iter().collect();
            Err(format!("invalid escape sequence `{text}`"))
        };
        let octal = |c: Option<&char>| c.and_then(|c| c.to_digit(8));
        let mut next = i + 2;
        match c {
            // A lone `\1`..`\7` would be a backreference, which Go does not support.
            '1'..='7' if octal(s.get(next)).is_none() => invalid(next),
            '0'..='7' => {
                let mut rune = c.to_digit(8).unwrap_or_default();
                for _ in 0..2 {
                    let Some(digit) = octal(s.get(next)) else {
                        break;
                    };
                    rune = rune * 8 + digit;
                    next += 1;
                }
                Ok((rune, next))
            }
            'x' => {
                let Some(&c1) = s.get(next) else {
                    return invalid(next);
                };
                next += 1;
                if c1 == '{' {
                    let mut rune = 0u32;
                    let mut digits = 0;
                    loop {
                        let Some(&d) = s.get(next) else {
                            return invalid(next);
                        };
                        next += 1;
                        if d == '}' {
                            break;
                        }
                        let Some(value) = d.to_digit(16) else {
                            return invalid(next);
                        };
                        rune = rune * 16 + value;
                        if rune > MAX_RUNE {
                            return invalid(next);
                        }
                        digits += 1;
                    }
                    return if digits == 0 {
                        invalid(next)
                    } else {
                        Ok((rune, next))
                    };
                }
                let high = c1.to_digit(16);
                let low = s.get(next).and_then(|d| d.to_digit(16));
                match (high, low) {
                    (Some(high), Some(low)) => Ok((high * 16 + low, next + 1)),
                    _ => invalid(next + 1),
                }
            }
            'a' => Ok((0x07, next)),
            'f' => Ok((0x0c, next)),
            'n' => Ok((0x0a, next)),
            'r' => Ok((0x0d, next)),
            't' => Ok((0x09, next)),
            'v' => Ok((0x0b, next)),
            // Escaped punctuation is itself; escaped letters and digits are reserved.
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok((u32::from(c), next)),
            _ => invalid(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_path_match_as_the_reference_filter_uses_it() {
        for (p, n, want) in [
            ("busy*", "busybox", true),
            ("*", "library/busybox", false),
            ("*/*", "library/busybox", true),
            ("busybox:1.?", "busybox:1.3", true),
            ("b[a-u]sybox", "busybox", true),
            ("b[^u]sybox", "busybox", false),
            ("abc", "abcd", false),
        ] {
            assert_eq!(path_match(p, n), Ok(want), "{p} vs {n}");
        }
        assert!(path_match("[", "x").is_err());
    }
    use proptest::prelude::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse(text).unwrap_or_else(|err| panic!("{text:?}: {err}"))
    }

    /// Asserts which paths `text` excludes and which it keeps.
    #[track_caller]
    fn check(text: &str, excluded: &[&str], kept: &[&str]) {
        let rules = rules(text);
        for path in excluded {
            assert!(rules.is_excluded(path), "{text:?} should exclude {path:?}");
        }
        for path in kept {
            assert!(!rules.is_excluded(path), "{text:?} should keep {path:?}");
        }
    }

    #[track_caller]
    fn error(text: &str) -> String {
        match IgnoreRules::parse(text) {
            Ok(rules) => panic!("{text:?} parsed: {rules:?}"),
            Err(err) => err.to_string(),
        }
    }

    // The examples of https://docs.docker.com/build/concepts/context/#dockerignore-files.

    #[test]
    fn docs_intro_example() {
        check(
            "# .dockerignore\nnode_modules\nbar\n",
            &[
                "node_modules",
                "node_modules/left-pad/index.js",
                "bar",
                "bar/baz",
            ],
            &["foo/bar", "src/node_modules", "# .dockerignore", "barn"],
        );
    }

    #[test]
    fn docs_leading_and_trailing_slashes() {
        for pattern in ["/foo/bar/", "/foo/bar", "foo/bar/", "foo/bar"] {
            check(
                pattern,
                &["foo/bar", "foo/bar/baz"],
                &["foo", "bar", "x/foo/bar", "foo/barn"],
            );
        }
    }

    #[test]
    fn docs_comment() {
        let rules = rules("#/this/is/a/comment\n");
        assert!(rules.is_empty());
        assert!(!rules.is_excluded("this/is/a/comment"));
    }

    #[test]
    fn docs_matching_example() {
        check(
            "# comment\n*/temp*\n*/*/temp*\ntemp?\n",
            &[
                "somedir/temporary.txt",
                "somedir/temp",
                "somedir/temp/inside",
                "somedir/subdir/temporary.txt",
                "tempa",
                "tempb",
            ],
            &[
                "temp",
                "temporary.txt",
                "tempab",
                "a/b/c/temp",
                "# comment",
                "somedir",
            ],
        );
    }

    #[test]
    fn docs_dot_is_ignored() {
        check(".\n", &[], &[".", "", "a", "a/b"]);
        check("./\n./.\n", &[], &["a"]);
    }

    #[test]
    fn docs_double_star() {
        check(
            "**/*.go\n",
            &["main.go", "cmd/tool/main.go", "a.go/readme"],
            &["main.go.txt", "go", "src/gofile"],
        );
    }

    #[test]
    fn docs_dockerfile_and_dockerignore_can_be_excluded() {
        check(
            "Dockerfile\n.dockerignore\n",
            &["Dockerfile", ".dockerignore"],
            &["src/Dockerfile"],
        );
    }

    #[test]
    fn docs_negation() {
        check(
            "*.md\n!README.md\n",
            &["CHANGES.md"],
            &["README.md", "docs/guide.md", "main.rs"],
        );
    }

    #[test]
    fn docs_placement_of_exceptions() {
        check(
            "*.md\n!README*.md\nREADME-secret.md\n",
            &["CHANGES.md", "README-secret.md"],
            &["README.md", "README-public.md"],
        );
        check(
            "*.md\nREADME-secret.md\n!README*.md\n",
            &["CHANGES.md"],
            &["README.md", "README-secret.md"],
        );
    }

    #[test]
    fn docs_include_list() {
        check(
            "*\n!src\n!Cargo.toml\n",
            &["target", "target/debug/berth", "README.md"],
            &["src", "src/main.rs", "Cargo.toml"],
        );
    }

    // patternmatcher's behaviour beyond the documentation.

    #[test]
    fn a_pattern_excludes_what_is_beneath_a_match() {
        check(
            "foo\n",
            &["foo", "foo/bar", "foo/bar/baz"],
            &["foobar", "bar/foo", "fo"],
        );
        check("docs/*\n", &["docs/a", "docs/a/b"], &["docs", "doc/a"]);
    }

    #[test]
    fn single_star_and_question_mark_stay_in_one_segment() {
        check("a*/b\n", &["abc/b", "a/b"], &["a/c/b"]);
        check("a?b\n", &["a☺b", "axb"], &["a/b", "ab", "axxb"]);
        check(
            "a*b*c*d*e*/f\n",
            &["axbxcxdxe/f", "axbxcxdxexxx/f"],
            &["axbxcxdxe/xxx/f", "axbxcxdxexxx/fff"],
        );
        check("a*b?c*x\n", &["abxbbxdbxebxczzx"], &["abxbbxdbxebxczzy"]);
    }

    #[test]
    fn double_star() {
        check("**\n", &["file", "dir/file", ".hidden"], &["", "."]);
        check("**/\n", &["file", "dir/file"], &[]);
        check("**/**\n", &["file", "dir/file"], &[]);
        check(
            "dir/**\n",
            &["dir/file", "dir/dir2/file"],
            &["dir", "dirt/file"],
        );
        check(
            "**/dir\n",
            &["dir", "dir/file", "a/b/dir"],
            &["adir", "dirt"],
        );
        check(
            "**/dir2/*\n",
            &["dir/dir2/file", "dir2/file"],
            &["dir/dir2"],
        );
        check("**/dir2/**\n", &["dir/dir2/dir3/file"], &["dir/dir2"]);
        check(
            "**/foo/bar\n",
            &["foo/bar", "dir/foo/bar", "d/d2/foo/bar"],
            &["foo", "xfoo/bar"],
        );
        check("**/file*.txt*\n", &["dir/dir/file.txt"], &[]);
        check(
            "**/**/*.txt\n",
            &["file.txt", "dir/dir/file.txt"],
            &["dir/dir/file.txt2"],
        );
        check(
            "a**/*.txt\n",
            &["a/file.txt", "a/dir/file.txt", "ab/file.txt"],
            &["b/a.txt"],
        );
        check("a/*.txt**\n", &["a/file.txt"], &["a/dir/file.txt"]);
        check("**/.foo\n", &[".foo", "a/.foo"], &["bar.foo"]);
    }

    #[test]
    fn double_star_quirks() {
        // A leading `**` followed by literals is a plain suffix test, not `(.*/)?`.
        check(
            "**file\n",
            &["file", "dir/file", "profile", "a/xfile"],
            &["files"],
        );
        // A final `**` after literals is a plain prefix test, so it also matches the text itself.
        check("foo**\n", &["foo", "foobar", "foo/x"], &["fo", "xfoo"]);
        // In the middle, `**` is `(.*/)?`: it must end at a `/`.
        check("a**b\n", &["ab", "a/b", "ax/b", "a/x/y/b"], &["axb"]);
    }

    #[test]
    fn character_classes() {
        check("a[b-d]e\n", &["ace"], &["ae", "aae"]);
        check("ab[^c]\n", &["abd"], &["abc"]);
        check("ab[^e-g]\n", &["abc"], &["abf"]);
        check("[a-ζ]*\n", &["α", "abc"], &["A"]);
        check("[\\]a]\n", &["]", "a"], &["b"]);
        check("[x\\-]\n", &["x", "-"], &["z"]);
        check("[\\-x]\n", &["x", "-"], &["a"]);
        check("a[^a]b\n", &["a☺b"], &["aab"]);
        check("a[^a][^a][^a]b\n", &[], &["a☺b"]);
    }

    #[test]
    fn negation_is_caret_not_bang() {
        check("[^a]\n", &["b", "!"], &["a"]);
        // Go's globs have no `[!...]`: it is a class of `!` and `a`.
        check("[!a]\n", &["!", "a"], &["b"]);
    }

    #[test]
    fn classes_are_regexp_classes() {
        // A negated class can match `/`, unlike filepath.Match.
        check("a[^x]b\n", &["a/b"], &["axb"]);
        // `*` and `?` inside a class become `[^/]*` and `[^/]`, which split the class.
        check("x[*]\n", &["x]", "x[]", "x^/]"], &["x*"]);
        check("x[?]\n", &["x[]", "x/]"], &["x?"]);
        // POSIX classes and Perl escapes are regexp syntax.
        check("[[:digit:]]x\n", &["7x"], &["ax", ":x"]);
        check("file\\d\n", &["file7"], &["filed"]);
        check("[\\d]\n", &["3"], &["d"]);
    }

    #[test]
    fn escapes() {
        check("a\\*b\n", &["a*b"], &["ab", "axb"]);
        check("a\\\\\n", &["a\\"], &["a"]);
        check("\\[x\\]\n", &["[x]"], &["x"]);
        check("a\\?\n", &["a?"], &["ab"]);
    }

    #[test]
    fn regexp_metacharacters_are_literal() {
        check(".*\n", &[".foo"], &["foo"]);
        check("abc.def\n", &["abc.def"], &["abcdef", "abcZdef"]);
        check("abc?def\n", &["abcZdef"], &["abcdef"]);
        check("a(b)c/def\n", &["a(b)c/def"], &["a(b)c/xyz", "abc/def"]);
        check("a.|)$(}+{bc\n", &["a.|)$(}+{bc"], &[]);
        check("a$\n", &["a$"], &["a"]);
        let whl = "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl";
        check(&format!("{whl}\n"), &[whl], &[]);
        check("dist/*.whl\n", &[whl], &[]);
        check(&format!("**\n!{whl}\n"), &["dist/other"], &[whl]);
        check("**\n!dist/*.whl\n", &["dist/other"], &[whl]);
    }

    #[test]
    fn caret_and_backslash_q_are_regexp_syntax() {
        // Without wildcards the pattern is compared as text...
        check("^foo\n", &["^foo"], &["foo"]);
        // ...with one it is a regexp, where `^` is an anchor.
        check("^foo*\n", &["foo", "foobar"], &["^foo"]);
        check("a^b*\n", &[], &["a^b", "ab"]);
        // `\Q` quotes the rest of the regexp, the final `$` included, and Go finds a match
        // anywhere after the leading `^`.
        check("\\Qa*\n", &["a[^/]*$", "a[^/]*$x"], &["a", "ab"]);
    }

    #[test]
    fn bar_and_braces_are_regexp_operators() {
        // patternmatcher's escape table misses `|`, `{` and `}`, so in a regexp they are
        // operators: `^a|b[^/]*$` is "starts with a" or "ends with a segment starting with b".
        check(
            "a|b*\n",
            &["a", "abc/def", "x/bcd", "xb"],
            &["c", "x/c", "ca"],
        );
        check("a{2}?\n", &["aab"], &["ab", "a{2}b", "aa"]);
        check("a*\\x{62}\n", &["ab", "axb"], &["a{62}"]);
        check("{x}*\n", &["{x}", "{x}y"], &[]);
        // Not a count (Go reads no leading zeros): a literal `{`.
        check("a?{01}\n", &["ax{01}"], &["ax"]);
        // Without a wildcard the pattern is compared as text.
        check("a|b\n", &["a|b"], &["a", "b"]);
        check("a{2}\n", &["a{2}"], &["aa"]);
        assert!(error("*{2}\n").contains("invalid nested repetition operator `{2}`"));
        assert!(error("a?{1001}\n").contains("invalid repeat count `{1001}`"));
        assert!(error("a?{3,2}\n").contains("invalid repeat count `{3,2}`"));
        // Go's limit on the size of a regexp.
        let huge = "?{1000}".repeat(3400);
        assert!(error(&format!("{huge}\n")).contains("expression too large"));
    }

    #[test]
    fn glob_check_stops_at_the_first_mismatch() {
        // patternmatcher checks a pattern with filepath.Match(pattern, "."), which gives up
        // after the first piece between `*`s that does not match "."; a trailing `\` after it
        // passes and becomes `\$`, a literal `$` with no end anchor.
        check("_/*\\\n", &["_/a$", "_/a$/b", "_/a$b"], &["_/a", "_/ab"]);
        // A broken class there is left to the regexp, which refuses it.
        assert!(error("a*[\n").contains("missing closing ]"));
        // The pieces up to and including the first mismatch are checked.
        assert!(error("*[\n").contains("unterminated character class"));
        assert!(error(".*[\n").contains("unterminated character class"));
        assert!(error("a\\\n").contains("trailing backslash"));
    }

    #[test]
    fn exceptions() {
        check("*.go\n!fileutils.go\n", &["main.go"], &["fileutils.go"]);
        // An exception before the rule it should except does nothing.
        check("!fileutils.go\n*.go\n", &["fileutils.go"], &[]);
        check(
            "docs\n!docs/README.md\n",
            &["docs", "docs/other.md"],
            &["docs/README.md", "README.md"],
        );
        check(
            "docs/\n!docs/README.md\n",
            &["docs/other.md"],
            &["docs/README.md"],
        );
        check(
            "docs/*\n!docs/README.md\n",
            &["docs/other.md"],
            &["docs/README.md"],
        );
        check(
            "**\n!util/docker/web\n",
            &["util", "util/docker"],
            &["util/docker/web/foo"],
        );
        check(
            "**\n!util/docker/web\nutil/docker/web/foo\n",
            &["util/docker/web/foo"],
            &["util/docker/web/bar"],
        );
        // An exception matches through parents too.
        check("a/b\n!a\n", &[], &["a/b", "a/b/c"]);
    }

    #[test]
    fn cleaning() {
        check("foo/../bar\n", &["bar"], &["foo"]);
        check("./foo\n", &["foo"], &[]);
        check("foo/.\n", &["foo"], &[]);
        check("foo//bar\n", &["foo/bar"], &[]);
        // `..` above the context stays and matches nothing in it.
        check("../foo\n", &[], &["foo"]);
        check("/../foo\n", &["foo"], &[]);
        // A pattern `/` stays `/`, which no relative path equals.
        check("/\n", &[], &["a", "a/b"]);
        // Cleaning can expose whitespace, which is trimmed again.
        check("foo /.\n", &["foo"], &["foo "]);
        check("  spaced  \n\t\ttabbed\t\n", &["spaced", "tabbed"], &[]);
        // Paths are cleaned too.
        let foo = rules("foo\n");
        for path in ["foo", "foo/", "./foo", "/foo", "bar/../foo/x", "foo//x"] {
            assert!(foo.is_excluded(path), "{path:?}");
        }
        assert!(!foo.is_excluded("foo/.."));
    }

    #[test]
    fn exception_cleaning() {
        check("*\n!   keep\n", &["other"], &["keep"]);
        check("*\n! /keep/\n", &["other"], &["keep", "keep/x"]);
        check("  !x\n", &[], &[]);
        let negated = rules("*\n  !  keep  \n");
        assert!(!negated.is_excluded("keep"));
    }

    #[test]
    fn line_handling() {
        // CRLF, a byte order mark, a final line without newline.
        check("\u{feff}a\r\nb\r\nc", &["a", "b", "c"], &["\u{feff}a"]);
        // The byte order mark is only stripped from the first line.
        check("a\n\u{feff}b\n", &["\u{feff}b"], &["b"]);
        // Only a `#` in column 1 starts a comment.
        check("#a\n  # b\n", &["# b"], &["#a", "a"]);
        check("\u{feff}#a\n", &[], &["#a"]);
        // Blank and whitespace-only lines are skipped.
        assert!(rules("\n \n\t\n\r\n").is_empty());
        assert!(rules("").is_empty());
    }

    #[test]
    fn errors_name_line_and_pattern() {
        assert_eq!(
            error("ok\n# comment\n[a\n"),
            ".dockerignore line 3: invalid pattern \"[a\": unterminated character class"
        );
        assert_eq!(
            error("a\n!\n"),
            ".dockerignore line 2: invalid pattern \"!\": illegal exclusion pattern: nothing follows \"!\""
        );
        for text in ["! \n", "!/\n", "! //\n"] {
            assert!(
                error(text).starts_with(".dockerignore line 1: invalid pattern"),
                "{text:?}"
            );
        }
        assert_eq!(
            error("  foo\\  \n"),
            ".dockerignore line 1: invalid pattern \"foo\\\\\": trailing backslash"
        );
        for (text, reason) in [
            ("[", "unterminated character class"),
            ("a[", "unterminated character class"),
            ("[^", "unterminated character class"),
            ("[^bc", "unterminated character class"),
            ("[a-z", "unterminated character class"),
            ("[a\\", "unterminated character class"),
            ("[]a]", "empty character class"),
            ("[^]", "empty character class"),
            ("[-]", "'-' must be escaped"),
            ("[-x]", "'-' must be escaped"),
            ("[a-b-c]", "'-' must be escaped"),
            ("[x-]", "character range without an end"),
            ("\\", "trailing backslash"),
        ] {
            let message = error(text);
            assert!(message.contains(reason), "{text:?}: {message}");
        }
    }

    #[test]
    fn errors_from_go_regexp() {
        // filepath.Match accepts these; Go's regexp, which does the matching, does not.
        for (text, reason) in [
            ("[z-a]", "invalid character class range `z-a`"),
            ("[Local-Only]/", "invalid character class range `l-O`"),
            ("*[[:foo:]]", "invalid character class range `[:foo:]`"),
            ("a\\k", "invalid escape sequence `\\k`"),
            ("a\\1", "invalid escape sequence `\\1`"),
            ("a\\E", "invalid escape sequence `\\E`"),
            ("a\\C", "invalid escape sequence `\\C`"),
            ("a\\pL", "Unicode classes"),
        ] {
            let message = error(&format!("ok\n{text}\n"));
            assert!(
                message.starts_with(".dockerignore line 2: invalid pattern"),
                "{message}"
            );
            assert!(message.contains(reason), "{text:?}: {message}");
        }
        // Escapes Go does accept.
        check("a\\x41\n", &["aA"], &["ax41"]);
        check("a\\101\n", &["aA"], &[]);
        check("a\\tb\n", &["a\tb"], &[]);
        check("a\\_\n", &["a_"], &[]);
        check("\\bword\\b*\n", &["word"], &[]);
    }

    #[test]
    fn from_patterns() {
        let rules = IgnoreRules::from_patterns(["  *.md ", "", "!README.md", "#x"]).unwrap();
        assert!(rules.is_excluded("a.md"));
        assert!(!rules.is_excluded("README.md"));
        // Items are never comments.
        assert!(rules.is_excluded("#x"));
        let err = IgnoreRules::from_patterns(vec!["a".to_owned(), "b[".to_owned()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pattern 2: invalid pattern \"b[\": unterminated character class"
        );
        assert!(
            IgnoreRules::from_patterns(Vec::<String>::new())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn long_lines() {
        let longest = "a".repeat(MAX_LINE_BYTES);
        assert!(rules(&format!("x\n{longest}\n")).is_excluded(&longest));
        let too_long = "a".repeat(MAX_LINE_BYTES + 1);
        assert_eq!(
            error(&format!("x\n{too_long}")),
            ".dockerignore line 2: longer than 65535 bytes"
        );
        // The `\r` of a CRLF counts, as Go reads it with the line.
        error(&format!("{longest}\r\n"));
    }

    #[test]
    fn translation_shapes() {
        for (pattern, kind, regex) in [
            ("*", Kind::Regex, "^[^/]*$"),
            ("file*", Kind::Regex, "^file[^/]*$"),
            ("a*/b", Kind::Regex, "^a[^/]*/b$"),
            ("**", Kind::Suffix, ""),
            ("**/**", Kind::Regex, "^(.*/)?.*$"),
            ("dir/**", Kind::Prefix, ""),
            ("**/dir", Kind::Suffix, ""),
            ("**/dir2/*", Kind::Regex, "^(.*/)?dir2/[^/]*$"),
            ("**/dir2/**", Kind::Regex, "^(.*/)?dir2/.*$"),
            ("**/**/*.txt", Kind::Regex, "^(.*/)?(.*/)?[^/]*\\.txt$"),
            ("a[b-d]e", Kind::Regex, "^a[b-d]e$"),
            (".*", Kind::Regex, "^\\.[^/]*$"),
            ("abc.def", Kind::Exact, ""),
            ("a(b)c/def", Kind::Exact, ""),
            ("a\\*b", Kind::Regex, "^a\\*b$"),
            ("\u{feff}a*", Kind::Regex, "^a[^/]*$"),
        ] {
            let (got_kind, got_regex) = translate(pattern);
            assert_eq!(got_kind, kind, "{pattern:?}");
            if kind == Kind::Regex {
                assert_eq!(got_regex, regex, "{pattern:?}");
            }
        }
    }

    #[test]
    fn byte_order_mark_inside_patterns() {
        // Skipped when the pattern becomes a regexp, kept when it is compared as text.
        check("x\n\u{feff}a*\n", &["ab"], &["\u{feff}ab"]);
        check("x\n\u{feff}ab\n", &["\u{feff}ab"], &["ab"]);
        // `**` after it makes a suffix test on the bytes after the first two: the last byte of
        // the mark (0xBF) then `**`, which `¿` (C2 BF) followed by `**` ends with.
        check(
            "x\n\u{feff}**\n",
            &["¿**", "a/\u{feff}**"],
            &["a", "b/c", "¿", "**"],
        );
    }

    #[test]
    fn newlines_in_names() {
        // `.` in Go's regexp does not match `\n`; `[^/]` does.
        check("a/**/b\n", &["a/x/b"], &["a/x\ny/b"]);
        check("a*\n", &["a\nb"], &[]);
    }

    #[test]
    fn skipping_directories() {
        let docs = rules("docs\n");
        assert!(docs.can_skip_dir("docs"));
        assert!(docs.can_skip_dir("docs/sub"));
        assert!(!docs.can_skip_dir("src"), "not excluded");
        assert!(!docs.can_skip_dir(""), "the root");

        let keep = rules("docs\n!docs/keep.md\n");
        assert!(!keep.can_skip_dir("docs"));
        assert!(keep.can_skip_dir("docs/sub"));
        assert!(!keep.is_excluded("docs/keep.md"));

        // An exception in an excluded directory's parent re-includes it all, so the
        // directory is not excluded and the question does not arise.
        let parent = rules("a/b\n!a\n");
        assert!(!parent.can_skip_dir("a/b"));

        let confined = rules("*\n!src/**\n!assets/*\n");
        assert!(confined.can_skip_dir("target"));
        assert!(!confined.can_skip_dir("src"));
        assert!(!confined.can_skip_dir("assets"));

        let nested = rules("a\n!a/*/**\n");
        assert!(!nested.can_skip_dir("a/b"));
        assert!(!nested.is_excluded("a/b/c"));

        for wildcard in ["!**/keep.md", "!*.md", "!doc?", "!x[ab]", "!x\\-y", "!^x"] {
            let rules = rules(&format!("docs\n{wildcard}\n"));
            assert!(!rules.can_skip_dir("docs"), "{wildcard}");
        }
        let dotted = rules("docs\n!other.d/file+x\n");
        assert!(dotted.can_skip_dir("docs"));

        // In a regexp, `|` escapes the stem: `!a|b/*` re-includes `zzz/b/x`.
        let bar = rules("*\n!a|b/*\n");
        assert!(!bar.is_excluded("zzz/b/x"));
        assert!(!bar.can_skip_dir("zzz"));
        // Compared as text, `a|b` is confined to itself.
        let text = rules("*\n!a|b\n");
        assert!(text.can_skip_dir("zzz"));
        assert!(!text.is_excluded("a|b/c"));
    }

    #[test]
    fn regex_engine_is_linear() {
        let pattern = "*a".repeat(200) + "*b";
        let rules = IgnoreRules::from_patterns([pattern]).unwrap();
        assert!(!rules.is_excluded(&"a".repeat(2000)));
    }

    fn pattern_strategy() -> impl Strategy<Value = String> {
        let special = prop::sample::select(vec![
            '*', '*', '?', '[', ']', '\\', '^', '!', '-', '/', '/', '.', 'a', 'b', '{', '}', '(',
            ')', '$', '+', '|', ':', 'p', 'x', 'Q', 'E', 'd', 'z', '0', '7', ' ', '\n', '\u{feff}',
            'é',
        ]);
        prop::collection::vec(prop_oneof![4 => special, 1 => any::<char>()], 0..14)
            .prop_map(|chars| chars.into_iter().collect())
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        let segment = prop::sample::select(vec![
            "a", "b", "ab", "a.b", "[", "]", "^", "*", "\\", ".", "..", "", "é", "a\nb", "$",
        ]);
        prop::collection::vec(segment, 0..5).prop_map(|segments| segments.join("/"))
    }

    /// Patterns made of pieces that are always valid, over a small alphabet.
    fn simple_rule_strategy() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "a", "b", "/", "*", "**", "?", "[ab]", "[^a]", "\\a", "a/**", "/*", "|", "{2}",
            "b{1,2}",
        ]);
        (any::<bool>(), prop::collection::vec(piece, 1..5)).prop_map(|(exception, pieces)| {
            let body: String = pieces.concat();
            if exception { format!("!{body}") } else { body }
        })
    }

    proptest! {
        #[test]
        fn matching_never_panics(
            patterns in prop::collection::vec(pattern_strategy(), 0..6),
            paths in prop::collection::vec(path_strategy(), 0..6),
        ) {
            if let Ok(rules) = IgnoreRules::from_patterns(&patterns) {
                for path in &paths {
                    let _ = rules.is_excluded(path);
                    let _ = rules.can_skip_dir(path);
                }
            }
        }

        #[test]
        fn parsing_never_panics(text in any::<String>(), path in any::<String>()) {
            if let Ok(rules) = IgnoreRules::parse(&text) {
                let _ = rules.is_excluded(&path);
                let _ = rules.can_skip_dir(&path);
            }
        }

        #[test]
        fn skipped_directories_hold_only_excluded_paths(
            patterns in prop::collection::vec(simple_rule_strategy(), 1..5),
            dir in prop::collection::vec(prop::sample::select(vec!["a", "b", "ab"]), 1..3),
            below in prop::collection::vec(prop::sample::select(vec!["a", "b", "ab"]), 1..4),
        ) {
            // A `!` before a lone `/` is refused; such lists prove nothing.
            let Ok(rules) = IgnoreRules::from_patterns(&patterns) else {
                return Ok(());
            };
            let dir = dir.join("/");
            if rules.can_skip_dir(&dir) {
                let path = format!("{dir}/{}", below.join("/"));
                prop_assert!(rules.is_excluded(&path), "{patterns:?} skips {dir} but keeps {path}");
            }
        }
    }
}
