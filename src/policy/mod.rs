//! The estate as the user wrote it: the policy file model, loading from YAML or
//! JSON with strict validation and precise error locations, and import from
//! Azure exports. Knows nothing of packets or lookup tables.
//!
//! Loading runs in stages, one file each: [`load`] (file access, format),
//! `document` (spanned YAML/JSON tree, hostile-input bounds), `convert`
//! (schema, types, per-object checks), `validate` (cross-object checks and
//! limits), with every problem collected into [`PolicyErrors`].

mod convert;
mod document;
pub mod error;
pub mod import;
pub mod load;
pub mod model;
mod validate;

pub use error::{PolicyError, PolicyErrors};
pub use load::{load, parse_str, Format, MAX_FILE_SIZE};
pub use model::*;
