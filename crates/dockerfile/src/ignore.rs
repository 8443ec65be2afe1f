//! `.dockerignore` (placeholder until the full matcher lands).

/// Rules of one .dockerignore file.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    patterns: Vec<(bool, String)>,
}

/// A .dockerignore that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IgnoreError(String);

impl IgnoreRules {
    /// Parses the text of a .dockerignore file.
    pub fn parse(text: &str) -> Result<IgnoreRules, IgnoreError> {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| match l.strip_prefix('!') {
                Some(p) => (true, p.trim_start_matches('/').to_string()),
                None => (false, l.trim_start_matches('/').to_string()),
            })
            .collect();
        Ok(IgnoreRules { patterns })
    }

    /// Whether `path` is excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        let mut excluded = false;
        for (exception, p) in &self.patterns {
            if path == p || path.starts_with(&format!("{p}/")) {
                excluded = !exception;
            }
        }
        excluded
    }
}
