//! Why a Dockerfile could not be parsed.

/// A Dockerfile the parser refuses: the line it found the problem on, and what was wrong or
/// expected there. The builder prefixes the file's name (`Dockerfile:3: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based; 0 for the file as a whole (empty, no `FROM`).
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line,
            message: message.into(),
        }
    }
}
