//! Structural validation of an object against a CRD's OpenAPI v3 schema, in-process: the checks the
//! kube-apiserver runs before the CEL rules, for the subset of OpenAPI that structural schemas allow.
//! Messages have the apiserver's wording, so the same expected fragment works here and against a
//! real apiserver. Unknown fields are errors, as with kubectl's default strict field validation.

use regex::Regex;
use serde_json::{Map, Value};

/// Every structural error in `object`, each rendered the way the apiserver renders it.
pub fn validate(schema: &Value, object: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, object, "", &mut errors);
    errors
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn json(value: &Value) -> String {
    serde_json::to_string(value).expect("a JSON value serializes")
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(value: &Value, wanted: &str) -> bool {
    let actual = type_name(value);
    actual == wanted || (wanted == "number" && actual == "integer")
}

fn number_text(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let at = if path.is_empty() { "<root>" } else { path };
    if value.is_null() && flag(schema, "nullable") {
        return;
    }

    if flag(schema, "x-kubernetes-int-or-string") {
        if !matches!(type_name(value), "integer" | "string") {
            errors.push(format!(
                "{at}: Invalid value: \"{}\": {at} in body must be of type integer or string",
                type_name(value)
            ));
            return;
        }
    } else if let Some(wanted) = schema.get("type").and_then(Value::as_str)
        && !has_type(value, wanted)
    {
        let actual = type_name(value);
        errors.push(format!(
            "{at}: Invalid value: \"{actual}\": {at} in body must be of type {wanted}: \"{actual}\""
        ));
        return;
    }

    check_value_constraints(schema, value, at, errors);
    check_combinators(schema, value, path, errors);

    match value {
        Value::Object(object) => check_object(schema, object, path, errors),
        Value::Array(items) => check_array(schema, items, path, at, errors),
        _ => {}
    }
}

fn check_value_constraints(schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed.iter().map(json).collect();
        errors.push(format!(
            "{at}: Unsupported value: {}: supported values: {}",
            json(value),
            supported.join(", ")
        ));
    }

    if let Value::String(text) = value {
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            let regex = Regex::new(pattern).unwrap_or_else(|e| panic!("pattern {pattern:?} at {at}: {e}"));
            if !regex.is_match(text) {
                errors.push(format!(
                    "{at}: Invalid value: {}: {at} in body should match '{pattern}'",
                    json(value)
                ));
            }
        }
        let length = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && length < min
        {
            errors.push(format!(
                "{at}: Invalid value: {}: {at} in body should be at least {min} chars long",
                json(value)
            ));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            errors.push(format!("{at}: Too long: may not be more than {max} bytes"));
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time") && !is_date_time(text) {
            errors.push(format!(
                "{at}: Invalid value: {}: {at} in body must be of type date-time: {}",
                json(value),
                json(value)
            ));
        }
    }

    if let Value::Number(number) = value {
        let n = number.as_f64().expect("a JSON number is an f64");
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            errors.push(format!(
                "{at}: Invalid value: {number}: {at} in body should be greater than or equal to {}",
                number_text(min)
            ));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            errors.push(format!(
                "{at}: Invalid value: {number}: {at} in body should be less than or equal to {}",
                number_text(max)
            ));
        }
    }
}

fn is_date_time(text: &str) -> bool {
    Regex::new(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
        .expect("a valid regex")
        .is_match(text)
}

/// `allOf`, `anyOf` and `oneOf`, which a structural schema may use for value validation only.
fn check_combinators(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let at = if path.is_empty() { "<root>" } else { path };
    let branches = |key: &str| {
        schema
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let passes = |branch: &Value| {
        let mut branch_errors = Vec::new();
        check(branch, value, path, &mut branch_errors);
        branch_errors.is_empty()
    };

    for branch in branches("allOf") {
        check(&branch, value, path, errors);
    }
    let any_of = branches("anyOf");
    if !any_of.is_empty() && !any_of.iter().any(passes) {
        errors.push(format!(
            "{at}: Invalid value: {}: must validate at least one schema (anyOf)",
            json(value)
        ));
    }
    let one_of = branches("oneOf");
    if !one_of.is_empty() {
        let valid = one_of.iter().filter(|b| passes(b)).count();
        if valid != 1 {
            errors.push(format!(
                "{at}: Invalid value: {}: must validate one and only one schema (oneOf). Found {valid} valid alternatives",
                json(value)
            ));
        }
    }
}

fn check_object(schema: &Value, object: &Map<String, Value>, path: &str, errors: &mut Vec<String>) {
    let properties = schema.get("properties").and_then(Value::as_object);
    // The apiserver prunes a `null` for a field that is not nullable: it counts as absent.
    let present = |name: &str| {
        object.get(name).is_some_and(|v| {
            !v.is_null()
                || properties
                    .and_then(|p| p.get(name))
                    .is_some_and(|s| flag(s, "nullable"))
        })
    };

    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = required.as_str().expect("required names are strings");
        if !present(name) {
            errors.push(format!("{}: Required value", child(path, name)));
        }
    }

    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let preserve_unknown = flag(schema, "x-kubernetes-preserve-unknown-fields");
    for (name, value) in object {
        if !present(name) {
            continue;
        }
        let field = child(path, name);
        match (properties.and_then(|p| p.get(name)), additional) {
            (Some(field_schema), _) => check(field_schema, value, &field, errors),
            (None, Some(value_schema)) => check(value_schema, value, &field, errors),
            (None, None) if properties.is_some() && !preserve_unknown => {
                errors.push(format!("unknown field \"{field}\""));
            }
            (None, None) => {}
        }
    }
}

fn check_array(schema: &Value, items: &[Value], path: &str, at: &str, errors: &mut Vec<String>) {
    let count = items.len() as u64;
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && count > max
    {
        errors.push(format!("{at}: Too many: {count}: must have at most {max} items"));
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && count < min
    {
        errors.push(format!(
            "{at}: Invalid value: {count}: {at} in body should have at least {min} items"
        ));
    }

    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
        let keys: Vec<&str> = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for item in items {
            let key: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}={}", json(item.get(*k).unwrap_or(&Value::Null))))
                .collect();
            let key = key.join(",");
            if !seen.insert(key.clone()) {
                errors.push(format!(".{path}: duplicate entries for key [{key}]"));
            }
        }
    }

    if let Some(item_schema) = schema.get("items") {
        for (index, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{path}[{index}]"), errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::validate;
    use serde_json::json;

    fn schema() -> serde_json::Value {
        json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
                "count": {"type": "integer", "minimum": 0},
                "mode": {"type": "string", "enum": ["On", "Off"]},
                "tags": {"type": "array", "maxItems": 2, "minItems": 1, "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "when": {"type": "string", "format": "date-time"},
                "surge": {"x-kubernetes-int-or-string": true, "minimum": 0, "pattern": "^[0-9]+%$"},
                "conditions": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object", "properties": {"type": {"type": "string"}}}
                },
                "source": {
                    "type": "object",
                    "properties": {"a": {"type": "object"}, "b": {"type": "object"}},
                    "oneOf": [{"required": ["a"]}, {"required": ["b"]}]
                },
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {}},
                "nullable": {"type": "string", "nullable": true}
            }
        })
    }

    fn errors(object: serde_json::Value) -> Vec<String> {
        validate(&schema(), &object)
    }

    #[test]
    fn a_conforming_object_has_no_errors() {
        let object = json!({
            "name": "abc", "count": 3, "mode": "On", "tags": ["x"], "labels": {"k": "v"},
            "when": "2026-01-02T03:04:05Z", "surge": "25%", "conditions": [{"type": "A"}, {"type": "B"}],
            "source": {"a": {}}, "free": {"anything": 1}, "nullable": null
        });
        assert_eq!(errors(object), Vec::<String>::new());
    }

    #[test]
    fn each_keyword_is_checked() {
        let cases = [
            (json!({}), "name: Required value"),
            (json!({"name": null}), "name: Required value"),
            (
                json!({"name": ""}),
                "name in body should be at least 1 chars long",
            ),
            (
                json!({"name": "abcdef"}),
                "name: Too long: may not be more than 5 bytes",
            ),
            (json!({"name": "AB"}), "name in body should match '^[a-z]+$'"),
            (
                json!({"name": "a", "count": -1}),
                "count in body should be greater than or equal to 0",
            ),
            (
                json!({"name": "a", "count": "1"}),
                "count in body must be of type integer: \"string\"",
            ),
            (
                json!({"name": "a", "count": 1.5}),
                "count in body must be of type integer: \"number\"",
            ),
            (
                json!({"name": "a", "mode": "Auto"}),
                "mode: Unsupported value: \"Auto\": supported values: \"On\", \"Off\"",
            ),
            (
                json!({"name": "a", "tags": ["x", "y", "z"]}),
                "tags: Too many: 3: must have at most 2 items",
            ),
            (
                json!({"name": "a", "tags": []}),
                "tags in body should have at least 1 items",
            ),
            (
                json!({"name": "a", "tags": [1]}),
                "tags[0] in body must be of type string",
            ),
            (
                json!({"name": "a", "labels": {"k": 1}}),
                "labels.k in body must be of type string",
            ),
            (
                json!({"name": "a", "when": "yesterday"}),
                "when in body must be of type date-time",
            ),
            (
                json!({"name": "a", "surge": -1}),
                "surge in body should be greater than or equal to 0",
            ),
            (
                json!({"name": "a", "surge": "25"}),
                "surge in body should match '^[0-9]+%$'",
            ),
            (
                json!({"name": "a", "surge": true}),
                "surge in body must be of type integer or string",
            ),
            (
                json!({"name": "a", "conditions": [{"type": "A"}, {"type": "A"}]}),
                ".conditions: duplicate entries for key [type=\"A\"]",
            ),
            (
                json!({"name": "a", "source": {}}),
                "must validate one and only one schema (oneOf). Found 0",
            ),
            (
                json!({"name": "a", "source": {"a": {}, "b": {}}}),
                "must validate one and only one schema (oneOf). Found 2",
            ),
            (json!({"name": "a", "extra": 1}), "unknown field \"extra\""),
        ];
        for (object, expected) in cases {
            let found = errors(object.clone());
            assert!(
                found.iter().any(|e| e.contains(expected)),
                "{object} should fail with {expected:?}, got {found:?}"
            );
        }
    }

    #[test]
    fn type_errors_stop_further_checks_of_that_field() {
        let found = errors(json!({"name": 5}));
        assert_eq!(
            found,
            vec!["name: Invalid value: \"integer\": name in body must be of type string: \"integer\""]
        );
    }
}
