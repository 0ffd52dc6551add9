//! Schema plumbing shared by the five kinds: the root object schema, and the small pieces the derive
//! cannot express (CEL rules, integers without a format, int-or-string values with a pattern).
//!
//! The CRD schemas follow the shape `controller-gen` gives wasmCloud's Go types: optional fields are
//! simply absent from `required` and never `nullable` (a `null` is pruned by the apiserver like an
//! absent field), and the root declares `apiVersion`, `kind` and `metadata`.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};

/// Where the kind's own fields live in the object.
pub(crate) enum Layout {
    /// Under `spec`, which is required.
    Spec,
    /// Directly at the root of the object, next to `metadata` (Host has no `spec` wrapper).
    Root,
}

/// The schema of a whole custom resource object: `apiVersion`, `kind`, `metadata`, the fields of `S`
/// (nested under `spec` or at the root, per `layout`) and an optional `status` of type `St`.
pub(crate) fn object<S: JsonSchema, St: JsonSchema>(
    generator: &mut SchemaGenerator,
    description: &str,
    layout: Layout,
) -> Schema {
    let mut properties = Map::new();
    properties.insert(
        "apiVersion".into(),
        json!({
            "description": "The versioned schema of this object: runtime.wasmcloud.dev/v1alpha1.",
            "type": "string",
        }),
    );
    properties.insert(
        "kind".into(),
        json!({
            "description": "The REST resource this object represents, in CamelCase.",
            "type": "string",
        }),
    );
    properties.insert("metadata".into(), json!({ "type": "object" }));

    let mut fields = generator.subschema_for::<S>();
    without_null(&mut fields);
    let mut required: Vec<Value> = Vec::new();
    match layout {
        Layout::Spec => {
            properties.insert("spec".into(), fields.to_value());
            required.push("spec".into());
        }
        Layout::Root => {
            let fields = fields.to_value();
            if let Some(own) = fields.get("properties").and_then(Value::as_object) {
                properties.extend(own.clone());
            }
            if let Some(own) = fields.get("required").and_then(Value::as_array) {
                required.extend(own.iter().cloned());
            }
        }
    }

    let mut status = generator.subschema_for::<St>();
    without_null(&mut status);
    properties.insert("status".into(), status.to_value());

    let mut root = json!({
        "description": description,
        "type": "object",
        "properties": properties,
    });
    if !required.is_empty() {
        root["required"] = Value::Array(required);
    }
    Schema::try_from(root).expect("an object schema")
}

/// Removes the `null` alternative schemars adds for `Option` fields, everywhere in `schema`.
///
/// Optional fields are serialized only when set, and the apiserver prunes a `null` for a
/// non-nullable field, so `nullable: true` would only widen the schema beyond wasmCloud's.
pub(crate) fn without_null(schema: &mut Schema) {
    strip_null(schema.as_object_mut().map(|o| o as &mut Map<String, Value>));
}

fn strip_null(object: Option<&mut Map<String, Value>>) {
    let Some(object) = object else { return };

    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            object.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(values)) = object.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    // `Option<T>` where T's schema is itself a combinator: `anyOf: [T, {type: null}]`.
    if let Some(Value::Array(any_of)) = object.get("anyOf")
        && any_of.len() == 2
        && any_of[1].get("type") == Some(&Value::from("null"))
        && let Some(Value::Object(inner)) = any_of.first().cloned()
    {
        object.remove("anyOf");
        for (key, value) in inner {
            object.entry(key).or_insert(value);
        }
    }

    for (key, value) in object.iter_mut() {
        match key.as_str() {
            "properties" | "patternProperties" => {
                if let Value::Object(children) = value {
                    children.values_mut().for_each(|c| strip_null(c.as_object_mut()));
                }
            }
            "items" | "additionalProperties" | "not" => strip_null(value.as_object_mut()),
            "anyOf" | "oneOf" | "allOf" => {
                if let Value::Array(branches) = value {
                    branches.iter_mut().for_each(|b| strip_null(b.as_object_mut()));
                }
            }
            _ => {}
        }
    }
}

/// Adds CEL validation rules (`x-kubernetes-validations`) to a schema.
pub(crate) fn add_rules(schema: &mut Schema, rules: &[(&str, &str)]) {
    let rules = rules
        .iter()
        .map(|(rule, message)| json!({ "rule": rule, "message": message }));
    let object = schema.ensure_object();
    match object.get_mut("x-kubernetes-validations") {
        Some(Value::Array(existing)) => existing.extend(rules),
        _ => {
            object.insert("x-kubernetes-validations".into(), Value::Array(rules.collect()));
        }
    }
}

/// Marks a list of objects as a map keyed by `keys`, so that server-side apply merges its entries by
/// key and the apiserver rejects duplicate keys.
pub(crate) fn list_map(schema: &mut Schema, keys: &[&str]) {
    let object = schema.ensure_object();
    object.insert("x-kubernetes-list-type".into(), "map".into());
    object.insert("x-kubernetes-list-map-keys".into(), json!(keys));
}

/// An integer with no `format`, like Go's `int` in wasmCloud's schema.
pub(crate) fn plain_integer(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer" })
}

/// A 32-bit integer, for unsigned Go fields that controller-gen declares as `int32`.
pub(crate) fn int32(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "format": "int32" })
}

/// A non-negative integer or a percentage string matching `percent_pattern`, like a Kubernetes
/// Deployment's `maxSurge` and `maxUnavailable`. `minimum` applies to the integer form only and
/// `pattern` to the string form only.
pub(crate) fn int_or_percent(percent_pattern: &str) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        // Explicitly not nullable (kube marks optional int-or-string fields nullable otherwise): a
        // `null` is then pruned like an absent field instead of reaching the CEL rules.
        "nullable": false,
        "minimum": 0,
        "pattern": percent_pattern,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_null_removes_every_null_alternative() {
        let mut schema = Schema::try_from(json!({
            "type": "object",
            "properties": {
                "name": { "type": ["string", "null"] },
                "mode": { "type": ["string", "null"], "enum": ["A", "B", null] },
                "list": { "type": ["array", "null"], "items": { "type": ["integer", "null"] } },
                "map": { "type": ["object", "null"], "additionalProperties": { "type": ["string", "null"] } },
                "inner": { "anyOf": [{ "type": "object", "properties": { "x": { "type": "string" } } }, { "type": "null" }] },
            },
        }))
        .unwrap();
        without_null(&mut schema);
        assert_eq!(
            schema.to_value(),
            json!({
                "type": "object",
                "properties": {
                    "name": { "type": "string" },
                    "mode": { "type": "string", "enum": ["A", "B"] },
                    "list": { "type": "array", "items": { "type": "integer" } },
                    "map": { "type": "object", "additionalProperties": { "type": "string" } },
                    "inner": { "type": "object", "properties": { "x": { "type": "string" } } },
                },
            })
        );
    }

    #[test]
    fn add_rules_appends_to_existing_rules() {
        let mut schema = Schema::default();
        add_rules(&mut schema, &[("self.a", "needs a")]);
        add_rules(&mut schema, &[("self.b", "needs b")]);
        assert_eq!(
            schema.to_value()["x-kubernetes-validations"],
            json!([{ "rule": "self.a", "message": "needs a" }, { "rule": "self.b", "message": "needs b" }])
        );
    }
}
