//! Parse errors (written separately).
