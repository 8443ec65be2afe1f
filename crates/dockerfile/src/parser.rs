//! The parser (written separately).
