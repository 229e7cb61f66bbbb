//! The CRD's structural schema, checked the way kube-apiserver checks it: types, required
//! fields, enums, patterns, lengths, bounds, list keys, and unknown fields (which kubectl's
//! default `--validate=strict` turns into errors). Messages use the apiserver's wording, so a
//! problem reads the same here and in `kubectl apply`.

use std::collections::{BTreeSet, HashMap};

use regex::Regex;
use serde_json::{Map, Value};

/// One field's problem: `path` as the apiserver prints it, `detail` what follows `path: `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub detail: String,
    /// A wrong type, a missing required field, a value too long or not in its enum: the
    /// apiserver then skips the CEL rules (their cost could not be bounded), and so does
    /// `validate`.
    pub blocking: bool,
}

/// The schema's patterns, compiled once.
pub struct Patterns(HashMap<String, Regex>);

impl Patterns {
    pub fn of(schema: &Value) -> Self {
        let mut patterns = HashMap::new();
        collect_patterns(schema, &mut patterns);
        Self(patterns)
    }
}

fn collect_patterns(schema: &Value, out: &mut HashMap<String, Regex>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(pattern)) = map.get("pattern") {
                let regex = Regex::new(pattern).expect("the CRD's patterns are valid regexes");
                out.insert(pattern.clone(), regex);
            }
            map.values().for_each(|v| collect_patterns(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_patterns(v, out)),
        _ => {}
    }
}

/// Checks `value` at `path` against `schema`, appending every problem.
pub fn check(
    schema: &Value,
    value: &Value,
    path: &str,
    patterns: &Patterns,
    errors: &mut Vec<FieldError>,
) {
    let invalid = |detail: String| FieldError {
        path: path.to_owned(),
        detail,
        blocking: false,
    };
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            let expected = schema
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("object");
            errors.push(FieldError {
                blocking: true,
                ..invalid(format!(
                    "Invalid value: \"null\": {path} in body must be of type {expected}: \"null\""
                ))
            });
        }
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let fits = actual == expected
            || (expected == "number" && actual == "integer")
            || (expected == "integer" && value.as_f64().is_some_and(|f| f.fract() == 0.0));
        if !fits {
            errors.push(FieldError {
                blocking: true,
                ..invalid(format!(
                    "Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""
                ))
            });
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errors.push(FieldError {
            blocking: true,
            ..invalid(format!(
                "Unsupported value: {value}: supported values: {}",
                supported.join(", ")
            ))
        });
    }
    match value {
        Value::String(text) => check_string(schema, text, path, patterns, errors),
        Value::Number(_) => check_number(schema, value, path, errors),
        Value::Array(items) => check_array(schema, items, path, patterns, errors),
        Value::Object(fields) => check_object(schema, fields, path, patterns, errors),
        Value::Bool(_) | Value::Null => {}
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn bound(schema: &Value, key: &str) -> Option<u64> {
    schema.get(key).and_then(Value::as_u64)
}

/// Like the apiserver, reports only the first of `maxLength`, `minLength` and `pattern` that fails.
fn check_string(
    schema: &Value,
    text: &str,
    path: &str,
    patterns: &Patterns,
    errors: &mut Vec<FieldError>,
) {
    let quoted = serde_json::to_string(text).expect("a string serializes");
    let length = text.chars().count() as u64;
    let error = if let Some(max) = bound(schema, "maxLength").filter(|max| length > *max) {
        Some((format!("Too long: may not be more than {max} bytes"), true))
    } else if let Some(min) = bound(schema, "minLength").filter(|min| length < *min) {
        Some((
            format!("Invalid value: {quoted}: {path} in body should be at least {min} chars long"),
            false,
        ))
    } else {
        schema
            .get("pattern")
            .and_then(Value::as_str)
            .filter(|pattern| !patterns.0[*pattern].is_match(text))
            .map(|pattern| {
                (
                    format!("Invalid value: {quoted}: {path} in body should match '{pattern}'"),
                    false,
                )
            })
    };
    if let Some((detail, blocking)) = error {
        errors.push(FieldError {
            path: path.to_owned(),
            detail,
            blocking,
        });
    }
}

fn check_number(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let number = value.as_f64().expect("a JSON number");
    let mut push = |detail| {
        errors.push(FieldError {
            path: path.to_owned(),
            detail,
            blocking: false,
        })
    };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && number < min
    {
        push(format!(
            "Invalid value: {value}: {path} in body should be greater than or equal to {min}"
        ));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && number > max
    {
        push(format!(
            "Invalid value: {value}: {path} in body should be less than or equal to {max}"
        ));
    }
}

fn check_array(
    schema: &Value,
    items: &[Value],
    path: &str,
    patterns: &Patterns,
    errors: &mut Vec<FieldError>,
) {
    let count = items.len() as u64;
    if let Some(max) = bound(schema, "maxItems")
        && count > max
    {
        errors.push(FieldError {
            path: path.to_owned(),
            detail: format!("Too many: {count}: must have at most {max} items"),
            blocking: true,
        });
    }
    if let Some(min) = bound(schema, "minItems")
        && count < min
    {
        errors.push(FieldError {
            path: path.to_owned(),
            detail: format!(
                "Invalid value: {count}: {path} in body should have at least {min} items"
            ),
            blocking: false,
        });
    }
    if let Some(item_schema) = schema.get("items") {
        for (index, item) in items.iter().enumerate() {
            check(
                item_schema,
                item,
                &format!("{path}[{index}]"),
                patterns,
                errors,
            );
        }
    }
    check_list_keys(schema, items, path, errors);
}

/// `x-kubernetes-list-type`: `set` items and `map` keys must be unique.
fn check_list_keys(schema: &Value, items: &[Value], path: &str, errors: &mut Vec<FieldError>) {
    let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys: Vec<&str> = schema
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let identity = match list_type {
            Some("set") => item.to_string(),
            Some("map") => {
                let key: Map<String, Value> = keys
                    .iter()
                    .filter_map(|k| Some((k.to_string(), item.get(k)?.clone())))
                    .collect();
                Value::Object(key).to_string()
            }
            _ => return,
        };
        if !seen.insert(identity.clone()) {
            errors.push(FieldError {
                path: format!("{path}[{index}]"),
                detail: format!("Duplicate value: {identity}"),
                blocking: false,
            });
        }
    }
}

fn check_object(
    schema: &Value,
    fields: &Map<String, Value>,
    path: &str,
    patterns: &Patterns,
    errors: &mut Vec<FieldError>,
) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(key) {
                errors.push(FieldError {
                    path: join(key),
                    detail: "Required value".into(),
                    blocking: true,
                });
            }
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let open = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    for (key, value) in fields {
        // Every object has these; the apiserver checks them itself, not through the CRD schema.
        if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match (properties.and_then(|p| p.get(key)), additional) {
            (Some(field_schema), _) => check(field_schema, value, &join(key), patterns, errors),
            (None, Some(value_schema)) if value_schema.is_object() => {
                check(value_schema, value, &join(key), patterns, errors);
            }
            (None, _) if open || properties.is_none() => {}
            (None, _) => errors.push(FieldError {
                path: join(key),
                detail: format!("unknown field {:?}", join(key)),
                blocking: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(schema: Value, value: Value) -> Vec<String> {
        let patterns = Patterns::of(&schema);
        let mut errors = Vec::new();
        check(&schema, &value, "spec", &patterns, &mut errors);
        errors
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.detail))
            .collect()
    }

    #[test]
    fn reports_each_keyword_in_the_apiservers_words() {
        let schema = json!({"type": "object", "required": ["uri"], "properties": {
            "uri": {"type": "string", "minLength": 1, "maxLength": 5},
            "db": {"type": "string", "pattern": "^[a-z]+$"},
            "size": {"type": "integer", "minimum": 1, "maximum": 9},
            "engine": {"type": "string", "enum": ["neo4j", "postgres"]},
        }});
        let mut found = problems(
            schema.clone(),
            json!({"uri": "", "db": "A b", "size": 0, "engine": "mysql", "extra": 1}),
        );
        found.sort();
        assert_eq!(
            found,
            [
                "spec.db: Invalid value: \"A b\": spec.db in body should match '^[a-z]+$'",
                "spec.engine: Unsupported value: \"mysql\": supported values: \"neo4j\", \"postgres\"",
                "spec.extra: unknown field \"spec.extra\"",
                "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
                "spec.uri: Invalid value: \"\": spec.uri in body should be at least 1 chars long",
            ]
        );
        assert_eq!(
            problems(schema.clone(), json!({"uri": "toolong", "size": 10})),
            [
                "spec.size: Invalid value: 10: spec.size in body should be less than or equal to 9",
                "spec.uri: Too long: may not be more than 5 bytes",
            ]
        );
        assert_eq!(problems(schema, json!({})), ["spec.uri: Required value"]);
    }

    #[test]
    fn a_wrong_type_blocks_and_says_what_was_expected() {
        let schema = json!({"type": "object", "properties": {"size": {"type": "integer"}}});
        let patterns = Patterns::of(&schema);
        let mut errors = Vec::new();
        check(
            &schema,
            &json!({"size": "ten"}),
            "spec",
            &patterns,
            &mut errors,
        );
        assert_eq!(
            errors,
            [FieldError {
                path: "spec.size".into(),
                detail: "Invalid value: \"string\": spec.size in body must be of type integer: \"string\"".into(),
                blocking: true,
            }]
        );
    }

    #[test]
    fn list_keys_and_sets_must_be_unique() {
        let schema = json!({"type": "object", "properties": {
            "items": {"type": "array", "maxItems": 2, "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        }});
        assert_eq!(
            problems(
                schema,
                json!({"items": [{"name": "a"}, {"name": "b"}, {"name": "a"}], "tags": ["x", "x"]})
            ),
            [
                "spec.items: Too many: 3: must have at most 2 items",
                "spec.items[2]: Duplicate value: {\"name\":\"a\"}",
                "spec.tags[1]: Duplicate value: \"x\"",
            ]
        );
    }
}
