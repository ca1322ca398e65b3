//! What a solver sees: the seed snapshot (body text and element lines), parsed back into values.
//! The element-line grammar is the one DESIGN.md §3.1 gives and sandboxd's `browser/snapshot.rs`
//! writes: `[ref_2] input[type=text] "Name" placeholder="…" value="…" checked (clickable) -> URL`.

use anyhow::{anyhow, bail, Context as _};

/// One line of the snapshot's `elements`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    /// `ref_7`.
    pub id: String,
    /// Lower-case tag: `button`, `input`, `li`.
    pub tag: String,
    /// The `type` of an input, or the `role` attribute: `text`, `checkbox`, `tab`.
    pub kind: Option<String>,
    /// Accessible name or text.
    pub name: String,
    pub placeholder: Option<String>,
    pub value: Option<String>,
    /// A select's option labels.
    pub options: Vec<String>,
    pub checked: bool,
    /// The selected option's label (`selected="Red"`), or a selected tab/option (`selected`).
    pub selected: Option<String>,
    pub expanded: bool,
    pub disabled: bool,
    /// Listed because it is clickable through JavaScript only.
    pub clickable: bool,
    pub href: Option<String>,
    /// Where a thing with no text is: `at (x,y) WxH` in viewport pixels.
    pub bounds: Option<[i64; 4]>,
    /// Its colour: `fill #e33 red` or `stroke …` (the hex and the name).
    pub colour: Option<String>,
    /// A control with nothing to name it (`(empty)`): told by its place.
    pub empty: bool,
}

impl Element {
    /// True for `tag` (and, when given, `kind`): `is("input", Some("checkbox"))`.
    pub fn is(&self, tag: &str, kind: Option<&str>) -> bool {
        self.tag == tag && (kind.is_none() || self.kind.as_deref() == kind)
    }
}

/// A seed snapshot as the solver reads it.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The body's innerText.
    pub text: String,
    /// The element lines, parsed.
    pub elements: Vec<Element>,
}

impl Page {
    /// Parses a snapshot's text and element lines.
    pub fn parse(text: &str, elements: &str) -> anyhow::Result<Self> {
        let elements = elements
            .lines()
            .filter(|l| l.starts_with('['))
            .map(|l| parse_line(l).with_context(|| format!("element line {l:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            text: text.to_owned(),
            elements,
        })
    }

    /// The task's instruction: MiniWoB puts `#query` first in the body, so it is the first line.
    pub fn query(&self) -> anyhow::Result<&str> {
        self.lines()
            .next()
            .ok_or_else(|| anyhow!("the page has no text, so no instruction"))
    }

    /// Non-empty, trimmed lines of the body text.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.lines().map(str::trim).filter(|l| !l.is_empty())
    }

    /// Elements with this tag (and kind, when given), in page order.
    pub fn all(&self, tag: &str, kind: Option<&str>) -> Vec<&Element> {
        self.elements.iter().filter(|e| e.is(tag, kind)).collect()
    }

    /// The first element with this tag (and kind) whose name is `name`.
    pub fn named(&self, tag: &str, kind: Option<&str>, name: &str) -> anyhow::Result<&Element> {
        self.elements
            .iter()
            .find(|e| e.is(tag, kind) && e.name == name)
            .ok_or_else(|| anyhow!("no {tag} {kind:?} named {name:?} in\n{}", self.dump()))
    }

    /// The only element with this tag (and kind).
    pub fn one(&self, tag: &str, kind: Option<&str>) -> anyhow::Result<&Element> {
        match self.all(tag, kind).as_slice() {
            [e] => Ok(e),
            found => bail!(
                "expected one {tag} {kind:?}, found {} in\n{}",
                found.len(),
                self.dump()
            ),
        }
    }

    /// The page as the solver saw it, for failure messages.
    pub fn dump(&self) -> String {
        let lines: Vec<String> = self.elements.iter().map(|e| format!("  {e:?}")).collect();
        format!("text:\n{}\nelements:\n{}", self.text, lines.join("\n"))
    }
}

/// The strings between double quotes in `s`, in order (`Enter "a" and "b"` → a, b).
pub fn quoted(s: &str) -> Vec<&str> {
    s.split('"').skip(1).step_by(2).collect()
}

/// The text between `before` and the next `after` in `s`.
pub fn between<'a>(s: &'a str, before: &str, after: &str) -> anyhow::Result<&'a str> {
    let start = s
        .find(before)
        .map(|i| i + before.len())
        .ok_or_else(|| anyhow!("{before:?} not in {s:?}"))?;
    let len = s[start..]
        .find(after)
        .ok_or_else(|| anyhow!("{after:?} not after {before:?} in {s:?}"))?;
    Ok(&s[start..start + len])
}

/// Parses one element line.
pub fn parse_line(line: &str) -> anyhow::Result<Element> {
    let rest = line
        .strip_prefix('[')
        .ok_or_else(|| anyhow!("no leading ["))?;
    let (id, rest) = rest.split_once("] ").ok_or_else(|| anyhow!("no ref"))?;
    let (head, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let mut el = Element {
        id: id.to_owned(),
        ..Default::default()
    };
    match head.split_once('[') {
        Some((tag, attr)) => {
            el.tag = tag.to_owned();
            let attr = attr.trim_end_matches(']');
            let kind = attr
                .strip_prefix("type=")
                .or_else(|| attr.strip_prefix("role="))
                .unwrap_or(attr);
            el.kind = Some(kind.to_owned());
        }
        None => el.tag = head.to_owned(),
    }
    // An SVG shape's line names the shape after `svg`: `svg circle at (…)`.
    if el.tag == "svg" {
        let (shape, r) = rest.split_once(' ').unwrap_or((rest, ""));
        el.kind = Some(shape.to_owned());
        rest = r;
    }
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if rest.starts_with('"') {
            let (s, r) = debug_string(rest)?;
            el.name = s;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("placeholder=") {
            let (s, r) = debug_string(r)?;
            el.placeholder = Some(s);
            rest = r;
        } else if let Some(r) = rest.strip_prefix("value=") {
            let (s, r) = debug_string(r)?;
            el.value = Some(s);
            rest = r;
        } else if let Some(mut r) = rest.strip_prefix("options=[") {
            loop {
                r = r.trim_start_matches([',', ' ']);
                if let Some(after) = r.strip_prefix(']') {
                    rest = after;
                    break;
                }
                let (s, after) = debug_string(r)?;
                el.options.push(s);
                r = after;
            }
        } else if let Some(r) = rest.strip_prefix("selected=") {
            let (s, r) = debug_string(r)?;
            el.selected = Some(s);
            rest = r;
        } else if let Some(r) = rest.strip_prefix("selected") {
            el.selected = Some(String::new());
            rest = r;
        } else if let Some(r) = rest.strip_prefix("expanded") {
            el.expanded = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("checked=mixed") {
            el.checked = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("checked") {
            el.checked = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("disabled") {
            el.disabled = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("at (") {
            let (place, r) = r
                .split_once(") ")
                .ok_or_else(|| anyhow!("no size after {rest:?}"))?;
            let (size, r) = r.split_once(' ').unwrap_or((r, ""));
            let (x, y) = place
                .split_once(',')
                .ok_or_else(|| anyhow!("no x,y in {rest:?}"))?;
            let (w, h) = size
                .split_once('x')
                .ok_or_else(|| anyhow!("no WxH in {rest:?}"))?;
            let mut b = [0i64; 4];
            for (v, s) in b.iter_mut().zip([x, y, w, h]) {
                *v = s.parse().with_context(|| format!("{s:?} in {rest:?}"))?;
            }
            el.bounds = Some(b);
            rest = r;
        } else if let Some(r) = rest
            .strip_prefix("fill ")
            .or_else(|| rest.strip_prefix("stroke "))
        {
            // `#e33 red`: the hex and a plain name.
            let mut words = r.splitn(3, ' ');
            let hex = words.next().unwrap_or_default();
            let name = words.next().unwrap_or_default();
            el.colour = Some(format!("{hex} {name}"));
            rest = words.next().unwrap_or_default();
        } else if let Some(r) = rest.strip_prefix("(empty)") {
            el.empty = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("(+") {
            // `(+N more shapes not listed)`.
            rest = r
                .split_once(')')
                .map(|(_, r)| r)
                .ok_or_else(|| anyhow!("unclosed ( in {rest:?}"))?;
        } else if let Some(r) = rest.strip_prefix("(clickable)") {
            el.clickable = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("-> ") {
            el.href = Some(r.to_owned());
            break;
        } else {
            bail!("cannot read {rest:?}");
        }
    }
    Ok(el)
}

/// Reads a string written with Rust's `{:?}` from the start of `s`; returns it and the rest.
fn debug_string(s: &str) -> anyhow::Result<(String, &str)> {
    let body = s
        .strip_prefix('"')
        .ok_or_else(|| anyhow!("expected a quoted string at {s:?}"))?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &body[i + 1..])),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('u') => {
                    let mut hex = String::new();
                    for (_, h) in chars.by_ref() {
                        match h {
                            '{' => {}
                            '}' => break,
                            h => hex.push(h),
                        }
                    }
                    let code = u32::from_str_radix(&hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| anyhow!("bad escape \\u{{{hex}}}"))?;
                    out.push(code);
                }
                Some(other) => out.push(other),
                None => bail!("a string ends in a backslash"),
            },
            c => out.push(c),
        }
    }
    bail!("unterminated string in {s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lines_sandboxd_writes() {
        let el = parse_line(
            r#"[ref_2] input[type=text] "Name" placeholder="Your name" value="A \"q\"""#,
        )
        .expect("parses");
        assert_eq!(el.id, "ref_2");
        assert!(el.is("input", Some("text")));
        assert_eq!(el.name, "Name");
        assert_eq!(el.placeholder.as_deref(), Some("Your name"));
        assert_eq!(el.value.as_deref(), Some("A \"q\""));

        let el =
            parse_line(r#"[ref_3] select options=["Red", "Gr, een"] value="r""#).expect("parses");
        assert_eq!(el.options, ["Red", "Gr, een"]);
        assert_eq!(el.value.as_deref(), Some("r"));

        let el = parse_line(r#"[ref_5] a[role=presentation] "Tab #1" -> file:///x.html#tabs-1"#)
            .expect("parses");
        assert_eq!(el.kind.as_deref(), Some("presentation"));
        assert_eq!(el.href.as_deref(), Some("file:///x.html#tabs-1"));

        let el = parse_line(r#"[ref_6] input[type=checkbox] "3hI" checked"#).expect("parses");
        assert!(el.checked);
        let el = parse_line(r#"[ref_7] li "Livia" (clickable)"#).expect("parses");
        assert!(el.clickable && el.is("li", None));
        let el = parse_line("[ref_8] input[type=text]").expect("parses");
        assert!(el.name.is_empty());
        let el = parse_line(r#"[ref_9] button "ヘルプ\u{200b}""#).expect("parses");
        assert_eq!(el.name, "ヘルプ\u{200b}");
        let el = parse_line("[ref_10] svg circle at (136,36) 48x48 fill #e33 red (clickable)")
            .expect("parses");
        assert!(el.is("svg", Some("circle")) && el.clickable);
        assert_eq!(el.bounds, Some([136, 36, 48, 48]));
        assert_eq!(el.colour.as_deref(), Some("#e33 red"));
        let el = parse_line("[ref_11] div (empty) at (8,-4) 40x40 fill #ccc gray (clickable)")
            .expect("parses");
        assert!(el.empty && el.is("div", None));
        assert_eq!(el.bounds, Some([8, -4, 40, 40]));
        let el = parse_line("[ref_12] canvas at (165,0) 160x210").expect("parses");
        assert!(el.is("canvas", None) && !el.clickable);
        let el = parse_line(
            "[ref_13] svg path at (0,0) 10x10 stroke #000 black (+4 more shapes not listed)",
        )
        .expect("parses");
        assert_eq!(el.colour.as_deref(), Some("#000 black"));
    }

    #[test]
    fn finds_quoted_words() {
        assert_eq!(
            quoted(r#"Enter the username "keli" and the password "3hI" into"#),
            ["keli", "3hI"]
        );
        assert_eq!(
            between("Enter 8:22 AM as", "Enter ", " as").ok(),
            Some("8:22 AM")
        );
    }
}
