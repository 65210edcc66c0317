//! Errors of the Azure importer. Each names the input file and, where a value is
//! at fault, the JSON path to it as written in that file, so a user can find the
//! offending value in a multi-megabyte export.

use std::path::PathBuf;

/// Why an Azure export could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not JSON (or not UTF-8/UTF-16 text).
    #[error("{file} is not valid JSON: {message}")]
    NotJson { file: String, message: String },

    /// A value has the wrong JSON type.
    #[error("in {file} at {path}: expected {expected}, found {found}{hint}")]
    WrongType {
        file: String,
        path: String,
        expected: &'static str,
        found: String,
        /// Extra advice, empty or starting with `; `.
        hint: String,
    },

    /// A value has the right type but a meaning the importer cannot accept.
    #[error("in {file} at {path}: {message}")]
    Invalid {
        file: String,
        path: String,
        message: String,
    },

    /// An ARM template expression (`[parameters('x')]`) where a literal is needed.
    #[error(
        "in {file} at {path}: the ARM template expression `{expression}` cannot be resolved \
         by the importer; deploy the template and import the deployed resources \
         (`az network nsg show`, `az network vnet show`, ...), or replace the expression \
         with its value"
    )]
    TemplateExpression {
        file: String,
        path: String,
        expression: String,
    },

    /// The document is none of the export shapes the importer knows.
    #[error("in {file} at {path}: {message}")]
    UnknownShape {
        file: String,
        path: String,
        message: String,
    },

    /// Two inputs define a resource of the same kind and name (Azure names are
    /// case-insensitive, and nsgd names are global to the policy file).
    #[error("{kind} `{name}` is defined twice: in {first} and in {second}")]
    Duplicate {
        kind: &'static str,
        name: String,
        /// `<file> at <path>` of the first definition.
        first: String,
        /// `<file> at <path>` of the second definition.
        second: String,
    },
}
