//! Docker's go-units, shared with the engine and compose: [`berth_engine::units`].

pub use berth_engine::units::*;
