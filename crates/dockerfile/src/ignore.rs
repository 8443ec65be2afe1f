//! `.dockerignore` (written separately).
