//! Import from Azure: turns exported JSON (ARM/REST nested `properties`, `az`
//! CLI flattened, PowerShell PascalCase; single resources, lists, ARM
//! templates, Service Tags files) into an nsgd policy document in the shape of
//! `policy-format.md`, plus warnings for whatever the export leaves open.
//!
//! The importer only translates: it never validates addresses, priorities or
//! names (the policy loader does that on the result), and it never panics on
//! hostile input — every type mismatch is an [`ImportError`] with the file and
//! the JSON path. Submodules, one job each: `json` (checked view over a
//! document), `shape` (what a document is), `nsg` and `network` (one resource
//! each), `estate` (cross-resource resolution and the document), `template`
//! (the ARM template expressions exports use), `yaml` (the YAML writer).

mod error;
mod estate;
mod json;
mod network;
mod nsg;
mod shape;
mod template;
mod yaml;

use std::path::PathBuf;

use serde_json::Value;

pub use error::ImportError;
pub use yaml::to_yaml;

use json::{last_segment, Node, Source};

/// The result of an import.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// A policy document (keys in policy-format.md order: serviceTags,
    /// applicationSecurityGroups, vnets, nics, networkSecurityGroups; empty
    /// sections left out).
    pub document: Value,
    /// Things the user should know: dropped or unresolvable associations,
    /// service tags without prefixes, non-standard default rules, skipped
    /// resources.
    pub warnings: Vec<String>,
}

/// Imports parsed JSON documents, each with the file name used in messages.
pub fn import_documents(inputs: &[(String, Value)]) -> Result<Imported, ImportError> {
    let mut warnings = Vec::new();
    let mut resources = Vec::new();
    // Templates with their expressions evaluated, kept alive for the nodes
    // that borrow them.
    let resolved: Vec<Option<Value>> = inputs
        .iter()
        .map(|(_, value)| template::is_template(value).then(|| template::resolve(value)))
        .collect();
    for ((file, original), resolved) in inputs.iter().zip(&resolved) {
        let value = resolved.as_ref().unwrap_or(original);
        let before = resources.len();
        let source = Source {
            file: file.as_str(),
            template: false,
        };
        shape::collect(Node::root(value, source), &mut resources, &mut warnings)?;
        if resources.len() == before {
            warnings.push(format!("{file}: no resource to import was found"));
        }
    }
    let document = estate::build(&resources, &mut warnings)?;
    Ok(Imported { document, warnings })
}

/// Reads JSON files (UTF-8 with or without BOM, or UTF-16 as Windows
/// PowerShell writes with `>`) and imports them. Files are named in messages by
/// the path as given.
pub fn import_files(paths: &[PathBuf]) -> Result<Imported, ImportError> {
    let mut inputs = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes = std::fs::read(path).map_err(|source| ImportError::Read {
            path: path.clone(),
            source,
        })?;
        let file = path.display().to_string();
        let text = decode_text(&bytes).map_err(|message| ImportError::NotJson {
            file: file.clone(),
            message,
        })?;
        let value = serde_json::from_str(&text).map_err(|error| ImportError::NotJson {
            file: file.clone(),
            message: error.to_string(),
        })?;
        inputs.push((file, value));
    }
    import_documents(&inputs)
}

/// The document as pretty-printed JSON, with a final newline.
pub fn to_json_pretty(document: &Value) -> String {
    let mut text = serde_json::to_string_pretty(document).unwrap_or_default();
    text.push('\n');
    text
}

fn decode_text(bytes: &[u8]) -> Result<String, String> {
    let utf16 = |rest: &[u8], little: bool| {
        let units: Vec<u16> = rest
            .chunks(2)
            .map(|pair| {
                let (a, b) = (pair[0], pair.get(1).copied().unwrap_or(0));
                if little {
                    u16::from_le_bytes([a, b])
                } else {
                    u16::from_be_bytes([a, b])
                }
            })
            .collect();
        String::from_utf16(&units).map_err(|_| "invalid UTF-16 text".to_string())
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => std::str::from_utf8(rest).map(str::to_string),
        [0xFF, 0xFE, rest @ ..] => return utf16(rest, true),
        [0xFE, 0xFF, rest @ ..] => return utf16(rest, false),
        _ => std::str::from_utf8(bytes).map(str::to_string),
    }
    .map_err(|error| format!("not UTF-8 text ({error})"))
}

/// Where a resource was read, for duplicate and reference messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub file: String,
    pub path: String,
}

impl Origin {
    fn of(node: &Node<'_>) -> Origin {
        Origin {
            file: node.source.file.to_string(),
            path: node.display_path(),
        }
    }
}

/// A resource's own name: `name` (its last segment, as template child
/// resources write `parent/child`), else the last segment of `id`.
fn resource_name(node: &Node<'_>) -> Result<String, ImportError> {
    node.object()?;
    let (field, text) = match (node.key("name"), node.key("id")) {
        (Some(name), _) => {
            let text = name.string()?;
            (name, text)
        }
        (None, Some(id)) => {
            let text = id.string()?;
            (id, text)
        }
        (None, None) => return Err(node.invalid("the object has neither `name` nor `id`")),
    };
    last_segment(&text).ok_or_else(|| field.invalid("the name is empty"))
}
