//! `conveyor stages`: stage kinds described from the registry, with each
//! option's type, default and doc taken from the kind's options schema.

use std::fmt::Write as _;

use serde_json::Value;

use crate::config::CommonKeys;
use crate::stage::KindSpec;
use crate::stages::Registry;

fn io(spec: &KindSpec) -> String {
    let out = match spec.output {
        crate::stage::Output::Fixed(t) => t.name().to_string(),
        crate::stage::Output::SameAsInput => "same as input".to_string(),
    };
    if spec.is_source() {
        format!("(source) -> {out}")
    } else {
        format!("{} -> {out}", spec.accepts)
    }
}

/// One line per kind.
pub fn list(registry: &Registry) -> String {
    let width = registry
        .kinds()
        .iter()
        .map(|k| k.name.len())
        .max()
        .unwrap_or(0);
    let io_width = registry
        .kinds()
        .iter()
        .map(|k| io(k).len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for k in registry.kinds() {
        let _ = writeln!(
            out,
            "{:<width$}  {:<io_width$}  {}",
            k.name,
            io(k),
            k.summary
        );
    }
    out.push_str("\n`conveyor stages KIND` shows a kind's options.\n");
    out
}

/// An option's type in words, resolving `$ref`s into the schema's `$defs`.
fn type_of(prop: &Value, defs: Option<&Value>) -> String {
    if let Some(r) = prop.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        if let Some(def) = defs.and_then(|d| d.get(name)) {
            return type_of(def, defs);
        }
        return name.to_string();
    }
    if let Some(variants) = prop
        .get("oneOf")
        .or_else(|| prop.get("anyOf"))
        .and_then(Value::as_array)
    {
        let parts: Vec<String> = variants
            .iter()
            .filter(|v| v.get("type").and_then(Value::as_str) != Some("null"))
            .map(|v| match v.get("const") {
                Some(c) => c.as_str().map_or(c.to_string(), |s| format!("\"{s}\"")),
                None => type_of(v, defs),
            })
            .collect();
        return parts.join(" | ");
    }
    if let Some(values) = prop.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| v.as_str().map_or(v.to_string(), |s| format!("\"{s}\"")))
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let ty = match prop.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| *s != "null")
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".into(),
    };
    if ty == "array"
        && let Some(items) = prop.get("items")
    {
        return format!("array of {}", type_of(items, defs));
    }
    ty
}

fn options_table(schema: &Value, out: &mut String) {
    let defs = schema.get("$defs");
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        out.push_str("  (no options)\n");
        return;
    };
    let rows: Vec<(String, String, String, String)> = props
        .iter()
        .map(|(name, p)| {
            let default = match p.get("default") {
                None | Some(Value::Null) => "-".to_string(),
                Some(v) => v.to_string(),
            };
            let doc = p
                .get("description")
                .and_then(Value::as_str)
                .or_else(|| {
                    p.get("$ref").and_then(Value::as_str).and_then(|r| {
                        defs?
                            .get(r.rsplit('/').next()?)?
                            .get("description")?
                            .as_str()
                    })
                })
                .unwrap_or("")
                .replace('\n', " ");
            (name.clone(), type_of(p, defs), default, doc)
        })
        .collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let w2 = rows.iter().map(|r| r.2.len()).max().unwrap_or(0);
    for (name, ty, default, doc) in rows {
        let _ = writeln!(out, "  {name:<w0$}  {ty:<w1$}  {default:<w2$}  {doc}");
    }
}

/// A kind in full: payload types, its options, and the keys every stage has.
pub fn kind(spec: &KindSpec) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: {}", spec.name, spec.summary);
    let _ = writeln!(out, "payload: {}\n", io(spec));
    out.push_str("options (name, type, default, description):\n");
    let schema = (spec.schema)();
    options_table(schema.as_value(), &mut out);
    out.push_str("\nkeys of every stage:\n");
    let common = schemars::schema_for!(CommonKeys);
    options_table(common.as_value(), &mut out);
    out
}
