//! The estate as the user wrote it: the policy file model, loading from YAML or
//! JSON with strict validation and precise error locations, and import from
//! Azure exports. Knows nothing of packets or lookup tables.

pub mod import;
pub mod model;

pub use model::*;
