//! `conveyor schema`: a JSON Schema of pipeline files, put together from the
//! registry's option types (never written by hand), for editors such as
//! Taplo / Even Better TOML.

use serde_json::{Map, Value, json};

use crate::config::{CommonKeys, PipelineKeys};
use crate::stages::Registry;

/// Point every `#/$defs/X` reference in `v` at `#/$defs/{prefix}X`, so the
/// definitions of several option types can share one `$defs`.
fn prefix_refs(v: &mut Value, prefix: &str) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
            {
                *r = format!("#/$defs/{prefix}{name}");
            }
            for child in map.values_mut() {
                prefix_refs(child, prefix);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| prefix_refs(c, prefix)),
        _ => {}
    }
}

/// A type's schema with its definitions moved into `defs` under `prefix`.
fn hoist(schema: schemars::Schema, prefix: &str, defs: &mut Map<String, Value>) -> Value {
    let mut v = schema.to_value();
    prefix_refs(&mut v, prefix);
    if let Some(Value::Object(own)) = v.as_object_mut().and_then(|m| m.remove("$defs")) {
        for (k, d) in own {
            defs.insert(format!("{prefix}{k}"), d);
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.remove("$schema");
    }
    v
}

/// The schema of pipeline files that use the kinds in `registry`.
pub fn pipeline_schema(registry: &Registry) -> Value {
    let mut defs = Map::new();
    let pipeline = hoist(schemars::schema_for!(PipelineKeys), "pipeline.", &mut defs);
    let common = hoist(schemars::schema_for!(CommonKeys), "stage.", &mut defs);
    let common_props = common
        .get("properties")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let kinds: Vec<Value> = registry
        .kinds()
        .iter()
        .map(|k| {
            let own = hoist((k.schema)(), &format!("{}.", k.name), &mut defs);
            let mut props = common_props.as_object().cloned().unwrap_or_default();
            if let Some(Value::Object(p)) = own.get("properties") {
                props.extend(p.clone());
            }
            props.insert(
                "kind".into(),
                json!({"const": k.name, "description": k.summary}),
            );
            json!({
                "title": format!("stage of kind `{}`", k.name),
                "description": k.summary,
                "type": "object",
                "properties": props,
                "required": ["name", "kind"],
                "additionalProperties": false,
            })
        })
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "conveyor pipeline",
        "description": "A conveyor pipeline: [pipeline] settings and [[stage]] tables (see `conveyor stages`).",
        "type": "object",
        "properties": {
            "pipeline": pipeline,
            "stage": {"type": "array", "items": {"oneOf": kinds}},
        },
        "additionalProperties": false,
        "$defs": defs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option of every kind (and every common key) says what it is
    /// for: `conveyor stages` and editors show these words.
    #[test]
    fn every_option_has_a_description() {
        let schema = pipeline_schema(&Registry::builtin());
        let kinds = schema["properties"]["stage"]["items"]["oneOf"]
            .as_array()
            .expect("kinds");
        let mut missing = Vec::new();
        for k in kinds {
            let kind = k["properties"]["kind"]["const"].as_str().unwrap_or("?");
            for (name, p) in k["properties"].as_object().expect("properties") {
                let described = p.get("description").and_then(Value::as_str);
                if described.is_none_or(|d| d.trim().is_empty()) {
                    missing.push(format!("{kind}.{name}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "options without a description: {missing:?}"
        );
    }
}
