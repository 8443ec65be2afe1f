//! berth-dockerfile: the Dockerfile language and `.dockerignore` files, parsed. Pure: text in,
//! values out, no file system and no I/O, so every function here can be fuzzed.
//!
//! - [`parse`] turns a Dockerfile into [`Dockerfile`]: parser directives, the `ARG`s before
//!   the first `FROM`, and the stages with their instructions, each with its line. Words are
//!   kept as written: variables are substituted at build time ([`expand`]), when the values
//!   of `ARG` and `ENV` are known.
//! - [`expand`] is Docker's word processing (`$var`, `${var:-default}`, `${var:+alt}`, quotes
//!   and the escape character) for the instructions Docker applies it to.
//! - [`ignore`] is `.dockerignore`: patterns with `**`, `!` exceptions, Docker's cleaning rules.

#![warn(missing_docs)]

pub mod ast;
mod error;
pub mod expand;
pub mod ignore;
mod parser;

pub use ast::*;
pub use error::ParseError;
pub use ignore::path_match;
pub use parser::parse;
