//! Word expansion (written separately).
