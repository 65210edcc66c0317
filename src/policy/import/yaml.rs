//! A small YAML writer for JSON values: block style, two-space indentation,
//! and scalars quoted whenever a YAML 1.1 or 1.2 reader could take them for
//! anything but the string they are (`'*'`, `'443'`, `'true'`, `'fd00::/64'`,
//! leading spaces, control characters). Writes nothing it cannot read back as
//! the same JSON value; the round trip is tested against a YAML parser.

use serde_json::{Map, Value};

/// The document as YAML, ending with a newline.
pub fn to_yaml(document: &Value) -> String {
    let mut out = String::new();
    match document {
        Value::Object(map) if !map.is_empty() => write_mapping(&mut out, map, 0, false),
        Value::Array(items) if !items.is_empty() => write_sequence(&mut out, items, 0, false),
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, width: usize) {
    out.extend(std::iter::repeat_n(' ', width));
}

/// `first_inline`: the first entry goes on the current line (after `- `).
fn write_mapping(out: &mut String, map: &Map<String, Value>, width: usize, first_inline: bool) {
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 || !first_inline {
            indent(out, width);
        }
        let key_text = string_text(key);
        // Implicit keys are limited to 1024 characters; longer ones need `? `.
        if key_text.chars().count() > 1000 {
            out.push_str("? ");
            out.push_str(&key_text);
            out.push('\n');
            indent(out, width);
        } else {
            out.push_str(&key_text);
        }
        out.push(':');
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                write_mapping(out, inner, width + 2, false);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                write_sequence(out, items, width + 2, false);
            }
            scalar => {
                out.push(' ');
                out.push_str(&scalar_text(scalar));
                out.push('\n');
            }
        }
    }
}

fn write_sequence(out: &mut String, items: &[Value], width: usize, first_inline: bool) {
    for (index, item) in items.iter().enumerate() {
        if index > 0 || !first_inline {
            indent(out, width);
        }
        out.push_str("- ");
        match item {
            Value::Object(inner) if !inner.is_empty() => write_mapping(out, inner, width + 2, true),
            Value::Array(inner) if !inner.is_empty() => write_sequence(out, inner, width + 2, true),
            scalar => {
                out.push_str(&scalar_text(scalar));
                out.push('\n');
            }
        }
    }
}

/// A scalar, or an empty collection, in flow form.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => string_text(text),
        Value::Array(_) => "[]".to_string(),
        Value::Object(_) => "{}".to_string(),
    }
}

/// A string as a plain, single-quoted or (when it holds characters that need
/// escapes) double-quoted scalar.
fn string_text(text: &str) -> String {
    if text.chars().any(needs_escape) {
        let mut out = String::with_capacity(text.len() + 2);
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if needs_escape(c) => out.push_str(&format!("\\u{:04X}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    } else if plain_is_safe(text) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "''"))
    }
}

/// Characters that only a double-quoted scalar can carry: controls, YAML's
/// non-printables, and the line and byte-order marks some readers treat
/// specially.
fn needs_escape(c: char) -> bool {
    let code = u32::from(c);
    code < 0x20
        || (0x7F..=0x9F).contains(&code)
        || matches!(code, 0x2028 | 0x2029 | 0xFEFF | 0xFFFE | 0xFFFF)
}

fn plain_is_safe(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
        return false;
    }
    // Indicators that start a non-plain node, and characters that end or
    // comment out a plain one (`:` also makes YAML 1.1 read `1:20` as a number).
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) || text.contains(':') || text.contains('#') {
        return false;
    }
    if text.starts_with("...") {
        return false;
    }
    !looks_like_other_type(text)
}

/// Whether a YAML 1.1 or 1.2 reader might resolve the plain scalar to a null,
/// boolean, number or timestamp.
fn looks_like_other_type(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "~" | "null"
            | "true"
            | "false"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "y"
            | "n"
            | "<<"
            | "="
            | ".inf"
            | "+.inf"
            | "-.inf"
            | ".nan"
    ) {
        return true;
    }
    let unsigned = lower.trim_start_matches(['+', '-']);
    let without_underscores: String = unsigned.chars().filter(|&c| c != '_').collect();
    if without_underscores.parse::<f64>().is_ok() {
        return true;
    }
    if ["0x", "0o", "0b"]
        .iter()
        .any(|radix| unsigned.starts_with(radix))
    {
        return true;
    }
    // Port ranges (`8000-8080`) and dates (`2024-01-31`): digits and dashes.
    lower.starts_with(|c: char| c.is_ascii_digit())
        && lower.chars().all(|c| c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quotes_what_would_read_as_another_type() {
        for text in [
            "*",
            "443",
            "8000-8080",
            "true",
            "No",
            "null",
            "",
            " x",
            "x ",
            "1e3",
            "0x1F",
            "fd00::/64",
            "a #b",
            "'",
            "-1",
            ".inf",
            "2024-01-31",
        ] {
            assert_ne!(string_text(text), text, "{text:?} must be quoted");
        }
        for text in [
            "10.0.1.0/24",
            "Internet",
            "allow-https-in",
            "Storage.WestUS",
            "hub/web",
            "a b",
        ] {
            assert_eq!(string_text(text), text, "{text:?} may stay plain");
        }
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(string_text("a\nb\u{7}"), "\"a\\nb\\u0007\"");
        assert_eq!(string_text("it's"), "it's");
        assert_eq!(string_text("'q'"), "'''q'''");
    }

    #[test]
    fn writes_block_style() {
        let doc = json!({"a": [{"b": 1, "c": ["x", []]}, [1, 2]], "d": {}});
        assert_eq!(
            to_yaml(&doc),
            "a:\n  - b: 1\n    c:\n      - x\n      - []\n  - - 1\n    - 2\nd: {}\n"
        );
    }
}
