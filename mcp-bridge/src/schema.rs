//! Makes the generated input schemas compact: `tools/list` goes into every model's context, so
//! it should carry meaning, not boilerplate. Drops `$schema`, `default: null`/`false`, number
//! formats, `minimum: 0` (unsigned integers), `["string","null"]` and `anyOf [T, null]` unions
//! (optional fields are simply not `required`), and inlines enums as
//! `{"type": "string", "enum": [...]}`.

use serde_json::{Map, Value};

/// The compact form of one input schema.
pub fn compact(schema: &Map<String, Value>) -> Map<String, Value> {
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut v = Value::Object(schema.clone());
    simplify(&mut v, &defs);
    match v {
        Value::Object(mut m) => {
            m.remove("$defs");
            m.remove("$schema");
            m
        }
        _ => schema.clone(),
    }
}

fn simplify(v: &mut Value, defs: &Map<String, Value>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(variants)) = m.get("anyOf") {
                let non_null: Vec<&Value> = variants
                    .iter()
                    .filter(|x| x.get("type").and_then(Value::as_str) != Some("null"))
                    .collect();
                if let [Value::Object(only)] = non_null.as_slice() {
                    let only = only.clone();
                    m.remove("anyOf");
                    for (k, val) in only {
                        // The property's own description wins over the type's.
                        m.entry(k).or_insert(val);
                    }
                }
            }
            if let Some(target) = m
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
                .and_then(|name| defs.get(name))
                .cloned()
            {
                m.remove("$ref");
                if let Value::Object(t) = target {
                    for (k, val) in t {
                        // A type's doc comment speaks to Rust readers, not to the model.
                        if k != "description" {
                            m.entry(k).or_insert(val);
                        }
                    }
                }
            }
            if m.get("default")
                .is_some_and(|d| d.is_null() || d == &Value::Bool(false))
            {
                m.remove("default");
            }
            if m.get("minimum").and_then(Value::as_i64) == Some(0) {
                m.remove("minimum");
            }
            m.remove("format");
            if let Some(Value::Array(types)) = m.get("type") {
                let non_null: Vec<Value> = types
                    .iter()
                    .filter(|t| t.as_str() != Some("null"))
                    .cloned()
                    .collect();
                if non_null.len() == 1 {
                    m.insert("type".into(), non_null[0].clone());
                }
            }
            if let Some(Value::Array(variants)) = m.get("oneOf") {
                let consts: Option<Vec<Value>> =
                    variants.iter().map(|x| x.get("const").cloned()).collect();
                if let Some(consts) = consts {
                    m.remove("oneOf");
                    m.insert("type".into(), Value::String("string".into()));
                    m.insert("enum".into(), Value::Array(consts));
                }
            }
            for child in m.values_mut() {
                simplify(child, defs);
            }
        }
        Value::Array(items) => {
            for child in items {
                simplify(child, defs);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::compact;

    #[test]
    fn drops_boilerplate_and_inlines_enums() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": {"Language": {"description": "A language.", "oneOf": [
                {"const": "python", "type": "string"}, {"const": "shell", "type": "string"}]}},
            "type": "object",
            "properties": {
                "language": {"$ref": "#/$defs/Language", "description": "Which one."},
                "timeout": {"type": ["number", "null"], "format": "double", "default": null},
                "network": {"description": "Egress.", "anyOf": [
                    {"$ref": "#/$defs/Language"}, {"type": "null"}]},
                "count": {"type": "integer", "minimum": 0, "default": false},
            },
            "required": ["language"],
        });
        let out = compact(schema.as_object().expect("object"));
        assert_eq!(
            serde_json::Value::Object(out),
            json!({
                "type": "object",
                "properties": {
                    "language": {"description": "Which one.", "type": "string",
                                 "enum": ["python", "shell"]},
                    "timeout": {"type": "number"},
                    "network": {"description": "Egress.", "type": "string",
                                "enum": ["python", "shell"]},
                    "count": {"type": "integer"},
                },
                "required": ["language"],
            })
        );
    }
}
