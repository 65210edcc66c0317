//! The estate as a machine. Turns a validated [`Policy`](crate::policy::Policy)
//! into a [`Program`]: service tags and ASGs resolved per VNet, one multi-field
//! classifier per (NSG, VNet, direction), one outbound and one inbound chain per
//! NIC (and per subnet, for undeclared addresses). Also home to the naive
//! [`reference`] evaluator the tests compare against, and the ruleset lints.
//! Never touches packets' bytes, the clock (beyond timing compilation) or I/O.

pub mod address_set;
pub mod bitvector;
pub mod classifier;
pub mod effective;
pub mod flow;
pub mod lint;
pub mod program;
pub mod reference;
pub mod resolved;
pub mod synthetic;
pub mod tags;

pub use address_set::AddressSet;
pub use flow::{Flow, FlowError};
pub use program::{
    CompileError, CompileErrors, CompileStats, Endpoint, EndpointKind, Evaluation, Level,
    NamedEvaluation, NsgTable, Program, Verdict,
};
pub use resolved::{FieldMatch, ResolvedRule};
