//! The `nsgd` command line: parse arguments, call the library, print.
