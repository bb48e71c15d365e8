//! JSON in the order the API server writes it: Go's encoding/json writes a struct's fields
//! in their declared order (`metadata` before `containers`, `name` before `namespace`) and
//! a map's keys sorted. serde_json's `Value` sorts every object's keys, which no real
//! metrics-server does; clients (ours among them) may rely on the real order. Strings are
//! escaped as Go's encoder escapes them by default (`SetEscapeHTML(true)`): `<`, `>` and `&`
//! as `\u003c`, `\u003e` and `\u0026`, and U+2028 and U+2029, besides what JSON requires.

use serde_json::Value;

/// The fields of the metrics objects we serve, in their Go structs' order: `TypeMeta`,
/// `ObjectMeta`, `PodMetrics`/`NodeMetrics`, `ContainerMetrics` (the pod and node lists,
/// which clients read with a JSON parser, are only roughly in Go's order). Fields not
/// listed follow, sorted.
const FIELD_ORDER: &[&str] = &[
    "kind",
    "apiVersion",
    "metadata",
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "continue",
    "creationTimestamp",
    "labels",
    "ownerReferences",
    "spec",
    "status",
    "timestamp",
    "window",
    "containers",
    "usage",
    "items",
];

/// Fields whose value is a Go map: their keys are written sorted, whatever they are.
const MAPS: &[&str] = &["labels", "annotations", "usage"];

/// `value` as the API server would write it.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(&mut out, value, false);
    out
}

fn write(out: &mut String, value: &Value, map_keys: bool) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            let rank = |k: &str| {
                if map_keys {
                    return 0;
                }
                FIELD_ORDER.iter().position(|f| *f == k).unwrap_or(FIELD_ORDER.len())
            };
            keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, key);
                out.push(':');
                write(out, &map[key], !map_keys && MAPS.contains(&key.as_str()));
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(out, item, false);
            }
            out.push(']');
        }
        Value::String(s) => push_string(out, s),
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `s` as a JSON string, as Go writes it.
fn push_string(out: &mut String, s: &str) {
    let json = Value::from(s).to_string();
    // U+2028 and U+2029 begin with 0xE2 in UTF-8.
    if !json.bytes().any(|b| matches!(b, b'<' | b'>' | b'&' | 0xE2)) {
        out.push_str(&json);
        return;
    }
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_fields_in_go_order_and_map_keys_sorted() {
        let pod = json!({"containers": [{"usage": {"memory": "1Ki", "cpu": "1m"}, "name": "c"}],
                         "window": "15s", "timestamp": "t",
                         "metadata": {"labels": {"name": "x", "b": "2", "a": "1\""}, "namespace": "n", "name": "p"}});
        assert_eq!(
            to_string(&pod),
            r#"{"metadata":{"name":"p","namespace":"n","labels":{"a":"1\"","b":"2","name":"x"}},"timestamp":"t","window":"15s","containers":[{"name":"c","usage":{"cpu":"1m","memory":"1Ki"}}]}"#
        );
        let back: Value = serde_json::from_str(&to_string(&pod)).expect("valid JSON");
        assert_eq!(back, pod);
    }

    #[test]
    fn escapes_strings_as_go_does() {
        let v = json!({"metadata": {"labels": {"<k>": "r&d\u{2028}\"x\""}}});
        let text = to_string(&v);
        assert_eq!(text, r#"{"metadata":{"labels":{"\u003ck\u003e":"r\u0026d\u2028\"x\""}}}"#);
        assert_eq!(serde_json::from_str::<Value>(&text).expect("valid JSON"), v);
    }
}
