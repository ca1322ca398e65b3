//! The page as a model reads it. The seed snapshot: url, title, a viewport screenshot, the body's
//! text (≤ 5000 chars) and one line per interactive element with a ref, all read from Playwright's
//! AI-mode aria tree in one call. The outline: that tree as text with our refs, cut to a budget.

use base64::Engine as _;
use futures::future::join_all;
use playwright_rs::protocol::Page;
use playwright_rs::{AriaSnapshotMode, AriaSnapshotOptions, ScreenshotOptions, ScreenshotType};
use serde_json::{Map, Value};

use super::error::Result;
use super::js;
use super::refs::{document_token, Refs};

/// Most characters of body text a snapshot carries.
pub const TEXT_LIMIT: usize = 5_000;
/// Most elements listed; the rest are counted in a last line.
const ELEMENT_LIMIT: usize = 300;
/// Default budget of the aria outline.
pub const OUTLINE_DEFAULT_CHARS: usize = 20_000;

/// Roles an agent can act on, and how their line names them (the element they usually are).
const INTERACTIVE: [(&str, &str); 18] = [
    ("button", "button"),
    ("link", "a"),
    ("textbox", "input[type=text]"),
    ("searchbox", "input[type=search]"),
    ("checkbox", "input[type=checkbox]"),
    ("radio", "input[type=radio]"),
    ("combobox", "select"),
    ("spinbutton", "input[type=number]"),
    ("slider", "input[type=range]"),
    ("listbox", "listbox"),
    ("option", "option"),
    ("menuitem", "menuitem"),
    ("menuitemcheckbox", "menuitemcheckbox"),
    ("menuitemradio", "menuitemradio"),
    ("tab", "tab"),
    ("switch", "switch"),
    ("treeitem", "treeitem"),
    ("gridcell", "gridcell"),
];

/// What the page says an element is (see `js::TAG`).
#[derive(serde::Deserialize)]
struct Tag {
    tag: String,
    text: String,
    /// The tree gives a placeholder only when a label names the field; the page always does.
    #[serde(default)]
    placeholder: String,
}

/// A clickable the aria tree folded away (see `js::FOLDED_CLICKABLES`).
#[derive(serde::Deserialize)]
struct Folded {
    tag: String,
    text: String,
    path: String,
    key: String,
}

/// The seed snapshot.
pub struct Snapshot {
    /// Base64 PNG of the viewport.
    pub screenshot: String,
    /// Body innerText, cut to [`TEXT_LIMIT`].
    pub text: String,
    /// One line per interactive element.
    pub elements: String,
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
    let document = document_token(page).await?;
    let tree = page
        .aria_snapshot_json(AriaSnapshotOptions::default().mode(AriaSnapshotMode::Ai))
        .await?;
    let base = url::Url::parse(&page.url()).ok();
    // Nodes to list, in document order; the few the tree cannot name fully are asked about.
    let mut found: Vec<(&Map<String, Value>, String)> = Vec::new();
    let mut total = 0;
    walk(&tree, "", &mut |node, parent_role| {
        if describe(node, parent_role, None, None).is_some() {
            total += 1;
            if found.len() < ELEMENT_LIMIT {
                found.push((node, parent_role.to_string()));
            }
        }
    });
    let tags = join_all(found.iter().map(|(node, _)| async move {
        if !needs_tag(node) {
            return None;
        }
        page.get_by_ref(str_of(node, "ref"))
            .evaluate::<Tag, ()>(js::TAG, None)
            .await
            .ok()
    }))
    .await;
    let mut lines = Vec::with_capacity(found.len() + 1);
    for ((node, parent_role), tag) in found.iter().zip(tags) {
        if let Some(line) = describe(node, parent_role, base.as_ref(), tag.as_ref()) {
            let id = refs.ref_for(&document, str_of(node, "ref"));
            lines.push(format!("[{id}] {line}"));
        }
    }
    // JS-only clickables the tree folded into their parent's text; after the tree's elements.
    if let Ok(folded) = page
        .evaluate::<usize, Vec<Folded>>(js::FOLDED_CLICKABLES, Some(&ELEMENT_LIMIT))
        .await
    {
        for f in folded {
            total += 1;
            if lines.len() >= ELEMENT_LIMIT {
                continue;
            }
            let id = refs.ref_for(&document, &super::refs::css_place(&f.path, &f.key));
            lines.push(format!(
                "[{id}] {} {:?} (clickable)",
                f.tag,
                cut(&f.text, 100)
            ));
        }
    }
    if total > ELEMENT_LIMIT {
        lines.push(format!(
            "… {} more elements not listed; scroll, or use browser_aria_snapshot",
            total - ELEMENT_LIMIT
        ));
    }
    Ok(Snapshot {
        screenshot: base64::engine::general_purpose::STANDARD.encode(png),
        text: cut(&text, TEXT_LIMIT),
        elements: lines.join("\n"),
    })
}

/// Visits every node of the JSON aria tree in document order, with its parent's role.
fn walk<'a>(
    node: &'a Value,
    parent_role: &str,
    visit: &mut dyn FnMut(&'a Map<String, Value>, &str),
) {
    match node {
        Value::Array(items) => items.iter().for_each(|n| walk(n, parent_role, visit)),
        Value::Object(map) => {
            visit(map, parent_role);
            let role = map.get("role").and_then(Value::as_str).unwrap_or("");
            if let Some(children) = map.get("children") {
                walk(children, role, visit);
            }
        }
        _ => {}
    }
}

fn str_of<'a>(node: &'a Map<String, Value>, key: &str) -> &'a str {
    node.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The text of a node's only text child (a textbox's value, a link's text).
fn own_text(node: &Map<String, Value>) -> String {
    if let Some(t) = node.get("text").and_then(Value::as_str) {
        return t.to_string();
    }
    let parts: Vec<&str> = node
        .get("children")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    parts.join(" ")
}

/// Whether a node's line needs the element itself: the aria tree does not say an input's type
/// (password, date, email, ...) nor which element a custom widget or a JS-only clickable is.
fn needs_tag(node: &Map<String, Value>) -> bool {
    let role = str_of(node, "role");
    match INTERACTIVE.iter().find(|(r, _)| *r == role) {
        Some((_, kind)) => *kind == role || matches!(role, "textbox" | "spinbutton" | "slider"),
        None => true,
    }
}

/// The line for an element an agent can act on (without its ref), or None for other nodes.
/// `button "Sign in"`, `input[type=text] placeholder="Search"`, `a "Home" -> URL`. `tag` is
/// what the page says the element is (`input[type=password]`, `li[role=tab]`, `span`), when
/// asked for (see [`needs_tag`]).
fn describe(
    node: &Map<String, Value>,
    parent_role: &str,
    base: Option<&url::Url>,
    tag: Option<&Tag>,
) -> Option<String> {
    if str_of(node, "ref").is_empty() {
        return None;
    }
    let role = str_of(node, "role");
    let pointer = str_of(node, "cursor") == "pointer";
    // A select's options are chosen through the select, not clicked.
    let select_option = role == "option" && parent_role == "combobox";
    let kind = INTERACTIVE
        .iter()
        .find(|(r, _)| *r == role)
        .map(|(_, k)| *k);
    let kind = match kind {
        Some(_) if select_option => return None,
        Some(k) => k,
        None if pointer && role != "text" && role != "iframe" => role,
        None => return None,
    };
    let textual = matches!(role, "textbox" | "searchbox" | "spinbutton" | "combobox");
    let placeholder = match str_of(node, "placeholder") {
        "" => tag.map_or("", |t| t.placeholder.as_str()),
        p => p,
    };
    let mut name = str_of(node, "name").to_string();
    if name.is_empty() && !textual {
        name = own_text(node);
    }
    if name.is_empty() && !textual {
        name = tag.map(|t| t.text.clone()).unwrap_or_default();
    }
    // An input named by its placeholder says so once, as the placeholder.
    if name == placeholder {
        name.clear();
    }
    let mut line = tag.map_or(kind, |t| t.tag.as_str()).to_string();
    if !name.is_empty() {
        line.push_str(&format!(" {:?}", cut(name.trim(), 100)));
    }
    if !placeholder.is_empty() {
        line.push_str(&format!(" placeholder={:?}", cut(placeholder, 60)));
    }
    let options = options_of(node);
    if !options.is_empty() {
        let shown: Vec<String> = options.iter().map(|(o, _)| format!("{o:?}")).collect();
        line.push_str(&format!(" options=[{}]", shown.join(", ")));
        if let Some((selected, _)) = options.iter().find(|(_, s)| *s) {
            line.push_str(&format!(" selected={selected:?}"));
        }
    } else if textual {
        let value = own_text(node);
        if !value.is_empty() {
            line.push_str(&format!(" value={:?}", cut(&value, 60)));
        }
    }
    match node.get("checked") {
        Some(Value::Bool(true)) => line.push_str(" checked"),
        Some(Value::String(s)) if s == "mixed" => line.push_str(" checked=mixed"),
        _ => {}
    }
    if node.get("selected") == Some(&Value::Bool(true)) {
        line.push_str(" selected");
    }
    if node.get("expanded") == Some(&Value::Bool(true)) {
        line.push_str(" expanded");
    }
    if node.get("disabled") == Some(&Value::Bool(true)) {
        line.push_str(" disabled");
    }
    if pointer && !INTERACTIVE.iter().any(|(r, _)| *r == role) {
        line.push_str(" (clickable)");
    }
    let href = str_of(node, "url");
    if !href.is_empty() {
        let absolute = base
            .and_then(|b| b.join(href).ok())
            .map(|u| u.to_string())
            .unwrap_or_else(|| href.to_string());
        line.push_str(&format!(" -> {absolute}"));
    }
    Some(line)
}

/// A select's options: (label, selected).
fn options_of(node: &Map<String, Value>) -> Vec<(String, bool)> {
    let Some(children) = node.get("children").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for child in children {
        let Value::Object(c) = child else { continue };
        match str_of(c, "role") {
            "option" => out.push((
                cut(str_of(c, "name"), 60),
                c.get("selected") == Some(&Value::Bool(true)),
            )),
            "listbox" | "group" => out.extend(options_of(c)),
            _ => {}
        }
        if out.len() >= 40 {
            break;
        }
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
    let document = document_token(page).await?;
    let raw = page
        .aria_snapshot(AriaSnapshotOptions::default().mode(AriaSnapshotMode::Ai))
        .await?;
    let total = raw.chars().count();
    let mut out = String::new();
    let mut used = 0;
    let mut truncated = false;
    for line in raw.lines() {
        let line = rewrite_refs(line, &document, refs);
        let len = line.chars().count() + 1;
        if used + len > max_chars {
            truncated = true;
            break;
        }
        used += len;
        out.push_str(&line);
        out.push('\n');
    }
    if truncated {
        out.push_str(&format!(
            "… cut at {max_chars} of about {total} characters; raise max_chars or scroll\n"
        ));
    }
    Ok((out, truncated, total))
}

/// `[ref=e5]` → `[ref=ref_12]`.
fn rewrite_refs(line: &str, document: &str, refs: &mut Refs) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("[ref=") {
        out.push_str(&rest[..i + 5]);
        rest = &rest[i + 5..];
        match rest.find(']') {
            Some(end) => {
                out.push_str(&refs.ref_for(document, &rest[..end]));
                rest = &rest[end..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
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
    use serde_json::json;

    fn lines(tree: Value) -> Vec<String> {
        let base = url::Url::parse("https://example.com/a/").ok();
        let mut out = Vec::new();
        walk(&tree, "", &mut |n, p| {
            if let Some(l) = describe(n, p, base.as_ref(), None) {
                out.push(l);
            }
        });
        out
    }

    #[test]
    fn elements_read_like_the_design_says() {
        let tree = json!([{"role": "generic", "children": [
            {"role": "heading", "name": "Title", "ref": "e1"},
            {"role": "button", "name": "Sign in", "ref": "e2"},
            {"role": "textbox", "name": "Search", "placeholder": "Search", "ref": "e3"},
            {"role": "link", "name": "Home", "url": "/", "ref": "e4", "cursor": "pointer"},
            {"role": "generic", "ref": "e5", "cursor": "pointer", "text": "Open details"},
            {"role": "combobox", "ref": "e6", "children": [
                {"role": "option", "name": "Red", "ref": "e7"},
                {"role": "option", "name": "Green", "ref": "e8", "selected": true}]},
            {"role": "textbox", "name": "Name", "ref": "e9", "text": "Ada"},
            {"role": "checkbox", "name": "Agree", "ref": "e10", "checked": true},
            {"role": "paragraph", "ref": "e11", "text": "prose"},
        ]}]);
        assert_eq!(
            lines(tree),
            [
                r#"button "Sign in""#,
                r#"input[type=text] placeholder="Search""#,
                r#"a "Home" -> https://example.com/"#,
                r#"generic "Open details" (clickable)"#,
                r#"select options=["Red", "Green"] selected="Green""#,
                r#"input[type=text] "Name" value="Ada""#,
                r#"input[type=checkbox] "Agree" checked"#,
            ]
        );
    }

    #[test]
    fn outline_refs_become_ours() {
        let mut refs = Refs::default();
        let line = rewrite_refs(r#"- button "Go" [ref=e5] [cursor=pointer]"#, "d", &mut refs);
        assert_eq!(line, r#"- button "Go" [ref=ref_1] [cursor=pointer]"#);
        assert_eq!(
            rewrite_refs("- text: plain", "d", &mut refs),
            "- text: plain"
        );
    }

    #[test]
    fn cut_respects_characters() {
        assert_eq!(cut("héllo", 2), "hé");
        assert_eq!(cut("hi", 5), "hi");
    }
}
