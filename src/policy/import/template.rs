//! ARM template expressions, as far as exported templates need them: an
//! `az group export` or portal "Export template" names every resource
//! `[parameters('…')]` with a `defaultValue`, and hand-written templates
//! build names with `variables`, `concat`, `format` and `resourceId`.
//!
//! [`resolve`] returns a copy of a template with every expression it can
//! evaluate replaced by its value. What it cannot evaluate (other
//! functions, a parameter without a default) stays as written, so the
//! readers report it with its file and path as before. Never panics: input
//! is untrusted, so recursion through variables is bounded.

use serde_json::{Map, Value};

/// How deep variables may refer to variables before evaluation gives up.
const MAX_DEPTH: usize = 16;

/// Whether a document is an ARM template.
pub(crate) fn is_template(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|root| root.contains_key("resources") && !root.contains_key("type"))
}

/// The template with the expressions it can evaluate replaced by their values.
pub(crate) fn resolve(template: &Value) -> Value {
    let Some(root) = template.as_object() else {
        return template.clone();
    };
    let scope = Scope {
        parameters: key_ci(root, "parameters").and_then(Value::as_object),
        variables: key_ci(root, "variables").and_then(Value::as_object),
    };
    let mut resolved = root.clone();
    if let Some(resources) = key_ci(root, "resources") {
        let key = root
            .keys()
            .find(|k| k.eq_ignore_ascii_case("resources"))
            .cloned()
            .unwrap_or_else(|| "resources".to_string());
        resolved.insert(key, scope.walk(resources));
    }
    Value::Object(resolved)
}

fn key_ci<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

struct Scope<'a> {
    parameters: Option<&'a Map<String, Value>>,
    variables: Option<&'a Map<String, Value>>,
}

impl Scope<'_> {
    fn walk(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => self.string(text, 0).unwrap_or_else(|| value.clone()),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.walk(v)).collect()),
            Value::Object(object) => Value::Object(
                object
                    .iter()
                    .map(|(k, v)| (k.clone(), self.walk(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// A template string's value: an expression evaluated, `[[` unescaped
    /// is left to the readers, anything else as it is. `None` when it is an
    /// expression this module cannot evaluate.
    fn string(&self, text: &str, depth: usize) -> Option<Value> {
        if text.starts_with("[[") || !(text.starts_with('[') && text.ends_with(']')) {
            return Some(Value::String(text.to_string()));
        }
        let body = &text[1..text.len() - 1];
        let mut parser = Parser {
            tokens: tokenize(body)?,
            at: 0,
            nesting: 0,
        };
        let expression = parser.expression()?;
        if parser.at != parser.tokens.len() {
            return None;
        }
        self.evaluate(&expression, depth)
    }

    fn evaluate(&self, expression: &Expression, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        match expression {
            Expression::Literal(value) => Some(value.clone()),
            Expression::Property(inner, name) => {
                let value = self.evaluate(inner, depth)?;
                key_ci(value.as_object()?, name).cloned()
            }
            Expression::Call(function, arguments) => {
                let arguments = arguments
                    .iter()
                    .map(|a| self.evaluate(a, depth))
                    .collect::<Option<Vec<Value>>>()?;
                self.call(function, &arguments, depth)
            }
        }
    }

    fn call(&self, function: &str, arguments: &[Value], depth: usize) -> Option<Value> {
        let text = |i: usize| arguments.get(i).and_then(Value::as_str);
        match function.to_ascii_lowercase().as_str() {
            "parameters" => {
                let parameter = key_ci(self.parameters?, text(0)?)?;
                let default = key_ci(parameter.as_object()?, "defaultValue")?;
                self.value(default, depth + 1)
            }
            "variables" => self.value(key_ci(self.variables?, text(0)?)?, depth + 1),
            "concat" => {
                if !arguments.is_empty() && arguments.iter().all(Value::is_array) {
                    let items = arguments.iter().filter_map(Value::as_array).flatten();
                    return Some(Value::Array(items.cloned().collect()));
                }
                let mut out = String::new();
                for argument in arguments {
                    out.push_str(&scalar_text(argument)?);
                }
                Some(Value::String(out))
            }
            "format" => {
                let mut out = text(0)?.to_string();
                for (i, argument) in arguments.iter().enumerate().skip(1) {
                    out = out.replace(&format!("{{{}}}", i - 1), &scalar_text(argument)?);
                }
                Some(Value::String(out))
            }
            "tolower" => Some(Value::String(text(0)?.to_lowercase())),
            "toupper" => Some(Value::String(text(0)?.to_uppercase())),
            "string" => Some(Value::String(scalar_text(arguments.first()?)?)),
            "resourceid" => resource_id(arguments),
            _ => None,
        }
    }

    /// A parameter default or variable, itself possibly an expression, or
    /// an object or array holding some.
    fn value(&self, value: &Value, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        match value {
            Value::String(text) => self.string(text, depth),
            Value::Array(items) => items
                .iter()
                .map(|v| self.value(v, depth + 1))
                .collect::<Option<Vec<_>>>()
                .map(Value::Array),
            Value::Object(object) => object
                .iter()
                .map(|(k, v)| Some((k.clone(), self.value(v, depth + 1)?)))
                .collect::<Option<Map<_, _>>>()
                .map(Value::Object),
            other => Some(other.clone()),
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// `resourceId([subscriptionId], [resourceGroup], type, name, …)`: an id the
/// readers can take apart (they use the names after the type's segments).
fn resource_id(arguments: &[Value]) -> Option<Value> {
    let texts: Vec<&str> = arguments.iter().map(Value::as_str).collect::<Option<_>>()?;
    let type_at = texts.iter().position(|t| t.contains('/'))?;
    let (scope, rest) = texts.split_at(type_at);
    let (resource_type, names) = rest.split_first()?;
    let (namespace, types) = resource_type.split_once('/')?;
    let types: Vec<&str> = types.split('/').collect();
    if types.len() != names.len() {
        return None;
    }
    let (subscription, group) = match scope {
        [] => ("00000000-0000-0000-0000-000000000000", "resourceGroup"),
        [group] => ("00000000-0000-0000-0000-000000000000", *group),
        [subscription, group] => (*subscription, *group),
        _ => return None,
    };
    let mut id =
        format!("/subscriptions/{subscription}/resourceGroups/{group}/providers/{namespace}");
    for (kind, name) in types.iter().zip(names) {
        id.push_str(&format!("/{kind}/{name}"));
    }
    Some(Value::String(id))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Text(String),
    Number(i64),
    Open,
    Close,
    Comma,
    Dot,
}

fn tokenize(text: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                chars.next();
            }
            '(' | ')' | ',' | '.' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    ',' => Token::Comma,
                    _ => Token::Dot,
                });
            }
            '\'' => {
                chars.next();
                let mut literal = String::new();
                loop {
                    match chars.next()? {
                        // `''` inside a literal is one quote.
                        '\'' if chars.peek() == Some(&'\'') => {
                            chars.next();
                            literal.push('\'');
                        }
                        '\'' => break,
                        other => literal.push(other),
                    }
                }
                tokens.push(Token::Text(literal));
            }
            '0'..='9' | '-' => {
                let mut digits = String::new();
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_digit() || (d == '-' && digits.is_empty()) {
                        digits.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Number(digits.parse().ok()?));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut name = String::new();
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        name.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Name(name));
            }
            _ => return None,
        }
    }
    Some(tokens)
}

#[derive(Debug, Clone)]
enum Expression {
    Literal(Value),
    Call(String, Vec<Expression>),
    Property(Box<Expression>, String),
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Calls open around the current point: bounded, so a hostile string
    /// cannot exhaust the stack.
    nesting: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn expression(&mut self) -> Option<Expression> {
        if self.nesting >= MAX_DEPTH {
            return None;
        }
        self.nesting += 1;
        let expression = self.expression_within();
        self.nesting -= 1;
        expression
    }

    fn expression_within(&mut self) -> Option<Expression> {
        let mut expression = match self.next()? {
            Token::Text(text) => Expression::Literal(Value::String(text)),
            Token::Number(number) => Expression::Literal(Value::from(number)),
            Token::Name(name) if name == "true" || name == "false" => {
                Expression::Literal(Value::Bool(name == "true"))
            }
            Token::Name(name) => {
                if self.next()? != Token::Open {
                    return None;
                }
                let mut arguments = Vec::new();
                if self.peek() == Some(&Token::Close) {
                    self.next();
                } else {
                    loop {
                        arguments.push(self.expression()?);
                        match self.next()? {
                            Token::Comma => continue,
                            Token::Close => break,
                            _ => return None,
                        }
                    }
                }
                Expression::Call(name, arguments)
            }
            _ => return None,
        };
        while self.peek() == Some(&Token::Dot) {
            self.next();
            match self.next()? {
                Token::Name(property) => {
                    expression = Expression::Property(Box::new(expression), property)
                }
                _ => return None,
            }
        }
        Some(expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        json!({
            "parameters": {
                "nsgName": {"type": "string", "defaultValue": "web-nsg"},
                "noDefault": {"type": "string"},
                "names": {"type": "object", "defaultValue": {"rule": "[concat('Allow', '-', 'Ssh')]"}}
            },
            "variables": {
                "prefix": "app",
                "asgName": "[format('{0}-asg', variables('prefix'))]",
                "loop": "[variables('loop')]"
            },
            "resources": [{
                "name": "[parameters('nsgName')]",
                "quoted": "[[not an expression]",
                "child": "[concat(parameters('nsgName'), '/', parameters('names').rule)]",
                "asg": "[resourceId('Microsoft.Network/applicationSecurityGroups', variables('asgName'))]",
                "subnet": "[resourceId('rg2', 'Microsoft.Network/virtualNetworks/subnets', 'v', 's')]",
                "upper": "[toUpper('it''s')]",
                "unknown": "[reference('x').id]",
                "missing": "[parameters('noDefault')]",
                "cycle": "[variables('loop')]",
                "broken": "[concat('a'",
                "deep": format!("[{}'x'{}]", "string(".repeat(100_000), ")".repeat(100_000))
            }]
        })
    }

    #[test]
    fn evaluates_what_exports_use_and_leaves_the_rest() {
        let resolved = resolve(&template());
        let r = &resolved["resources"][0];
        assert_eq!(r["name"], "web-nsg");
        assert_eq!(r["quoted"], "[[not an expression]");
        assert_eq!(r["child"], "web-nsg/Allow-Ssh");
        assert_eq!(
            r["asg"],
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/resourceGroup/providers/Microsoft.Network/applicationSecurityGroups/app-asg"
        );
        assert_eq!(
            r["subnet"],
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg2/providers/Microsoft.Network/virtualNetworks/v/subnets/s"
        );
        assert_eq!(r["upper"], "IT'S");
        for untouched in ["unknown", "missing", "cycle", "broken", "deep"] {
            assert_eq!(
                r[untouched],
                template()["resources"][0][untouched],
                "{untouched}"
            );
        }
    }

    #[test]
    fn only_templates_are_templates() {
        assert!(is_template(&template()));
        assert!(!is_template(&json!({"type": "x", "resources": []})));
        assert!(!is_template(&json!([1])));
    }
}
