//! Errors of policy loading: one [`PolicyError`] per problem, each naming the
//! file, the path inside the document, and the line and column where known;
//! [`PolicyErrors`] collects all of a file's problems so a user fixes them in
//! one round. Owns no parsing or validation logic.

use std::fmt;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file name as given to the loader.
    pub file: String,
    /// Where in the document, e.g. `networkSecurityGroups[1].securityRules[3].priority`;
    /// empty for problems with the document as a whole.
    pub path: String,
    /// 1-based line of the offending node, when known.
    pub line: Option<usize>,
    /// 1-based column of the offending node, when known.
    pub column: Option<usize>,
    /// A full-sentence description of the problem.
    pub message: String,
}

impl fmt::Display for PolicyError {
    /// `FILE:LINE:COL: PATH: MESSAGE`, leaving out what is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for PolicyError {}

/// All problems found in one policy file, sorted by position (problems without
/// a position last). Never empty when returned by the loader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors {
    errors: Vec<PolicyError>,
}

impl PolicyErrors {
    /// Wraps and sorts a list of problems.
    pub fn new(mut errors: Vec<PolicyError>) -> PolicyErrors {
        errors.sort_by(|a, b| {
            let key = |e: &PolicyError| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0));
            key(a).cmp(&key(b))
        });
        PolicyErrors { errors }
    }

    /// The problems, in position order.
    pub fn iter(&self) -> std::slice::Iter<'_, PolicyError> {
        self.errors.iter()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The problems as a slice, in position order.
    pub fn as_slice(&self) -> &[PolicyError] {
        &self.errors
    }

    pub fn into_vec(self) -> Vec<PolicyError> {
        self.errors
    }
}

impl fmt::Display for PolicyErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a PolicyErrors {
    type Item = &'a PolicyError;
    type IntoIter = std::slice::Iter<'a, PolicyError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl IntoIterator for PolicyErrors {
    type Item = PolicyError;
    type IntoIter = std::vec::IntoIter<PolicyError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

/// Most problems reported for one file; the rest are counted in a final note,
/// so a hostile file cannot make the error list itself exhaust memory.
pub const MAX_ERRORS: usize = 10_000;

/// Collects problems while one file is read; knows the file name so callers
/// only give the path, position and message.
#[derive(Debug)]
pub(crate) struct Collector {
    file: String,
    errors: Vec<PolicyError>,
    dropped: usize,
}

impl Collector {
    pub(crate) fn new(file: &str) -> Collector {
        Collector {
            file: file.to_string(),
            errors: Vec::new(),
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, path: &str, position: Option<(usize, usize)>, message: String) {
        if self.errors.len() >= MAX_ERRORS {
            self.dropped += 1;
            return;
        }
        self.errors.push(PolicyError {
            file: self.file.clone(),
            path: path.to_string(),
            line: position.map(|p| p.0),
            column: position.map(|p| p.1),
            message,
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many problems were reported so far (dropped ones included).
    pub(crate) fn count(&self) -> usize {
        self.errors.len() + self.dropped
    }

    pub(crate) fn into_errors(mut self) -> PolicyErrors {
        if self.dropped > 0 {
            self.errors.push(PolicyError {
                file: self.file.clone(),
                path: String::new(),
                line: None,
                column: None,
                message: format!(
                    "{} further problems were not reported (at most {MAX_ERRORS} are listed)",
                    self.dropped
                ),
            });
        }
        PolicyErrors::new(self.errors)
    }
}
