//! Image references and content digests, parsed exactly as Docker parses them.
//!
//! This crate owns the grammar of `python:3.12`, `localhost:5000/app@sha256:…` and friends
//! (distribution/reference: normalization to `docker.io/library/…`, the familiar short forms,
//! Docker's error messages) and of `sha256:<hex>` digests (opencontainers/go-digest), plus
//! sha256 hashing into a [`Digest`].
//!
//! It does not own where references point: registry lookup, mirrors, credentials and the
//! local tag store live in `distribution` and `store`. It does no I/O and keeps no state, so
//! every function is a pure mapping from strings to values.
//!
//! **Invariant:** every [`Reference`] and [`Digest`] value prints as a string that parses back
//! to an equal value.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod digest;
mod grammar;
mod reference;
#[cfg(test)]
mod testdata;

pub use digest::{Digest, DigestError, Sha256Digester};
pub use reference::{Reference, ReferenceError, is_valid_repository_path, is_valid_tag};
