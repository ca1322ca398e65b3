//! Turning what a kernel publishes into what a caller reads: MIME bundles as strings, tracebacks
//! without terminal colours.

use std::collections::HashMap;

use agent_runtime_proto::v1::{ExecError, RichResult};

/// A MIME bundle (`{"text/plain": "...", "image/png": "iVBOR...", ...}`) as a string map: string
/// values are kept as Jupyter sent them (base64 for images), anything else (`application/json`,
/// widget state) becomes its JSON text.
pub fn bundle_to_map(bundle: &serde_json::Value) -> HashMap<String, String> {
    let Some(entries) = bundle.as_object() else {
        return HashMap::new();
    };
    entries
        .iter()
        .map(|(mime, value)| {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                // Some kernels split long text into a list of lines (the notebook format).
                serde_json::Value::Array(parts)
                    if !mime.contains("json") && parts.iter().all(|p| p.is_string()) =>
                {
                    parts.iter().filter_map(|p| p.as_str()).collect()
                }
                other => other.to_string(),
            };
            (mime.clone(), text)
        })
        .collect()
}

/// A rich result event from a MIME bundle.
pub fn rich_result(bundle: &serde_json::Value, is_main_result: bool) -> RichResult {
    RichResult {
        data: bundle_to_map(bundle),
        is_main_result,
    }
}

/// An error event: the traceback split into plain lines.
pub fn exec_error(name: &str, value: &str, traceback: &[String]) -> ExecError {
    ExecError {
        name: name.to_owned(),
        value: value.to_owned(),
        traceback: traceback
            .iter()
            .flat_map(|entry| {
                strip_ansi(entry)
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect(),
    }
}

/// Removes terminal escape sequences (colours, cursor moves, OSC titles) from text.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates, then one final byte in @..~.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ST (ESC \).
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' {
                        break;
                    }
                    if c == '\x1b' {
                        if chars.peek() == Some(&'\\') {
                            chars.next();
                        }
                        break;
                    }
                }
            }
            // nF escapes (charset selection like ESC ( B): intermediates, then one final byte.
            Some(c) if (' '..='/').contains(&c) => {
                for c in chars.by_ref() {
                    if !(' '..='/').contains(&c) {
                        break;
                    }
                }
            }
            // Any other escape is two characters long.
            Some(_) | None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_and_titles_are_removed() {
        assert_eq!(
            strip_ansi("\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"),
            "ZeroDivisionError: division by zero"
        );
        assert_eq!(strip_ansi("\x1b[1;32m----> 1\x1b[39m 1/0"), "----> 1 1/0");
        assert_eq!(strip_ansi("a\x1b]0;title\x07b\x1b]2;t\x1b\\c"), "abc");
        assert_eq!(strip_ansi("x\x1b(By"), "xy");
        assert_eq!(strip_ansi("plain ünïcode"), "plain ünïcode");
        assert_eq!(strip_ansi("cut\x1b["), "cut");
    }

    #[test]
    fn tracebacks_become_plain_lines() {
        let tb = vec![
            "\x1b[0;31m---------\x1b[0m".to_owned(),
            "\x1b[0;31mZeroDivisionError\x1b[0m  Traceback\nCell \x1b[0;32mIn[1], line 1\x1b[0m"
                .to_owned(),
        ];
        let err = exec_error("ZeroDivisionError", "division by zero", &tb);
        assert_eq!(err.name, "ZeroDivisionError");
        assert_eq!(
            err.traceback,
            [
                "---------",
                "ZeroDivisionError  Traceback",
                "Cell In[1], line 1"
            ]
        );
        assert!(err.traceback.iter().all(|l| !l.contains('\x1b')));
    }

    #[test]
    fn mime_bundles_keep_strings_and_serialize_json() {
        let bundle = serde_json::json!({
            "text/plain": "   a\n0  1",
            "text/html": "<table></table>",
            "image/png": "iVBORw0KGgo=\n",
            "application/json": {"a": [1, 2]},
            "text/markdown": ["# t", "itle"],
        });
        let map = rich_result(&bundle, true).data;
        assert_eq!(map["text/plain"], "   a\n0  1");
        assert_eq!(map["text/html"], "<table></table>");
        assert_eq!(map["image/png"], "iVBORw0KGgo=\n");
        assert_eq!(map["application/json"], r#"{"a":[1,2]}"#);
        assert_eq!(map["text/markdown"], "# title");
        assert!(bundle_to_map(&serde_json::json!("not a bundle")).is_empty());
    }
}
