//! The loader's front door: reads a policy file (size-capped, UTF-8 checked),
//! picks YAML or JSON, and runs document reading, conversion and validation,
//! returning the validated [`Policy`] or every problem found.

use std::io::Read;
use std::path::Path;

use super::convert::convert;
use super::document::{read_json, read_yaml};
use super::error::{Collector, PolicyErrors};
use super::model::Policy;
use super::validate::validate;

/// Largest policy file accepted, in bytes.
pub const MAX_FILE_SIZE: usize = 64 * 1024 * 1024;

/// The syntax of a policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// The format named by a file's extension (`.yaml`, `.yml`, `.json`, any
    /// case); `None` for other extensions, where [`Format::sniff`] decides.
    pub fn from_path(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// Guesses from content: JSON when the first non-blank character is `{`,
    /// YAML otherwise (YAML flow syntax reads most JSON anyway).
    pub fn sniff(text: &str) -> Format {
        match text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .chars()
            .next()
        {
            Some('{') => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Loads and validates a policy file; the format comes from the extension, or
/// from the content when the extension says nothing.
pub fn load(path: &Path) -> Result<Policy, PolicyErrors> {
    let file_name = path.display().to_string();
    let fail = |message: String| {
        let mut errors = Collector::new(&file_name);
        errors.push("", None, message);
        errors.into_errors()
    };
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot open the file: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read the file: {e}")))?;
    if bytes.len() > MAX_FILE_SIZE {
        return Err(fail(format!(
            "the file is larger than {} MiB; policy files are limited to that size",
            MAX_FILE_SIZE / (1024 * 1024)
        )));
    }
    let text = decode(bytes, &file_name)?;
    let format = Format::from_path(path).unwrap_or_else(|| Format::sniff(&text));
    parse_str(&text, format, &file_name)
}

/// Checks UTF-8, pointing at the first bad byte.
fn decode(bytes: Vec<u8>, file_name: &str) -> Result<String, PolicyErrors> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count()
            + 1;
        let mut errors = Collector::new(file_name);
        errors.push(
            "",
            Some((line, column)),
            format!(
                "the file is not valid UTF-8 (bad byte 0x{:02x} at offset {})",
                e.as_bytes()[valid.len()],
                valid.len()
            ),
        );
        errors.into_errors()
    })
}

/// Parses and validates policy text. `file_name` only labels the errors.
pub fn parse_str(text: &str, format: Format, file_name: &str) -> Result<Policy, PolicyErrors> {
    let mut errors = Collector::new(file_name);
    if text.len() > MAX_FILE_SIZE {
        errors.push(
            "",
            None,
            format!(
                "the document is larger than {} MiB; policy files are limited to that size",
                MAX_FILE_SIZE / (1024 * 1024)
            ),
        );
        return Err(errors.into_errors());
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = match format {
        Format::Yaml => read_yaml(text, &mut errors),
        Format::Json => read_json(text, &mut errors),
    };
    let Ok(root) = root else {
        return Err(errors.into_errors());
    };
    let raw = convert(root.as_ref(), &mut errors);
    drop(root);
    match validate(&raw, &mut errors) {
        Some(policy) if errors.is_empty() => Ok(policy),
        _ => {
            if errors.is_empty() {
                // Unreachable by construction; never return an empty error list.
                errors.push("", None, "the policy is incomplete".into());
            }
            Err(errors.into_errors())
        }
    }
}
