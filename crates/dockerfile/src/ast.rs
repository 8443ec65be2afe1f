//! What a Dockerfile says (written separately).
