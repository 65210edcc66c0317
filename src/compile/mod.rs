//! The estate as a machine: compiled lookup tables and per-NIC evaluation chains.

pub mod classifier;
