//! `--filter key=value` arguments, validated against the keys a command accepts.

pub use berth_store::Filters;
