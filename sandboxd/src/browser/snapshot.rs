//! The page as a model reads it. The seed snapshot: url, title, a viewport screenshot, the body's
//! text (≤ 5000 chars) and one line per interactive element with a ref. The outline: Playwright's
//! AI-mode aria snapshot with our refs, cut to a budget.

use base64::Engine as _;
use futures::future::join_all;
use playwright_rs::protocol::Page;
use playwright_rs::{AriaSnapshotMode, AriaSnapshotOptions, ScreenshotOptions, ScreenshotType};
use serde::Deserialize;
use serde_json::Value;

use super::error::Result;
use super::js;
use super::refs::Refs;

/// Most characters of body text a snapshot carries.
pub const TEXT_LIMIT: usize = 5_000;
/// Most elements listed; the rest are counted in a last line.
const ELEMENT_LIMIT: usize = 300;
/// Default budget of the aria outline.
pub const OUTLINE_DEFAULT_CHARS: usize = 20_000;

/// Roles an agent can act on.
const INTERACTIVE_ROLES: [&str; 19] = [
    "button",
    "link",
    "textbox",
    "searchbox",
    "checkbox",
    "radio",
    "combobox",
    "listbox",
    "option",
    "menuitem",
    "menuitemcheckbox",
    "menuitemradio",
    "tab",
    "switch",
    "slider",
    "spinbutton",
    "treeitem",
    "gridcell",
    "iframe",
];

/// The seed snapshot.
pub struct Snapshot {
    /// Base64 PNG of the viewport.
    pub screenshot: String,
    /// Body innerText, cut to [`TEXT_LIMIT`].
    pub text: String,
    /// One line per interactive element.
    pub elements: String,
}

/// One node of the AI-mode aria tree that an agent may act on.
struct Candidate {
    aria: String,
    role: String,
    name: String,
    pointer: bool,
}

/// What the page says about one element (see `js::DESCRIBE`).
#[derive(Debug, Default, Deserialize)]
struct Described {
    key: String,
    tag: String,
    #[serde(rename = "type")]
    input_type: Option<String>,
    role: Option<String>,
    placeholder: Option<String>,
    href: Option<String>,
    value: Option<String>,
    options: Option<Vec<String>>,
    disabled: Option<bool>,
    checked: Option<bool>,
    text: Option<String>,
}

/// Takes the seed snapshot of `page`, giving refs to its interactive elements.
pub async fn snapshot(page: &Page, refs: &mut Refs) -> Result<Snapshot> {
    let png = page
        .screenshot(
            ScreenshotOptions::builder()
                .screenshot_type(ScreenshotType::Png)
                .build(),
        )
        .await?;
    let text: String = page.evaluate::<(), String>(js::BODY_TEXT, None).await?;
    let elements = elements(page, refs).await?;
    Ok(Snapshot {
        screenshot: base64::engine::general_purpose::STANDARD.encode(png),
        text: cut(&text, TEXT_LIMIT),
        elements,
    })
}

/// The interactive elements of `page`, one line each, with refs.
async fn elements(page: &Page, refs: &mut Refs) -> Result<String> {
    let tree = page
        .aria_snapshot_json(AriaSnapshotOptions::default().mode(AriaSnapshotMode::Ai))
        .await?;
    let mut found = Vec::new();
    collect(&tree, "", &mut found);
    let total = found.len();
    found.truncate(ELEMENT_LIMIT);
    let keys: Vec<String> = found.iter().map(|_| refs.propose_key()).collect();
    let described = join_all(found.iter().zip(&keys).map(|(c, key)| async move {
        page.get_by_ref(&c.aria)
            .evaluate::<Described, _>(js::DESCRIBE, Some(key.as_str()))
            .await
            .ok()
    }))
    .await;
    let mut lines = Vec::with_capacity(found.len());
    for (candidate, info) in found.iter().zip(described) {
        // Gone between the snapshot and now: nothing to act on.
        let Some(info) = info else { continue };
        if candidate.role == "iframe" {
            continue;
        }
        let id = refs.ref_for(&info.key, &candidate.aria);
        lines.push(line(&id, candidate, &info));
    }
    if total > ELEMENT_LIMIT {
        lines.push(format!(
            "… {} more elements not listed; scroll, or use browser_aria_snapshot",
            total - ELEMENT_LIMIT
        ));
    }
    Ok(lines.join("\n"))
}

/// Walks the JSON aria tree in document order, keeping nodes an agent can act on.
fn collect(node: &Value, parent_role: &str, out: &mut Vec<Candidate>) {
    match node {
        Value::Array(items) => items.iter().for_each(|n| collect(n, parent_role, out)),
        Value::Object(map) => {
            let role = map.get("role").and_then(Value::as_str).unwrap_or("");
            let pointer = map.get("cursor").and_then(Value::as_str) == Some("pointer");
            if let Some(aria) = map.get("ref").and_then(Value::as_str) {
                // A select's options are chosen through the select, not clicked.
                let select_option = role == "option" && parent_role == "combobox";
                if (INTERACTIVE_ROLES.contains(&role) && !select_option)
                    || (pointer && role != "text")
                {
                    out.push(Candidate {
                        aria: aria.to_string(),
                        role: role.to_string(),
                        name: map
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        pointer,
                    });
                }
            }
            if let Some(children) = map.get("children") {
                collect(children, role, out);
            }
        }
        _ => {}
    }
}

/// `[ref_2] input[type=text] placeholder="Search"`, `[ref_3] a "Home" -> URL`.
fn line(id: &str, c: &Candidate, d: &Described) -> String {
    let mut out = format!("[{id}] ");
    match (&d.input_type, &d.role) {
        (Some(t), _) => out.push_str(&format!("{}[type={t}]", d.tag)),
        (None, Some(role)) => out.push_str(&format!("{}[role={role}]", d.tag)),
        (None, None) => out.push_str(&d.tag),
    }
    let mut name = if c.name.is_empty() {
        d.text.clone().unwrap_or_default()
    } else {
        c.name.clone()
    };
    // An unlabelled select is named after its options' text; the options are listed anyway.
    // An input named by its placeholder says so once, as the placeholder.
    if d.options.as_ref().is_some_and(|o| o.join(" ") == name)
        || d.placeholder.as_deref() == Some(name.as_str())
    {
        name.clear();
    }
    if !name.is_empty() {
        out.push_str(&format!(" {:?}", cut(&name, 100)));
    }
    if let Some(p) = &d.placeholder {
        out.push_str(&format!(" placeholder={:?}", cut(p, 60)));
    }
    if let Some(v) = &d.value {
        if d.tag != "select" {
            out.push_str(&format!(" value={:?}", cut(v, 60)));
        }
    }
    if let Some(options) = &d.options {
        let shown: Vec<String> = options.iter().map(|o| format!("{o:?}")).collect();
        out.push_str(&format!(" options=[{}]", shown.join(", ")));
        if let Some(v) = &d.value {
            out.push_str(&format!(" value={v:?}"));
        }
    }
    if d.checked == Some(true) {
        out.push_str(" checked");
    }
    if d.disabled == Some(true) {
        out.push_str(" disabled");
    }
    if c.pointer && !INTERACTIVE_ROLES.contains(&c.role.as_str()) {
        out.push_str(" (clickable)");
    }
    if let Some(href) = &d.href {
        out.push_str(&format!(" -> {href}"));
    }
    out
}

/// The AI-mode outline with our refs (`[ref=ref_3]`), cut to `max_chars` at a line end.
/// Returns the outline, whether it was cut, and the full length.
pub async fn outline(
    page: &Page,
    refs: &mut Refs,
    max_chars: usize,
) -> Result<(String, bool, usize)> {
    let raw = page
        .aria_snapshot(AriaSnapshotOptions::default().mode(AriaSnapshotMode::Ai))
        .await?;
    let total = raw.chars().count();
    let mut kept = String::new();
    let mut truncated = false;
    for l in raw.lines() {
        if kept.chars().count() + l.chars().count() + 1 > max_chars {
            truncated = true;
            break;
        }
        kept.push_str(l);
        kept.push('\n');
    }
    // Key every element named within the budget, then rewrite its aria ref into ours.
    let arias: Vec<String> = kept
        .match_indices("[ref=")
        .filter_map(|(i, _)| {
            let rest = &kept[i + 5..];
            rest.find(']').map(|end| rest[..end].to_string())
        })
        .collect();
    let keys: Vec<String> = arias.iter().map(|_| refs.propose_key()).collect();
    let found = join_all(arias.iter().zip(&keys).map(|(aria, key)| async move {
        page.get_by_ref(aria)
            .evaluate::<String, _>(js::KEY, Some(key.as_str()))
            .await
            .ok()
    }))
    .await;
    let mut out = kept;
    for (aria, key) in arias.iter().zip(found) {
        let replacement = match key {
            Some(key) => format!("[ref={}]", refs.ref_for(&key, aria)),
            None => String::new(),
        };
        out = out.replacen(&format!("[ref={aria}]"), &replacement, 1);
    }
    if truncated {
        out.push_str(&format!(
            "… cut at {max_chars} of {total} characters; raise max_chars or scroll\n"
        ));
    }
    Ok((out, truncated, total))
}

/// The first `limit` characters of `s`.
pub fn cut(s: &str, limit: usize) -> String {
    match s.char_indices().nth(limit) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_keeps_actionable_nodes_in_order() {
        let tree = serde_json::json!({"role": "generic", "children": [
            {"role": "heading", "name": "Title", "ref": "e1"},
            {"role": "button", "name": "Go", "ref": "e2"},
            {"role": "generic", "name": "Clickable", "ref": "e3", "cursor": "pointer"},
            {"role": "combobox", "ref": "e4", "children": [{"role": "option", "name": "a", "ref": "e5"}]},
            {"role": "paragraph", "ref": "e6", "children": ["text"]},
        ]});
        let mut out = Vec::new();
        collect(&tree, "", &mut out);
        let refs: Vec<&str> = out.iter().map(|c| c.aria.as_str()).collect();
        assert_eq!(refs, ["e2", "e3", "e4"]);
    }

    #[test]
    fn lines_read_like_the_design_says() {
        let c = |role: &str, name: &str| Candidate {
            aria: "e1".into(),
            role: role.into(),
            name: name.into(),
            pointer: false,
        };
        let button = Described {
            tag: "button".into(),
            ..Default::default()
        };
        assert_eq!(
            line("ref_1", &c("button", "Sign in"), &button),
            r#"[ref_1] button "Sign in""#
        );
        let input = Described {
            tag: "input".into(),
            input_type: Some("text".into()),
            placeholder: Some("Search".into()),
            ..Default::default()
        };
        assert_eq!(
            line("ref_2", &c("textbox", ""), &input),
            r#"[ref_2] input[type=text] placeholder="Search""#
        );
        let link = Described {
            tag: "a".into(),
            href: Some("https://example.com/".into()),
            ..Default::default()
        };
        assert_eq!(
            line("ref_3", &c("link", "Home"), &link),
            r#"[ref_3] a "Home" -> https://example.com/"#
        );
    }

    #[test]
    fn cut_respects_characters() {
        assert_eq!(cut("héllo", 2), "hé");
        assert_eq!(cut("hi", 5), "hi");
    }
}
