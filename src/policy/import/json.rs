//! A checked view over one untrusted JSON export: every accessor checks the
//! JSON type and reports a mismatch as an [`ImportError`] carrying the file name
//! and the path of the value, so no input can make the importer panic.
//!
//! Azure writes the same object three ways (ARM nested `properties`, CLI
//! flattened, PowerShell PascalCase); [`Node::key`] matches keys
//! case-insensitively and [`Node::field`] looks under `properties` first, so the
//! readers above never care which form they were given.

use serde_json::{Map, Value};

use super::error::ImportError;

/// Where a document came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub file: &'a str,
    /// Inside an ARM template: strings `[...]` are expressions, `[[` escapes `[`.
    pub template: bool,
}

/// One value of a document, with the path that leads to it.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    pub value: &'a Value,
    pub path: String,
    pub source: Source<'a>,
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value, source: Source<'a>) -> Self {
        Node {
            value,
            path: String::new(),
            source,
        }
    }

    /// The same value read as part of an ARM template.
    pub fn in_template(mut self) -> Self {
        self.source.template = true;
        self
    }

    /// The path for messages; the root is named as such.
    pub fn display_path(&self) -> String {
        display_path(&self.path)
    }

    fn child_key(&self, key: &str) -> String {
        let simple = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        match (self.path.is_empty(), simple) {
            (true, true) => key.to_string(),
            (false, true) => format!("{}.{key}", self.path),
            (_, false) => format!("{}[{}]", self.path, Value::from(key)),
        }
    }

    /// The member `key` of this object, matched case-insensitively (an exact
    /// match wins). `None` when this is not an object, the key is absent, or
    /// its value is `null` (Azure writes `null` for unset optional fields).
    pub fn key(&self, key: &str) -> Option<Node<'a>> {
        let map = self.value.as_object()?;
        let (name, value) = map
            .get_key_value(key)
            .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))?;
        if value.is_null() {
            return None;
        }
        Some(Node {
            value,
            path: self.child_key(name),
            source: self.source,
        })
    }

    /// A resource field: under `properties` (ARM/REST form) if there, else on
    /// the object itself (CLI flattened and PowerShell forms).
    pub fn field(&self, key: &str) -> Option<Node<'a>> {
        self.key("properties")
            .and_then(|properties| properties.key(key))
            .or_else(|| self.key(key))
    }

    pub fn object(&self) -> Result<&'a Map<String, Value>, ImportError> {
        self.value
            .as_object()
            .ok_or_else(|| self.wrong_type("an object"))
    }

    /// The elements of this array.
    pub fn items(&self) -> Result<Vec<Node<'a>>, ImportError> {
        let array = self
            .value
            .as_array()
            .ok_or_else(|| self.wrong_type("an array"))?;
        Ok(array
            .iter()
            .enumerate()
            .map(|(index, value)| Node {
                value,
                path: format!("{}[{index}]", self.path),
                source: self.source,
            })
            .collect())
    }

    /// A literal string. In a template, an expression is an error and `[[`
    /// stands for a literal `[`.
    pub fn string(&self) -> Result<String, ImportError> {
        let text = self
            .value
            .as_str()
            .ok_or_else(|| self.wrong_type("a string"))?;
        if self.source.template {
            if let Some(rest) = text.strip_prefix("[[") {
                return Ok(format!("[{rest}"));
            }
            if text.starts_with('[') && text.ends_with(']') {
                return Err(ImportError::TemplateExpression {
                    file: self.source.file.to_string(),
                    path: self.display_path(),
                    expression: text.to_string(),
                });
            }
        }
        Ok(text.to_string())
    }

    /// A string, or an integer written as a number (port fields of hand-made
    /// exports).
    pub fn string_or_integer(&self) -> Result<String, ImportError> {
        match self.value {
            Value::Number(number) if number.is_u64() || number.is_i64() => Ok(number.to_string()),
            _ => self.string(),
        }
    }

    pub fn unsigned(&self) -> Result<u64, ImportError> {
        self.value.as_u64().ok_or_else(|| {
            self.wrong_type(if self.value.is_i64() {
                "a non-negative integer"
            } else {
                "an integer"
            })
        })
    }

    pub fn boolean(&self) -> Result<bool, ImportError> {
        match self.value {
            Value::Bool(flag) => Ok(*flag),
            // PowerShell 5 serialises some booleans as strings.
            Value::String(text) if text.eq_ignore_ascii_case("true") => Ok(true),
            Value::String(text) if text.eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(self.wrong_type("a boolean")),
        }
    }

    /// A list of strings; a single string counts as a list of one (PowerShell
    /// writes some list fields as a bare string when they hold one item).
    pub fn strings(&self) -> Result<Vec<String>, ImportError> {
        match self.value {
            Value::String(_) | Value::Number(_) => Ok(vec![self.string_or_integer()?]),
            Value::Array(_) => self.items()?.iter().map(Node::string_or_integer).collect(),
            _ => Err(self.wrong_type("an array of strings")),
        }
    }

    /// The name a resource reference points at: the last segment of `id`, or a
    /// bare name string.
    pub fn reference_name(&self) -> Result<String, ImportError> {
        let id = match self.value {
            Value::String(_) => self.clone(),
            Value::Object(_) => self
                .key("id")
                .ok_or_else(|| self.invalid("a resource reference needs an `id`"))?,
            _ => return Err(self.wrong_type("a resource reference (`{\"id\": ...}`)")),
        };
        let text = id.string()?;
        last_segment(&text).ok_or_else(|| id.invalid(format!("`{text}` is not a resource id")))
    }

    /// A list of resource references, by name.
    pub fn reference_names(&self) -> Result<Vec<String>, ImportError> {
        match self.value {
            Value::Array(_) => self.items()?.iter().map(Node::reference_name).collect(),
            _ => Ok(vec![self.reference_name()?]),
        }
    }

    pub fn wrong_type(&self, expected: &'static str) -> ImportError {
        if self.source.template {
            if let Some(text) = self.value.as_str() {
                if text.starts_with('[') && !text.starts_with("[[") && text.ends_with(']') {
                    return ImportError::TemplateExpression {
                        file: self.source.file.to_string(),
                        path: self.display_path(),
                        expression: text.to_string(),
                    };
                }
            }
        }
        let hint = match self.value.as_str() {
            Some(text)
                if expected == "an object"
                    && (text.starts_with("Microsoft.Azure.") || text.starts_with("System.")) =>
            {
                "; PowerShell's ConvertTo-Json cut the object off at its default depth of 2: \
                 export again with `ConvertTo-Json -Depth 20`"
                    .to_string()
            }
            _ => String::new(),
        };
        ImportError::WrongType {
            file: self.source.file.to_string(),
            path: self.display_path(),
            expected,
            found: describe(self.value),
            hint,
        }
    }

    pub fn invalid(&self, message: impl Into<String>) -> ImportError {
        ImportError::Invalid {
            file: self.source.file.to_string(),
            path: self.display_path(),
            message: message.into(),
        }
    }
}

pub(crate) fn display_path(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_string()
    } else {
        path.to_string()
    }
}

/// The last non-empty `/`-separated segment of a resource id.
pub(crate) fn last_segment(id: &str) -> Option<String> {
    id.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|segment| !segment.is_empty())
        .map(str::to_string)
}

/// `<vnet>/<subnet>` from a subnet id `.../virtualNetworks/<v>/subnets/<s>`.
pub(crate) fn subnet_path(id: &str) -> Option<String> {
    let segments: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    segments.windows(4).find_map(|window| {
        (window[0].eq_ignore_ascii_case("virtualNetworks")
            && window[2].eq_ignore_ascii_case("subnets"))
        .then(|| format!("{}/{}", window[1], window[3]))
    })
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) => {
            let shown: String = text.chars().take(60).collect();
            let ellipsis = if shown.len() < text.len() { "..." } else { "" };
            format!("the string {}{ellipsis}", Value::from(shown))
        }
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}
