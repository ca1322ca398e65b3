//! The page as a model reads it. The seed snapshot: url, title, a viewport screenshot, the body's
//! text and one line per interactive element with a ref, all read from Playwright's AI-mode aria
//! tree in one call. A page is read whole once ([`read`]) and served in pages that fit a budget
//! ([`serve`]): later pages and [`find`] reuse that reading, so refs stay the same across them.
//! The outline: that tree as text with our refs, cut to a budget.

use std::ops::Range;

use futures::future::join_all;
use playwright_rs::protocol::Page;
use playwright_rs::{AriaSnapshotMode, AriaSnapshotOptions};
use serde_json::{Map, Value};

use super::error::{BrowserError, Result};
use super::js;
use super::refs::Refs;

/// Default characters of text + elements in one snapshot reply.
pub const DEFAULT_BUDGET: usize = 12_000;
/// Smallest and largest budget a caller may ask for.
pub const BUDGET_RANGE: (usize, usize) = (1_000, 200_000);
/// Most elements read from one page; the rest are counted.
const ELEMENT_LIMIT: usize = 5_000;
/// Most elements whose tag the page is asked for (all at once in the main frame, one round trip
/// each inside frames).
const TAG_LIMIT: usize = 300;
/// Most SVG shapes and canvases listed from one page; the last says how many more there are.
const SHAPE_LIMIT: usize = 100;
/// Share of a page's budget that elements get while text remains too (they are what an agent
/// acts on; the text of the top of the page comes with them).
const ELEMENT_SHARE: f64 = 0.6;
/// Default budget of the aria outline.
pub const OUTLINE_DEFAULT_CHARS: usize = 20_000;
/// Cuts in element lines: names, field values, placeholders and options.
const NAME_CHARS: usize = 100;
const VALUE_CHARS: usize = 100;
const SHORT_CHARS: usize = 60;
/// Headings further down listed in a first page's `more`, in characters.
const LANDMARK_CHARS: usize = 800;
/// A text passage `find` returns, in characters.
const PASSAGE_CHARS: usize = 300;

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
    /// Where it is and its colour, when it has no text of its own (see `js::TAG`).
    #[serde(default)]
    look: Option<Look>,
    /// An SVG shape (`svg circle`): never "empty", it is a drawing.
    #[serde(default)]
    shape: bool,
}

/// Where an element with no text is and the colour it shows (see `look!` in `js`).
#[derive(serde::Deserialize)]
struct Look {
    /// x, y, width, height in viewport pixels.
    #[serde(rename = "box")]
    bounds: [f64; 4],
    /// CSS colours: an SVG shape's fill or another element's background, and a shape's stroke.
    #[serde(default)]
    fill: String,
    #[serde(default)]
    stroke: String,
}

impl Look {
    /// ` at (120,80) 40x40 fill #e33 red`: the box, and the fill (or with none, the stroke).
    fn describe(&self) -> String {
        let [x, y, w, h] = self.bounds.map(|v| v.round() as i64);
        let mut out = format!(" at ({x},{y}) {w}x{h}");
        if let Some(c) = colour(&self.fill) {
            out.push_str(&format!(" fill {c}"));
        } else if let Some(c) = colour(&self.stroke) {
            out.push_str(&format!(" stroke {c}"));
        }
        out
    }
}

/// A control the aria tree does not list on its own (see `js::MISSED_CONTROLS`).
#[derive(serde::Deserialize)]
struct Missed {
    tag: String,
    text: String,
    path: String,
    key: String,
    /// The tree line (index into the nodes read) it follows in the page; -1: before them all.
    after: i64,
    /// Where it is and its colour, when no text tells it from others.
    #[serde(default)]
    look: Option<Look>,
    /// An SVG shape or a canvas (`tag`: `svg circle`, `canvas`), not a control.
    #[serde(default)]
    shape: bool,
    /// A shape that shows it takes clicks; controls always do.
    #[serde(default = "yes")]
    clickable: bool,
    /// Shapes passed over after this one (the last listed) for [`SHAPE_LIMIT`].
    #[serde(default)]
    more: usize,
    /// Its box (x, y, width, height in viewport pixels), for `boxes`.
    #[serde(default)]
    rect: Option<[f64; 4]>,
}

fn yes() -> bool {
    true
}

impl Missed {
    /// Its line without the ref; `marked`: a long name is cut, saying by how much.
    fn describe(&self, marked: bool) -> String {
        let mut line = self.tag.clone();
        if !self.text.is_empty() {
            let name = if marked {
                cut_marked(&self.text, NAME_CHARS)
            } else {
                self.text.clone()
            };
            line.push_str(&format!(" {name:?}"));
        } else if !self.shape {
            line.push_str(" (empty)");
        }
        if let Some(look) = &self.look {
            line.push_str(&look.describe());
        }
        if self.clickable {
            line.push_str(" (clickable)");
        }
        if self.more > 0 {
            line.push_str(&format!(" (+{} more shapes not listed)", self.more));
        }
        line
    }
}

/// What `js::MISSED_CONTROLS` found: the controls, and for listed lines that contain other
/// controls, their own text (empty: the line only wraps them).
#[derive(serde::Deserialize, Default)]
struct MissedControls {
    controls: Vec<Missed>,
    owners: Vec<(usize, String)>,
    /// What the elements of the lines asked about are (see `js::TAG`), by line index.
    #[serde(default)]
    tags: Vec<(usize, Tag)>,
    /// The keys of the elements `js::MARK_ENGINE` handed over (see `js::MISSED_CONTROLS`), by
    /// line index: their places, instead of the aria tree's names.
    #[serde(default)]
    keys: Vec<(usize, String)>,
}

/// Tells one reading's marks on elements from an earlier one's.
static READINGS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// The document token and the body's text (see `js::PAGE_FACTS`).
#[derive(serde::Deserialize)]
struct Facts {
    document: String,
    text: String,
    count: i64,
}

/// A page read whole: what every page of its snapshot and `find` are served from.
#[derive(Debug, Clone)]
pub struct Full {
    /// The document it was read from (see `js::DOCUMENT_TOKEN`).
    pub document: String,
    /// The body's innerText.
    pub text: String,
    /// One line per interactive element, long values cut with a mark.
    pub elements: Vec<String>,
    /// The same lines uncut (what `find` shows).
    pub uncut: Vec<String>,
    /// Whether it was read with boxes (`boxed` and `boxed_uncut` are empty otherwise).
    pub boxes: bool,
    /// `elements` and `uncut` with each line's box (` at (x,y) WxH`, viewport pixels) where the
    /// line has none of its own: what a snapshot that asks for boxes serves.
    pub boxed: Vec<String>,
    pub boxed_uncut: Vec<String>,
    /// Headings in document order, with the offset in `text` where each was found.
    pub headings: Vec<(usize, String)>,
    /// Elements beyond [`ELEMENT_LIMIT`], not listed.
    pub unlisted: usize,
    /// The document's DOM mutations when it was read (see `js::PAGE_FACTS`): while the count
    /// stays, the reading is still the page's.
    pub mutations: i64,
    /// A screenshot taken with the reading (a reading ahead's), for the snapshot that serves it.
    pub shot: Option<Shot>,
    /// How long the reading took (with what ran beside it).
    pub took: std::time::Duration,
}

/// A screenshot (base64 PNG) and when it was taken.
#[derive(Clone)]
pub struct Shot {
    pub png: String,
    pub at: std::time::Instant,
}

impl std::fmt::Debug for Shot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Shot({} base64 chars, {:?} ago)",
            self.png.len(),
            self.at.elapsed()
        )
    }
}

/// Reads `page` whole, giving refs to its interactive elements.
pub async fn read(page: &Page, refs: &mut Refs) -> Result<Full> {
    Ok(read_beside(page, refs, false, async {}).await?.0)
}

/// Reads `page` whole, running `beside` (a screenshot) once its elements are read: it overlaps
/// the rest of the reading instead of adding to it, and never runs beside the reading of the
/// elements, whose memory on a big page leaves no room in a small sandbox for a screenshot's too.
/// The elements are read by `js::LEAN_TREE`; a page it leaves to Playwright (frames, shadow
/// roots) is read through Playwright's aria tree. `boxes`: also the lines with boxes
/// (`Full::boxed`); the aria tree's boxes make its call half again as slow on a big page, so
/// only a snapshot that asks for them reads them.
pub async fn read_beside<T>(
    page: &Page,
    refs: &mut Refs,
    boxes: bool,
    beside: impl std::future::Future<Output = T>,
) -> Result<(Full, T)> {
    let started = std::time::Instant::now();
    let reading = READINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Both are page-side work; asked together, their round trips overlap.
    let args = (reading, boxes, ELEMENT_LIMIT);
    let (facts, lean) = tokio::join!(
        page.evaluate::<(), Facts>(js::PAGE_FACTS, None),
        page.evaluate::<_, Option<Lean>>(js::LEAN_TREE, Some(&args)),
    );
    let Facts {
        document,
        text,
        count,
    } = facts?;
    let (tree, lean) = match lean {
        Ok(Some(lean)) => (lean.tree, Some((lean.listed, lean.more))),
        other => {
            if let Err(e) = other {
                tracing::debug!(error = %e, "the page scan failed; reading the aria tree");
            }
            let tree = page
                .aria_snapshot_json(
                    AriaSnapshotOptions::default()
                        .mode(AriaSnapshotMode::Ai)
                        .boxes(boxes),
                )
                .await?;
            (tree, None)
        }
    };
    let tree_ms = started.elapsed().as_millis();
    let (full, beside) = tokio::join!(
        finish(page, refs, reading, document, text, &tree, lean, boxes),
        beside
    );
    let took = started.elapsed();
    let full = full.map(|f| Full {
        mutations: count,
        took,
        ..f
    });
    tracing::debug!(
        lean = lean.is_some(),
        tree_ms = tree_ms as u64,
        total_ms = took.as_millis() as u64,
        "page read"
    );
    Ok((full?, beside))
}

/// What `js::LEAN_TREE` read: the nodes, and how many it listed (marked, in order).
#[derive(serde::Deserialize)]
struct Lean {
    tree: Value,
    listed: usize,
    /// Listed past the limit: counted, not in the tree.
    #[serde(default)]
    more: usize,
}

/// The rest of a reading, from the tree (`lean`: `js::LEAN_TREE`'s, with how many elements it
/// listed and how many past its limit; else Playwright's aria tree): tags, the controls the
/// tree missed, the lines.
#[allow(clippy::too_many_arguments)]
async fn finish(
    page: &Page,
    refs: &mut Refs,
    reading: u32,
    document: String,
    text: String,
    tree: &Value,
    lean: Option<(usize, usize)>,
    boxes: bool,
) -> Result<Full> {
    let started = std::time::Instant::now();
    let base = url::Url::parse(&page.url()).ok();
    // Nodes to list, in document order; the few the tree cannot name fully are asked about.
    let mut found: Vec<(&Map<String, Value>, String)> = Vec::new();
    let mut headings = Vec::new();
    let mut total: usize = 0;
    walk(tree, "", &mut |node, parent_role| {
        if str_of(node, "role") == "heading" {
            let name = match str_of(node, "name") {
                "" => own_text(node),
                n => n.to_string(),
            };
            if !name.trim().is_empty() {
                headings.push(name.trim().to_string());
            }
        }
        if describe(node, parent_role, None, None, false).is_some() {
            total += 1;
            if found.len() < ELEMENT_LIMIT {
                found.push((node, parent_role.to_string()));
            }
        }
    });
    let walk_ms = started.elapsed().as_millis();
    // The page scan marked the elements it listed in this order; had it listed others than
    // these lines, its marks would tell other elements.
    if let Some((_, more)) = lean {
        // A count read in the page's world: added without wrapping.
        total = total.saturating_add(more);
    }
    let lean = lean.map(|(listed, _)| listed).filter(|&listed| {
        let agrees = listed.min(ELEMENT_LIMIT) == found.len();
        if !agrees {
            tracing::warn!(
                listed,
                lines = found.len(),
                "the page scan and its lines disagree"
            );
        }
        agrees
    });
    // What is inside frames: the main frame's names have a prefix too (`f1e3`) once it has
    // navigated, so only the tree tells them apart.
    let mut framed = std::collections::HashSet::new();
    if lean.is_none() {
        in_frame_refs(tree, false, &mut framed);
    }
    // The lines whose element is read for what it is (see `js::TAG`).
    let mut asks: Vec<usize> = Vec::new();
    // After the aria tree, the main frame's listed elements are handed to the page's world all
    // at once (`js::MARK_ENGINE`), to be marked, keyed and read by the page scan below; those
    // inside frames are asked about one by one and keep their aria names.
    let mut marks = String::new();
    let mut in_frames = Vec::new();
    for (i, (node, _)) in found.iter().enumerate() {
        let ask = needs_tag(node) && asks.len() + in_frames.len() < TAG_LIMIT;
        let aria = str_of(node, "ref");
        if lean.is_some() || !framed.contains(aria) {
            if lean.is_none() {
                marks.push_str(&format!(" {i}:{aria}"));
            }
            if ask {
                asks.push(i);
            }
        } else if ask {
            in_frames.push((i, aria));
        }
    }
    let mark = hand_over(page, &document, reading, &marks);
    let framed = join_all(in_frames.iter().map(|&(i, aria)| async move {
        let tag = page
            .get_by_ref(aria)
            .evaluate::<Tag, (usize, u32)>(js::TAG, Some((i, reading)))
            .await
            .ok();
        (i, tag)
    }));
    let (_, framed) = tokio::join!(mark, framed);
    let tags_ms = started.elapsed().as_millis();
    // After the aria tree, each line's aria name: it changes with the element's role or name,
    // and so does the key the page gives the element (see `js::MISSED_CONTROLS`).
    let sigs: Vec<&str> = if lean.is_none() {
        found.iter().map(|(node, _)| str_of(node, "ref")).collect()
    } else {
        Vec::new()
    };
    // Controls the tree folded into a parent's text or left out; after the tree's elements.
    // The marked elements' tags come with them.
    let missed = page
        .evaluate::<_, MissedControls>(
            js::MISSED_CONTROLS,
            Some(&(TAG_LIMIT, reading, SHAPE_LIMIT, &asks, &sigs)),
        )
        .await
        .unwrap_or_default();
    let mut tags: Vec<Option<Tag>> = std::iter::repeat_with(|| None).take(found.len()).collect();
    for (i, tag) in missed
        .tags
        .into_iter()
        .map(|(i, t)| (i, Some(t)))
        .chain(framed)
    {
        if let Some(slot) = tags.get_mut(i) {
            *slot = tag;
        }
    }
    tracing::debug!(
        listed = found.len(),
        asked = asks.len() + in_frames.len(),
        walk_ms = walk_ms as u64,
        tags_ms = tags_ms as u64,
        missed_ms = started.elapsed().as_millis() as u64,
        "page read: tags and missed controls"
    );
    let owners: std::collections::HashMap<usize, String> = missed.owners.into_iter().collect();
    let keys: std::collections::HashMap<usize, String> = missed.keys.into_iter().collect();
    // The controls the tree missed go where they are in the page: after the listed line they
    // follow (one the page was asked about, or a link found by its href).
    let mut missed_after: std::collections::BTreeMap<i64, Vec<Missed>> = Default::default();
    for m in missed.controls {
        total += 1;
        missed_after.entry(m.after).or_default().push(m);
    }
    let mut elements = Vec::with_capacity(found.len());
    let mut uncut = Vec::with_capacity(found.len());
    let mut boxed = (
        Vec::with_capacity(found.len()),
        Vec::with_capacity(found.len()),
    );
    for (i, ((node, parent_role), tag)) in found.iter().zip(tags).enumerate() {
        let before = missed_after.remove(&(i as i64 - 1)).unwrap_or_default();
        push_missed(
            before,
            refs,
            &document,
            &mut elements,
            &mut uncut,
            boxes.then_some(&mut boxed),
        );
        // A clickable that wraps other controls is named by its own text, or, with none, is
        // the same control as those inside it (a row's nested divs, an item around its
        // menuitem, a toolbar around its buttons) and is not listed again.
        let renamed;
        let node: &Map<String, Value> = match owners.get(&i) {
            Some(own) if !is_interactive(node) => {
                if own.is_empty() {
                    total -= 1;
                    continue;
                }
                let mut n = (*node).clone();
                n.insert("name".into(), Value::String(own.clone()));
                n.remove("children");
                n.remove("text");
                renamed = n;
                &renamed
            }
            _ => node,
        };
        let short = describe(node, parent_role, base.as_ref(), tag.as_ref(), true);
        let long = describe(node, parent_role, base.as_ref(), tag.as_ref(), false);
        if let (Some(short), Some(long)) = (short, long) {
            let place = keys.get(&i).map_or(str_of(node, "ref"), String::as_str);
            let id = refs.ref_for(&document, place);
            if boxes {
                // A line that tells its place already (a thing with no text) keeps it.
                let bx = if tag.as_ref().is_some_and(|t| t.look.is_some()) {
                    String::new()
                } else {
                    node_box(node)
                };
                let url = !str_of(node, "url").is_empty();
                boxed
                    .0
                    .push(place_box(&format!("[{id}] {short}"), &bx, url));
                boxed.1.push(place_box(&format!("[{id}] {long}"), &bx, url));
            }
            elements.push(format!("[{id}] {short}"));
            uncut.push(format!("[{id}] {long}"));
        }
    }
    for (_, rest) in std::mem::take(&mut missed_after) {
        push_missed(
            rest,
            refs,
            &document,
            &mut elements,
            &mut uncut,
            boxes.then_some(&mut boxed),
        );
    }
    elements.truncate(ELEMENT_LIMIT);
    uncut.truncate(ELEMENT_LIMIT);
    boxed.0.truncate(ELEMENT_LIMIT);
    boxed.1.truncate(ELEMENT_LIMIT);
    // Where each heading sits in the text, so a page can name the ones after it.
    let mut from = 0;
    let headings = headings
        .into_iter()
        .map(|h| {
            let at = text[from..].find(&h).map_or(from, |i| from + i);
            from = at;
            (at, h)
        })
        .collect();
    Ok(Full {
        document,
        text,
        unlisted: total.saturating_sub(elements.len()),
        elements,
        uncut,
        boxes,
        boxed: boxed.0,
        boxed_uncut: boxed.1,
        headings,
        mutations: -1,
        shot: None,
        took: std::time::Duration::ZERO,
    })
}

/// Lines (and refs) for controls the tree missed, in the order given.
fn push_missed(
    missed: Vec<Missed>,
    refs: &mut Refs,
    document: &str,
    elements: &mut Vec<String>,
    uncut: &mut Vec<String>,
    boxed: Option<&mut (Vec<String>, Vec<String>)>,
) {
    let mut boxed = boxed;
    for f in missed {
        let id = refs.ref_for(document, &super::refs::css_place(&f.path, &f.key));
        let (short, long) = (
            format!("[{id}] {}", f.describe(true)),
            format!("[{id}] {}", f.describe(false)),
        );
        if let Some(boxed) = boxed.as_deref_mut() {
            let bx = match (&f.look, f.rect) {
                (None, Some(rect)) => box_text(rect),
                _ => String::new(),
            };
            boxed.0.push(place_box(&short, &bx, false));
            boxed.1.push(place_box(&long, &bx, false));
        }
        elements.push(short);
        uncut.push(long);
    }
}

/// ` at (x,y) WxH`: a box in viewport pixels, as element lines write it.
fn box_text(rect: [f64; 4]) -> String {
    let [x, y, w, h] = rect.map(|v| v.round() as i64);
    format!(" at ({x},{y}) {w}x{h}")
}

/// The box the aria tree gives a node (`box: {x, y, width, height}`), or "" without one.
fn node_box(node: &Map<String, Value>) -> String {
    let Some(b) = node.get("box").and_then(Value::as_object) else {
        return String::new();
    };
    let get = |k: &str| b.get(k).and_then(Value::as_f64);
    match (get("x"), get("y"), get("width"), get("height")) {
        (Some(x), Some(y), Some(w), Some(h)) if w > 0.0 || h > 0.0 => box_text([x, y, w, h]),
        _ => String::new(),
    }
}

impl Full {
    /// The same reading with each element line's box, for a snapshot that asks for boxes.
    pub fn with_boxes(&self) -> Full {
        if !self.boxes {
            return self.clone();
        }
        Full {
            elements: self.boxed.clone(),
            uncut: self.boxed_uncut.clone(),
            shot: None,
            ..self.clone()
        }
    }
}

/// `line` with the box `bx` before its trailing marks (` (clickable)`, and ` -> URL` on a link
/// with one), so it reads `[ref_3] button "OK" at (10,20) 80x24 (clickable)` as a shape's does.
fn place_box(line: &str, bx: &str, url: bool) -> String {
    let mut cut = if url {
        line.rfind(" -> ").unwrap_or(line.len())
    } else {
        line.len()
    };
    if line[..cut].ends_with(" (clickable)") {
        cut -= " (clickable)".len();
    }
    format!("{}{bx}{}", &line[..cut], &line[cut..])
}

/// One page of a snapshot.
#[derive(Debug, PartialEq)]
pub struct Served {
    /// The text on this page.
    pub text: String,
    /// The element lines on this page.
    pub elements: String,
    /// This page, from 1, and how many there are.
    pub page: usize,
    pub pages: usize,
    /// What was left out and how to ask for it; empty when all fit.
    pub more: String,
}

/// The parts of text (byte range) and elements (index range) on each page of `full` at `budget`
/// characters a page. Elements take up to [`ELEMENT_SHARE`] while text remains, text the rest;
/// once one runs out the other has the whole page. Every page moves on by at least one line.
fn layout(full: &Full, budget: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let text = full.text.as_str();
    let line_len = |i: usize| full.elements[i].chars().count() + 1;
    let mut pages = Vec::new();
    let (mut t, mut e) = (0, 0);
    let mut text_left = text.chars().count();
    let mut elements_left: usize = (0..full.elements.len()).map(line_len).sum();
    while pages.is_empty() || t < text.len() || e < full.elements.len() {
        let mut element_room = if text_left == 0 {
            budget
        } else {
            ((budget as f64 * ELEMENT_SHARE) as usize).min(elements_left)
        };
        let text_room = budget - element_room;
        if text_room > text_left {
            element_room = budget - text_left;
        }
        let e0 = e;
        let mut used = 0;
        while e < full.elements.len() && (e == e0 || used + line_len(e) <= element_room) {
            if e == e0 && line_len(e) > element_room && text_left > 0 && element_room == 0 {
                break;
            }
            used += line_len(e);
            e += 1;
        }
        elements_left -= used;
        let text_room = budget.saturating_sub(used).max(1);
        let t0 = t;
        t = text_end(text, t, text_room);
        text_left -= text[t0..t].chars().count();
        pages.push((t0..t, e0..e));
    }
    pages
}

/// Where a page of text starting at byte `from` ends: at most `room` characters, at the last line
/// break in them when there is one (the whole rest when it fits).
fn text_end(text: &str, from: usize, room: usize) -> usize {
    let rest = &text[from..];
    let limit = match rest.char_indices().nth(room) {
        Some((i, _)) => i,
        None => return text.len(),
    };
    match rest[..limit].rfind('\n') {
        Some(i) if i > 0 => from + i + 1,
        _ => from + limit,
    }
}

/// Page `page` (from 1) of `full` at `budget` characters, or the elements after `after_ref`
/// with the text of the page that holds it.
pub fn serve(full: &Full, budget: usize, page: usize, after_ref: Option<&str>) -> Result<Served> {
    let pages = layout(full, budget);
    let count = pages.len();
    let (index, text_range, element_range) = match after_ref {
        Some(wanted) => {
            let wanted = super::refs::normalize(wanted);
            let prefix = format!("[{wanted}]");
            let at = full
                .elements
                .iter()
                .position(|l| l.starts_with(&prefix))
                .ok_or_else(|| {
                    BrowserError::invalid(format!(
                        "{wanted} is not in this snapshot's elements; take a new snapshot (or \
                         use page)"
                    ))
                })?;
            let index = pages.iter().position(|(_, e)| e.contains(&at)).unwrap_or(0);
            let (text_range, _) = pages[index].clone();
            let text_chars = full.text[text_range.clone()].chars().count();
            let room = budget.saturating_sub(text_chars);
            let mut end = at + 1;
            let mut used = 0;
            while end < full.elements.len()
                && (end == at + 1 || used + full.elements[end].chars().count() < room)
            {
                used += full.elements[end].chars().count() + 1;
                end += 1;
            }
            (index, text_range, (at + 1).min(end)..end)
        }
        None => {
            let index = page.max(1) - 1;
            let (t, e) = pages.get(index).cloned().ok_or_else(|| {
                BrowserError::invalid(format!(
                    "page {page} is past the last page of this snapshot ({count})"
                ))
            })?;
            (index, t, e)
        }
    };
    let text_after = full.text.len() - text_range.end;
    let elements_after = full.elements.len() - element_range.end;
    let mut more = String::new();
    if count > 1 || full.unlisted > 0 {
        let left_text = full.text[text_range.end..].chars().count();
        more = format!(
            "page {} of {count} ({budget} characters a page); after it: {left_text} characters \
             of text and {elements_after} elements",
            index + 1
        );
        if text_range.start > 0 || element_range.start > 0 {
            more.push_str(&format!(
                "; before it: {} characters and {} elements",
                full.text[..text_range.start].chars().count(),
                element_range.start
            ));
        }
        if full.unlisted > 0 {
            more.push_str(&format!(
                "; {} more elements are not listed at all (scroll, or browser_find)",
                full.unlisted
            ));
        }
        if text_after > 0 || elements_after > 0 {
            more.push_str(&format!(
                ". Next: browser_snapshot {{page: {}}} (same refs), or browser_find {{query}} to \
                 jump to what you need",
                index + 2
            ));
            let mut landmarks = String::new();
            for (_, h) in full.headings.iter().filter(|(at, _)| *at >= text_range.end) {
                if landmarks.chars().count() + h.chars().count() > LANDMARK_CHARS {
                    landmarks.push_str(" · …");
                    break;
                }
                if !landmarks.is_empty() {
                    landmarks.push_str(" · ");
                }
                landmarks.push_str(h);
            }
            if !landmarks.is_empty() {
                more.push_str(&format!(". Headings further down: {landmarks}"));
            }
        }
    }
    Ok(Served {
        text: full.text[text_range].to_string(),
        elements: full.elements[element_range].join("\n"),
        page: index + 1,
        pages: count,
        more,
    })
}

/// What `find` returns.
#[derive(Debug, PartialEq)]
pub struct Found {
    /// Matching element lines, uncut.
    pub elements: Vec<String>,
    /// Matching text passages.
    pub passages: Vec<String>,
    /// All matches, including those beyond the limit.
    pub matches: usize,
}

/// The element lines and text lines of `full` that hold every word of `query` (case-insensitive);
/// when none holds them all, those holding the most. At most `limit` of each.
pub fn find(full: &Full, query: &str, limit: usize) -> Found {
    let words: Vec<String> = query.split_whitespace().map(|w| w.to_lowercase()).collect();
    let score = |line: &str| {
        let line = line.to_lowercase();
        words.iter().filter(|w| line.contains(w.as_str())).count()
    };
    let best = |lines: &mut dyn Iterator<Item = &str>| -> Vec<(usize, String)> {
        let scored: Vec<(usize, String)> = lines
            .map(|l| (score(l), l.to_string()))
            .filter(|(s, _)| *s > 0)
            .collect();
        let top = scored.iter().map(|(s, _)| *s).max().unwrap_or(0);
        scored.into_iter().filter(|(s, _)| *s == top).collect()
    };
    let elements = best(&mut full.uncut.iter().map(String::as_str));
    let passages = best(&mut full.text.lines().map(str::trim).filter(|l| !l.is_empty()));
    // Element matches that hold every word beat passages that hold fewer, and the other way.
    let top = |v: &[(usize, String)]| v.first().map_or(0, |(s, _)| *s);
    let (e_top, p_top) = (top(&elements), top(&passages));
    let keep = |v: Vec<(usize, String)>, other: usize| -> Vec<String> {
        if v.first().is_some_and(|(s, _)| *s >= other) {
            v.into_iter().map(|(_, l)| l).collect()
        } else {
            Vec::new()
        }
    };
    let elements = keep(elements, p_top);
    let passages: Vec<String> = keep(passages, e_top)
        .into_iter()
        .map(|p| passage(&p, &words))
        .collect();
    let matches = elements.len() + passages.len();
    Found {
        elements: elements.into_iter().take(limit).collect(),
        passages: passages.into_iter().take(limit).collect(),
        matches,
    }
}

/// A text line cut to [`PASSAGE_CHARS`] around its first matching word, cuts marked.
fn passage(line: &str, words: &[String]) -> String {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= PASSAGE_CHARS {
        return line.to_string();
    }
    let lower = line.to_lowercase();
    let at_byte = words.iter().filter_map(|w| lower.find(w.as_str())).min();
    let at = at_byte.map_or(0, |b| lower[..b].chars().count());
    let start = at
        .saturating_sub(PASSAGE_CHARS / 3)
        .min(chars.len() - PASSAGE_CHARS);
    let end = start + PASSAGE_CHARS;
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("(+{start} chars)…"));
    }
    out.extend(&chars[start..end]);
    if end < chars.len() {
        out.push_str(&format!("…(+{} chars)", chars.len() - end));
    }
    out
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

/// Whether a node has a role an agent acts on (not just a pointer cursor).
fn is_interactive(node: &Map<String, Value>) -> bool {
    let role = str_of(node, "role");
    INTERACTIVE.iter().any(|(r, _)| *r == role)
}

/// The text inside a node when it is one piece (a link around a `code` element: `os.walk`):
/// the tree leaves such a node unnamed, its name being that text. None when the text is in
/// several pieces, whose spacing the tree does not say (the page is asked instead).
fn sole_text(node: &Map<String, Value>) -> Option<String> {
    fn pieces<'a>(node: &'a Map<String, Value>, out: &mut Vec<&'a str>) {
        match node.get("text").and_then(Value::as_str) {
            Some(t) => out.push(t),
            None => {
                for child in node
                    .get("children")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match child {
                        Value::String(t) => out.push(t),
                        Value::Object(c) => match str_of(c, "name") {
                            "" => pieces(c, out),
                            n => out.push(n),
                        },
                        _ => {}
                    }
                    if out.len() > 1 {
                        return;
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    pieces(node, &mut out);
    out.retain(|t| !t.trim().is_empty());
    match out.as_slice() {
        [one] => Some(one.trim().to_string()),
        _ => None,
    }
}

/// The aria names of the nodes inside an `iframe` node of the tree (a frame's elements).
fn in_frame_refs<'a>(node: &'a Value, inside: bool, out: &mut std::collections::HashSet<&'a str>) {
    match node {
        Value::Array(items) => items.iter().for_each(|n| in_frame_refs(n, inside, out)),
        Value::Object(map) => {
            if inside {
                if let Some(r) = map.get("ref").and_then(Value::as_str) {
                    out.insert(r);
                }
            }
            let frame = inside || map.get("role").and_then(Value::as_str) == Some("iframe");
            if let Some(children) = map.get("children") {
                in_frame_refs(children, frame, out);
            }
        }
        _ => {}
    }
}

/// Whether a node's line needs the element itself: the aria tree does not say an input's type
/// (password, date, email, ...) nor which element a custom widget or a JS-only clickable is.
fn needs_tag(node: &Map<String, Value>) -> bool {
    let role = str_of(node, "role");
    // Nothing names it (an icon-only button or link): the page is asked for its icon's name.
    if str_of(node, "name").is_empty()
        && own_text(node).trim().is_empty()
        && sole_text(node).is_none()
    {
        return true;
    }
    match INTERACTIVE.iter().find(|(r, _)| *r == role) {
        Some((_, kind)) => *kind == role || matches!(role, "textbox" | "spinbutton" | "slider"),
        None => true,
    }
}

/// The line for an element an agent can act on (without its ref), or None for other nodes.
/// `button "Sign in"`, `input[type=text] placeholder="Search"`, `a "Home" -> URL`. `tag` is
/// what the page says the element is (`input[type=password]`, `li[role=tab]`, `span`), when
/// asked for (see [`needs_tag`]). `marked`: long names and values are cut, saying by how much.
fn describe(
    node: &Map<String, Value>,
    parent_role: &str,
    base: Option<&url::Url>,
    tag: Option<&Tag>,
    marked: bool,
) -> Option<String> {
    let clip = |s: &str, limit: usize| {
        if marked {
            cut_marked(s, limit)
        } else {
            s.to_string()
        }
    };
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
    if name.is_empty() && !textual {
        name = sole_text(node).unwrap_or_default();
    }
    // An input named by its placeholder says so once, as the placeholder.
    if name == placeholder {
        name.clear();
    }
    let mut line = tag.map_or(kind, |t| t.tag.as_str()).to_string();
    if !name.is_empty() {
        line.push_str(&format!(" {:?}", clip(name.trim(), NAME_CHARS)));
    }
    // No text of its own: where it is (and its colour) tells it from its neighbours.
    if let Some(look) = tag.and_then(|t| t.look.as_ref()) {
        if name.is_empty() && placeholder.is_empty() && !tag.is_some_and(|t| t.shape) {
            line.push_str(" (empty)");
        }
        line.push_str(&look.describe());
    }
    if !placeholder.is_empty() {
        line.push_str(&format!(
            " placeholder={:?}",
            clip(placeholder, SHORT_CHARS)
        ));
    }
    let options = options_of(node, marked);
    if !options.is_empty() {
        let shown: Vec<String> = options.iter().map(|(o, _)| format!("{o:?}")).collect();
        line.push_str(&format!(" options=[{}]", shown.join(", ")));
        if let Some((selected, _)) = options.iter().find(|(_, s)| *s) {
            line.push_str(&format!(" selected={selected:?}"));
        }
    } else if textual {
        let value = own_text(node);
        if !value.is_empty() {
            line.push_str(&format!(" value={:?}", clip(&value, VALUE_CHARS)));
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
    // `#` and `javascript:` say nothing of where a link goes (a script acts on the click): a
    // calendar's 31 day links would add the page's URL 31 times.
    let says_where = !(href.is_empty()
        || href == "#"
        || href
            .get(..11)
            .is_some_and(|s| s.eq_ignore_ascii_case("javascript:")));
    if says_where {
        let absolute = base
            .and_then(|b| b.join(href).ok())
            .map(|u| u.to_string())
            .unwrap_or_else(|| href.to_string());
        line.push_str(&format!(" -> {absolute}"));
    }
    Some(line)
}

/// A select's options: (label, selected).
fn options_of(node: &Map<String, Value>, marked: bool) -> Vec<(String, bool)> {
    let Some(children) = node.get("children").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for child in children {
        let Value::Object(c) = child else { continue };
        match str_of(c, "role") {
            "option" => out.push((
                if marked {
                    cut_marked(str_of(c, "name"), SHORT_CHARS)
                } else {
                    str_of(c, "name").to_string()
                },
                c.get("selected") == Some(&Value::Bool(true)),
            )),
            "listbox" | "group" => out.extend(options_of(c, marked)),
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
    let document = page.evaluate::<(), String>(js::MARK_READY, None).await?;
    let raw = page
        .aria_snapshot(AriaSnapshotOptions::default().mode(AriaSnapshotMode::Ai))
        .await?;
    let keys = keys_of(page, &document, &raw).await;
    let total = raw.chars().count();
    let mut out = String::new();
    let mut used = 0;
    let mut truncated = false;
    for line in raw.lines() {
        let line = rewrite_refs(line, &document, &keys, refs);
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

/// The keys (see `js::MARKED_KEYS`) of the main frame's elements an outline names, by aria
/// name: an element has the same ref in outlines and snapshots. Empty when the page cannot be
/// asked (its elements then keep their aria names).
async fn keys_of(
    page: &Page,
    document: &str,
    outline: &str,
) -> std::collections::HashMap<String, String> {
    // All of them: the main frame's elements are found, a frame's are not (its document is
    // another).
    let names: Vec<&str> = outline
        .split("[ref=")
        .skip(1)
        .filter_map(|r| r.split(']').next())
        .collect();
    let reading = READINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let asks: String = names
        .iter()
        .enumerate()
        .map(|(i, r)| format!(" {i}:{r}"))
        .collect();
    if !hand_over(page, document, reading, &asks).await {
        return Default::default();
    }
    let keys = page
        .evaluate::<_, Vec<(usize, String)>>(js::MARKED_KEYS, Some(&reading))
        .await
        .unwrap_or_default();
    keys.into_iter()
        .filter_map(|(i, key)| Some((names.get(i)?.to_string(), key)))
        .collect()
}

/// Hands the elements named in `asks` (` <index>:<aria name>` each) to the page's world, for
/// `reading` (see `js::MARK_ENGINE`). False when none could be: nothing asked, or the document
/// token is not ours in form — the page sets it (`window.__agentRuntimeDoc`), and it would end
/// up inside a Playwright selector.
async fn hand_over(page: &Page, document: &str, reading: u32, asks: &str) -> bool {
    if asks.is_empty() || !document.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let selector = format!(
        "{}=agent-runtime-mark-{document} {reading}{asks}",
        js::MARK_ENGINE_NAME
    );
    match page.locator(selector).count().await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "handing elements to the page's world failed");
            false
        }
    }
}

/// `[ref=e5]` → `[ref=ref_12]`; an aria name with a key in `keys` is placed by its key.
fn rewrite_refs(
    line: &str,
    document: &str,
    keys: &std::collections::HashMap<String, String>,
    refs: &mut Refs,
) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("[ref=") {
        out.push_str(&rest[..i + 5]);
        rest = &rest[i + 5..];
        match rest.find(']') {
            Some(end) => {
                let aria = &rest[..end];
                out.push_str(&refs.ref_for(document, keys.get(aria).map_or(aria, String::as_str)));
                rest = &rest[end..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// A CSS colour (`rgb(238, 51, 51)`, `rgba(0, 0, 255, 0.5)`) as hex and a plain name an agent
/// can match a task's words against: `#e33 red`. None for no colour (`none`, fully transparent)
/// and for what is not a plain colour (a gradient's `url(#g)`).
fn colour(css: &str) -> Option<String> {
    let inner = css
        .trim()
        .strip_prefix("rgba(")
        .or_else(|| css.trim().strip_prefix("rgb("))?
        .strip_suffix(')')?;
    let parts: Vec<f64> = inner
        .split([',', '/', ' '])
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<f64>().ok())
        .collect::<Option<_>>()?;
    let (rgb, alpha) = match parts.as_slice() {
        [r, g, b] => ([*r, *g, *b], 1.0),
        [r, g, b, a] => ([*r, *g, *b], *a),
        _ => return None,
    };
    if alpha <= 0.0 || rgb.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let [r, g, b] = rgb.map(|v| v.round().clamp(0.0, 255.0) as u8);
    let hex = if [r, g, b].iter().all(|v| v >> 4 == v & 15) {
        format!("#{:x}{:x}{:x}", r & 15, g & 15, b & 15)
    } else {
        format!("#{r:02x}{g:02x}{b:02x}")
    };
    Some(format!("{hex} {}", colour_name(r, g, b)))
}

/// The plain name of a colour, from its hue, lightness and saturation.
fn colour_name(r: u8, g: u8, b: u8) -> &'static str {
    let [r, g, b] = [r, g, b].map(|v| f64::from(v) / 255.0);
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let light = (max + min) / 2.0;
    let chroma = max - min;
    if light < 0.1 {
        return "black";
    }
    if light > 0.95 {
        return "white";
    }
    if chroma < 0.12 {
        return "gray";
    }
    let hue = if max == r {
        60.0 * ((g - b) / chroma).rem_euclid(6.0)
    } else if max == g {
        60.0 * ((b - r) / chroma + 2.0)
    } else {
        60.0 * ((r - g) / chroma + 4.0)
    };
    match hue {
        h if !(15.0..345.0).contains(&h) && light > 0.75 => "pink",
        h if !(15.0..345.0).contains(&h) => "red",
        h if h < 40.0 && light < 0.4 => "brown",
        h if h < 45.0 => "orange",
        h if h < 70.0 && light < 0.35 => "olive",
        h if h < 70.0 => "yellow",
        h if h < 165.0 => "green",
        h if h < 195.0 => "cyan",
        h if h < 255.0 => "blue",
        h if h < 320.0 => "purple",
        _ => "pink",
    }
}

/// The first `limit` characters of `s`, and when that cut something, a mark saying how much:
/// `…(+12 chars)` (browser_find shows lines uncut).
pub fn cut_marked(s: &str, limit: usize) -> String {
    match s.char_indices().nth(limit) {
        Some((i, _)) => format!("{}…(+{} chars)", &s[..i], s[i..].chars().count()),
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
            if let Some(l) = describe(n, p, base.as_ref(), None, true) {
                out.push(l);
            }
        });
        out
    }

    #[test]
    fn a_frames_elements_are_told_by_the_tree_not_the_name() {
        // After a navigation the main frame's names carry a prefix too (`f1e2`).
        let tree = json!([
            {"role": "button", "name": "Top", "ref": "f1e2"},
            {"role": "iframe", "ref": "f1e3", "children": [
                {"role": "button", "name": "Inside", "ref": "f2e1"},
                {"role": "generic", "children": [{"role": "link", "name": "Deep", "ref": "f2e4"}]}
            ]}
        ]);
        let mut framed = std::collections::HashSet::new();
        in_frame_refs(&tree, false, &mut framed);
        let mut got: Vec<&str> = framed.into_iter().collect();
        got.sort();
        assert_eq!(got, ["f2e1", "f2e4"]);
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
    fn a_link_around_one_piece_of_text_is_named_by_it_without_asking_the_page() {
        let one = json!({"role": "link", "ref": "e36", "cursor": "pointer", "url": "#os",
                         "children": [{"role": "code", "ref": "e37", "text": "os.walk()"}]});
        let Value::Object(one) = one else { return };
        assert_eq!(sole_text(&one).as_deref(), Some("os.walk()"));
        assert!(!needs_tag(&one));
        let base = url::Url::parse("https://example.com/a/").ok();
        assert_eq!(
            describe(&one, "", base.as_ref(), None, true).as_deref(),
            Some(r#"a "os.walk()" -> https://example.com/a/#os"#)
        );
        // A link that says nothing of where it goes has no URL on its line.
        for href in ["#", "javascript:void(0)", "JavaScript:go()"] {
            let day = json!({"role": "link", "name": "3", "ref": "e41", "url": href});
            let Value::Object(day) = day else { return };
            assert_eq!(
                describe(&day, "", base.as_ref(), None, true).as_deref(),
                Some(r#"a "3""#),
                "{href}"
            );
        }
        // Several pieces: how they join is the page's to say.
        let two = json!({"role": "link", "ref": "e38", "url": "#x", "children": [
            {"role": "code", "ref": "e39", "text": "os"},
            {"role": "code", "ref": "e40", "text": "walk"}]});
        let Value::Object(two) = two else { return };
        assert_eq!(sole_text(&two), None);
        assert!(needs_tag(&two));
    }

    #[test]
    fn outline_refs_become_ours() {
        let mut refs = Refs::default();
        let keys = Default::default();
        let line = rewrite_refs(
            r#"- button "Go" [ref=e5] [cursor=pointer]"#,
            "d",
            &keys,
            &mut refs,
        );
        assert_eq!(line, r#"- button "Go" [ref=ref_1] [cursor=pointer]"#);
        assert_eq!(
            rewrite_refs("- text: plain", "d", &keys, &mut refs),
            "- text: plain"
        );
    }

    fn big_page() -> Full {
        let text: String = (0..2000)
            .map(|i| format!("Paragraph {i} of the page.\n"))
            .collect();
        let elements: Vec<String> = (1..=1500)
            .map(|i| format!("[ref_{i}] a \"Link {i}\" -> https://example.com/{i}"))
            .collect();
        Full {
            document: "d".into(),
            headings: vec![(text.find("Paragraph 1500").unwrap_or(0), "Late part".into())],
            text,
            uncut: elements.clone(),
            boxes: false,
            boxed: Vec::new(),
            boxed_uncut: Vec::new(),
            elements,
            unlisted: 0,
            mutations: 0,
            shot: None,
            took: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn pages_fit_the_budget_and_reach_everything() {
        let full = big_page();
        let first = serve(&full, DEFAULT_BUDGET, 1, None).expect("page 1");
        assert!(first.text.chars().count() + first.elements.chars().count() <= DEFAULT_BUDGET);
        assert!(first.pages > 1 && first.elements.starts_with("[ref_1] "));
        assert!(
            first.more.contains("browser_snapshot {page: 2}"),
            "{}",
            first.more
        );
        assert!(first.more.contains("Late part"), "{}", first.more);
        let (mut text, mut elements) = (String::new(), Vec::new());
        for page in 1..=first.pages {
            let p = serve(&full, DEFAULT_BUDGET, page, None).expect("page");
            assert!(p.text.chars().count() + p.elements.chars().count() <= DEFAULT_BUDGET);
            text.push_str(&p.text);
            elements.extend(p.elements.lines().map(str::to_string));
        }
        assert_eq!(text, full.text, "the pages hold the whole text, once");
        assert_eq!(elements, full.elements, "and every element, once, in order");
        let last = serve(&full, DEFAULT_BUDGET, first.pages, None).expect("last");
        assert!(!last.more.contains("Next:"), "{}", last.more);
        assert!(serve(&full, DEFAULT_BUDGET, first.pages + 1, None).is_err());
        // After a ref: the elements that follow it.
        let after = serve(&full, DEFAULT_BUDGET, 1, Some("ref_700")).expect("after");
        assert!(
            after.elements.starts_with("[ref_701] "),
            "{}",
            &after.elements[..40]
        );
        assert!(serve(&full, DEFAULT_BUDGET, 1, Some("ref_9999")).is_err());
    }

    #[test]
    fn a_small_page_is_one_page() {
        let full = Full {
            document: "d".into(),
            text: "Hello".into(),
            elements: vec!["[ref_1] button \"OK\"".into()],
            uncut: vec!["[ref_1] button \"OK\"".into()],
            boxes: false,
            boxed: Vec::new(),
            boxed_uncut: Vec::new(),
            headings: Vec::new(),
            unlisted: 0,
            mutations: 0,
            shot: None,
            took: std::time::Duration::ZERO,
        };
        let p = serve(&full, DEFAULT_BUDGET, 0, None).expect("page");
        assert_eq!(
            (p.text.as_str(), p.page, p.pages, p.more.as_str()),
            ("Hello", 1, 1, "")
        );
        assert_eq!(p.elements, "[ref_1] button \"OK\"");
    }

    #[test]
    fn find_matches_all_words_in_lines_and_text() {
        let full = big_page();
        let found = find(&full, "link 1499", 20);
        assert_eq!(
            found.elements[0],
            "[ref_1499] a \"Link 1499\" -> https://example.com/1499"
        );
        assert!(found.passages.is_empty(), "{:?}", found.passages);
        let found = find(&full, "Paragraph 17 of", 5);
        assert!(found.elements.is_empty());
        assert_eq!(found.passages.len(), 5);
        assert!(found.matches > 5);
        assert_eq!(find(&full, "zebra", 5).matches, 0);
    }

    #[test]
    fn colours_read_as_hex_and_a_plain_name() {
        assert_eq!(colour("rgb(238, 51, 51)").as_deref(), Some("#e33 red"));
        assert_eq!(colour("rgb(51, 170, 51)").as_deref(), Some("#3a3 green"));
        assert_eq!(colour("rgb(30, 60, 200)").as_deref(), Some("#1e3cc8 blue"));
        assert_eq!(colour("rgba(0, 0, 0, 0.5)").as_deref(), Some("#000 black"));
        assert_eq!(colour("rgb(221, 221, 221)").as_deref(), Some("#ddd gray"));
        assert_eq!(
            colour("rgb(255, 165, 0)").as_deref(),
            Some("#ffa500 orange")
        );
        assert_eq!(
            colour("rgb(128 0 128 / 1)").as_deref(),
            Some("#800080 purple")
        );
        assert_eq!(
            colour("rgb(255, 192, 203)").as_deref(),
            Some("#ffc0cb pink")
        );
        assert_eq!(colour("rgb(128, 128, 0)").as_deref(), Some("#808000 olive"));
        assert_eq!(colour("rgb(255, 255, 0)").as_deref(), Some("#ff0 yellow"));
        for none in ["rgba(0, 0, 0, 0)", "none", "url(\"#g\")", "", "rgb(1, 2)"] {
            assert_eq!(colour(none), None, "{none}");
        }
    }

    #[test]
    fn things_with_no_text_read_by_kind_place_and_colour() {
        let look = |fill: &str, stroke: &str| Look {
            bounds: [120.4, 79.6, 40.0, 40.0],
            fill: fill.into(),
            stroke: stroke.into(),
        };
        let missed = |tag: &str, shape: bool, clickable: bool, look: Look| Missed {
            tag: tag.into(),
            text: String::new(),
            path: String::new(),
            key: String::new(),
            after: -1,
            look: Some(look),
            shape,
            clickable,
            more: 0,
            rect: None,
        };
        let circle = missed("svg circle", true, true, look("rgb(238, 51, 51)", "none"));
        assert_eq!(
            circle.describe(true),
            "svg circle at (120,80) 40x40 fill #e33 red (clickable)"
        );
        let line = missed("svg line", true, false, look("", "rgb(0, 0, 0)"));
        assert_eq!(
            line.describe(true),
            "svg line at (120,80) 40x40 stroke #000 black"
        );
        let mut canvas = missed("canvas", true, true, look("rgba(0, 0, 0, 0)", ""));
        canvas.more = 7;
        assert_eq!(
            canvas.describe(true),
            "canvas at (120,80) 40x40 (clickable) (+7 more shapes not listed)"
        );
        let cell = missed("td", false, true, look("rgb(238, 238, 238)", ""));
        assert_eq!(
            cell.describe(true),
            "td (empty) at (120,80) 40x40 fill #eee gray (clickable)"
        );
        // A tree line with no name: the page's look says where it is.
        let node = json!({"role": "generic", "ref": "e1", "cursor": "pointer"});
        let Value::Object(node) = node else { return };
        let tag = Tag {
            tag: "div".into(),
            text: String::new(),
            placeholder: String::new(),
            look: Some(look("rgb(221, 221, 221)", "")),
            shape: false,
        };
        assert_eq!(
            describe(&node, "", None, Some(&tag), true).as_deref(),
            Some("div (empty) at (120,80) 40x40 fill #ddd gray (clickable)")
        );
    }

    #[test]
    fn boxes_go_before_trailing_marks_and_the_url() {
        let bx = " at (1,2) 3x4";
        assert_eq!(
            place_box(
                r#"[ref_1] a "x -> y" (clickable) -> https://e.com/"#,
                bx,
                true
            ),
            r#"[ref_1] a "x -> y" at (1,2) 3x4 (clickable) -> https://e.com/"#
        );
        assert_eq!(
            place_box(r#"[ref_2] span "a -> b" (clickable)"#, bx, false),
            r#"[ref_2] span "a -> b" at (1,2) 3x4 (clickable)"#
        );
        assert_eq!(
            place_box(r#"[ref_3] button "OK""#, "", false),
            r#"[ref_3] button "OK""#
        );
    }

    #[test]
    fn cut_respects_characters() {
        assert_eq!(cut_marked("héllo", 2), "hé…(+3 chars)");
        assert_eq!(cut_marked("hi", 5), "hi");
    }
}
